"""Language identification with fastText: the ``lid`` stage (``DetectLanguage``).

Every text of a ``pairs`` row (captions, weak texts, any variant) and both sides of a
``parallel`` row get a language (``curation.lid_labels`` scheme: ``en``, ``zh_Hant``...)
and a confidence in [0, 1]. The policy (``LidPolicy``), applied to each text in order:

1. empty or whitespace-only text is not judged by fastText (which would still name a
   language for an empty line): it is low-confidence with language ``und`` and score 0.
2. low confidence, score < threshold (``thresholds[lang]``, else ``threshold``):
   ``low_confidence = "reject"`` drops it (``lid/low_confidence``); ``"und"`` keeps it
   as ``und`` with its score, and skips steps 3-4: the detector's opinion did not count.
3. declared language differs (compared on ``lid_labels.lang_key``): counted as
   ``mismatch``; ``"flag"`` keeps the detection, ``"declared"`` keeps the declared
   language with the model's probability *for it*, ``"reject"`` drops it
   (``lid/lang_mismatch``). A declared ``und``/``mul`` or a non-code declares nothing.
4. not in ``allowed`` (when set; on ``lang_key``): dropped (``lid/not_allowed``).

A text's declared language is its ``declared_lang`` (pairs) or the row's ``src_lang`` /
``tgt_lang`` as read (parallel; ``und`` declares nothing). A dropped text of a pairs row
is a text-level reject; the row keeps its other texts, whose ``anchor``/``derived_from``
indices are remapped (to None where they pointed at the dropped text). A pairs row that
loses every text, or a parallel row that loses a side, becomes a record-level reject
with the (last, resp. first) dropped text's reason.

Speed: one fastText call labels a batch of ``batch_size`` texts (whole rows), through
``model.f.multilinePredict``: ``FastText.predict`` is avoided because fasttext 0.9.3
builds a single text's result with ``np.array(..., copy=False)``, which raises under
numpy 2, and re-checks every line in Python. Rows are batched inside the labelling DoFn
(global window) or by ``BatchElements`` (other windows). Counters are summed per batch,
and the model is loaded once per process (``load_lid_model``'s cache), never at import.

Counters (namespace ``lid``): ``lang_<code>`` (kept texts), ``rejected_<reason>``
(dropped texts, parallel sides included), ``rows_rejected_<reason>`` (record-level
rejects), ``mismatch``, ``declared_unknown`` (a declared value that is no language code).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows

from curation.config import BuildConfig, ConfigError, LidConfig
from curation.lid_labels import lang_key, normalise_code, normalise_label
from curation.lid_policy import STAGE, LidPolicy, label_pairs_batch, label_parallel_batch
from curation.records import REJECTS_TAG, Reject
from schemas import UNDETERMINED

_MODELS: dict[tuple[str, int, int], LidModel] = {}
_LOCK = threading.Lock()


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
    """The model at ``path``, loaded once per process: every DoFn instance, thread and
    bundle shares it (keyed by file, size and mtime, so a rewritten file is reloaded)."""
    local = _local_copy(path)
    try:
        st = os.stat(local)
    except OSError as err:
        raise LidModelError(f"{path}: cannot read the LID model ({err.strerror})") from err
    key = (os.path.abspath(local), st.st_size, st.st_mtime_ns)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = LidModel.load(local)
    return model


def check_lid_config(cfg: LidConfig) -> None:
    """Fail before the pipeline starts: unknown language codes in ``allowed`` or
    ``thresholds``, an empty setting, a missing or broken local model file (it is loaded,
    into the process cache that in-process workers then share). Raises ConfigError."""
    if not cfg.model:
        raise ConfigError("lid.model is empty: point it at a fastText LID model (lid.176.bin, GlotLID...)")
    bad = [c for c in [*cfg.allowed, *cfg.thresholds] if normalise_code(c) is None]
    if bad:
        raise ConfigError(f"lid: {bad} are not language codes; use ISO 639-1/639-3 codes like 'en', 'eng', 'zh_Hant'")
    if "://" in cfg.model:
        return
    if not os.path.isfile(cfg.model):
        raise ConfigError(f"lid.model = {cfg.model!r}: no such file")
    try:
        load_lid_model(cfg.model)
    except LidModelError as err:
        raise ConfigError(f"lid.model: {err}") from err


class _LabelBatchFn(beam.DoFn):
    """Labels a batch (list) of rows of one table; outputs rows and tagged Rejects."""

    def __init__(self, cfg: LidConfig, table: str):
        self.cfg = cfg
        self.table = table
        self._label = label_pairs_batch if table == "pairs" else label_parallel_batch
        self.model: LidModel | None = None
        self.policy: LidPolicy | None = None

    def setup(self) -> None:
        self.model = load_lid_model(self.cfg.model)
        self.policy = LidPolicy(self.cfg)

    def label(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Reject]]:
        """(kept rows, rejects) of a batch; its counts go to the Beam counters at once."""
        assert self.model is not None and self.policy is not None
        stats: Counter[str] = Counter()
        kept, rejects = self._label(rows, self.model, self.policy, stats)
        for name, n in stats.items():
            Metrics.counter(STAGE, name).inc(n)
        return kept, rejects

    def process(self, rows: list[dict[str, Any]]) -> list[Any]:
        kept, rejects = self.label(rows)
        return kept + [TaggedOutput(REJECTS_TAG, r) for r in rejects]


def texts_in(row: dict[str, Any]) -> int:
    """How many texts a row gives fastText: batches are counted in texts, not rows."""
    texts = row.get("texts")
    return 2 if texts is None else len(texts)  # a parallel row: its two sides


class _BufferedLabelFn(_LabelBatchFn):
    """Takes rows one by one and labels them ``batch_size`` texts at a time, for input in
    the global window only (timestamps are not kept, as with BatchElements there).

    It does what ``BatchElements`` + ``_LabelBatchFn`` do, in one step: on FnApiRunner,
    BatchElements' per-element generator costs about 2 us a row, as much as the rest of
    the stage's Python (benchmarks/RESULTS.md).
    """

    def start_bundle(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._texts = 0

    def process(self, row: dict[str, Any]) -> Any:  # type: ignore[override]
        self._rows.append(row)
        self._texts += texts_in(row)
        if self._texts < self.cfg.batch_size:
            return ()
        rows, self._rows, self._texts = self._rows, [], 0
        return super().process(rows)

    def finish_bundle(self) -> list[Any]:
        rows, self._rows, self._texts = self._rows, [], 0
        if not rows:
            return []
        kept, rejects = self.label(rows)
        wrap = GlobalWindows.windowed_value
        return [wrap(r) for r in kept] + [TaggedOutput(REJECTS_TAG, wrap(r)) for r in rejects]


class DetectLanguage(beam.PTransform):
    """Language of every text, by fastText; the ``lid`` row stage.

    cfg: the ``[lid]`` settings (``LidConfig``; see the module docstring for the policy).
    Input: ``{"pairs": rows, "parallel": rows}``. Output: ``({"pairs", "parallel"},
    rejects)``, the shape of ``curation.pipeline.ROW_STAGES``. The config is checked (and a
    local model file's existence) when the transform is built, before the pipeline runs.
    Rows are labelled ``batch_size`` texts at a time: rows in the global window (a batch
    build) are buffered by the labelling DoFn itself; windowed input goes through
    ``BatchElements``, which batches per window. Keep ``batch_size`` small (128-256):
    the rows waiting in a batch outlive the young garbage-collector generations, and
    with thousands of them CPython's full collections cost more than fastText itself.
    """

    def __init__(self, cfg: LidConfig, label: str | None = None):
        super().__init__(label)
        check_lid_config(cfg)
        self.cfg = cfg

    def _label(self, rows: beam.PCollection, table: str) -> Any:
        if isinstance(rows.windowing.windowfn, GlobalWindows):
            return rows | f"Label[{table}]" >> beam.ParDo(_BufferedLabelFn(self.cfg, table)).with_outputs(
                REJECTS_TAG, main="main"
            )
        size = self.cfg.batch_size
        batching = beam.BatchElements(size, size, element_size_fn=texts_in, record_metrics=False)
        batches = rows | f"Batch[{table}]" >> batching
        return batches | f"Label[{table}]" >> beam.ParDo(_LabelBatchFn(self.cfg, table)).with_outputs(
            REJECTS_TAG, main="main"
        )

    def expand(self, tables: dict[str, beam.PCollection]) -> tuple[dict[str, beam.PCollection], beam.PCollection]:
        labelled = {table: self._label(tables[table], table) for table in ("pairs", "parallel")}
        rejects = tuple(out[REJECTS_TAG] for out in labelled.values()) | "Rejects" >> beam.Flatten()
        return {table: out.main for table, out in labelled.items()}, rejects


def lid_stage(cfg: BuildConfig) -> beam.PTransform:
    """``ROW_STAGES`` factory: ``DetectLanguage(cfg.lid)``, or a pass-through when
    ``lid.model`` is empty (the stage is off)."""
    if not cfg.lid.model:
        return _PassThrough()
    return DetectLanguage(cfg.lid)


class _PassThrough(beam.PTransform):
    def expand(self, tables: dict[str, beam.PCollection]) -> tuple[dict[str, beam.PCollection], beam.PCollection]:
        empty = tables["pairs"].pipeline | "NoRejects" >> beam.Create([])
        return dict(tables), empty
