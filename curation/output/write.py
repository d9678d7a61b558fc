"""Writing the dataset: deterministic Parquet shards under the declared schemas.

Rows are assigned to shards by a hash of their id and sorted by id inside a shard, so the
same input gives the same files, byte for byte, on one process or many. Shard count comes
from the row count and ``rows_per_shard``. Each row group is validated against the contract
(``schemas.validate_rows``) before it is written, and ids are checked unique across the
shard; a shard that fails stops the build with the offending column named, rather than
writing data the trainer would refuse.

Rows never go through a shuffle, nor wait in the runner's memory for a count (their image
bytes would make both, and FnApiRunner's memory, grow with the dataset): each bundle sorts
its rows by key into runs on disk under the staging directory (``curation.output.runs``),
the shard count comes from the runs' row counts, each run is split by shard into a new
run (streaming), only the runs' small descriptors are grouped by shard, and each shard is
written by a streaming merge of its runs, one row group at a time. ``remove_runs`` deletes
the runs once the pipeline has finished.

Shards are written into a staging directory; ``curation.outdir.commit`` moves them into
place and writes ``manifest.json`` last, so readers never see a partial dataset.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from curation.config import OutputConfig
from curation.output.runs import (
    RUN_BYTES,
    RunWriter,
    Segment,
    decode_row,
    delete_runs,
    encode_row,
    merge_segments,
    read_segment,
)
from curation.output.spill import RUNS, SpillFn, each_input, flatten, partition_of
from curation.stages import WRITE
from schemas import SCHEMAS, SchemaError, validate_rows
from schemas.rows import Reject, reject_row
from schemas.stage import StageCounters

TABLES = ("pairs", "parallel", "rejects")
INPUT_COUNTS = "_counts/inputs.json"


def shard_name(index: int, total: int) -> str:
    return f"part-{index:05d}-of-{total:05d}.parquet"


def row_key(row: dict[str, Any], table: str) -> str:
    """The sort and sharding key of a row: its id, or for rejects what identifies them."""
    if table != "rejects":
        return row["id"]
    parts = (row["stage"], row["reason"], row["source"], row["source_id"] or "", row["record_id"] or "", row["detail"])
    return "\x1f".join(parts)


def shard_of(key: str, num_shards: int) -> int:
    return partition_of(key, num_shards)


def shards_for(rows: int, rows_per_shard: int) -> int:
    """How many shards a table of ``rows`` rows is written as."""
    return max(1, math.ceil(rows / rows_per_shard))


def write_shard(rows: list[dict[str, Any]], table: str, path: str, cfg: OutputConfig) -> int:
    """Validate rows against the schema and write one Parquet file; returns its row count."""
    ordered = sorted(rows, key=lambda r: row_key(r, table))
    return write_sorted(((row_key(r, table), r) for r in ordered), table, path, cfg)


def write_sorted(keyed: Iterable[tuple[str, dict[str, Any]]], table: str, path: str, cfg: OutputConfig) -> int:
    """Write (key, row) pairs, already in key order, as one Parquet file, a row group at a
    time (the same bytes as one ``pq.write_table`` of all of them); returns the row count.

    Rows are validated a row group at a time; equal ids, which are neighbours here, are
    refused as ``validate_rows`` refuses them within a row group.
    """
    schema = SCHEMAS[table]
    compression = None if cfg.compression == "none" else cfg.compression
    total, chunk, previous = 0, [], None
    with FileSystems.create(path) as handle, pq.ParquetWriter(handle, schema, compression=compression) as writer:
        for key, row in keyed:
            if key == previous and table != "rejects":
                raise SchemaError(table, "id", f"has duplicate values; ids must be unique ({key!r} twice)")
            previous = key
            chunk.append(row)
            if len(chunk) == cfg.row_group_rows:
                total += _write_group(writer, chunk, table, cfg)
                chunk = []
        if chunk or not total:
            total += _write_group(writer, chunk, table, cfg)
    return total


def _write_group(writer: pq.ParquetWriter, rows: list[dict[str, Any]], table: str, cfg: OutputConfig) -> int:
    arrow = validate_rows(rows, table)
    writer.write_table(arrow, row_group_size=cfg.row_group_rows)
    return arrow.num_rows


class _RepartitionFn(beam.DoFn):
    """(0, Segment) of a run sorted by key -> ((shard index, shard count), Segment) of the
    same entries sorted into one new run by (shard, key): one run in memory at a time.
    The shard count comes from the row counts of every run (``descriptors``)."""

    def __init__(self, directory: str, rows_per_shard: int):
        self.directory, self.rows_per_shard = directory, rows_per_shard

    def process(self, element: tuple[int, Segment], descriptors: list[tuple[int, Segment]]
                ) -> Iterator[tuple[tuple[int, int], Segment]]:
        _, segment = element
        num_shards = shards_for(sum(s.rows for _, s in descriptors), self.rows_per_shard)
        if num_shards == 1:
            yield (0, 1), segment
            return
        runs = RunWriter(self.directory, budget=1 << 62)
        for key, value in read_segment(segment):
            runs.add(shard_of(key, num_shards), key, value)
        for shard, part in runs.flush():
            yield (shard, num_shards), part


class _MergeShardFn(beam.DoFn):
    """((shard index, shard count), its Segments) -> the shard's file name, written by a
    merge of the runs."""

    def __init__(self, table: str, directory: str, cfg: OutputConfig):
        self.table = table
        self.directory = directory
        self.cfg = cfg
        self.counters = StageCounters(WRITE)

    def process(self, element: tuple[tuple[int, int], Iterable[Segment]]) -> Iterator[str]:
        (index, num_shards), segments = element
        name = shard_name(index, num_shards)
        keyed = ((key, decode_row(value)) for key, value in merge_segments(segments))
        n = write_sorted(keyed, self.table, posixpath.join(self.directory, self.table, name), self.cfg)
        self.counters.inc(f"{self.table}_rows", n)
        self.counters.inc(f"{self.table}_shards")
        yield name


class _SortFn(SpillFn):
    """Rows of ``table`` (a Reject becomes its row of the rejects table) -> (0, Segment) of
    runs sorted by ``row_key``."""

    def __init__(self, table: str, directory: str, budget: int):
        super().__init__(directory, partitions=1, budget=budget)
        self.table = table

    def process(self, row: Any) -> Iterator[tuple[int, Segment]]:
        row = reject_row(row) if isinstance(row, Reject) else row
        yield from self.spill(row_key(row, self.table), encode_row(row))


class SortIntoRuns(beam.PTransform):
    """Rows of ``table`` -> (0, Segment) descriptors of runs sorted by key, under the
    staging ``directory``. Applied to one PCollection or a tuple of them (the rejects,
    made by every step): each is sorted into runs in the step that makes it, and only the
    descriptors are flattened, so no row waits in the runner's memory."""

    def __init__(self, table: str, directory: str, run_bytes: int = RUN_BYTES):
        super().__init__()
        if table not in SCHEMAS:
            raise ValueError(f"unknown table {table!r}")
        self.table, self.directory, self.run_bytes = table, directory, run_bytes

    def expand(self, rows: beam.PCollection | tuple[beam.PCollection, ...]) -> beam.PCollection:
        spill = _SortFn(self.table, posixpath.join(self.directory, RUNS, self.table), self.run_bytes)
        runs = [pc | f"Spill{i}" >> beam.ParDo(spill) for i, pc in each_input(rows)]
        return flatten(runs, "All")


class WriteTable(beam.PTransform):
    """Write schema-shaped rows of one table ("pairs", "parallel" or "rejects") as shards.

    table: the table. directory: the staging directory (its ``RUNS`` folder holds the
    sorted runs until ``remove_runs``). cfg: the OutputConfig. run_bytes: what one
    bundle holds in memory before it writes a run. presorted: the input is already run
    descriptors (``SortIntoRuns``), not rows. sharded: the input is already
    ((shard, shard count), Segment) descriptors of runs sorted by (shard, key)
    (``curation.clean.keys.unique_rows`` with ``rows_per_shard``). Returns the
    PCollection of written shard file names.
    """

    def __init__(self, table: str, directory: str, cfg: OutputConfig, run_bytes: int = RUN_BYTES,
                 presorted: bool = False, sharded: bool = False):
        super().__init__()
        if table not in SCHEMAS:
            raise ValueError(f"unknown table {table!r}")
        self.table, self.directory, self.cfg, self.run_bytes = table, directory, cfg, run_bytes
        self.presorted, self.sharded = presorted, sharded

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        """The shard count from the runs' row counts, each run split by shard
        (``_RepartitionFn``), each shard a merge of its runs (``_MergeShardFn``)."""
        if self.sharded:
            by_shard = rows
        else:
            runs = rows if self.presorted else rows | "SortIntoRuns" >> SortIntoRuns(self.table, self.directory, self.run_bytes)
            # the runs' descriptors, a few per bundle, as a side input: their row counts give the shard count
            repartition = _RepartitionFn(posixpath.join(self.directory, RUNS, self.table), self.cfg.rows_per_shard)
            by_shard = runs | "Repartition" >> beam.ParDo(repartition, descriptors=beam.pvalue.AsList(runs))
        return (
            by_shard
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_MergeShardFn(self.table, self.directory, self.cfg))
        )


def remove_runs(directory: str) -> int:
    """Delete the sorted runs the writers left under the staging ``directory``; returns how
    many. Called once the pipeline has finished, not as a step of it: a runner may run a
    step again after a lost worker (Dask, Spark), and a merge run again must find its runs."""
    pattern = posixpath.join(directory, RUNS, "*", "*.run")
    paths = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    delete_runs(paths)
    return len(paths)


def _write_json(obj: dict[str, Any], path: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(obj, sort_keys=True, indent=1).encode())


class CountPerBundle(beam.DoFn):
    """Elements -> (key(element), how many) per key, once per bundle; ``key`` defaults to
    the source of a record, reject or row (``source_of``)."""

    def __init__(self, key: Callable[[Any], str] | None = None):
        self.key = key or source_of

    def start_bundle(self) -> None:
        self.counts: Counter[str] = Counter()

    def process(self, element: Any) -> None:
        self.counts[self.key(element)] += 1

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for source, n in sorted(self.counts.items()):
            yield GlobalWindows.windowed_value((source, n))


def _save_counts(_: Any, counts: Iterable[tuple[str, int]], path: str) -> None:
    total: Counter[str] = Counter()
    for source, n in counts:
        total[source] += n
    _write_json(dict(total), path)


class CountInputs(beam.PTransform):
    """Count input records per source, independently of the outputs, for the manifest's
    reconciliation (input = output + rejected). Applied to the read records and rejects
    (one PCollection or a tuple of them, each counted where it is made, a count per source
    and bundle); writes ``_counts/inputs.json`` once (a side input of the few counts)."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, inputs: beam.PCollection | tuple[beam.PCollection, ...]) -> beam.PCollection:
        path = posixpath.join(self.directory, INPUT_COUNTS)
        counted = [pc | f"PerSource{i}" >> beam.ParDo(CountPerBundle()) for i, pc in each_input(inputs)]
        counts = beam.pvalue.AsList(flatten(counted, "All"))
        pipeline = counted[0].pipeline
        return pipeline | "Once" >> beam.Create([None]) | "Save" >> beam.Map(_save_counts, counts=counts, path=path)


def source_of(element: Any) -> str:
    """The source name of a RawRecord, Reject or row."""
    return element["source"] if isinstance(element, dict) else element.source


class WriteDataset(beam.PTransform):
    """Write pairs, parallel rows and rejects under ``directory``.

    Applied to a dict {"pairs": rows, "parallel": rows, "rejects": runs}: the rejects come
    from every step, so they arrive as the run descriptors of ``SortIntoRuns("rejects",
    directory)`` applied to all of them. sharded: the tables that arrive as descriptors of
    runs already split by shard (``WriteTable(sharded=True)``).
    """

    def __init__(self, directory: str, cfg: OutputConfig, sharded: Iterable[str] = ()):
        super().__init__()
        self.directory = directory
        self.cfg = cfg
        self.sharded = frozenset(sharded)

    def expand(self, tables: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        return {name: tables[name] | f"Write_{name}" >> WriteTable(name, self.directory, self.cfg, presorted=name == "rejects",
                                                                   sharded=name in self.sharded)
                for name in TABLES}
