"""Sorted runs on disk and their streaming k-way merge: how the writer puts rows in shard
and key order without sending them, image bytes and all, through a shuffle.

A ``RunWriter`` buffers (shard, key, encoded row) entries up to a byte budget. When the
budget is reached (and at the end of a bundle) it sorts them by (shard, key) and writes
them to one run file, where each shard's entries form one contiguous segment. What leaves
the writer is a ``Segment`` per shard: its file, byte offset and length, row count and
first/last key, a few hundred bytes whatever the rows weigh. Those are what the pipeline
groups by shard; ``merge_segments`` then reads a shard's segments side by side, a chunk at
a time (``heapq.merge``), so a shard is written in one pass with at most one chunk of each
run in memory.

Rows are encoded with Beam's own coder for Python objects (``FastPrimitivesCoder``): the
same encoding a shuffle would give them, so what comes back is what went in. A run is a
file of records ``>II`` (key length, value length), key (UTF-8, surrogates passed), value.
Entries with equal keys are ordered by their encoded bytes, so the order never depends on
bundles or runners. Paths go through ``FileSystems``: runs work on gs:// as on a local disk.
"""

from __future__ import annotations

import heapq
import struct
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from apache_beam.coders import FastPrimitivesCoder
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

RUN_BYTES = 16 << 20  # what a RunWriter holds before it writes a run
READ_CHUNK = 64 << 10  # what a segment reader holds of its run at a time
_HEADER = struct.Struct(">II")
_CODER = FastPrimitivesCoder()
_RAW = CompressionTypes.UNCOMPRESSED


class Segment(NamedTuple):
    """One shard's entries in one run file: ``length`` bytes from ``offset``."""

    path: str
    offset: int
    length: int
    rows: int
    first: str
    last: str


def encode_row(row: Any) -> bytes:
    return _CODER.encode(row)


def decode_row(data: bytes) -> Any:
    return _CODER.decode(data)


def _record(key: str, value: bytes) -> bytes:
    raw = key.encode("utf-8", "surrogatepass")
    return _HEADER.pack(len(raw), len(value)) + raw + value


class RunWriter:
    """Buffers (shard, key, value) entries and writes them as sorted runs under ``directory``.

    directory: where run files go (any Beam filesystem). budget: bytes of keys and values
    held before a run is written.
    """

    def __init__(self, directory: str, budget: int = RUN_BYTES):
        self.directory = directory
        self.budget = budget
        self.entries: list[tuple[int, str, bytes]] = []
        self.held = 0

    def add(self, shard: int, key: str, value: bytes) -> list[tuple[int, Segment]]:
        """Buffer one entry; returns the segments of a run written because the budget was reached."""
        self.entries.append((shard, key, value))
        self.held += len(key) + len(value) + 64
        return self.flush() if self.held >= self.budget else []

    def flush(self) -> list[tuple[int, Segment]]:
        """Write what is buffered as one run; returns (shard, Segment) for each shard in it."""
        if not self.entries:
            return []
        entries, self.entries, self.held = sorted(self.entries), [], 0
        path = f"{self.directory.rstrip('/')}/{uuid.uuid4().hex}.run"
        segments: list[tuple[int, Segment]] = []
        offset = begin = first = 0
        with FileSystems.create(path, mime_type="application/octet-stream", compression_type=_RAW) as handle:
            for i, (shard, key, value) in enumerate(entries):
                record = _record(key, value)
                handle.write(record)
                offset += len(record)
                if i + 1 == len(entries) or entries[i + 1][0] != shard:
                    segments.append((shard, Segment(path, begin, offset - begin, i + 1 - first, entries[first][1], key)))
                    begin, first = offset, i + 1
        return segments


def read_segment(segment: Segment, chunk: int = READ_CHUNK) -> Iterator[tuple[str, bytes]]:
    """(key, value) entries of one segment, in order, reading ``chunk`` bytes at a time."""
    header = _HEADER.size
    unpack = _HEADER.unpack_from
    with FileSystems.open(segment.path, mime_type="application/octet-stream", compression_type=_RAW) as handle:
        handle.seek(segment.offset)
        left, buffer, pos = segment.length, b"", 0
        for _ in range(segment.rows):
            if len(buffer) - pos < header:
                buffer, pos, left = _refill(handle, buffer, pos, left, header, chunk, segment)
            klen, vlen = unpack(buffer, pos)
            start, end = pos + header, pos + header + klen + vlen
            if len(buffer) < end:
                buffer, pos, left = _refill(handle, buffer, pos, left, end - pos, chunk, segment)
                start, end = header, header + klen + vlen
            yield buffer[start:start + klen].decode("utf-8", "surrogatepass"), buffer[start + klen:end]
            pos = end
        if left or pos != len(buffer):
            raise OSError(f"run {segment.path}: the segment at {segment.offset} holds more than its {segment.rows} rows")


def _refill(handle: Any, buffer: bytes, pos: int, left: int, need: int, chunk: int, segment: Segment
            ) -> tuple[bytes, int, int]:
    """The unread part of ``buffer`` followed by more of the segment, at least ``need``
    bytes in all: (buffer, 0, bytes of the segment still unread)."""
    buffer = buffer[pos:]
    while len(buffer) < need:
        data = handle.read(min(max(chunk, need - len(buffer)), left)) if left else b""
        if not data:
            raise OSError(f"run {segment.path} ends inside a record of its segment")
        left -= len(data)
        buffer += data
    return buffer, 0, left


def merge_segments(segments: Iterable[Segment]) -> Iterator[tuple[str, bytes]]:
    """The entries of all ``segments`` in (key, value) order; each segment must be sorted."""
    return heapq.merge(*(read_segment(s) for s in sorted(segments)))


def delete_runs(paths: Iterable[str]) -> None:
    """Delete run files (those already gone are skipped: a retried step may delete twice)."""
    existing = [p for p in paths if FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)
