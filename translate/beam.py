"""``TranslateCaptions``: the ``mt`` row stage, wiring the pure row functions around RunInference.

    pairs ──PlanRequests──► ((row id, text index, target), request) ──RunInference──► hypotheses
      │                                                    └─ dead letters (failed batches)
      └──KeyRows──► (row id, row) ──CoGroupByKey with outcomes by row id──► MergeTranslations
                                                  ├─► pairs (translations appended)
                                                  ├─► parallel (one row per translation)
                                                  └─► rejects (stage "mt", level "text")

Rows travel around inference, not through it: only the texts are batched and sent to
the model, and the image bytes never enter a model batch. The join by row id then
appends translations in a fixed order (``translate.rows.merge_row``), whatever order the
outcomes arrived in.

Machine translation batches texts, not rows, so it does not run inside ``ApplyRowStage``;
it is still a stage of the framework (``schemas.stage``): its model loads through a Beam
``ModelHandler``, its rejects are tagged and counted by ``account``, under its registry
name. Counters (namespace = the stage name, ``mt``): ``in``, ``kept`` (pairs rows),
``rejected_<reason>`` (``batch_failed``, ``empty_output``, ``too_long``, ``empty_source``),
``requests``, ``translated_<lang>``, ``back_translated_<lang>``, ``skipped_<reason>``
(``unknown_lang``, ``source_lang``, ``already_translated``, ``unsupported_pair``).
RunInference's own metrics are under ``mt_inference``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from schemas.rows import REJECTS_TAG
from schemas.stage import StageCounters, account
from translate.checkpoint import ModelInfo
from translate.config import TranslateConfig, validate
from translate.engine import Hypothesis
from translate.handler import TranslationModelHandler
from translate.rows import Outcome, Plan, merge_row, plan_requests

PARALLEL_TAG = "parallel"


class _PlanFn(beam.DoFn):
    def __init__(self, plan: Plan, stage: str):
        self.plan, self.stage = plan, stage
        self.counters = StageCounters(self.stage)

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        stats: Counter[str] = Counter()
        requests = plan_requests(row, self.plan, stats)
        stats["requests"] += len(requests)
        self.counters.add(stats)
        yield from requests


def to_outcome(result: tuple[Any, Hypothesis]) -> tuple[str, Outcome]:
    """A RunInference result ``((row id, index, target), hypothesis)`` as (row id, Outcome)."""
    (row_id, index, target), hyp = result
    if hyp.error is not None:
        return row_id, Outcome(index, target, reason=hyp.reason or "untranslatable", detail=hyp.error)
    return row_id, Outcome(index, target, hyp.text, hyp.score)


def failed_outcomes(dead_letter: Any) -> Iterator[tuple[str, Outcome]]:
    """A dead-lettered batch ``(batch, (exc type, exc repr, traceback))``: one failure per request."""
    batch, info = dead_letter
    detail = f"the model batch failed: {info[1] if isinstance(info, tuple | list) and len(info) > 1 else info}"
    for (row_id, index, target), _request in batch:
        yield row_id, Outcome(index, target, reason="batch_failed", detail=detail[:2000])


class _MergeFn(beam.DoFn):
    def __init__(self, plan: Plan, stage: str):
        self.plan, self.stage = plan, stage
        self.counters = StageCounters(stage)

    def process(self, joined: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
        _row_id, groups = joined
        stats: Counter[str] = Counter()
        for row in groups["row"]:  # one: ids are unique after dedup
            merged, parallel, rejects = merge_row(row, list(groups["out"]), self.plan, stats)
            account(self.stage, 1, [merged], rejects, stats)
            yield merged
            for p in parallel:
                yield beam.pvalue.TaggedOutput(PARALLEL_TAG, p)
            for r in rejects:
                yield beam.pvalue.TaggedOutput(REJECTS_TAG, r)
        self.counters.add(stats)


def make_plan(cfg: TranslateConfig, info: ModelInfo) -> Plan:
    return Plan(tuple(cfg.targets), frozenset(cfg.source_kinds), frozenset(cfg.source_langs), cfg.back_translate,
                tuple(sorted(cfg.lang_codes.items())), frozenset(info.pairs), cfg.resolved_model_id())


class TranslateCaptions(beam.PTransform):
    """Translations of captions (and optionally back-translations of weak texts): ``mt``.

    cfg: the ``[mt]`` settings (``TranslateConfig``), validated and checked against the
    model (it exists, loads safely, has the configured directions) when the transform
    is built, before the pipeline runs. stage: its name in the registry
    (``curation.stages``). loader/info: test seams (a fake engine factory and its
    ModelInfo); leave them None.
    Input ``{"pairs", "parallel"}``; output ``({"pairs", "parallel"}, rejects)``.
    """

    def __init__(self, cfg: TranslateConfig, stage: str, label: str | None = None, *, loader: Any = None,
                 info: ModelInfo | None = None):
        super().__init__(label)
        validate(cfg)
        if not cfg.enabled:
            raise ValueError("mt.model is empty: TranslateCaptions needs a model")
        if info is None:
            from translate.loading import check_model

            info = check_model(cfg)
        self.cfg, self.loader, self.plan, self.stage = cfg, loader, make_plan(cfg, info), stage

    def expand(self, tables: dict[str, beam.PCollection]) -> tuple[dict[str, beam.PCollection], beam.PCollection]:
        pairs = tables["pairs"]
        handler = KeyedModelHandler(TranslationModelHandler(self.cfg, self.loader))
        results, dlq = (
            pairs
            | "PlanRequests" >> beam.ParDo(_PlanFn(self.plan, self.stage))
            | "Translate" >> RunInference(handler).with_exception_handling()
        )
        outcomes = (
            results | "Outcomes" >> beam.Map(to_outcome),
            dlq.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_outcomes),
        ) | "AllOutcomes" >> beam.Flatten()
        keyed_rows = pairs | "KeyRows" >> beam.Map(lambda row: (row["id"], row))
        merged = (
            {"row": keyed_rows, "out": outcomes}
            | "JoinByRow" >> beam.CoGroupByKey()
            | "MergeTranslations" >> beam.ParDo(_MergeFn(self.plan, self.stage)).with_outputs(PARALLEL_TAG, REJECTS_TAG,
                                                                                  main="pairs")
        )
        parallel = (tables["parallel"], merged[PARALLEL_TAG]) | "AllParallel" >> beam.Flatten()
        return {"pairs": merged.pairs, "parallel": parallel}, merged[REJECTS_TAG]
