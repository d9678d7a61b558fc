"""Reading the curated dataset: through ``schemas.dataset`` first, then row streams.

The trainer trusts a directory only after ``schemas.dataset`` accepted it: the manifest's
schema version (``load_manifest``), every listed shard's size against the manifest (a
missing, truncated or altered shard is named; with ``verify``, its sha256 too:
``check_shards``), every listed shard's metadata and column types, and, with ``full``
validation, every value (``validate_dataset``). A mismatch stops the run before any model
is built, with a message naming the file.

Streams are split into units (one Parquet row group each) so that even a two-shard
dataset feeds several ranks and workers. Every consumer (rank x worker) reads its units
in an order seeded by (seed, epoch), through a shuffle buffer seeded by (seed, epoch,
consumer); its position is (epoch, rows yielded in that epoch), which is all a checkpoint
needs to restart the stream at the same row.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from schemas.dataset import (
    DatasetError,
    check_dataset_splits,
    check_shards,
    load_manifest,
    shard_paths,
    validate_dataset,
)
from schemas.validate import SchemaError, validate_table

PAIR_COLUMNS = ["id", "split", "image", "regions", "texts"]
PARALLEL_COLUMNS = ["id", "split", "src_text", "src_lang", "tgt_text", "tgt_lang"]


@dataclass(frozen=True)
class Unit:
    """One row group of one shard: the smallest piece a consumer is given."""

    path: str
    row_group: int
    rows: int


@dataclass
class Dataset:
    """An accepted dataset: its manifest and the units of its pairs and parallel tables."""

    root: str
    manifest: dict[str, Any]
    pairs: list[Unit] = field(default_factory=list)
    parallel: list[Unit] = field(default_factory=list)


def _open(path: str) -> pq.ParquetFile:
    if "://" in path:
        fs, inner = pafs.FileSystem.from_uri(path)
        return pq.ParquetFile(fs.open_input_file(inner))
    return pq.ParquetFile(path)


def _units(root: str, table: str, manifest: dict[str, Any]) -> list[Unit]:
    units = []
    for path in shard_paths(root, table, manifest):
        try:
            handle = _open(path)
        except (OSError, pa.ArrowException) as err:  # e.g. a shard cut short in an older dataset
            raise DatasetError(f"{root}: cannot open {path}: {err}") from err
        try:
            validate_table(handle.schema_arrow.empty_table(), table)
        except SchemaError as err:
            raise SchemaError(err.table, err.column, f"in {path}: {str(err).split(': ', 2)[-1]}") from err
        meta = handle.metadata
        units += [Unit(path, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    return units


def open_dataset(root: str, full_validation: bool = True, verify: bool = False) -> Dataset:
    """Accept ``root`` for training or raise DatasetError/SchemaError with a clear reason.

    Shard sizes are always checked against the manifest; ``verify`` also checks every
    shard's sha256 (reads every byte; ``m3curate pretrain --verify``)."""
    root = root.rstrip("/")
    tables = ("pairs", "parallel")
    if full_validation:
        manifest = validate_dataset(root, tables, digests=verify)
    else:
        manifest = load_manifest(root)
        check_shards(root, manifest, tables, digests=verify)
        check_dataset_splits(root, manifest)
    data = Dataset(root, manifest, _units(root, "pairs", manifest), _units(root, "parallel", manifest))
    if not data.pairs:
        raise DatasetError(f"{root}: the manifest lists no pairs shards; there is nothing to train on")
    return data


def verify_dataset(root: str, tables: tuple[str, ...] = ("pairs", "parallel")) -> dict:
    """Check every listed shard of ``tables`` against the manifest's size and sha256
    (``m3curate evaluate --verify``); returns the manifest."""
    manifest = load_manifest(root.rstrip("/"))
    check_shards(root.rstrip("/"), manifest, tables, digests=True)
    return manifest


def with_split(units: list[Unit], split: str) -> list[Unit]:
    """The units holding at least one row of ``split`` (reads only the split column), so that
    no consumer is handed row groups that yield nothing."""
    keep = []
    for unit in units:
        column = _open(unit.path).read_row_group(unit.row_group, columns=["split"]).column("split")
        if pc.any(pc.equal(column, split)).as_py():
            keep.append(unit)
    return keep


def read_unit(unit: Unit, columns: list[str], split: str | None) -> list[dict[str, Any]]:
    """Rows of one row group as Python dicts, keeping only ``split`` (None = all)."""
    table = _open(unit.path).read_row_group(unit.row_group, columns=columns)
    if split is not None:
        table = table.filter(pc.equal(table.column("split"), split))
    return table.to_pylist()


def seeded(*parts: object) -> random.Random:
    """A Random seeded from a string: the same on every run, process and platform."""
    return random.Random("/".join(map(str, parts)))


@dataclass
class StreamPosition:
    """Where one consumer's stream of one table stands: epoch and rows yielded in it."""

    epoch: int = 0
    rows: int = 0


class RowStream:
    """The endless, deterministic row stream of one consumer over one table.

    seed/consumer/consumers: this stream is consumer ``consumer`` of ``consumers``.
    With at least as many units as consumers, each takes every n-th unit of the epoch's
    order; with fewer (tiny datasets, many ranks) each takes every n-th row instead.
    start: the position to resume at; the skipped rows are read again (images are not
    decoded) so that the shuffle buffer is in exactly the state it had.
    """

    def __init__(self, units: list[Unit], columns: list[str], split: str | None, seed: int,
                 consumer: int, consumers: int, buffer: int, start: StreamPosition | None = None):
        if not units:
            raise ValueError("a row stream needs at least one unit")
        self.units, self.columns, self.split = units, columns, split
        self.seed, self.consumer, self.consumers = seed, consumer, consumers
        self.buffer = max(1, buffer)
        self.position = StreamPosition(**vars(start)) if start else StreamPosition()

    def _epoch_rows(self, epoch: int) -> Iterator[dict[str, Any]]:
        order = list(self.units)
        seeded(self.seed, "units", epoch).shuffle(order)
        by_unit = len(order) >= self.consumers
        mine = order[self.consumer :: self.consumers] if by_unit else order
        k = 0
        for unit in mine:
            for row in read_unit(unit, self.columns, self.split):
                if by_unit or k % self.consumers == self.consumer:
                    yield row
                k += 1

    def _shuffled(self, epoch: int) -> Iterator[dict[str, Any]]:
        rng = seeded(self.seed, "buffer", epoch, self.consumer)
        buf: list[dict[str, Any]] = []
        for row in self._epoch_rows(epoch):
            buf.append(row)
            if len(buf) >= self.buffer:
                i = rng.randrange(len(buf))
                buf[i], buf[-1] = buf[-1], buf[i]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[tuple[dict[str, Any], StreamPosition]]:
        """Yields (row, position of that row); the position after it is rows + 1."""
        empty_epochs = 0
        while True:
            epoch, skip = self.position.epoch, self.position.rows
            n = 0
            for n, row in enumerate(self._shuffled(epoch), start=1):
                if n <= skip:
                    continue
                self.position = StreamPosition(epoch, n)
                yield row, StreamPosition(epoch, n - 1)
            empty_epochs = empty_epochs + 1 if n == 0 else 0
            if empty_epochs >= 2:
                raise DatasetError(f"consumer {self.consumer}: no rows of split {self.split!r} in its share of the data")
            self.position = StreamPosition(epoch + 1, 0)


def dataset_texts(data: Dataset, split: str | None = "train") -> Iterator[str]:
    """Every text of ``split`` (pairs texts of all kinds, both parallel sides), for training
    the tokenizer; reads only the text columns, never the image bytes."""
    for unit in data.pairs:
        for row in read_unit(unit, ["split", "texts"], split):
            yield from (t["text"] for t in row["texts"])
    for unit in data.parallel:
        for row in read_unit(unit, ["split", "src_text", "tgt_text"], split):
            yield row["src_text"]
            yield row["tgt_text"]
