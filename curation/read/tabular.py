"""Readers of row-per-record inputs: JSONL, CSV, TSV, img2dataset Parquet, parallel text files.

Each is a generator ``iter_<format>(path, source)`` yielding one ``RawRecord`` or ``Reject``
per input record, testable without Beam. Row numbers (``provenance.row`` and the fallback
id ``file:row``) are 0-based and count skipped blank lines, so they point into the file.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.config import SourceConfig
from curation.read.common import (
    FILE_ERRORS,
    Item,
    file_label,
    guarded,
    match_pairs,
    open_binary,
    open_text,
    read_reject,
    unreadable,
)
from curation.read.fields import find_invalid_utf8, map_row, row_reject, source_id_of, url_of
from curation.read.records import RawRecord

PARQUET_BATCH_ROWS = 256
# img2dataset names the image bytes column after the format it saved.
PARQUET_IMAGE_COLUMN = "jpg"


def _image_column(source: SourceConfig, default: str | None = None) -> str | None:
    if source.kind == "parallel":
        return None
    return source.columns.get("image", default or source.column("image"))


# --- JSONL -----------------------------------------------------------------------------


@guarded
def iter_jsonl(path: str, source: SourceConfig) -> Iterator[Item]:
    """One JSON object per line; the image column holds a path (no inline image encodings)."""
    image_column = _image_column(source)
    # newline="\n": only LF ends a line, so row numbers match `wc -l` and `sed -n`.
    with open_text(path, newline="\n") as lines:
        for index, line in enumerate(lines):
            line = line.rstrip("\r\n")
            if line.strip():
                yield _jsonl_item(line, path, index, source, image_column)


def _jsonl_item(
    line: str, path: str, index: int, source: SourceConfig, image_column: str | None
) -> Item:
    try:
        row = json.loads(line)
    except ValueError as err:
        invalid = find_invalid_utf8(line, "line")
        reason, detail = (
            ("invalid_utf8", invalid) if invalid else ("malformed_row", f"not JSON: {err}")
        )
        return row_reject(source, reason, detail, path=path, index=index, raw={"line": line})
    if not isinstance(row, dict):
        detail = f"line is a JSON {type(row).__name__}, expected an object"
        return row_reject(
            source, "malformed_row", detail, path=path, index=index, raw={"line": line}
        )
    return map_row(row, path=path, index=index, source=source, image_column=image_column)


# --- CSV / TSV -------------------------------------------------------------------------


@guarded
def iter_csv(path: str, source: SourceConfig) -> Iterator[Item]:
    """Comma-separated rows with a header row; standard CSV quoting."""
    yield from _iter_delimited(path, source, delimiter=",", quoting=csv.QUOTE_MINIMAL)


@guarded
def iter_tsv(path: str, source: SourceConfig) -> Iterator[Item]:
    """Tab-separated rows with a header row; no quoting, so quotes in captions survive."""
    yield from _iter_delimited(path, source, delimiter="\t", quoting=csv.QUOTE_NONE)


def _iter_delimited(
    path: str, source: SourceConfig, *, delimiter: str, quoting: int
) -> Iterator[Item]:
    image_column = _image_column(source)
    with open_text(path, newline="") as text:
        reader = csv.reader(text, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if header is None:
            return
        for index in itertools.count():
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as err:  # the reader resumes at the next line
                detail, raw = f"line {reader.line_num}: {err}", {"error_at_line": reader.line_num}
                yield row_reject(source, "malformed_row", detail, path=path, index=index, raw=raw)
                continue
            if not values:
                continue  # blank line
            if len(values) != len(header):
                detail = f"{len(values)} fields, the header has {len(header)}"
                raw = {"fields": values, "header": header}
                yield row_reject(source, "malformed_row", detail, path=path, index=index, raw=raw)
                continue
            row = dict(zip(header, values, strict=True))
            yield map_row(row, path=path, index=index, source=source, image_column=image_column)


# --- Parquet ---------------------------------------------------------------------------


@guarded
def iter_parquet(path: str, source: SourceConfig) -> Iterator[Item]:
    """Parquet as img2dataset writes it (``key``, ``caption``, ``url``, ``status``,
    ``error_message``, ``jpg``...), or any table with the source's columns.

    Read in batches of ``PARQUET_BATCH_ROWS`` so that a large shard of image bytes is never
    in memory at once. Rows img2dataset failed to download are rejected as ``download_failed``.
    """
    image_column = _image_column(source, PARQUET_IMAGE_COLUMN)
    index = 0
    with open_binary(path) as stream, pq.ParquetFile(stream) as parquet:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in _batch_rows(batch):
                yield _parquet_item(row, path, index, source, image_column)
                index += 1


def _parquet_item(
    row: dict[str, Any], path: str, index: int, source: SourceConfig, image_column: str | None
) -> Item:
    if "status" in row and row["status"] != "success":
        source_id, _ = source_id_of(row, source, f"{file_label(path, source)}:{index}")
        detail = row.get("error_message") or f"status {row['status']!r}"
        provenance = {"file": path, "row": index, "url": url_of(row, source), "member": None}
        return read_reject(
            source,
            "download_failed",
            str(detail),
            source_id,
            {"row": row, "provenance": provenance},
        )
    return map_row(
        row, path=path, index=index, source=source, image_column=image_column, allow_bytes=True
    )


def _batch_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The batch as Python rows. A string cell with invalid UTF-8 (Arrow does not validate on
    read) becomes a surrogate-escaped str, so that only its row is rejected as invalid_utf8."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        return [_row_at(batch, i) for i in range(batch.num_rows)]


def _row_at(batch: pa.RecordBatch, i: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        try:
            row[name] = column[i].as_py()
        except UnicodeDecodeError:
            if pa.types.is_string(column.type):
                data = column.view(pa.binary())[i].as_py()
            elif pa.types.is_large_string(column.type):
                data = column.view(pa.large_binary())[i].as_py()
            else:
                raise  # invalid text nested in lists/structs: the file is unreadable
            row[name] = data.decode("utf-8", "surrogateescape")
    return row


# --- parallel text files ---------------------------------------------------------------


def iter_parallel_files(
    path: str, source: SourceConfig, tgt_path: str | None = None
) -> Iterator[Item]:
    """Two line-aligned plain-text files: line i of ``path`` translates line i of ``tgt_path``.

    ``tgt_path`` defaults to the file paired with ``path`` by ``match_pairs(source)``. Lines
    past the end of the shorter file are rejected one by one as ``unaligned``. Empty lines
    are records (text validation rejects them) because skipping them would break alignment.
    """
    if tgt_path is None:
        targets = dict(match_pairs(source))
        if path not in targets:
            yield unreadable(
                source,
                path,
                FileNotFoundError(f"{path} is not among the source files of {source.name!r}"),
            )
            return
        tgt_path = targets[path]
    try:
        yield from _parallel_lines(path, tgt_path, source)
    except FILE_ERRORS as err:
        yield unreadable(source, path, err)


def _parallel_lines(path: str, tgt_path: str, source: SourceConfig) -> Iterator[Item]:
    with open_text(path, newline="\n") as src_lines, open_text(tgt_path, newline="\n") as tgt_lines:
        for index, (src, tgt) in enumerate(itertools.zip_longest(src_lines, tgt_lines)):
            yield _parallel_item(src, tgt, path, tgt_path, index, source)


def _strip_newline(line: str | None) -> str | None:
    return None if line is None else line.removesuffix("\n").removesuffix("\r")


def _parallel_item(
    src: str | None, tgt: str | None, path: str, tgt_path: str, index: int, source: SourceConfig
) -> Item:
    src, tgt = _strip_newline(src), _strip_newline(tgt)
    raw = {"src": src, "tgt": tgt}
    if src is None or tgt is None:
        longer, shorter = (tgt_path, path) if src is None else (path, tgt_path)
        detail = f"line {index} of {longer} has no counterpart: {shorter} has fewer lines"
        return row_reject(source, "unaligned", detail, path=path, index=index, raw=raw)
    invalid = find_invalid_utf8(raw)
    if invalid:
        return row_reject(source, "invalid_utf8", invalid, path=path, index=index, raw=raw)
    fields = {"src": src, "tgt": tgt, "src_lang": source.src_lang, "tgt_lang": source.tgt_lang}
    return RawRecord(
        source=source.name,
        kind=source.kind,
        source_id=f"{file_label(path, source)}:{index}",
        split=source.split,
        fields=fields,
        provenance={"file": path, "row": index, "url": None, "member": None},
        raw=raw,
    )
