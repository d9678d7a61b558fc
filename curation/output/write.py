"""Writing the dataset: deterministic Parquet shards under the declared schemas.

Rows are assigned to shards by a hash of their id and sorted by id inside a shard, so the
same input gives the same files, byte for byte, on one process or many. Shard count comes
from the row count and ``rows_per_shard``. Each shard is validated against the contract
(``schemas.validate_rows``) before it is written; a shard that fails stops the build with
the offending column named, rather than writing data the trainer would refuse.

Shards are written into a staging directory; ``curation.outdir.commit`` moves them into
place and writes ``manifest.json`` last, so readers never see a partial dataset.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from curation.config import OutputConfig
from curation.stages import WRITE
from schemas import SCHEMAS, validate_rows
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
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def write_shard(rows: list[dict[str, Any]], table: str, path: str, cfg: OutputConfig) -> int:
    """Validate rows against the schema and write one Parquet file; returns its row count."""
    rows = sorted(rows, key=lambda r: row_key(r, table))
    arrow = validate_rows(rows, table)
    compression = None if cfg.compression == "none" else cfg.compression
    with FileSystems.create(path) as handle:
        pq.write_table(arrow, handle, row_group_size=cfg.row_group_rows, compression=compression)
    return arrow.num_rows


class _WriteShardFn(beam.DoFn):
    def __init__(self, table: str, directory: str, cfg: OutputConfig):
        self.table = table
        self.directory = directory
        self.cfg = cfg
        self.counters = StageCounters(WRITE)

    def process(self, element: tuple[int, Iterable[dict[str, Any]]], num_shards: int) -> Iterator[str]:
        index, rows = element
        name = shard_name(index, num_shards)
        n = write_shard(list(rows), self.table, posixpath.join(self.directory, self.table, name), self.cfg)
        self.counters.inc(f"{self.table}_rows", n)
        self.counters.inc(f"{self.table}_shards")
        yield name


class WriteTable(beam.PTransform):
    """Write schema-shaped rows of one table ("pairs", "parallel" or "rejects") as shards.

    Returns the PCollection of written shard file names.
    """

    def __init__(self, table: str, directory: str, cfg: OutputConfig):
        super().__init__()
        if table not in SCHEMAS:
            raise ValueError(f"unknown table {table!r}")
        self.table = table
        self.directory = directory
        self.cfg = cfg

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        per_shard = self.cfg.rows_per_shard
        table = self.table
        num_shards = (
            rows
            | "Count" >> beam.combiners.Count.Globally()
            | "Shards" >> beam.Map(lambda n: max(1, math.ceil(n / per_shard)))
        )
        return (
            rows
            | "Assign" >> beam.Map(
                lambda r, n: (shard_of(row_key(r, table), n), r), n=beam.pvalue.AsSingleton(num_shards)
            )
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(
                _WriteShardFn(table, self.directory, self.cfg), num_shards=beam.pvalue.AsSingleton(num_shards)
            )
        )


def _write_json(obj: dict[str, Any], path: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(obj, sort_keys=True, indent=1).encode())


class CountInputs(beam.PTransform):
    """Count input records per source, independently of the outputs, for the manifest's
    reconciliation (input = output + rejected). Writes ``_counts/inputs.json``."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, sources: beam.PCollection) -> beam.PCollection:
        path = posixpath.join(self.directory, INPUT_COUNTS)
        return (
            sources
            | "PerSource" >> beam.combiners.Count.PerElement()
            | "ToDict" >> beam.combiners.ToDict()
            | "Save" >> beam.Map(lambda d: _write_json(d, path))
        )


def source_of(element: Any) -> str:
    """The source name of a RawRecord, Reject or row."""
    return element["source"] if isinstance(element, dict) else element.source


class WriteDataset(beam.PTransform):
    """Write pairs, parallel rows and rejects (Reject objects) under ``directory``.

    Applied to a dict {"pairs": pc, "parallel": pc, "rejects": pc}.
    """

    def __init__(self, directory: str, cfg: OutputConfig):
        super().__init__()
        self.directory = directory
        self.cfg = cfg

    def expand(self, tables: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        rejects = tables["rejects"] | "RejectRows" >> beam.Map(lambda r: reject_row(r) if isinstance(r, Reject) else r)
        rows = {"pairs": tables["pairs"], "parallel": tables["parallel"], "rejects": rejects}
        return {name: rows[name] | f"Write_{name}" >> WriteTable(name, self.directory, self.cfg) for name in TABLES}
