"""``TranslateCaptions``: the ``mt`` row stage, wiring the pure row functions around RunInference.

    pairs ──PlanRequests──► ((row id, text index, target), request) ──RunInference──► hypotheses
      │                                                    └─ dead letters (failed batches)
      └──KeyRows──► (row id, row) ──JoinByRow (on disk) with outcomes by row id──► MergeTranslations
                                                  ├─► pairs (translations appended)
                                                  ├─► parallel (one row per translation)
                                                  └─► rejects (stage "mt", level "text")

Rows travel around inference, not through it: only the texts are batched and sent to
the model, and the image bytes never enter a model batch. The join by row id is a
transform the caller gives (``join``): a build passes ``curation.output.spill.GroupOnDisk``,
which groups rows and outcomes through sorted runs on disk, since FnApiRunner would hold
every row, image bytes included, behind an in-memory grouping; on its own the stage groups
with a GroupByKey (``InMemoryJoin``). It then appends translations in a fixed order
(``translate.rows.merge_row``), whatever order the outcomes arrived in.

Requests reach the model in batches of ``mt.batch_size`` that never cross a length
bucket: on Beam's stateful ``BatchElements`` (RunInference's own batching), or, where the
runner has no state (Beam's DaskRunner), through ``_BundleBatchFn``, which cuts each
bundle's requests the same way without state (``has_state`` picks; ``translate/README.md``).

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
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from schemas.rows import REJECTS_TAG
from schemas.stage import StageCounters, account
from translate.batching import bucketed_batches
from translate.checkpoint import ModelInfo
from translate.config import TranslateConfig, validate
from translate.engine import Hypothesis
from translate.handler import TranslationModelHandler
from translate.rows import Outcome, Plan, merge_row, plan_requests, request_length

PARALLEL_TAG = "parallel"
BUNDLE_LIMIT = 64  # batches' worth of requests _BundleBatchFn buffers before full batches leave


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


class _BundleBatchFn(beam.DoFn):
    """Length-bucketed batches of keyed requests without state, for runners that have none.

    Buffers the requests of a bundle and cuts them with ``bucketed_batches``: batches of
    ``size`` that never cross a length bucket, sorted by (length, request key) inside it, so
    a bundle's batches do not depend on the order its requests arrived in. Full batches
    leave whenever ``limit`` requests are buffered (memory stays bounded whatever the
    bundle); the rest, partial ones included, at the end of the bundle. This is Beam's
    unkeyed ``BatchElements`` path (per bundle) with Beam's length buckets added.
    """

    def __init__(self, size: int, boundaries: list[int], limit: int):
        self.size, self.boundaries, self.limit = size, list(boundaries), max(limit, size)
        self._buffer: list[Any] = []

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, request: Any) -> Iterator[list[Any]]:
        self._buffer.append(request)
        if len(self._buffer) >= self.limit:
            yield from self._cut(final=False)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for batch in self._cut(final=True):
            yield GlobalWindows.windowed_value_at_end_of_window(batch)

    def _cut(self, final: bool) -> list[list[Any]]:
        items, self._buffer = self._buffer, []
        batches = [[items[i] for i in batch] for batch in
                   bucketed_batches([request_length(r) for r in items], [r[0] for r in items], self.size,
                                    self.boundaries)]
        if not final:
            self._buffer = [r for batch in batches if len(batch) < self.size for r in batch]
        return [batch for batch in batches if final or len(batch) == self.size]


def has_state(runner: Any) -> bool:
    """Whether ``runner`` runs stateful DoFns: every runner but Beam's DaskRunner (and
    ``curation.deploy.dask``'s, which subclasses it), known by its module."""
    return not any(cls.__module__.startswith("apache_beam.runners.dask") for cls in type(runner).__mro__)


ROW, OUT = 0, 1  # tags of the joined values: the row, an outcome


class InMemoryJoin(beam.PTransform):
    """(key, value) PCollections -> (key, [values]) through a GroupByKey: the ``join`` of a
    TranslateCaptions used outside a build (a build groups on disk instead)."""

    def expand(self, entries: tuple[beam.PCollection, ...]) -> beam.PCollection:
        return entries | "All" >> beam.Flatten() | "Group" >> beam.GroupByKey()


class _MergeFn(beam.DoFn):
    def __init__(self, plan: Plan, stage: str):
        self.plan, self.stage = plan, stage
        self.counters = StageCounters(stage)

    def process(self, joined: tuple[str, list[tuple[int, Any]]]) -> Iterator[Any]:
        _row_id, values = joined
        stats: Counter[str] = Counter()
        outcomes = [value for tag, value in values if tag == OUT]
        for row in (value for tag, value in values if tag == ROW):  # one: ids are unique after dedup
            merged, parallel, rejects = merge_row(row, outcomes, self.plan, stats)
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
    ModelInfo); leave them None. stateful: how requests are batched: True, Beam's
    length-bucketed stateful ``BatchElements``; False, ``_BundleBatchFn`` (no state); None
    (the default), stateful unless the pipeline's runner has no state (``has_state``).
    join: a PTransform taking a tuple of (row id, tagged value) PCollections to (row id,
    [tagged values]); default ``InMemoryJoin``; a build passes one that groups on disk.
    Input ``{"pairs", "parallel"}``; output ``({"pairs", "parallel"}, rejects)``.
    """

    def __init__(self, cfg: TranslateConfig, stage: str, label: str | None = None, *, loader: Any = None,
                 info: ModelInfo | None = None, stateful: bool | None = None, join: beam.PTransform | None = None):
        super().__init__(label)
        self.stateful, self.join = stateful, join or InMemoryJoin()
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
        requests = pairs | "PlanRequests" >> beam.ParDo(_PlanFn(self.plan, self.stage))
        stateful = has_state(pairs.pipeline.runner) if self.stateful is None else self.stateful
        if not stateful:
            batch = _BundleBatchFn(self.cfg.batch_size, self.cfg.bucket_boundaries, BUNDLE_LIMIT * self.cfg.batch_size)
            requests = requests | "BatchInBundle" >> beam.ParDo(batch)
            handler = handler.with_no_batching()
        results, dlq = requests | "Translate" >> RunInference(handler).with_exception_handling()
        outcomes = (
            results | "Outcomes" >> beam.Map(to_outcome),
            dlq.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_outcomes),
        ) | "AllOutcomes" >> beam.Flatten()
        keyed_rows = pairs | "KeyRows" >> beam.Map(lambda row: (row["id"], (ROW, row)))
        keyed_outcomes = outcomes | "KeyOutcomes" >> beam.MapTuple(lambda row_id, out: (row_id, (OUT, out)))
        merged = (
            (keyed_rows, keyed_outcomes)
            | "JoinByRow" >> self.join
            | "MergeTranslations" >> beam.ParDo(_MergeFn(self.plan, self.stage)).with_outputs(PARALLEL_TAG, REJECTS_TAG,
                                                                                  main="pairs")
        )
        parallel = (tables["parallel"], merged[PARALLEL_TAG]) | "AllParallel" >> beam.Flatten()
        return {"pairs": merged.pairs, "parallel": parallel}, merged[REJECTS_TAG]
