"""The row-stage framework: one way for a stage to take rows and give kept rows and rejects.

In the spirit of datatrove's pipeline steps, a stage's logic is a small ``RowStage``
object with one method to write, ``process(table, rows, model, stats) -> (kept, rejects)``
(plus ``load()`` for its model). ``ApplyRowStage``, the one Beam transform around it,
owns what every stage used to rebuild:

- **batching**: in the global window (a batch build) with one model per process, rows
  are buffered inside one DoFn, ``batch_size`` weight units at a time (``bench_lid``
  measured ``BatchElements``' per-element generator at about 2 us a row on FnApiRunner,
  as much as the rest of the LID stage); otherwise, windowed input or a model shared
  across processes (``copies()``), rows go through Beam's ``RunInference``;
- **the model**: ``logic.load()`` on both paths: once per process (``beam.utils.shared``)
  on the fast path, or through ``StageModelHandler`` (a Beam ``ModelHandler``, in
  ``schemas/stage_inference.py``, imported only there because Beam's inference module
  imports torch) with ``model_copies`` per machine; never at import time;
- **counters**, one scheme for every stage, in the Beam namespace ``<stage>``:
  ``in`` (rows taken), ``kept`` (rows given on), ``rejected_<reason>`` (rejects, record-
  and text-level alike: the manifest's counts for that stage), and the stage's own
  detail counts (``lang_de``, ``translated_fr``...) from ``stats``;
- **reject tagging**: a reject the logic leaves without a stage gets the stage's name,
  and goes to the ``REJECTS_TAG`` output.

The stage's name is given by the registry (``curation.stages``), where every stage name
is written once. This module lives in ``schemas`` beside the row contract because
``translate`` and ``codeswitch`` import only ``schemas`` (DESIGN.md) and their stages are
instances of it too. It imports Beam; ``schemas/__init__`` does not import it, so the
trainer never loads Beam.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.shared import Shared

from schemas.rows import REJECTS_TAG, Reject

Row = dict[str, Any]
PLAIN_TAG = "plain"


class StageCounters:
    """The Beam counters of one stage (namespace = the stage's name), created once each."""

    def __init__(self, stage: str):
        self.stage = stage
        self._counters: dict[str, Any] = {}

    def inc(self, name: str, n: int = 1) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(self.stage, name)
        counter.inc(n)

    def add(self, stats: Counter[str]) -> None:
        for name, n in stats.items():
            if n:
                self.inc(name, n)


def account(stage: str, taken: int, kept: Sequence[Row], rejects: Iterable[Reject], stats: Counter[str]) -> None:
    """Tally a batch into ``stats`` by the framework's scheme (module docstring) and tag
    its rejects with the stage's name."""
    stats["in"] += taken
    stats["kept"] += len(kept)
    for reject in rejects:
        if not reject.stage:
            reject.stage = stage
        stats[f"rejected_{reject.reason}"] += 1


class RowStage:
    """One row stage's logic; subclass it and write ``process`` (and ``load`` for a model).

    Class attributes a subclass may set: ``tables``, the tables whose rows it takes (the
    others pass by untouched); ``batch_size``, the weight of rows per ``process`` call;
    ``weight``, a row's weight in a batch (None: 1 a row); ``wants``, which rows need the
    stage (None: all; the others pass straight through, counted in and kept).
    """

    tables: tuple[str, ...] = ("pairs",)
    batch_size: int = 128
    weight: Callable[[Row], int] | None = None
    wants: Callable[[Row], bool] | None = None

    def load(self) -> Any:
        """The stage's model (or any per-process state), loaded on the worker. Beam keeps
        models by weak reference: return an object (not None, a str or a tuple)."""
        return _NoModel()

    def copies(self) -> int | None:
        """Models per machine shared by its processes (one per GPU), or None: one per process."""
        return None

    def process(self, table: str, rows: list[Row], model: Any, stats: Counter[str]) -> tuple[list[Row], list[Reject]]:
        """(kept rows, rejects) of a batch; detail counts go into ``stats``."""
        raise NotImplementedError


def run_batch(stage: str, logic: RowStage, table: str, rows: list[Row], model: Any,
              counters: StageCounters, passed: int = 0) -> tuple[list[Row], list[Reject]]:
    """``logic.process`` on a batch, accounted and counted; ``passed`` rows went around it."""
    stats: Counter[str] = Counter()
    kept, rejects = logic.process(table, rows, model, stats) if rows else ([], [])
    account(stage, len(rows), kept, rejects, stats)
    if passed:
        stats["in"] += passed
        stats["kept"] += passed
    counters.add(stats)
    return kept, rejects


class _NoModel:
    """The model of a stage that needs none."""


class _Held:
    """A weak-referenceable holder: ``Shared`` keeps its objects by weak reference."""

    def __init__(self, model: Any):
        self.model = model


class _BufferedStageFn(beam.DoFn):
    """The fast path (module docstring): buffers rows of the global window into batches
    and runs the stage on them in one step; the model is the handler's, once per process."""

    def __init__(self, stage: str, logic: RowStage, table: str, shared: Shared):
        self.stage, self.logic, self.table = stage, logic, table
        self._shared = shared

    def setup(self) -> None:
        self.model = self._shared.acquire(lambda: _Held(self.logic.load())).model
        self.counters = StageCounters(self.stage)
        # read once: process() runs once a row, and attribute look-ups there cost per row
        self._wants, self._weigh, self._size = self.logic.wants, self.logic.weight, self.logic.batch_size

    def start_bundle(self) -> None:
        self._rows: list[Row] = []
        self._weight = 0
        self._passed = 0

    def _flush(self) -> list[Any]:
        rows, self._rows, self._weight = self._rows, [], 0
        passed, self._passed = self._passed, 0
        if not rows and not passed:
            return []
        kept, rejects = run_batch(self.stage, self.logic, self.table, rows, self.model, self.counters, passed)
        out: list[Any] = kept
        if rejects:
            out.extend(TaggedOutput(REJECTS_TAG, r) for r in rejects)
        return out

    def process(self, row: Row) -> Any:
        wants = self._wants
        if wants is not None and not wants(row):
            self._passed += 1
            return (row,)
        self._rows.append(row)
        weigh = self._weigh
        self._weight += 1 if weigh is None else weigh(row)
        return () if self._weight < self._size else self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        wrap = GlobalWindows.windowed_value
        for e in self._flush():
            yield TaggedOutput(e.tag, wrap(e.value)) if isinstance(e, TaggedOutput) else wrap(e)


def _route(wants: Callable[[Row], bool]) -> Callable[[Row], Iterator[Any]]:
    def route(row: Row) -> Iterator[Any]:
        yield row if wants(row) else TaggedOutput(PLAIN_TAG, row)

    return route


def _split(element: Any) -> Iterator[Any]:
    yield TaggedOutput(REJECTS_TAG, element) if isinstance(element, Reject) else element


class _CountPassed(beam.DoFn):
    def __init__(self, stage: str):
        self.stage = stage

    def setup(self) -> None:
        self.counters = StageCounters(self.stage)

    def process(self, row: Row) -> Iterator[Row]:
        self.counters.inc("in")
        self.counters.inc("kept")
        yield row


class ApplyRowStage(beam.PTransform):
    """A row stage over ``{"pairs": pc, "parallel": pc}``: returns (tables, rejects).

    stage: the stage's name (from the registry): its counters' namespace and its rejects'
    ``stage``. logic: the ``RowStage``. Stage transforms (``DetectLanguage``,
    ``CodeSwitch``, ``ScoreRelevance``) subclass this and build their logic.
    """

    def __init__(self, stage: str, logic: RowStage, label: str | None = None):
        super().__init__(label)
        if not stage:
            raise ValueError("a row stage needs its registry name")
        self.stage, self.logic = stage, logic
        self._shared = Shared()  # one model per process for every table of the stage

    def _apply(self, table: str, rows: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        if isinstance(rows.windowing.windowfn, GlobalWindows) and self.logic.copies() is None:
            fn = _BufferedStageFn(self.stage, self.logic, table, self._shared)
            out = rows | f"Run[{table}]" >> beam.ParDo(fn).with_outputs(REJECTS_TAG, main="rows")
            return out.rows, out[REJECTS_TAG]
        # Beam's RunInference imports torch (its model manager): only builds that take this path pay for it
        from schemas.stage_inference import RunInference, StageModelHandler

        handler = StageModelHandler(self.stage, self.logic, table)
        plain = None
        if self.logic.wants is not None:
            routed = rows | f"Route[{table}]" >> beam.FlatMap(_route(self.logic.wants)).with_outputs(
                PLAIN_TAG, main="wanted")
            rows, plain = routed.wanted, routed[PLAIN_TAG] | f"Passed[{table}]" >> beam.ParDo(_CountPassed(self.stage))
        out = (rows | f"Run[{table}]" >> RunInference(handler)
               | f"Split[{table}]" >> beam.FlatMap(_split).with_outputs(REJECTS_TAG, main="rows"))
        kept = out.rows if plain is None else (plain, out.rows) | f"Merge[{table}]" >> beam.Flatten()
        return kept, out[REJECTS_TAG]

    def expand(self, tables: dict[str, beam.PCollection]) -> tuple[dict[str, beam.PCollection], beam.PCollection]:
        outputs, rejects = dict(tables), []
        for table in self.logic.tables:
            outputs[table], dropped = self._apply(table, tables[table])
            rejects.append(dropped)
        if not rejects:  # a stage switched off: rows pass, nothing is dropped
            return outputs, next(iter(tables.values())).pipeline | "NoRejects" >> beam.Create([])
        return outputs, tuple(rejects) | "Rejects" >> beam.Flatten()
