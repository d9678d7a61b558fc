"""The fastText LID model: loading, and top-1 / top-k / per-language predictions in batches.

Speed: one fastText call labels a batch of texts, through ``model.f.multilinePredict``:
``FastText.predict`` is avoided because fasttext 0.9.3 builds a single text's result with
``np.array(..., copy=False)``, which raises under numpy 2, and re-checks every line in
Python. The model is loaded on the workers by the stage framework (``schemas.stage``),
never at import time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from curation.lid.config import LidConfig, LidConfigError
from curation.lid.labels import normalise_code, normalise_label
from schemas.rows import UNDETERMINED, lang_key


class LidModelError(ValueError):
    """The file is not a supervised fastText model (message names the file)."""


def prepare_text(text: str, max_chars: int) -> str | None:
    """The line fastText is shown, or None for empty/whitespace-only text.

    fastText predicts one line: a newline would end the text early (its Python
    ``predict`` refuses it outright), so newlines become spaces. The text is cut to
    ``max_chars`` so a huge text costs no more than a long one.
    """
    if "\n" in text:
        text = text.replace("\n", " ")
    text = text[:max_chars]
    if not text or text.isspace():
        return None
    return text + "\n"  # what FastText.predict appends: the end-of-sentence token


class LidModel:
    """A loaded fastText LID model whose labels are normalised once, at load time."""

    def __init__(self, ft: Any, path: str):
        self.ft = ft
        self.path = path
        self.labels: list[str] = list(ft.get_labels())
        self.codes: dict[str, str] = {label: normalise_label(label) for label in self.labels}

    @classmethod
    def load(cls, path: str) -> LidModel:
        """Load a local model file; LidModelError if it is no supervised fastText model."""
        import fasttext  # heavy import, only where a model is used

        try:
            ft = fasttext.load_model(path)
        except (ValueError, RuntimeError, MemoryError) as err:  # what fastText raises on a bad file
            raise LidModelError(f"{path}: not a fastText model ({err})") from err
        if ft.f.getArgs().model != fasttext.FastText.model_name.supervised:
            raise LidModelError(f"{path}: a fastText word-vector model, not a supervised LID model")
        return cls(ft, path)

    def _raw(self, lines: list[str], k: int) -> tuple[list[list[str]], list[Any]]:
        try:
            return self.ft.f.multilinePredict(lines, k, 0.0, "replace")
        except TypeError:  # lone surrogates cannot cross into C++: replace them and retry
            safe = [line.encode("utf-8", "replace").decode("utf-8") for line in lines]
            return self.ft.f.multilinePredict(safe, k, 0.0, "replace")

    def _lines(self, texts: Sequence[str], max_chars: int) -> tuple[list[str], list[int]]:
        """fastText input lines (``prepare_text``), and the positions of empty texts,
        which are sent as an empty line and their result discarded. Most texts need no
        preparation, so only the few that do go through ``prepare_text``."""
        lines = [t + "\n" for t in texts]
        empty = []
        for i, t in enumerate(texts):
            if len(t) > max_chars or "\n" in t or not t or t.isspace():
                line = prepare_text(t, max_chars)
                if line is None:
                    empty.append(i)
                lines[i] = line or "\n"
        return lines, empty

    def predict(self, texts: Sequence[str], max_chars: int) -> tuple[list[str], list[float]]:
        """(codes, scores) of the top language of each text, in one fastText call.

        Scores are clipped to 1: fastText adds 1e-5 to probabilities before its log.
        Empty texts get (``und``, 0.0).
        """
        if not texts:
            return [], []
        lines, empty = self._lines(texts, max_chars)
        labels, probs = self._raw(lines, 1)
        try:
            codes = [self.codes[label[0]] for label in labels]
            scores: list[float] = np.minimum(np.concatenate(probs), 1.0).tolist()
        except (KeyError, IndexError, ValueError):
            codes, scores = self._top1_slow(labels, probs)
        if len(scores) != len(codes):  # a line without any label
            codes, scores = self._top1_slow(labels, probs)
        for i in empty:
            codes[i], scores[i] = UNDETERMINED, 0.0
        return codes, scores

    def _top1_slow(self, labels: list[list[str]], probs: list[Any]) -> tuple[list[str], list[float]]:
        """Line by line, for results the fast path cannot take (a line with no label)."""
        codes, scores = [], []
        for label, prob in zip(labels, probs, strict=True):
            codes.append(normalise_label(label[0]) if label else UNDETERMINED)
            scores.append(min(float(prob[0]), 1.0) if label else 0.0)
        return codes, scores

    def top_k(self, texts: Sequence[str], max_chars: int, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` likeliest languages of each text (k=-1: all), likeliest first;
        [(``und``, 0.0)] for an empty text."""
        if not texts:
            return []
        lines, empty = self._lines(texts, max_chars)
        labels, probs = self._raw(lines, k)
        out = [
            [(self.codes.get(lab) or normalise_label(lab), min(float(p), 1.0)) for lab, p in zip(labs, ps, strict=True)]
            for labs, ps in zip(labels, probs, strict=True)
        ]
        for i in empty:
            out[i] = [(UNDETERMINED, 0.0)]
        return out

    def probability(self, texts: Sequence[str], keys: Sequence[str], max_chars: int) -> list[float]:
        """The model's probability that each text is in language ``keys[i]`` (a
        ``lang_key``), summed over the labels of that language (scripts, variants)."""
        out = []
        for ranked, key in zip(self.top_k(texts, max_chars, -1), keys, strict=True):
            out.append(min(1.0, sum(p for code, p in ranked if lang_key(code) == key)))
        return out


def _local_copy(path: str) -> str:
    """fastText reads local files only: a remote model (gs://, s3://...) is copied once."""
    if "://" not in path:
        return path
    from apache_beam.io.filesystems import FileSystems

    target = os.path.join(tempfile.gettempdir(), "m3curate-lid", path.replace("://", "/").replace("/", "_"))
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = f"{target}.{os.getpid()}.part"
        with FileSystems.open(path) as src, open(partial, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(partial, target)
    return target


def load_lid_model(path: str) -> LidModel:
    """The model at ``path`` (a remote one is copied locally first). The ``lid`` stage
    calls it through the stage framework's model handler, once per process."""
    local = _local_copy(path)
    if not os.path.isfile(local):
        raise LidModelError(f"{path}: cannot read the LID model (no such file)")
    return LidModel.load(local)


def check_lid_config(cfg: LidConfig) -> None:
    """Fail before the pipeline starts: unknown language codes in ``allowed`` or
    ``thresholds``, an empty setting, a missing or broken local model file (it is loaded
    once, here, to check it). Raises LidConfigError."""
    if not cfg.model:
        raise LidConfigError("lid.model is empty: point it at a fastText LID model (lid.176.bin, GlotLID...)")
    bad = [c for c in [*cfg.allowed, *cfg.thresholds] if normalise_code(c) is None]
    if bad:
        raise LidConfigError(f"lid: {bad} are not language codes; use ISO 639-1/639-3 codes like 'en', 'eng', 'zh_Hant'")
    if "://" in cfg.model:
        return
    if not os.path.isfile(cfg.model):
        raise LidConfigError(f"lid.model = {cfg.model!r}: no such file")
    try:
        load_lid_model(cfg.model)
    except LidModelError as err:
        raise LidConfigError(f"lid.model: {err}") from err
