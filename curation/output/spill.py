"""Beam steps around sorted runs (``curation.output.runs``): a group-by-key whose groups are
put together on disk, not in the runner's memory.

FnApiRunner holds every PCollection that crosses a fused stage, and everything behind a
GroupByKey, in memory; a build of millions of rows must not send anything that grows
with the rows through either. ``GroupOnDisk`` is a GroupByKey for that: each bundle
sorts its (key, value) entries into runs on disk (``SpillFn``), partitioned by a hash of
the key; only the runs' descriptors (``Segment``, a few hundred bytes each) are grouped,
by partition; each partition's segments are then merged in key order, streaming, and the
entries of one key come out as one group. Memory: one run buffer per bundle and one group
at a time, whatever the number of entries.

Values are encoded with Beam's coder for Python objects (``runs.encode_row``); a group's
values come in the order of their encoded bytes, so the result never depends on bundles,
workers or runners. Runs live under a folder of the build's staging directory and are
deleted with it (``curation.output.write.remove_runs``) after the pipeline has finished.
"""

from __future__ import annotations

import hashlib
import itertools
import posixpath
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from curation.output.runs import (
    RunWriter,
    Segment,
    decode_row,
    encode_row,
    merge_segments,
)

PARTITIONS = 16  # partitions of a GroupOnDisk: the units of work of its merge step
KEY_RUN_BYTES = 8 << 20  # what a bundle holds of small entries (key records) before it writes a run
RUNS = "_runs"  # the folder of the staging directory that holds every run of a build


def partition_of(key: str, partitions: int) -> int:
    """A key's partition (also the writer's shard: ``curation.output.write.shard_of``)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


class SpillFn(beam.DoFn):
    """(key, value) -> (partition, Segment): each bundle's entries sorted into runs under
    ``directory``, ``budget`` bytes at most held before a run is written. With ``key``,
    the elements are the values and ``key(value)`` their keys."""

    def __init__(self, directory: str, partitions: int = PARTITIONS, budget: int = KEY_RUN_BYTES,
                 key: Callable[[Any], str] | None = None):
        self.directory, self.partitions, self.budget, self.key = directory, partitions, budget, key
        self.runs: RunWriter | None = None

    def start_bundle(self) -> None:
        self.runs = RunWriter(self.directory, self.budget)

    def process(self, entry: Any) -> Iterator[tuple[int, Segment]]:
        key, value = (self.key(entry), entry) if self.key else entry
        yield from self.spill(key, encode_row(value))

    def spill(self, key: str, value: bytes) -> list[tuple[int, Segment]]:
        return self.runs.add(partition_of(key, self.partitions) if self.partitions > 1 else 0, key, value)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for segment in self.runs.flush():
            yield GlobalWindows.windowed_value(segment)


def each_input(inputs: beam.PCollection | tuple[beam.PCollection, ...]) -> list[tuple[str, beam.PCollection]]:
    """(label suffix, PCollection) for one PCollection or each of a tuple of them.

    Steps whose input comes from several producers (sources, stages) are applied to each
    input where it is made, and only their small outputs are flattened: FnApiRunner holds
    every element of a multi-input Flatten in memory until its consumer runs."""
    parts = inputs if isinstance(inputs, tuple) else (inputs,)
    return [("" if len(parts) == 1 else str(i), pc) for i, pc in enumerate(parts)]


def flatten(pcolls: list[beam.PCollection], label: str) -> beam.PCollection:
    """One PCollection of ``pcolls`` (at least one): itself, or their Flatten."""
    return pcolls[0] if len(pcolls) == 1 else tuple(pcolls) | label >> beam.Flatten()


def merged_groups(segments: Iterable[Segment]) -> Iterator[tuple[str, list[Any]]]:
    """(key, values) of the entries of ``segments``, key by key, values decoded."""
    for key, entries in itertools.groupby(merge_segments(segments), key=itemgetter(0)):
        yield key, [decode_row(value) for _, value in entries]


class GroupOnDisk(beam.PTransform):
    """(key, value) -> (key, [values]) like GroupByKey, grouped through sorted runs on disk
    (module docstring). Applied to one PCollection or a tuple of them (``each_input``).
    directory: where the runs go; partitions: how many merges; key: when given, the
    elements are the values, grouped by ``key(value)``."""

    def __init__(self, directory: str, partitions: int = PARTITIONS, budget: int = KEY_RUN_BYTES,
                 key: Callable[[Any], str] | None = None):
        super().__init__()
        self.directory, self.partitions, self.budget, self.key = directory, partitions, budget, key

    def expand(self, entries: beam.PCollection | tuple[beam.PCollection, ...]) -> beam.PCollection:
        spill = SpillFn(self.directory, self.partitions, self.budget, self.key)
        runs = [pc | f"Spill{i}" >> beam.ParDo(spill) for i, pc in each_input(entries)]
        return (
            flatten(runs, "AllRuns")
            | "Parts" >> beam.GroupByKey()
            | "Merge" >> beam.FlatMap(lambda part: merged_groups(part[1]))
        )


def runs_folder(directory: str, label: str) -> str:
    """The runs folder ``label`` under the staging ``directory`` (``write.RUNS``)."""
    return posixpath.join(directory, RUNS, label)
