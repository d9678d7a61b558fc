"""Input readers: each format's records and rejects, on tiny files generated per test."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

# --- helpers ---------------------------------------------------------------------------
from read_helpers import (  # noqa: E402
    image_bytes,
    img2dataset_parquet,
    rejects,
    source,
    write_jsonl,
)

from curation.config import SourceConfig
from curation.read.records import RawRecord, record_id
from curation.read.source import (
    ReadSource,
    iter_csv,
    iter_file,
    iter_jsonl,
    iter_parallel_files,
    iter_parquet,
    iter_tsv,
    match_paths,
)
from schemas.rows import Reject, reject_row


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
    # "any": the absolute path outside the file's folder is trusted (see test_image_paths.py)
    items = list(iter_jsonl(str(path), source(path, "jsonl", lang="en", split="val", image_paths="any")))
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
    for c in result.metrics().query(MetricsFilter().with_namespace("read"))["counters"]:
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed
    assert counters == {"files": 3, "in": 7, "kept": 4, "rejected_malformed_row": 1, "rejected_missing_column": 1,
                        "rejected_unaligned": 1}


@pytest.mark.parametrize("data", [b"\xef", b"\xef\xbb"])
def test_a_file_of_only_a_partial_bom_is_one_bad_row_not_nothing(tmp_path: Path, data: bytes) -> None:
    """Python's utf-8-sig decoder drops such a file's bytes; the reader must not (found by the fuzz tests)."""
    path = tmp_path / "bom.jsonl"
    path.write_bytes(data)
    (item,) = iter_jsonl(str(path), source(path, "jsonl"))
    assert isinstance(item, Reject) and item.reason == "invalid_utf8"
    bom_only = tmp_path / "b.jsonl"
    bom_only.write_bytes(b"\xef\xbb\xbf")
    assert list(iter_jsonl(str(bom_only), source(bom_only, "jsonl"))) == []
