"""What every input reader shares: opening files, expanding globs, the read-stage rejects.

Each reader turns one input record into exactly one ``RawRecord`` or one ``Reject`` (stage
``read``), so the manifest's ``input = output + rejected`` holds from the first stage on. A
file that cannot be read costs one ``unreadable_file`` reject and its remaining records, never
the pipeline run: one corrupt shard among thousands must not stop a day-long build.

Mapping a row's columns to roles lives in ``read_fields``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import lzma
import os
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

import pyarrow as pa
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from curation.config import SourceConfig
from curation.read.records import RawRecord, record_id
from curation.stages import READ
from schemas.rows import Reject

Item = RawRecord | Reject
# (reason, detail) of a row that cannot become a record.
Problem = tuple[str, str]

# What a broken or truncated file raises while it is read. Caught per file (``guarded``);
# row-level problems are handled before they can reach this.
FILE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    csv.Error,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
    pa.ArrowException,
)

Reader = Callable[..., Iterator[Item]]


def read_reject(
    source: SourceConfig, reason: str, detail: str, source_id: str | None, raw: Any
) -> Reject:
    """A reject of the read stage, with the record id set whenever the record has an id."""
    rid = record_id(source.name, source_id) if source_id is not None else None
    return Reject(READ, reason, detail, source.name, source_id, raw, rid)


def unreadable(source: SourceConfig, path: str, err: BaseException) -> Reject:
    """The one reject that stands for a file that cannot be opened or read to its end."""
    return read_reject(
        source, "unreadable_file", f"{path}: {type(err).__name__}: {err}", None, {"file": path}
    )


def guarded(reader: Reader) -> Reader:
    """Wraps a reader so that a file-level failure ends that file with ``unreadable_file``.

    Records already yielded stay; the pipeline goes on with the other files.
    """

    @functools.wraps(reader)
    def read(path: str, source: SourceConfig, *args: Any, **kwargs: Any) -> Iterator[Item]:
        try:
            yield from reader(path, source, *args, **kwargs)
        except FILE_ERRORS as err:
            yield unreadable(source, path, err)

    return read


# --- opening files -----------------------------------------------------------------------


class _ReadAdapter(io.RawIOBase):
    """Gives a Beam ``CompressedFile`` (no ``writable``/``readinto``) the io interface that
    ``io.TextIOWrapper`` and ``io.BufferedReader`` need, so ``.gz``/``.zst`` inputs read alike."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        seekable = getattr(self._stream, "seekable", False)  # a property on CompressedFile
        return bool(seekable() if callable(seekable) else seekable)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._stream.seek(offset, whence)
        return int(self._stream.tell())

    def tell(self) -> int:
        return int(self._stream.tell())

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


@contextlib.contextmanager
def open_binary(path: str) -> Iterator[IO[bytes]]:
    """Opens ``path`` on any Beam filesystem (local, gs://, ...), decompressing by suffix."""
    stream = FileSystems.open(path)
    if not isinstance(stream, io.IOBase):
        stream = io.BufferedReader(_ReadAdapter(stream))
    try:
        yield stream
    finally:
        stream.close()


@contextlib.contextmanager
def open_text(path: str, newline: str) -> Iterator[Iterator[str]]:
    """Opens ``path`` as lines of UTF-8 text that never fail to decode.

    Invalid bytes become lone surrogates (``surrogateescape``) so that the one bad row is
    rejected as ``invalid_utf8`` instead of the whole file failing; a leading BOM is dropped.
    (Not with Python's ``utf-8-sig`` codec: it silently drops a file's only bytes when they
    are the start of a BOM, b"\xef" or b"\xef\xbb", and that row would vanish.)
    """
    with (
        open_binary(path) as stream,
        io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline=newline) as text,
    ):
        yield _without_bom(text)


def _without_bom(lines: Iterator[str]) -> Iterator[str]:
    first = next(lines, "").removeprefix("\ufeff")
    if first:  # "" : an empty file, or one that holds only a BOM
        yield first
        yield from lines


# --- globs -----------------------------------------------------------------------------


_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
MAX_EXPANSION = 1_000_000


def _brace(pattern: str, start: int = 0) -> tuple[int, int, list[str]] | None:
    """The first expandable brace at or after ``start``: (its start, its end + 1, its top-level
    comma-separated parts); None when there is none."""
    depth, open_at, commas = 0, -1, []
    for i in range(start, len(pattern)):
        c = pattern[i]
        if c == "{":
            depth += 1
            if depth == 1:
                open_at, commas = i, []
        elif c == "," and depth == 1:
            commas.append(i)
        elif c == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                body = pattern[open_at + 1:i]
                if commas or _RANGE.match(body):
                    cuts = [open_at, *commas, i]
                    return open_at, i + 1, [pattern[x + 1:y] for x, y in zip(cuts, cuts[1:], strict=False)]
                return _brace(pattern, open_at + 1)
    return None


def expand_braces(pattern: str) -> list[str]:
    """The patterns a shell would make of ``pattern``'s braces, in order: ``{a,b}`` lists
    (nested too), ``{00000..00331}`` numeric ranges (zero-padded to the width written, as
    webdataset and img2dataset name shards), several braces multiplied out. A brace with
    neither a comma nor a range is kept as written. Any path works, ``gs://`` included:
    only the name is expanded."""
    found = _brace(pattern)
    if found is None:
        return [pattern]
    start, end, parts = found
    rng = _RANGE.match(parts[0]) if len(parts) == 1 else None
    if rng:
        lo, hi = int(rng.group(1)), int(rng.group(2))
        width = len(rng.group(1)) if rng.group(1).lstrip("-").startswith("0") else 0
        if abs(hi - lo) >= MAX_EXPANSION:
            raise ValueError(f"{pattern!r}: the range {{{parts[0]}}} names over {MAX_EXPANSION:,} files")
        step = 1 if hi >= lo else -1
        parts = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    head, tail = pattern[:start], pattern[end:]
    return [out for part in parts for choice in expand_braces(part) for out in expand_braces(head + choice + tail)]


def _match(source: SourceConfig, pattern: str) -> list[str]:
    """The sorted files ``pattern`` names (its braces expanded; each expansion must match)."""
    expanded = expand_braces(pattern)
    if expanded == [pattern]:
        return _match_one(source, pattern)
    return sorted({path for one in expanded for path in _match_one(source, one)})


def _match_one(source: SourceConfig, pattern: str) -> list[str]:
    # Beam matches nothing for a relative glob that starts with a wildcard ("*/c.jsonl"),
    # but does for "./*/c.jsonl": ask that, and give the paths back without the "./".
    local_relative = "://" not in pattern and not os.path.isabs(pattern)
    try:
        results = FileSystems.match([os.path.join(".", pattern) if local_relative else pattern])
    except BeamIOError as err:
        raise ValueError(f"source {source.name!r}: cannot list {pattern!r}: {err}") from err
    paths = sorted(_local_path(m.path) for m in results[0].metadata_list)
    if not paths:
        raise ValueError(f"source {source.name!r}: no file matches {pattern!r}")
    return paths


def match_pairs(source: SourceConfig) -> list[tuple[str, str]]:
    """(source file, target file) pairs of a ``parallel_files`` source.

    ``paths[i]`` and ``tgt_paths[i]`` may be globs; their sorted matches pair up by position,
    so both must match the same number of files.
    """
    if len(source.paths) != len(source.tgt_paths):
        raise ValueError(
            f"source {source.name!r}: tgt_paths must list one target per entry of paths"
        )
    pairs: set[tuple[str, str]] = set()
    for src_pattern, tgt_pattern in zip(source.paths, source.tgt_paths, strict=True):
        srcs, tgts = _match(source, src_pattern), _match(source, tgt_pattern)
        if len(srcs) != len(tgts):
            raise ValueError(
                f"source {source.name!r}: {src_pattern!r} matches {len(srcs)} files "
                f"but {tgt_pattern!r} matches {len(tgts)}"
            )
        pairs.update(zip(srcs, tgts, strict=True))
    return sorted(pairs)


def match_paths(source: SourceConfig) -> list[str]:
    """The sorted input files of ``source``; raises ValueError naming the source and the
    pattern when a glob matches nothing, so a typo fails before any worker starts."""
    if source.format == "parallel_files":
        return sorted({src for src, _ in match_pairs(source)})
    return sorted({path for pattern in source.paths for path in _match(source, pattern)})


# --- paths -----------------------------------------------------------------------------


def basename(path: str) -> str:
    return posixpath.basename(path) if "://" in path else os.path.basename(path)


GLOB_CHARS = "*?[{"


def _local_path(path: str) -> str:
    """A local path as ``_match`` returns it (normalised: no "./", no "x/.."); URLs as given."""
    return path if "://" in path else os.path.normpath(path)


def _static_dir(pattern: str) -> str:
    """The folder part of ``pattern`` before its first wildcard, normalised like the paths
    ``_match`` returns, with its trailing "/" ("" for the current folder)."""
    cut = min((i for i in map(pattern.find, GLOB_CHARS) if i >= 0), default=len(pattern))
    folder = pattern[: pattern.rfind("/", 0, cut) + 1]
    if "://" in folder or not folder:
        return folder
    folder = os.path.normpath(folder)
    return "" if folder == "." else folder.rstrip("/") + "/"


@functools.lru_cache(maxsize=4096)
def _file_label(path: str, patterns: tuple[str, ...]) -> str:
    prefix = os.path.commonprefix([_static_dir(p) for p in patterns])
    prefix = prefix[: prefix.rfind("/") + 1]
    path = _local_path(path)
    return path[len(prefix):] if path.startswith(prefix) else path  # the whole path: never a collision


def file_label(path: str, source: SourceConfig) -> str:
    """The name of an input file in fallback ids (``<label>:<row>``): its path below the
    folder all of the source's patterns share. One pattern, or patterns in one folder:
    the file name; ``data/*/00000.parquet``: ``train/00000.parquet``, so two files of
    one name in different folders never give the same ids. The label depends on all of the
    source's patterns: adding a pattern in another folder changes it (and every fallback
    id of the source); rows with an id column keep their ids."""
    return _file_label(path, tuple(source.paths))
