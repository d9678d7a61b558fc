"""Minimal reproduction of Beam's DaskRunner bugs (for an upstream Beam issue).

Self-contained: it needs only apache-beam, dask[bag] and distributed. Each check runs a
tiny pipeline on a ``dask.distributed`` LocalCluster with two worker processes, next to
the same pipeline on FnApiRunner, and prints what each runner produced:

1. tagged outputs: ``ParDo(...).with_outputs("bad", main="good")`` over range(10)
2. every leaf: a pipeline with two independent branches
3. finish_bundle: a DoFn that emits -1 from ``finish_bundle``
4. metrics: ``result.metrics()`` (a counter incremented once per element)

Each check but the second is a pipeline with one leaf, so that bug 2 (only the last leaf
is computed) does not hide the others.

Usage::

    python benchmarks/dask_runner_repro.py            # Beam's DaskRunner
    python benchmarks/dask_runner_repro.py --runner curation.deploy.dask.DaskRunner

Each pipeline's sink writes the elements it sees to files (the workers are processes, so
print and assert_that cannot be relied on), and the script compares them. Exit status 1
when any check differs from FnApiRunner.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

BEAM_DASK = "apache_beam.runners.dask.dask_runner.DaskRunner"


class Sink(beam.DoFn):
    """Writes each element it sees, as JSON, to a file of its own in ``folder/name/``."""

    def __init__(self, folder: str, name: str):
        self.path = os.path.join(folder, name)

    def process(self, element):
        Metrics.counter("repro", "seen").inc()
        os.makedirs(self.path, exist_ok=True)
        with open(os.path.join(self.path, uuid.uuid4().hex), "w") as handle:
            json.dump(element, handle)


def seen(folder: str, name: str) -> list:
    path = os.path.join(folder, name)
    if not os.path.isdir(path):
        return []
    return sorted(json.load(open(os.path.join(path, f))) for f in os.listdir(path))


class SplitByThree(beam.DoFn):
    def process(self, x):
        yield beam.pvalue.TaggedOutput("bad", x) if x % 3 == 0 else x


class EmitAtFinish(beam.DoFn):
    def process(self, x):
        yield x

    def finish_bundle(self):
        yield beam.transforms.window.GlobalWindows.windowed_value(-1)  # one extra element


def tags(p: beam.Pipeline, sink: Any) -> None:
    """1. A multi-output ParDo; both outputs, labelled, into one sink (one leaf)."""
    split = p | beam.Create(list(range(10))) | beam.ParDo(SplitByThree()).with_outputs("bad", main="good")
    labelled = (split.good | "G" >> beam.Map(lambda x: f"good {x}"), split.bad | "B" >> beam.Map(lambda x: f"bad {x}"))
    labelled | beam.Flatten() | sink


def leaves(p: beam.Pipeline, sink: Any) -> None:
    """2. Two independent branches into one sink step each (two leaves)."""
    p | "A" >> beam.Create(["branch a"]) | "SinkA" >> sink
    p | "B" >> beam.Create(["branch b"]) | "SinkB" >> sink


def finish_bundle(p: beam.Pipeline, sink: Any) -> None:
    """3. A DoFn that emits -1 from finish_bundle (once per bundle: compared as a set)."""
    p | beam.Create(list(range(3))) | beam.ParDo(EmitAtFinish()) | sink


CHECKS = {"1_tagged_outputs": tags, "2_every_leaf": leaves, "3_finish_bundle": finish_bundle}


def run(runner: str, extra: list[str]) -> tuple[dict[str, list], str]:
    """Each check as its own pipeline; returns what each sink saw, and what the last
    pipeline's ``metrics()`` gave (Sink counts its elements in a counter)."""
    folder = tempfile.mkdtemp(prefix="dask-repro-")
    metrics = ""
    for name, check in CHECKS.items():
        p = beam.Pipeline(options=PipelineOptions(["--runner", runner, *extra]))
        check(p, beam.ParDo(Sink(folder, name)))
        result = p.run()
        result.wait_until_finish()
        try:
            metrics = str(sorted((c.key.metric.name, c.committed) for c in result.metrics().query()["counters"]))
        except Exception as err:  # noqa: BLE001 - reported, not handled
            metrics = f"{type(err).__name__}: {err}"
    seen_by = {name: seen(folder, name) for name in CHECKS}
    seen_by["3_finish_bundle"] = sorted(set(seen_by["3_finish_bundle"]))
    return seen_by, metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", default=BEAM_DASK, help="the Dask runner to check (default: Beam's)")
    args = parser.parse_args()
    from dask.distributed import LocalCluster

    want, want_metrics = run("FnApiRunner", [])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        got, metrics = run(args.runner, ["--dask_client_address", cluster.scheduler_address])
    bad = 0
    for name, expected in want.items():
        ok = got[name] == expected
        bad += not ok
        print(f"{'ok  ' if ok else 'DIFF'} {name}: FnApiRunner {expected}, {args.runner.rsplit('.', 1)[-1]} {got[name]}")
    print(f"4_metrics of the last pipeline: FnApiRunner {want_metrics}, {args.runner.rsplit('.', 1)[-1]} {metrics}")
    return 1 if bad else 0


if __name__ == "__main__":  # the LocalCluster's worker processes re-import this module
    sys.exit(main())
