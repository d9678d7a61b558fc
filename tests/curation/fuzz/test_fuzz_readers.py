"""Every reader on hostile input (issue 13.3): random bytes, truncated files, random JSON
values in every column, random tar member names and types. Each file gives one item per
input record (a record or a read reject whose row can be written), never an exception;
records then pass the image and text stages as a build would (``fuzz_inputs.check_items``).

The budget is ``M3CURATE_FUZZ_EXAMPLES`` examples per property (see conftest.py).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fuzz_inputs import (
    check_items,
    column_maps,
    json_values,
    jsonl_bytes,
    kinds,
    members,
    png,
    rows,
    samples_in,
    source_for,
    text_lines,
    write_tar,
)
from hypothesis import given
from hypothesis import strategies as st

from curation.read.source import iter_file


def folder(tmp_path_factory: Any) -> Path:
    """A fresh folder with img.png beside the data file, and an outside file next to it."""
    base = tmp_path_factory.mktemp("fuzz")
    (base / "data").mkdir()
    (base / "data" / "img.png").write_bytes(png())
    (base / "outside.png").write_bytes(png())
    return base / "data"


def read(data_dir: Path, name: str, data: bytes, fmt: str, kind: str = "pair", **settings: Any) -> list[Any]:
    path = data_dir / name
    path.write_bytes(data)
    return list(iter_file(str(path), source_for(str(path), fmt, kind, **settings)))


# --- JSONL ---------------------------------------------------------------------------------


@given(data=st.binary(max_size=300), kind=kinds)
def test_jsonl_random_bytes(tmp_path_factory, data: bytes, kind: str) -> None:
    lines = [line for line in text_lines(data) if line.rstrip("\r").strip()]
    check_items(read(folder(tmp_path_factory), "r.jsonl", data, "jsonl", kind), len(lines))


@given(rows_=st.lists(rows, max_size=6), kind=kinds, columns=column_maps, ascii_only=st.booleans())
def test_jsonl_random_values_in_every_column(tmp_path_factory, rows_, kind, columns, ascii_only) -> None:
    data = jsonl_bytes(rows_, ascii_only)
    check_items(read(folder(tmp_path_factory), "v.jsonl", data, "jsonl", kind, columns=columns), len(rows_))


@given(rows_=st.lists(rows, min_size=1, max_size=5), cut=st.floats(0, 1), kind=kinds)
def test_jsonl_truncated(tmp_path_factory, rows_, cut: float, kind: str) -> None:
    data = jsonl_bytes(rows_, False)
    data = data[: int(len(data) * cut)]
    lines = [line for line in text_lines(data) if line.rstrip("\r").strip()]
    check_items(read(folder(tmp_path_factory), "t.jsonl", data, "jsonl", kind), len(lines))


# --- CSV / TSV -----------------------------------------------------------------------------

cells = st.text(max_size=12) | st.sampled_from(["img.png", "../outside.png", "a cat on a mat", ""])
header_names = st.sampled_from(["caption", "image", "key", "text", "src", "tgt", "lang"]) | st.text(max_size=5)
role_headers = st.sampled_from([["caption", "image"], ["text", "image"], ["src", "tgt"], []])


@st.composite
def delimited(draw: Any) -> tuple[list[str], list[list[str]]]:
    """A header (often with the roles a kind needs) and rows, mostly as wide as the header."""
    header = draw(st.permutations(draw(role_headers) + draw(st.lists(header_names, max_size=3))))
    if not header:
        header = ["caption"]
    width = st.integers(0, 6) if draw(st.booleans()) else st.just(len(header))
    body = draw(st.lists(width.flatmap(lambda n: st.lists(cells, min_size=n, max_size=n)), max_size=5))
    return header, body


@given(table=delimited(), kind=kinds)
def test_csv_random_cells(tmp_path_factory, table, kind) -> None:
    header, body = table
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows([header, *body])
    data = buffer.getvalue().encode("utf-8", "surrogatepass")
    expected = sum(1 for row in body if row)  # the writer writes an empty row as a blank line
    check_items(read(folder(tmp_path_factory), "c.csv", data, "csv", kind), expected)


@given(table=delimited(), kind=kinds)
def test_tsv_random_cells(tmp_path_factory, table, kind) -> None:
    def line(values: list[str]) -> str:
        return "\t".join(v.replace("\t", " ").replace("\n", " ").replace("\r", " ") for v in values)

    header, body = table
    data = "".join(line(r) + "\n" for r in [header, *body]).encode("utf-8", "surrogatepass")
    records = [r for r in body if line(r)]  # a row that writes as nothing is a blank line
    check_items(read(folder(tmp_path_factory), "c.tsv", data, "tsv", kind), len(records))


@given(data=st.binary(max_size=300), fmt=st.sampled_from(["csv", "tsv"]), kind=kinds)
def test_csv_tsv_random_bytes(tmp_path_factory, data: bytes, fmt: str, kind: str) -> None:
    check_items(read(folder(tmp_path_factory), f"r.{fmt}", data, fmt, kind))


# --- Parquet -------------------------------------------------------------------------------

ARROW_TYPES = {
    "string": (pa.string(), st.text(max_size=15)),
    "binary": (pa.binary(), st.binary(max_size=15) | st.just(png())),
    "int": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "float": (pa.float64(), st.floats()),
    "bool": (pa.bool_(), st.booleans()),
    "list": (pa.list_(pa.string()), st.lists(st.text(max_size=5), max_size=3)),
    "struct": (pa.struct([("a", pa.int64())]), st.fixed_dictionaries({"a": st.integers(0, 9)})),
}


@st.composite
def arrow_tables(draw: Any) -> pa.Table:
    n = draw(st.integers(0, 6))
    names = draw(st.lists(st.sampled_from(["caption", "jpg", "image", "key", "text", "status", "error_message",
                                           "url", "src", "tgt"]) | st.text(min_size=1, max_size=6),
                          max_size=5, unique=True))
    columns = {}
    if draw(st.booleans()):  # img2dataset's shape, so that records reach the later stages
        columns["caption"] = pa.array(draw(st.lists(st.text(max_size=20), min_size=n, max_size=n)), pa.string())
        columns["jpg"] = pa.array([png()] * n, pa.binary())
        names = [name for name in names if name not in columns]
    for name in names:
        arrow_type, values = ARROW_TYPES[draw(st.sampled_from(sorted(ARROW_TYPES)))]
        columns[name] = pa.array(draw(st.lists(st.none() | values, min_size=n, max_size=n)), type=arrow_type)
    return pa.table(columns) if columns else pa.table({"x": pa.array([None] * n, pa.null())})


@given(table=arrow_tables(), kind=kinds, columns=column_maps, cut=st.none() | st.floats(0, 1))
def test_parquet_random_tables_whole_and_truncated(tmp_path_factory, table: pa.Table, kind, columns, cut) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=2)
    data = buffer.getvalue()
    if cut is not None:
        data = data[: int(len(data) * cut)]
    items = read(folder(tmp_path_factory), "t.parquet", data, "parquet", kind, columns=columns)
    check_items(items, table.num_rows if cut is None else None)


@given(data=st.binary(max_size=300), kind=kinds)
def test_parquet_random_bytes(tmp_path_factory, data: bytes, kind: str) -> None:
    (item,) = check_items(read(folder(tmp_path_factory), "r.parquet", data, "parquet", kind))
    assert item.reason == "unreadable_file"


# --- WebDataset ----------------------------------------------------------------------------


@given(members_=members, kind=st.sampled_from(["pair", "weak"]), cut=st.none() | st.floats(0, 1))
def test_webdataset_random_members_whole_and_truncated(tmp_path_factory, members_, kind, cut) -> None:
    data = write_tar(members_)
    if cut is not None:
        data = data[: int(len(data) * cut)]
    items = read(folder(tmp_path_factory), "s.tar", data, "webdataset", kind)
    check_items(items, samples_in(data) if cut is None else None)


@given(data=st.binary(max_size=1500), kind=st.sampled_from(["pair", "weak"]))
def test_webdataset_random_bytes(tmp_path_factory, data: bytes, kind: str) -> None:
    check_items(read(folder(tmp_path_factory), "r.tar", data, "webdataset", kind))


# --- parallel text files -------------------------------------------------------------------


@given(src=st.binary(max_size=200), tgt=st.binary(max_size=200))
def test_parallel_files_random_bytes(tmp_path_factory, src: bytes, tgt: bytes) -> None:
    base = folder(tmp_path_factory)
    (base / "a.en").write_bytes(src)
    (base / "a.de").write_bytes(tgt)
    source = source_for(str(base / "a.en"), "parallel_files", "parallel", tgt_paths=[str(base / "a.de")],
                        src_lang="en", tgt_lang="de")
    items = list(iter_file(str(base / "a.en"), source, str(base / "a.de")))
    check_items(items, max(len(text_lines(src)), len(text_lines(tgt))))


# --- image paths ---------------------------------------------------------------------------

path_parts = st.sampled_from(["..", ".", "", "img.png", "link", "loop", "sub", "outside.png", "gs:", "/", "~",
                              "%2e%2e", "..\\..", "C:"])


@given(parts=st.lists(path_parts, min_size=1, max_size=6), absolute=st.booleans(), value=json_values)
def test_random_image_paths_never_leave_the_root(tmp_path_factory, parts, absolute, value) -> None:
    """Whatever the path, a kept record's image lies inside the root once symlinks resolve."""
    base = folder(tmp_path_factory)
    os.symlink(base.parent / "outside.png", base / "link")
    os.symlink(base / "loop", base / "loop")
    (base / "sub").mkdir()
    image = ("/" if absolute else "") + "/".join(parts)
    data = jsonl_bytes([{"caption": "a cat", "image": image}, {"caption": "a dog", "image": value}], False)
    for item in check_items(read(base, "p.jsonl", data, "jsonl"), 2):
        if item.__class__.__name__ == "RawRecord" and item.image_path:
            real = os.path.realpath(item.image_path)
            assert real == str(base) or real.startswith(f"{base}/"), (image, real)
