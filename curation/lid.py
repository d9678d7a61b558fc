"""Language identification with fastText: the ``lid`` stage (``DetectLanguage``).

Every text of a ``pairs`` row (captions, weak texts, any variant) and both sides of a
``parallel`` row get a language (``curation.lid_labels`` scheme: ``en``, ``zh_Hant``...)
and a confidence in [0, 1]. The policy (``LidPolicy``), applied to each text in order:

1. empty or whitespace-only text is never shown to fastText (which would still name a
   language for it): it is low-confidence with language ``und`` and score 0.
2. low confidence, score < threshold (``thresholds[lang]``, else ``threshold``):
   ``low_confidence = "reject"`` drops it (``lid/low_confidence``); ``"und"`` keeps it
   as ``und`` with its score, and skips steps 3-4: the detector's opinion did not count.
3. declared language differs (compared on ``lid_labels.lang_key``): counted as
   ``mismatch``; ``"flag"`` keeps the detection, ``"declared"`` keeps the declared
   language with the model's probability *for it*, ``"reject"`` drops it
   (``lid/lang_mismatch``). A declared ``und``/``mul`` or a non-code declares nothing.
4. not in ``allowed`` (when set; on ``lang_key``): dropped (``lid/not_allowed``).

A dropped text of a pairs row is a text-level reject; the row keeps its other texts,
whose ``anchor``/``derived_from`` indices are remapped (to None where they pointed at
the dropped text). A pairs row that loses every text, or a parallel row that loses a
side, becomes a record-level reject with the (last, resp. first) text's reason.

Speed: rows arrive in batches (``BatchElements``, fixed size); one fastText call labels
every text of a batch, through ``model.f.multilinePredict``: ``FastText.predict`` is
avoided because fasttext 0.9.3 builds its result with ``np.array(..., copy=False)``,
which raises under numpy 2, and re-checks every line in Python. Counters are summed per
batch, and the model is loaded once per process (``load_lid_model``'s cache).

Counters (namespace ``lid``): ``lang_<code>`` (kept texts), ``rejected_<reason>``
(dropped texts, parallel sides included), ``rows_rejected_<reason>`` (record-level
rejects), ``mismatch``, ``declared_unknown`` (a declared value that is no language code).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from curation.config import ConfigError, LidConfig
from curation.lid_labels import lang_key, normalise_code, normalise_label
from curation.lid_policy import STAGE, LidPolicy, declared_code, label_pairs_row, label_parallel_row
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
        import fasttext  # heavy import, only where a model is used

        try:
            ft = fasttext.load_model(path)
        except ValueError as err:
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

    def predict(self, texts: Sequence[str], max_chars: int) -> tuple[list[str], list[float]]:
        """(codes, scores) of the top language of each text, in one fastText call.

        Scores are clipped to 1: fastText adds 1e-5 to probabilities before its log.
        """
        lines = [prepare_text(t, max_chars) for t in texts]
        present = [i for i, line in enumerate(lines) if line is not None]
        labels, probs = self._raw([lines[i] for i in present], 1) if present else ([], [])
        codes = [UNDETERMINED] * len(texts)
        scores = [0.0] * len(texts)
        get = self.codes.get
        for i, label, prob in zip(present, labels, probs, strict=True):
            if label:
                codes[i] = get(label[0]) or normalise_label(label[0])
                score = float(prob[0])
                scores[i] = score if score < 1.0 else 1.0
        return codes, scores

    def top_k(self, texts: Sequence[str], max_chars: int, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` likeliest languages of each text (k=-1: all), likeliest first."""
        lines = [prepare_text(t, max_chars) for t in texts]
        present = [i for i, line in enumerate(lines) if line is not None]
        labels, probs = self._raw([lines[i] for i in present], k) if present else ([], [])
        out: list[list[tuple[str, float]]] = [[(UNDETERMINED, 0.0)] for _ in texts]
        for i, labs, ps in zip(present, labels, probs, strict=True):
            out[i] = [(self.codes.get(lab) or normalise_label(lab), min(float(p), 1.0)) for lab, p in zip(labs, ps, strict=True)]
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
    ``thresholds``, an empty or missing (local) model file. Raises ConfigError."""
    if not cfg.model:
        raise ConfigError("lid.model is empty: point it at a fastText LID model (lid.176.bin, GlotLID...)")
    bad = [c for c in [*cfg.allowed, *cfg.thresholds] if normalise_code(c) is None]
    if bad:
        raise ConfigError(f"lid: {bad} are not language codes; use ISO 639-1/639-3 codes like 'en', 'eng', 'zh_Hant'")
    if "://" not in cfg.model and not os.path.isfile(cfg.model):
        raise ConfigError(f"lid.model = {cfg.model!r}: no such file")


class _LabelBatchFn(beam.DoFn):
    """Labels a batch (list) of rows of one table; yields rows and tagged Rejects."""

    def __init__(self, cfg: LidConfig, table: str):
        self.cfg = cfg
        self.table = table
        self.model: LidModel | None = None
        self.policy: LidPolicy | None = None

    def setup(self) -> None:
        self.model = load_lid_model(self.cfg.model)
        self.policy = LidPolicy(self.cfg)

    def process(self, rows: list[dict[str, Any]]) -> Iterator[Any]:
        assert self.model is not None and self.policy is not None
        stats: Counter[str] = Counter()
        label = label_pairs_batch if self.table == "pairs" else label_parallel_batch
        for out in label(rows, self.model, self.policy, stats):
            yield beam.pvalue.TaggedOutput(REJECTS_TAG, out) if isinstance(out, Reject) else out
        for name, n in stats.items():
            Metrics.counter(STAGE, name).inc(n)


def _declared(values: Sequence[str | None], stats: Counter[str]) -> list[str | None]:
    """Declared languages as canonical codes (None where nothing usable is declared)."""
    out: list[str | None] = []
    for value in values:
        code = declared_code(value)
        if code is False:
            stats["declared_unknown"] += 1
            code = None
        out.append(code)  # type: ignore[arg-type]
    return out


def _detect(texts: list[str], declared: list[str | None], model: LidModel, policy: LidPolicy,
            stats: Counter[str]) -> list[tuple[str, float, str | None, str]]:
    """The policy's outcome for each text: (lang, score, reject reason or None, detail)."""
    codes, scores = model.predict(texts, policy.max_chars)
    declared_scores: dict[int, float] = {}
    if policy.mismatch == "declared":
        todo = [i for i, d in enumerate(declared) if policy.overrides(codes[i], scores[i], d)]
        if todo:
            keys = [lang_key(declared[i]) for i in todo]  # type: ignore[arg-type]
            probs = model.probability([texts[i] for i in todo], keys, policy.max_chars)
            declared_scores = dict(zip(todo, probs, strict=True))
    return [
        policy.decide(codes[i], scores[i], declared[i], declared_scores.get(i), stats) for i in range(len(texts))
    ]


def label_pairs_batch(rows: list[dict[str, Any]], model: LidModel, policy: LidPolicy,
                      stats: Counter[str]) -> Iterator[Any]:
    """Label every text of a batch of pairs rows with one fastText call; yields rows and Rejects."""
    texts = [t["text"] for row in rows for t in row["texts"]]
    declared = _declared([t.get("declared_lang") for row in rows for t in row["texts"]], stats)
    outcomes = _detect(texts, declared, model, policy, stats)
    at = 0
    for row in rows:
        n = len(row["texts"])
        yield from label_pairs_row(row, outcomes[at:at + n], stats)
        at += n


def label_parallel_batch(rows: list[dict[str, Any]], model: LidModel, policy: LidPolicy,
                         stats: Counter[str]) -> Iterator[Any]:
    """Label both sides of a batch of parallel rows with one fastText call."""
    texts = [text for row in rows for text in (row["src_text"], row["tgt_text"])]
    declared = _declared([lang for row in rows for lang in (row["src_lang"], row["tgt_lang"])], stats)
    outcomes = _detect(texts, declared, model, policy, stats)
    for i, row in enumerate(rows):
        yield from label_parallel_row(row, outcomes[2 * i], outcomes[2 * i + 1], stats)


class DetectLanguage(beam.PTransform):
    """Language of every text, by fastText; the ``lid`` row stage.

    cfg: the ``[lid]`` settings (``LidConfig``; see the module docstring for the policy).
    Input: ``{"pairs": rows, "parallel": rows}``. Output: ``({"pairs", "parallel"},
    rejects)``, the shape of ``curation.pipeline.ROW_STAGES``. The config is checked (and a
    local model file's existence) when the transform is built, before the pipeline runs.
    """

    def __init__(self, cfg: LidConfig, label: str | None = None):
        super().__init__(label)
        check_lid_config(cfg)
        self.cfg = cfg

    def expand(self, tables: dict[str, beam.PCollection]) -> tuple[dict[str, beam.PCollection], beam.PCollection]:
        out, rejects = {}, []
        size = self.cfg.batch_size
        for table in ("pairs", "parallel"):
            labelled = (
                tables[table]
                | f"Batch[{table}]" >> beam.BatchElements(min_batch_size=size, max_batch_size=size, record_metrics=False)
                | f"Label[{table}]" >> beam.ParDo(_LabelBatchFn(self.cfg, table)).with_outputs(REJECTS_TAG, main="main")
            )
            out[table] = labelled.main
            rejects.append(labelled[REJECTS_TAG])
        return out, tuple(rejects) | "Rejects" >> beam.Flatten()


def lid_stage(cfg: Any) -> beam.PTransform:
    """``ROW_STAGES`` factory: ``DetectLanguage(cfg.lid)``, or a pass-through when
    ``lid.model`` is empty (the stage is off)."""
    if not cfg.lid.model:
        return _PassThrough()
    return DetectLanguage(cfg.lid)


class _PassThrough(beam.PTransform):
    def expand(self, tables: dict[str, beam.PCollection]) -> tuple[dict[str, beam.PCollection], beam.PCollection]:
        empty = tables["pairs"].pipeline | "NoRejects" >> beam.Create([])
        return dict(tables), empty
