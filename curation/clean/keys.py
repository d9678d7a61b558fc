"""The spine's decisions taken on small key records, applied to rows kept on disk.

Repeated ids (``ids.py``), exact duplicates (``dedup.py``) and split moves (``splits.py``)
each need every row at once. Rows carry their image bytes, and FnApiRunner holds whatever
crosses a fused stage in memory, so the rows themselves never do:

1. ``SpillRows`` (fused with reading): each row goes, encoded, into sorted runs on disk
   (by id, partitioned by a hash of the id, ``curation.output.spill``); what moves on is one
   ``KeyRecord`` (``keyrecord.py``) per row (id, source, key, provenance, split, image digest, dedup key,
   caption keys: about 200 bytes).
2. ``UniqueIds``, ``Deduplicate`` and ``AssignSplits`` decide on the key records, grouping
   them on disk (``GroupOnDisk``); out come decisions: (id, ``("duplicate", kept
   identity)``) and (id, ``("split", new split)``).
3. ``ApplyDecisions`` sorts the decisions into runs partitioned like the rows', and each
   partition streams its rows back in id order beside its decisions: rows sharing an id
   are neighbours there, and the first by provenance is kept (the rule of ``ids.py``);
   a duplicate becomes a ``dedup/duplicate`` reject; a moved row gets its new split.
   Without row stages after the spine (``unique_rows(..., rows_per_shard)``), the rows go
   from there straight into the writer's runs, split by shard (``_ApplyFn``).

Memory: one run buffer per bundle and one read chunk per run, whatever the row count.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from curation.clean import keyrecord as kr
from curation.clean.dedup import (
    Deduplicate,
    duplicate_reject,
    pair_key,
    parallel_key,
    what_is_compared,
)
from curation.clean.ids import DUPLICATE_ID, UniqueIds, pick_first, provenance_key
from curation.clean.keyrecord import KeyRecord
from curation.clean.splits import AssignSplits, caption_keys
from curation.output.runs import (
    RUN_BYTES,
    RunWriter,
    Segment,
    decode_row,
    encode_row,
    merge_segments,
)
from curation.output.spill import PARTITIONS, SpillFn, each_input, flatten, runs_folder
from curation.output.write import CountPerBundle, shard_of, shards_for
from curation.stages import DEDUP, SPLIT
from schemas.rows import REJECTS_TAG
from schemas.stage import StageCounters

RUNS_TAG = "runs"


def key_record(row: dict[str, Any], table: str, dedup_key: str) -> tuple:
    if table == "pairs":
        return tuple(KeyRecord(row["id"], row["source"], row["source_id"], provenance_key(row), row["split"],
                               row["image"]["sha256"], pair_key(row, dedup_key), tuple(caption_keys(row))))
    return tuple(KeyRecord(row["id"], row["source"], row["source_id"], provenance_key(row), row.get("split", ""),
                           "", parallel_key(row, dedup_key), ()))


class _SpillRowsFn(SpillFn):
    """Rows -> key records; the rows themselves into runs by id, their (partition,
    Segment) descriptors on the ``RUNS_TAG`` output."""

    def __init__(self, directory: str, table: str, dedup_key: str, partitions: int):
        super().__init__(directory, partitions, RUN_BYTES)
        self.table, self.dedup_key = table, dedup_key

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        for segment in self.spill(row["id"], encode_row(row)):
            yield beam.pvalue.TaggedOutput(RUNS_TAG, segment)
        yield key_record(row, self.table, self.dedup_key)

    def finish_bundle(self) -> Iterator[Any]:
        for segment in self.runs.flush():
            yield beam.pvalue.TaggedOutput(RUNS_TAG, GlobalWindows.windowed_value(segment))


class SpillRows(beam.PTransform):
    """Rows of ``table`` (one PCollection or a tuple, one per source) -> (key records, one
    PCollection per input, and the rows' run descriptors); see the module docstring."""

    def __init__(self, directory: str, table: str, dedup_key: str, partitions: int = PARTITIONS):
        super().__init__()
        self.directory, self.table, self.dedup_key, self.partitions = directory, table, dedup_key, partitions

    def expand(self, rows: beam.PCollection | tuple[beam.PCollection, ...]) -> tuple[Any, beam.PCollection]:
        spill = _SpillRowsFn(self.directory, self.table, self.dedup_key, self.partitions)
        outs = [pc | f"Spill{i}" >> beam.ParDo(spill).with_outputs(RUNS_TAG, main="keys") for i, pc in each_input(rows)]
        keys = tuple(out.keys for out in outs)
        return keys if len(keys) > 1 else keys[0], flatten([out[RUNS_TAG] for out in outs], "AllRuns")


class _ApplyFn(beam.DoFn):
    """(partition, [(kind, Segment)]) -> rows with the decisions applied, and rejects.

    write: None, or (runs folder, rows_per_shard) when no row stage follows: the rows go
    straight into the writer's runs, sorted by (shard, id), the shard count from the
    ``counts`` side input (``CountRows``: (source, count) per bundle); out come the
    writer's ((shard, shard count), Segment) descriptors
    (``curation.output.write.WriteTable(sharded=True)``). A row no
    decision touches is never decoded then: its encoded bytes go on as they are.
    """

    def __init__(self, table: str, what: str, write: tuple[str, int] | None = None):
        self.table, self.what, self.write = table, what, write
        self.dedup = StageCounters(DEDUP)
        self.split = StageCounters(SPLIT)
        self.runs: RunWriter | None = None
        self.num_shards, self.passed = 1, 0

    def start_bundle(self) -> None:
        self.runs = RunWriter(self.write[0]) if self.write else None
        self.passed = 0  # pairs rows through the split stage, counted once a bundle

    def process(self, part: tuple[int, Iterable[tuple[str, Segment]]], counts: list[tuple[str, int]] | None = None
                ) -> Iterator[Any]:
        _, tagged = part
        tagged = list(tagged)
        if self.write:
            self.num_shards = shards_for(sum(n for _, n in counts), self.write[1])
        rows = merge_segments([s for kind, s in tagged if kind == "rows"])
        decisions = merge_segments([s for kind, s in tagged if kind == "decisions"])
        pending = next(decisions, None)
        for row_id, entries in itertools.groupby(rows, key=itemgetter(0)):
            values = [value for _, value in entries]
            while pending is not None and pending[0] < row_id:
                pending = next(decisions, None)
            decision = decode_row(pending[1]) if pending is not None and pending[0] == row_id else None
            if self.runs is not None and len(values) == 1 and decision is None:
                self.passed += 1
                yield from self.spill(row_id, values[0])
                continue
            row = decode_row(values[0]) if len(values) == 1 else (yield from self.unique(values))
            for out in self.decide(row, decision):
                if self.runs is None or isinstance(out, beam.pvalue.TaggedOutput):
                    yield out
                else:
                    yield from self.spill(row_id, encode_row(out))

    def spill(self, row_id: str, value: bytes) -> Iterator[tuple[tuple[int, int], Segment]]:
        for shard, segment in self.runs.add(shard_of(row_id, self.num_shards), row_id, value):
            yield (shard, self.num_shards), segment

    def finish_bundle(self) -> Iterator[Any]:
        if self.passed and self.table == "pairs":
            self.split.add(Counter({"in": self.passed, "kept": self.passed}))
        if self.runs is not None:
            for shard, segment in self.runs.flush():
                yield GlobalWindows.windowed_value(((shard, self.num_shards), segment))

    def unique(self, values: list[bytes]) -> Iterator[Any]:
        """Rows of one id: the rejects of all but the first by provenance; returns that one."""
        kept = None
        for out in pick_first((None, [decode_row(v) for v in values])):
            if isinstance(out, beam.pvalue.TaggedOutput):
                self.dedup.inc(f"rejected_{DUPLICATE_ID}")
                yield out
            else:
                kept = out
        return kept

    def decide(self, row: dict[str, Any], decision: tuple | None) -> Iterator[Any]:
        if decision is not None and decision[0] == "duplicate":
            yield beam.pvalue.TaggedOutput(REJECTS_TAG, duplicate_reject(row, tuple(decision[1]), self.what))
            return
        if self.table != "pairs":
            yield row
            return
        self.passed += 1
        if decision is not None and decision[1] != row["split"]:
            self.split.inc(f"moved_{row['split']}_to_{decision[1]}")
            row = {**row, "split": decision[1]}
        yield row


def _tag(kind: str):
    return lambda part_segment: (part_segment[0], (kind, part_segment[1]))


class ApplyDecisions(beam.PTransform):
    """(row run descriptors, decisions...) -> (rows, rejects); see the module docstring.

    Applied to a tuple: the descriptors from ``SpillRows``, then any number of
    PCollections of (id, decision). table: "pairs" or "parallel"; what: how a
    duplicate reject names the dedup key; directory: where the decisions' runs go.
    write: None, or (the writer's runs folder, rows_per_shard, the count of rows that
    come out, as a PCollection of (source, count)): then the rows go straight into the
    writer's runs and out come their descriptors (``_ApplyFn``).
    """

    def __init__(self, directory: str, table: str, what: str, partitions: int = PARTITIONS,
                 write: tuple[str, int, beam.PCollection] | None = None):
        super().__init__()
        self.directory, self.table, self.what, self.partitions, self.write = directory, table, what, partitions, write

    def expand(self, inputs: tuple[beam.PCollection, ...]) -> tuple[beam.PCollection, beam.PCollection]:
        runs, *decisions = inputs
        decided = [
            pc | f"SpillDecisions{i}" >> beam.ParDo(SpillFn(self.directory, self.partitions))
            | f"TagDecisions{i}" >> beam.Map(_tag("decisions"))
            for i, pc in enumerate(decisions)  # each where it is made: no decision waits in memory
        ]
        write, side = None, {}
        if self.write:
            folder, per_shard, counts = self.write
            write, side = (folder, per_shard), {"counts": beam.pvalue.AsList(counts)}
        out = (
            (runs | "TagRows" >> beam.Map(_tag("rows")), *decided)
            | "All" >> beam.Flatten()
            | "ByPartition" >> beam.GroupByKey()
            | "Apply" >> beam.ParDo(_ApplyFn(self.table, self.what, write), **side).with_outputs(REJECTS_TAG, main="rows")
        )
        return out.rows, out[REJECTS_TAG]


def unique_rows(rows: beam.PCollection, name: str, dedup_key: str, splits: Iterable[str], directory: str,
                rows_per_shard: int | None = None) -> tuple[beam.PCollection, beam.PCollection]:
    """Wire the spine's decisions for one table (name "Pairs" or "Parallel") into the
    pipeline as top-level steps (``Spill<name>``, ``UniqueIds<name>``, ``Dedup<name>``,
    ``AssignSplits`` for pairs, ``Apply<name>``); runs go under the staging ``directory``.
    dedup_key: DedupConfig.key; splits: the splits the sources declare. Returns (rows,
    rejects).

    rows_per_shard: given when no row stage follows (``OutputConfig.rows_per_shard``):
    the rows go straight into the writer's runs, split by shard (the count of rows is
    that of the key records dedup kept), and the first PCollection returned holds their
    descriptors, for ``WriteTable(sharded=True)``: rows are encoded, decoded and sorted
    into runs once less, and never split again.
    """
    table = name.lower()
    runs = functools.partial(runs_folder, directory)
    keys, row_runs = rows | f"Spill{name}" >> SpillRows(runs(f"{table}-rows"), table, dedup_key)
    keys = keys | f"UniqueIds{name}" >> UniqueIds(runs(f"{table}-ids"))
    keys, decisions = keys | f"Dedup{name}" >> Deduplicate(table, dedup_key, runs(f"{table}-dedup"))
    decided = [decisions]
    if table == "pairs":
        decided.append(keys | "AssignSplits" >> AssignSplits(splits, runs(f"{table}-leaks")))
    write = None
    if rows_per_shard is not None:  # one row comes out per key record kept
        write = (runs(table), rows_per_shard, keys | f"CountRows{name}" >> beam.ParDo(CountPerBundle(itemgetter(kr.SOURCE))))
    what = what_is_compared(table, dedup_key)
    return (row_runs, *decided) | f"Apply{name}" >> ApplyDecisions(runs(f"{table}-decisions"), table, what, write=write)
