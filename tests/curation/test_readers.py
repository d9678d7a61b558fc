"""Input readers: each format's records and rejects, on tiny files generated per test."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from curation import read_webdataset
from curation.config import SourceConfig
from curation.readers import (
    ReadSource,
    iter_csv,
    iter_file,
    iter_jsonl,
    iter_parallel_files,
    iter_parquet,
    iter_tsv,
    iter_webdataset,
    match_paths,
)
from curation.records import RawRecord, Reject, record_id, reject_row

# --- helpers ---------------------------------------------------------------------------


def image_bytes(fmt: str = "PNG", color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format=fmt)
    return buffer.getvalue()


def source(path: Path | str, fmt: str, kind: str = "pair", **kwargs: Any) -> SourceConfig:
    return SourceConfig(name="src", format=fmt, paths=[str(path)], kind=kind, **kwargs)


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def records(items: list[RawRecord | Reject]) -> list[RawRecord]:
    return [i for i in items if isinstance(i, RawRecord)]


def rejects(items: list[RawRecord | Reject]) -> list[Reject]:
    return [i for i in items if isinstance(i, Reject)]


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"", **info: Any) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    for key, value in info.items():
        setattr(member, key, value)
    tar.addfile(member, io.BytesIO(data) if data else None)


def img2dataset_parquet(path: Path, n: int = 3, failed: frozenset[int] = frozenset()) -> Path:
    jpg = image_bytes("JPEG")
    rows = {
        "key": [f"{i:09d}" for i in range(n)],
        "caption": [f"caption {i}" for i in range(n)],
        "url": [f"http://example.com/{i}.jpg" for i in range(n)],
        "status": ["failed_to_download" if i in failed else "success" for i in range(n)],
        "error_message": ["HTTP 404" if i in failed else None for i in range(n)],
        "width": [None if i in failed else 8 for i in range(n)],
        "height": [None if i in failed else 8 for i in range(n)],
        "jpg": [None if i in failed else jpg for i in range(n)],
    }
    pq.write_table(pa.table(rows), path, row_group_size=128)
    return path


# --- JSONL -----------------------------------------------------------------------------


def test_jsonl_pair_maps_columns_resolves_paths_and_falls_back_on_ids(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {
                "key": "a",
                "caption": "a dog",
                "image": "img/a.jpg",
                "lang": "de",
                "url": "http://x/a",
            },
            "\n",
            {"caption": "a cat", "image": "/abs/b.jpg"},
        ],
    )
    items = list(iter_jsonl(str(path), source(path, "jsonl", lang="en", split="val")))
    first, second = items
    assert isinstance(first, RawRecord) and isinstance(second, RawRecord)
    assert (first.source, first.kind, first.split, first.source_id) == ("src", "pair", "val", "a")
    assert first.fields == {"caption": "a dog", "lang": "de"}
    assert first.image_path == str(tmp_path / "img" / "a.jpg") and first.image is None
    assert first.provenance == {"file": str(path), "row": 0, "url": "http://x/a", "member": None}
    assert first.raw["caption"] == "a dog"
    # the blank line is skipped but keeps its number, so row numbers point into the file
    assert second.source_id == "data.jsonl:2" and second.provenance["row"] == 2
    assert second.fields == {"caption": "a cat", "lang": "en"}  # declared language of the source
    assert second.image_path == "/abs/b.jpg"


def test_jsonl_configured_columns_and_image_root(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"uid": 7, "alt": "red car", "img": "c.png", "language": ""}]
    )
    cfg = source(
        path,
        "jsonl",
        columns={"id": "uid", "caption": "alt", "image": "img", "lang": "language"},
        image_root="gs://bucket/images",
    )
    (item,) = iter_jsonl(str(path), cfg)
    assert isinstance(item, RawRecord)
    assert item.source_id == "7" and item.fields == {"caption": "red car", "lang": None}
    assert item.image_path == "gs://bucket/images/c.png"
    assert item.id == record_id("src", "7")


def test_jsonl_invalid_utf8_row_is_rejected_alone(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        b'{"caption": "ok", "image": "a.jpg"}\n{"caption": "caf\xe9 \xff", "image": "b.jpg"}\n'
    )
    ok, bad = iter_jsonl(str(path), source(path, "jsonl"))
    assert isinstance(ok, RawRecord)
    assert isinstance(bad, Reject) and (bad.stage, bad.reason) == ("read", "invalid_utf8")
    assert "column 'caption'" in bad.detail and "0xe9 at byte 3" in bad.detail
    assert bad.source_id == "bad.jsonl:1" and bad.record_id == record_id("src", "bad.jsonl:1")
    assert bad.raw["row"]["image"] == "b.jpg" and bad.raw["provenance"]["row"] == 1
    json.loads(reject_row(bad)["raw"])
    reject_row(bad)["raw"].encode("utf-8")  # the rejects table can store it


def test_jsonl_malformed_and_non_object_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", ['{"caption": "x", \n', "[1, 2]\n", '"text"\n'])
    items = list(iter_jsonl(str(path), source(path, "jsonl")))
    assert [(i.reason, i.source_id) for i in rejects(items)] == [
        ("malformed_row", "m.jsonl:0"),
        ("malformed_row", "m.jsonl:1"),
        ("malformed_row", "m.jsonl:2"),
    ]
    assert "list" in items[1].detail and items[0].raw["row"] == {"line": '{"caption": "x", '}


def test_missing_column_and_wrong_types(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {"key": "m", "image": "a.jpg", "alt": "x"},
            {"key": "n", "caption": 3, "image": "a.jpg"},
            {"key": "l", "caption": ["a"], "image": "a.jpg"},
            {"key": "z", "caption": None, "image": "a.jpg"},
            {"key": "i", "caption": "fine", "image": 5},
            {"key": "e", "caption": "fine", "image": ""},
            {"key": "g", "caption": "fine", "image": "a.jpg", "lang": 1},
        ],
    )
    got = [(r.source_id, r.reason) for r in iter_jsonl(str(path), source(path, "jsonl"))]
    assert got == [
        ("m", "missing_column"),
        ("n", "wrong_type"),
        ("l", "wrong_type"),
        ("z", "wrong_type"),
        ("i", "wrong_type"),
        ("e", "missing_image"),
        ("g", "wrong_type"),
    ]
    missing = next(iter_jsonl(str(path), source(path, "jsonl")))
    assert "'caption'" in missing.detail and "['key', 'image', 'alt']" in missing.detail


def test_configured_id_column_must_exist(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "i.jsonl", [{"caption": "c", "image": "a.jpg"}])
    (item,) = iter_jsonl(str(path), source(path, "jsonl", columns={"id": "uid"}))
    assert isinstance(item, Reject) and item.reason == "missing_column" and "'uid'" in item.detail


def test_gzipped_jsonl_reads_through_beam_filesystems(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"caption": "zip", "image": "a.jpg"}\n'))
    (item,) = iter_file(str(path), source(path, "jsonl"))
    assert isinstance(item, RawRecord) and item.fields["caption"] == "zip"


# --- CSV / TSV -------------------------------------------------------------------------


def test_csv_weak_rows_quoting_and_field_count(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text(
        "\ufeffimage,text,lang,anchor\n"
        'a.jpg,"line one\nline two, with comma",fr,\n'
        "\n"
        "b.jpg,only,two,fields,extra\n"
        "c.jpg,third,,an anchor\n",
        encoding="utf-8",
    )
    items = list(iter_csv(str(path), source(path, "csv", kind="weak", lang="xx")))
    first, bad, third = items
    assert isinstance(first, RawRecord)
    assert first.fields == {"text": "line one\nline two, with comma", "lang": "fr", "anchor": None, "anchor_lang": None}
    assert first.source_id == "w.csv:0" and first.image_path == str(tmp_path / "a.jpg")
    assert isinstance(bad, Reject) and bad.reason == "malformed_row" and "5 fields" in bad.detail
    assert isinstance(third, RawRecord) and third.source_id == "w.csv:3"
    assert third.fields == {"text": "third", "lang": "xx", "anchor": "an anchor", "anchor_lang": None}


def test_tsv_keeps_quotes_and_configured_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.tsv"
    path.write_text('file\tdesc\n"q.jpg"\tsaid "hi" \'there\'\n', encoding="utf-8")
    cfg = source(path, "tsv", columns={"image": "file", "caption": "desc"})
    (item,) = iter_tsv(str(path), cfg)
    assert isinstance(item, RawRecord) and item.fields["caption"] == "said \"hi\" 'there'"
    assert item.image_path == str(tmp_path / '"q.jpg"')


def test_csv_invalid_utf8_and_missing_header_column(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes(b"image,caption\na.jpg,good\nb.jpg,ba\xc3d\n")
    good, bad = iter_csv(str(path), source(path, "csv"))
    assert isinstance(good, RawRecord)
    assert (
        bad.reason == "invalid_utf8"
        and "column 'caption'" in bad.detail
        and "0xc3 at byte 2" in bad.detail
    )
    path.write_bytes(b"image,caption\na.jpg,good\nb.jpg,fine\n")
    cfg = source(path, "csv", columns={"caption": "alt"})
    got = list(iter_csv(str(path), cfg))
    assert [r.reason for r in got] == ["missing_column", "missing_column"]
    assert "no column 'alt' (role caption); the row has ['image', 'caption']" in got[0].detail


def test_parallel_tsv_with_lang_fallback(tmp_path: Path) -> None:
    path = tmp_path / "par.tsv"
    path.write_text("src\ttgt\ttgt_lang\nhello\thallo\tde\nbye\tciao\t\n", encoding="utf-8")
    items = list(
        iter_tsv(str(path), source(path, "tsv", kind="parallel", src_lang="en", tgt_lang="it"))
    )
    assert [i.fields for i in items] == [
        {"src": "hello", "tgt": "hallo", "src_lang": "en", "tgt_lang": "de"},
        {"src": "bye", "tgt": "ciao", "src_lang": "en", "tgt_lang": "it"},
    ]
    assert all(i.image is None and i.image_path is None for i in items)


# --- Parquet ---------------------------------------------------------------------------


def test_img2dataset_parquet_with_failed_row_and_batches(tmp_path: Path) -> None:
    path = img2dataset_parquet(tmp_path / "00000.parquet", n=300, failed=frozenset({1}))
    items = list(iter_parquet(str(path), source(path, "parquet", lang="en")))
    assert len(items) == 300  # every row is one record or one reject, across batches of 256
    failed = items[1]
    assert (
        isinstance(failed, Reject)
        and failed.reason == "download_failed"
        and failed.detail == "HTTP 404"
    )
    assert failed.source_id == "000000001"
    last = items[299]
    assert (
        isinstance(last, RawRecord)
        and last.source_id == "000000299"
        and last.provenance["row"] == 299
    )
    assert last.image == image_bytes("JPEG") and last.image_path is None
    assert last.fields == {"caption": "caption 299", "lang": "en"}
    assert last.provenance["url"] == "http://example.com/299.jpg"


def test_parquet_weak_with_image_paths_and_invalid_utf8_cell(tmp_path: Path) -> None:
    path = tmp_path / "weak.parquet"
    text = pa.array([b"ok", b"b\xffad"], pa.binary()).view(pa.string())
    pq.write_table(
        pa.table({"image": ["x/1.jpg", "2.jpg"], "text": text, "lang": ["sw", None]}), path
    )
    cfg = source(path, "parquet", kind="weak", columns={"image": "image"}, image_root="/imgs")
    good, bad = iter_parquet(str(path), cfg)
    assert isinstance(good, RawRecord) and good.image_path == "/imgs/x/1.jpg"
    assert good.fields == {"text": "ok", "lang": "sw", "anchor": None, "anchor_lang": None}
    assert (
        isinstance(bad, Reject) and bad.reason == "invalid_utf8" and "column 'text'" in bad.detail
    )


def test_truncated_parquet_and_missing_file_are_unreadable(tmp_path: Path) -> None:
    path = img2dataset_parquet(tmp_path / "t.parquet")
    path.write_bytes(path.read_bytes()[:-30])
    (item,) = iter_parquet(str(path), source(path, "parquet"))
    assert isinstance(item, Reject) and item.reason == "unreadable_file"
    assert item.source_id is None and item.raw == {"file": str(path)}
    missing = str(tmp_path / "nope.jsonl")
    (gone,) = iter_jsonl(missing, source(missing, "jsonl"))
    assert gone.reason == "unreadable_file" and missing in gone.detail


# --- WebDataset ------------------------------------------------------------------------


def build_shard(path: Path, members: list[tuple[str, bytes, dict[str, Any]]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data, info in members:
            add_member(tar, name, data, **info)
    return path


def test_webdataset_samples_and_rejects(tmp_path: Path) -> None:
    jpg, png = image_bytes("JPEG"), image_bytes("PNG")
    meta = json.dumps({"key": "k0", "caption": "from json", "url": "http://x/0"}).encode()
    path = build_shard(
        tmp_path / "shard.tar",
        [
            ("00000", b"", {"type": tarfile.DIRTYPE}),  # plain directory entry: not a sample
            ("00000/000.jpg", jpg, {}),
            ("00000/000.txt", b"from txt", {}),
            ("00000/000.json", meta, {}),
            ("00000/001.png", png, {}),
            ("00000/001.json", b'{"caption": "json only"}', {}),
            ("../evil.jpg", jpg, {}),
            ("../evil.txt", b"x", {}),
            ("/abs.jpg", jpg, {}),
            ("link.jpg", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),
            ("002.txt", b"no image", {}),
            ("003.jpg", jpg, {}),
            ("003.json", b'{"url": "http://x/3"}', {}),
            ("004.jpg", jpg, {}),
            ("004.txt", b"bad \xff", {}),
            ("005.jpg", jpg, {}),
            ("005.json", b"{not json", {}),
            ("hard.jpg", b"", {"type": tarfile.LNKTYPE, "linkname": "003.jpg"}),
            ("dev.jpg", b"", {"type": tarfile.CHRTYPE}),
        ],
    )
    items = list(iter_webdataset(str(path), source(path, "webdataset", lang="en")))
    got = [(i.source_id, getattr(i, "reason", "ok")) for i in items]
    assert got == [
        ("k0", "ok"),
        ("00000/001", "ok"),
        ("../evil", "unsafe_member"),
        ("/abs", "unsafe_member"),
        ("link", "unsafe_member"),
        ("002", "missing_image"),
        ("003", "missing_column"),
        ("004", "invalid_utf8"),
        ("005", "malformed_row"),
        ("hard", "unsafe_member"),
        ("dev", "unsafe_member"),
    ]
    first, second = items[0], items[1]
    assert first.fields == {"caption": "from txt", "lang": "en"} and first.image == jpg
    assert first.provenance == {
        "file": str(path),
        "row": 0,
        "url": "http://x/0",
        "member": "00000/000.jpg",
    }
    assert second.fields["caption"] == "json only" and second.image == png
    assert "symlink" in items[4].detail and "'..'" in items[2].detail
    assert items[2].raw["row"]["members"] == ["../evil.jpg", "../evil.txt"]


def test_webdataset_weak_text_from_json(tmp_path: Path) -> None:
    meta = json.dumps({"text": "ein Hund", "lang": "de", "anchor": "a dog"}).encode()
    path = build_shard(
        tmp_path / "w.tar", [("a.webp", image_bytes("WEBP"), {}), ("a.json", meta, {})]
    )
    (item,) = iter_webdataset(str(path), source(path, "webdataset", kind="weak"))
    assert isinstance(item, RawRecord) and item.fields == {
        "text": "ein Hund",
        "lang": "de",
        "anchor": "a dog",
        "anchor_lang": None,
    }


def test_webdataset_refuses_oversized_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_webdataset, "MAX_MEMBER_BYTES", 100)
    path = build_shard(tmp_path / "big.tar", [("a.jpg", b"x" * 101, {}), ("a.txt", b"c", {})])
    (item,) = iter_webdataset(str(path), source(path, "webdataset"))
    assert isinstance(item, Reject) and item.reason == "member_too_large"


def test_truncated_tar_keeps_earlier_samples(tmp_path: Path) -> None:
    big = os.urandom(20000)
    path = build_shard(
        tmp_path / "cut.tar",
        [("a.jpg", big, {}), ("a.txt", b"first", {}), ("b.jpg", big, {}), ("b.txt", b"second", {})],
    )
    path.write_bytes(path.read_bytes()[:30000])
    items = list(iter_webdataset(str(path), source(path, "webdataset")))
    assert [getattr(i, "reason", i.source_id) for i in items] == ["a", "unreadable_file"]


# --- parallel text files ---------------------------------------------------------------


def test_parallel_files_alignment_and_invalid_utf8(tmp_path: Path) -> None:
    src, tgt = tmp_path / "train.en", tmp_path / "train.de"
    src.write_bytes(b"hello\r\n\nbad \xff\nfour\nfive\n")
    tgt.write_bytes(b"hallo\n\nschlecht\n")
    cfg = SourceConfig(
        name="src",
        format="parallel_files",
        kind="parallel",
        paths=[str(src)],
        tgt_paths=[str(tgt)],
        src_lang="en",
        tgt_lang="de",
    )
    items = list(iter_parallel_files(str(src), cfg))  # target looked up from the config
    got = [(i.source_id, getattr(i, "reason", "ok")) for i in items]
    assert got == [
        ("train.en:0", "ok"),
        ("train.en:1", "ok"),
        ("train.en:2", "invalid_utf8"),
        ("train.en:3", "unaligned"),
        ("train.en:4", "unaligned"),
    ]
    assert items[0].fields == {"src": "hello", "tgt": "hallo", "src_lang": "en", "tgt_lang": "de"}
    assert items[1].fields["src"] == ""  # empty lines stay, or alignment would shift
    assert "column 'src'" in items[2].detail


# --- globs and Beam --------------------------------------------------------------------


def test_match_paths_sorts_and_fails_early(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl"):
        write_jsonl(tmp_path / name, [])
    cfg = source(tmp_path / "*.jsonl", "jsonl")
    assert match_paths(cfg) == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    cfg.paths.append(str(tmp_path / "missing-*.jsonl"))
    with pytest.raises(ValueError, match=r"'src'.*missing-\*\.jsonl"):
        match_paths(cfg)
    with pytest.raises(ValueError, match="no file matches"):
        _ = beam.Pipeline(runner="FnApiRunner") | ReadSource(
            cfg
        )  # at construction, not on a worker


def test_read_source_in_beam(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"key": "a1", "caption": "x", "image": "1.jpg"}, "{oops\n"])
    write_jsonl(
        tmp_path / "b.jsonl",
        [{"key": "b1", "caption": "y", "image": "2.jpg"}, {"key": "b2", "image": "3.jpg"}],
    )
    (tmp_path / "p.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "p.de").write_text("eins\nzwei\n", encoding="utf-8")
    pairs = source(tmp_path / "*.jsonl", "jsonl")
    parallel = SourceConfig(
        name="par",
        format="parallel_files",
        kind="parallel",
        paths=[str(tmp_path / "*.en")],
        tgt_paths=[str(tmp_path / "*.de")],
    )
    pipeline = beam.Pipeline(runner="FnApiRunner", options=PipelineOptions([]))
    records_a, rejects_a = pipeline | ReadSource(pairs)
    records_b, rejects_b = pipeline | ReadSource(parallel)  # distinct default labels
    records_pc = (records_a, records_b) | "Records" >> beam.Flatten()
    rejects_pc = (rejects_a, rejects_b) | "Rejects" >> beam.Flatten()
    assert_that(
        records_pc | "Ids" >> beam.Map(lambda r: (r.source, r.source_id)),
        equal_to([("src", "a1"), ("src", "b1"), ("par", "p.en:0"), ("par", "p.en:1")]),
        label="records",
    )
    assert_that(
        rejects_pc | "Reasons" >> beam.Map(lambda r: (r.source_id, r.reason)),
        equal_to(
            [
                ("a.jsonl:1", "malformed_row"),
                ("b2", "missing_column"),
                ("p.en:2", "unaligned"),
            ]
        ),
        label="rejects",
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = {}  # per step; summed over both sources
    for c in result.metrics().query(MetricsFilter().with_namespace("m3curate.read"))["counters"]:
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed
    assert counters == {"files": 3, "records": 4, "rejected": 3}
