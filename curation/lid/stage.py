"""Language identification with fastText: the ``lid`` stage (``DetectLanguage``).

Every text of a ``pairs`` row (captions, weak texts, any variant) and both sides of a
``parallel`` row get a language (``curation.lid.labels`` scheme: ``en``, ``zh_Hant``...)
and a confidence in [0, 1]. The policy (``LidPolicy``), applied to each text in order:

1. empty or whitespace-only text is not judged by fastText (which would still name a
   language for an empty line): it is low-confidence with language ``und`` and score 0.
2. low confidence, score < threshold (``thresholds[lang]``, else ``threshold``):
   ``low_confidence = "reject"`` drops it (``lid/low_confidence``); ``"und"`` keeps it
   as ``und`` with its score, and skips steps 3-4: the detector's opinion did not count.
3. declared language differs (compared on ``schemas.rows.lang_key``): counted as
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

Speed: one fastText call labels ``batch_size`` texts (whole rows; ``curation.lid.model``).
The stage framework (``schemas.stage``) batches the rows, loads the model once per process
and counts: ``lid/in``, ``lid/kept``, ``lid/rejected_<reason>`` (one per reject, record-
or text-level), plus ``lang_<code>`` (kept texts), ``mismatch`` and ``declared_unknown``
(a declared value that is no language code).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from curation.lid.config import LidConfig
from curation.lid.model import LidModel, check_lid_config, load_lid_model
from curation.lid.policy import LidPolicy, label_pairs_batch, label_parallel_batch
from schemas.rows import Reject
from schemas.stage import ApplyRowStage, RowStage


def texts_in(row: dict[str, Any]) -> int:
    """How many texts a row gives fastText: batches are counted in texts, not rows."""
    texts = row.get("texts")
    return 2 if texts is None else len(texts)  # a parallel row: its two sides


class LabelLanguages(RowStage):
    """The ``lid`` stage's logic: every text of a batch of rows labelled in one fastText call."""

    tables = ("pairs", "parallel")
    weight = staticmethod(texts_in)

    def __init__(self, cfg: LidConfig):
        self.cfg = cfg
        self.batch_size = cfg.batch_size
        self.policy = LidPolicy(cfg)

    def load(self) -> LidModel:
        return load_lid_model(self.cfg.model)

    def process(self, table: str, rows: list[dict[str, Any]], model: LidModel,
                stats: Counter[str]) -> tuple[list[dict[str, Any]], list[Reject]]:
        label = label_pairs_batch if table == "pairs" else label_parallel_batch
        return label(rows, model, self.policy, stats)


class DetectLanguage(ApplyRowStage):
    """Language of every text, by fastText; the ``lid`` row stage.

    cfg: the ``[lid]`` settings (``LidConfig``; see the module docstring for the policy).
    stage: its name in the registry (``curation.stages``). Input ``{"pairs", "parallel"}``;
    output ``({"pairs", "parallel"}, rejects)``. The config and a local model file are
    checked when the transform is built, before the pipeline runs. Keep ``batch_size``
    small (128-256): the rows waiting in a batch outlive the young garbage-collector
    generations, and with thousands of them CPython's full collections cost more than
    fastText itself.
    """

    def __init__(self, cfg: LidConfig, stage: str, label: str | None = None):
        check_lid_config(cfg)
        super().__init__(stage, LabelLanguages(cfg), label)
        self.cfg = cfg
