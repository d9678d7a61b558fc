"""Beam's DaskRunner with the translation bugs that break a build worked around (Beam 2.77).

Beam's runner (``apache_beam.runners.dask``) turns a pipeline into ``dask.bag`` operations.
Its translation is wrong in ways that each break ``m3curate build``
(``benchmarks/dask_runner_repro.py`` shows them on ten elements):

1. output tags are dropped: every consumer of a multi-output ParDo
   (``.with_outputs("rejects", main="rows")``) receives all of its outputs, main and
   tagged alike (the image stage then gets a ``Reject`` where it expects a record);
2. only the last leaf of the pipeline is computed, so every other branch (here: all but
   one of the writers) silently never runs;
3. what a DoFn emits in ``finish_bundle`` is lost (the row stages flush their last batch
   there);
4. ``result.metrics()`` raises NotImplementedError (no counters), and the client it opens
   is never closed (it keeps trying to reconnect after the cluster has gone).

``DaskRunner`` below keeps Beam's translation of Create and GroupByKey and its options
(``--dask_client_address``...) and replaces the rest: a ParDo's bag holds ``(tag,
value)`` pairs and each consumer takes its own tag; ``finish_bundle`` output is kept; every
leaf is computed; each bundle's metric updates travel with its output and are summed into
``result.metrics()``. Also: side inputs are materialised once, as dask dependencies (Beam's
computes the side input's bag inside every task that reads it; see ``_pardo_bag``); every partition is a list
(a lazy partition, as ``Bag.map`` makes, read by two tasks in one worker process is
exhausted by the first); Flatten and Reshuffle are tasks of their own (``_merge``,
``_spread``), not ``db.concat``/``repartition``. ``run_build`` uses this runner when
``--runner`` names Beam's DaskRunner (``curation.pipeline.pipeline_options``).

Still missing on Dask, as in Beam's runner, and not faked here: state and timers (a
stateful DoFn is refused when the graph is built, naming the step; the ``mt`` stage does
not use them here: on a runner without state it batches per bundle,
``translate.beam.has_state``), splittable DoFns and ``Read``, and windows other than the
global one. Partitions: ``--dask_npartitions`` N (default: one per worker thread
of the cluster): a Create gives N, a Flatten at most N, a Reshuffle deals each partition
into enough to make at least N.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import dask.bag as db
from apache_beam import pvalue
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import DoFnRunner, DoFnSignature, Receiver
from apache_beam.runners.dask import dask_runner
from apache_beam.runners.dask.overrides import _Flatten, _Reshuffle, dask_overrides
from apache_beam.runners.dask.transform_evaluator import TRANSLATIONS, NoOp
from apache_beam.runners.direct.direct_metrics import DirectMetrics
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.counters import CounterFactory
from apache_beam.utils.windowed_value import WindowedValue
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

METRICS_TAG = "__m3curate_metrics__"  # a ParDo bag's last pair per bundle: its metric updates


class _Collect(Receiver):
    """Receives one output tag's values as (tag, value) pairs (windows dropped, as Beam's
    Dask translation does everywhere: it supports the global window only)."""

    def __init__(self, tag: str | None, out: list[tuple[str | None, Any]]):
        self.tag, self.out = tag, out

    def receive(self, windowed_value: WindowedValue) -> None:
        self.out.append((self.tag, windowed_value.value))


@dataclasses.dataclass
class _ParDoSpec:
    """What a task needs to run one ParDo on a partition (pickled into the task graph)."""

    fn: beam.DoFn
    args: list[Any]  # side inputs replaced by placeholders (ParDo.args)
    kwargs: dict[str, Any]
    side_views: list[tuple[type, dict[str, Any]]]
    tags: list[str | None]
    label: str


def _run_bundle(items: Iterable[Any], spec: _ParDoSpec, *side_values: list[Any]) -> list[tuple[str | None, Any]]:
    """One partition through one ParDo as one bundle: setup, start, process, finish
    (whose outputs are kept), teardown. Returns (tag, value) pairs, None for the main
    output, and last the bundle's metric updates under ``METRICS_TAG``."""
    out: list[tuple[str | None, Any]] = []
    receivers: dict[str | None, Receiver] = {tag: _Collect(tag, out) for tag in spec.tags}
    sides = [SideInputMap(view, options, [GlobalWindows.windowed_value(v) for v in values])
             for (view, options), values in zip(spec.side_views, side_values, strict=True)]
    runner = DoFnRunner(spec.fn, spec.args, spec.kwargs, sides, beam.Windowing(GlobalWindows()), receivers,
                        step_name=spec.label)
    # Beam's counters go to the metrics container of the current state of the thread's
    # state sampler, as on Beam's own runners
    sampler = statesampler.StateSampler(spec.label, CounterFactory())
    statesampler.set_current_tracker(sampler)
    container = MetricsContainer(spec.label)
    try:
        with sampler.scoped_state(spec.label, "process", metrics_container=container):
            runner.setup()
            runner.start()
            for item in items:
                runner.process(item if isinstance(item, WindowedValue) else GlobalWindows.windowed_value(item))
            runner.finish()
            runner.teardown()
    finally:
        statesampler.set_current_tracker(None)
    out.append((METRICS_TAG, container.get_cumulative()))
    return out


def _concat(parts: Iterable[list[Any]]) -> list[Any]:
    return list(itertools.chain.from_iterable(parts))


def _pardo_bag(applied: AppliedPTransform, input_bag: Any, side_bags: list[Any]) -> Any:
    """One ``_run_bundle`` task per input partition. Each side input is one task holding it
    whole (``_merge`` into one partition), a dependency of every task that reads it. (Not
    ``Bag.reduction`` handed to ``map_partitions``: dask 2026.8 embeds such an Item as a
    separately optimised copy of its whole upstream graph, under renamed keys, so every
    side input recomputed everything upstream of it, nested: in a 48-record build each
    image was validated 331 times.)"""
    transform = applied.transform
    spec = _ParDoSpec(transform.fn, list(transform.args), dict(transform.kwargs),
                      [(type(si), si._view_options()) for si in transform.side_inputs],
                      list(applied.outputs), applied.full_label)
    sides = [_merge([bag], 1) for bag in side_bags]
    name = f"_run_bundle-{tokenize(input_bag.name, applied.full_label, *[side.name for side in sides])}"
    side_keys = [side.__dask_keys__()[0] for side in sides]
    graph = {(name, i): (_run_bundle, key, spec, *side_keys) for i, key in enumerate(input_bag.__dask_keys__())}
    return db.Bag(HighLevelGraph.from_collections(name, graph, dependencies=[input_bag, *sides]), name,
                  input_bag.npartitions)


def _merge(bags: list[Any], n: int) -> Any:
    """The Flatten of bags in at most ``n`` partitions, each one task concatenating whole
    input partitions. (Not ``db.concat``: its partitions are aliases of the inputs', and
    with ``repartition`` on top, 2 builds in 6 lost the same two rejects of a partition
    that two steps read; partitions add up in a concat, too, multiplying the tasks of every
    shuffle downstream.)"""
    keys = [key for bag in bags for key in bag.__dask_keys__()]
    name = f"flatten-{tokenize(*bags, n)}"
    count = min(n, len(keys)) or 1
    groups = [keys[i * len(keys) // count:(i + 1) * len(keys) // count] for i in range(count)]
    graph = {(name, i): (_concat, group) for i, group in enumerate(groups)}
    return db.Bag(HighLevelGraph.from_collections(name, graph, dependencies=bags), name, count)


def _stride(part: list[Any], start: int, step: int) -> list[Any]:
    return list(part[start::step])


def _spread(bag: Any, n: int) -> Any:
    """A Reshuffle: each partition dealt into ceil(n / partitions) partitions, so that what
    one task read (a whole input file) spreads over the workers."""
    step = -(-n // bag.npartitions)
    if step == 1:
        return bag
    name = f"spread-{tokenize(bag, n)}"
    graph = {(name, i * step + j): (_stride, key, j, step)
             for i, key in enumerate(bag.__dask_keys__()) for j in range(step)}
    return db.Bag(HighLevelGraph.from_collections(name, graph, dependencies=[bag]), name, len(graph))


def _select(pairs: Iterable[tuple[str | None, Any]], tag: str | None) -> list[Any]:
    """One output's values of a ParDo's partition, as a list: every partition here is a
    list, because a lazy one (``Bag.map`` makes them) read by two tasks in one worker
    process is exhausted by the first, and the second silently gets nothing."""
    return [value for t, value in pairs if t == tag]


def _check_supported(node: AppliedPTransform) -> None:
    signature = DoFnSignature(node.transform.fn)
    what = ("state or timers" if signature.is_stateful_dofn() else
            "a splittable DoFn" if signature.is_splittable_dofn() else None)
    if what:
        raise NotImplementedError(f"step {node.full_label!r} uses {what}, which Beam's DaskRunner does not "
                                  "support; run this pipeline on another runner (FnApiRunner, PortableRunner, "
                                  "Dataflow)")


@dataclasses.dataclass
class _Visitor(PipelineVisitor):
    """Beam's DaskBagVisitor with the ParDo translation replaced (module docstring)."""

    bag_kwargs: dict[str, Any]
    partitions: int
    bags: dict[AppliedPTransform, Any] = dataclasses.field(default_factory=dict)
    tagged: set[AppliedPTransform] = dataclasses.field(default_factory=set)
    consumed: set[AppliedPTransform] = dataclasses.field(default_factory=set)

    def bag_of(self, pcoll: pvalue.PValue) -> Any:
        """The bag of one PCollection: a ParDo's bag holds every output's (tag, value)."""
        producer = pcoll.producer
        self.consumed.add(producer)
        bag = self.bags[producer]
        return bag.map_partitions(_select, pcoll.tag) if producer in self.tagged else bag

    def visit_transform(self, node: AppliedPTransform) -> None:
        if type(node.transform) is beam.ParDo:
            _check_supported(node)
        inputs = [self.bag_of(pc) for pc in node.main_inputs.values() if not isinstance(pc, pvalue.PBegin)]
        sides = [self.bag_of(si.pvalue) for si in node.side_inputs]
        kind = type(node.transform)
        if kind is beam.ParDo:
            self.bags[node] = _pardo_bag(node, inputs[0], sides)
            self.tagged.add(node)
        elif kind is _Flatten:
            self.bags[node] = _merge(inputs, self.partitions)
        elif kind is _Reshuffle:
            self.bags[node] = _spread(inputs[0], self.partitions)
        else:
            op = TRANSLATIONS.get(kind, NoOp)(node, bag_kwargs=self.bag_kwargs)
            bag = op.apply(inputs[0] if inputs else None)
            # GroupByKey's partitions come from Bag.map: lazy (see _select)
            self.bags[node] = bag if op.__class__ is NoOp else bag.map_partitions(list)

    def metric_updates(self) -> Any:
        """Every ParDo's metric updates, one per bundle, as a bag of one partition."""
        parts = [self.bags[node].map_partitions(_select, METRICS_TAG) for node in self.tagged]
        return _merge(parts, 1) if parts else db.from_sequence([], npartitions=1)

    def leaves(self) -> list[Any]:
        """The bags nothing reads: computing them all runs every branch of the pipeline."""
        return [bag for node, bag in self.bags.items() if node not in self.consumed]


class DaskRunner(dask_runner.DaskRunner):
    """Beam's DaskRunner with its ParDo translation and final step fixed (module docstring)."""

    def run_pipeline(self, pipeline: beam.Pipeline, options: Any) -> DaskResult:
        import dask.distributed as ddist

        dask_options = options.view_as(dask_runner.DaskOptions).get_all_options(drop_default=True,
                                                                                 current_only=True)
        bag_kwargs = dask_runner.DaskOptions._extract_bag_kwargs(dask_options)
        client = ddist.Client(**dask_options)
        # partitions of a Create, a Reshuffle and a Flatten: --dask_npartitions, else one per
        # worker thread (Beam's default, 128 elements a partition, would read every input file
        # of a source in one task)
        partitions = bag_kwargs.get("npartitions") or max(1, sum(client.nthreads().values()))
        if "partition_size" not in bag_kwargs:
            bag_kwargs["npartitions"] = partitions
        try:
            pipeline.replace_all(dask_overrides())
            visitor = _Visitor(bag_kwargs, partitions)
            pipeline.visit(visitor)
            # one graph, submitted once: two submissions may fuse a shared task differently
            # under one key, and the scheduler then mixes up their data
            *futures, updates = client.compute([*visitor.leaves(), visitor.metric_updates()])
        except BaseException:
            client.close()
            raise
        return DaskResult(client, futures, updates)


class DaskResult(dask_runner.DaskRunnerResult):
    """Beam's result, with the pipeline's metrics (Beam's raises NotImplementedError), closing
    its client when the pipeline ends (Beam's keeps it open, and it then keeps trying to
    reconnect to a cluster that has gone)."""

    def __init__(self, client: Any, futures: Any, metric_updates: Any):
        super().__init__(client, futures)
        self._metric_updates = metric_updates
        self._metrics: DirectMetrics | None = None

    def metrics(self) -> DirectMetrics:
        """Every ParDo's metrics, summed over its bundles; committed = attempted (a task that
        dask recomputes after losing a worker counts twice). Call after wait_until_finish."""
        if self._metrics is None:
            if not isinstance(self._metric_updates, list):
                raise RuntimeError("the pipeline has not finished: call wait_until_finish() first")
            self._metrics = DirectMetrics()
            for bundle, updates in enumerate(self._metric_updates):
                self._metrics.commit_logical(bundle, updates)
                self._metrics.commit_physical(bundle, updates)
        return self._metrics

    def wait_until_finish(self, duration: int | None = None) -> str:
        try:
            return super().wait_until_finish(duration)
        finally:
            if duration is None or self.state in ("DONE", "FAILED"):
                if self.state == "DONE" and not isinstance(self._metric_updates, list):
                    self._metric_updates = self._metric_updates.result()
                self.client.close()
