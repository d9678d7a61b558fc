"""Dedup, the deterministic shard writer, manifest reconciliation and the commit protocol."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from curation.clean.dedup import pair_key
from curation.clean.keys import unique_rows
from curation.config import OutputConfig
from curation.output import manifest as manifest_lib
from curation.output import outdir
from curation.output.write import CountInputs, SortIntoRuns, WriteDataset, shard_name, write_shard
from schemas.dataset import DatasetError, validate_dataset
from schemas.rows import Reject, text_entry


def row(i: int, caption: str = "a red circle", image: bytes | None = None, source: str = "s") -> dict:
    data = image if image is not None else f"img{i}".encode()
    return {
        "id": f"{source}-{i:04d}",
        "source": source,
        "source_id": f"k{i:04d}",
        "split": "train",
        "provenance": {"file": "f.jsonl", "row": i, "url": None, "member": None},
        "image": {"bytes": data, "width": 8, "height": 8, "format": "JPEG", "sha256": hashlib.sha256(data).hexdigest()},
        "regions": None,
        "texts": [text_entry(caption, "caption", source, "en")],
    }


def options() -> PipelineOptions:
    return PipelineOptions([], runner="FnApiRunner")


def test_dedup_keeps_smallest_source_id_and_names_it(tmp_path):
    rows = [row(3, image=b"same"), row(1, image=b"same"), row(2, image=b"same")]
    with beam.Pipeline(options=options()) as p:
        kept, rejects = unique_rows(p | beam.Create(rows), "Pairs", "image+caption", ["train"], str(tmp_path))
        assert_that(kept | "Ids" >> beam.Map(lambda r: r["source_id"]), equal_to(["k0001"]), label="kept")
        assert_that(rejects | "Rejects" >> beam.Map(lambda r: (r.source_id, r.key, "s:k0001" in r.detail,
                                                                "bytes" in r.raw["image"])),
                    equal_to([("k0002", "dedup/duplicate", True, False), ("k0003", "dedup/duplicate", True, False)]),
                    label="rejects")


def test_dedup_keys():
    a, b = row(1, image=b"same"), row(2, image=b"same", caption="other")
    assert pair_key(a, "image") == pair_key(b, "image")
    assert pair_key(a, "image+caption") != pair_key(b, "image+caption")
    assert pair_key(a, "caption") == pair_key(row(3), "caption")
    assert pair_key(a, "none") is None


def write_and_read(tmp_path, rows, name):
    path = str(tmp_path / name)
    write_shard(rows, "pairs", path, OutputConfig())
    return Path(path).read_bytes()


def test_shards_are_byte_identical_whatever_the_input_order(tmp_path):
    rows = [row(i) for i in range(20)]
    first = write_and_read(tmp_path, rows, "a.parquet")
    second = write_and_read(tmp_path, list(reversed(rows)), "b.parquet")
    assert first == second
    assert pq.read_table(tmp_path / "a.parquet").column("id").to_pylist() == sorted(r["id"] for r in rows)


def run_write(tmp_path, rows, rejects, per_shard=7):
    directory = str(tmp_path / "stage")
    with beam.Pipeline(options=options()) as p:
        pairs = p | "Pairs" >> beam.Create(rows)
        uniq, dups = unique_rows(pairs, "Pairs", "image+caption", ["train"], directory)
        read_rejects = p | "Rejects" >> beam.Create(rejects)
        rej = (read_rejects, dups) | SortIntoRuns("rejects", directory)
        par = p | "Parallel" >> beam.Create([])
        {"pairs": uniq, "parallel": par, "rejects": rej} | WriteDataset(directory, OutputConfig(rows_per_shard=per_shard))
        (pairs, read_rejects) | CountInputs(directory)
    return directory


def test_pipeline_writes_reconciled_shards(tmp_path):
    rows = [row(i) for i in range(30)] + [row(100, image=b"img5"), row(101, image=b"img6")]
    rows[-1]["source_id"] = "k0006b"
    reject = Reject("read", "invalid_utf8", "bad byte 0xff at 3", "s", "k9999", {"row": {"caption": "x\udcff"}}, "r1")
    directory = run_write(tmp_path, rows, [reject])
    m = manifest_lib.build_manifest({"x": 1}, directory)
    counts = m["counts"]
    assert counts["input_records"] == 33
    assert counts["output_records"] == 30
    assert counts["rejected_by_reason"] == {"dedup/duplicate": 2, "read/invalid_utf8": 1}
    assert counts["reconciled"] and counts["by_source"]["s"]["reconciled"]
    stages = {s["stage"]: s for s in counts["stages"]}
    assert stages["read"]["output"] == 32 and stages["dedup"]["output"] == 30
    assert len(m["files"]["pairs"]) == 5  # ceil(32 / 7) shards, counted before dedup
    assert m["languages"] == {"en": 30}
    manifest_lib.check(m)


def test_two_runs_give_identical_bytes(tmp_path):
    rows = [row(i) for i in range(25)]
    a = run_write(tmp_path / "a", rows, [])
    b = run_write(tmp_path / "b", list(reversed(rows)), [])
    files_a = manifest_lib.shard_files(a, "pairs")
    files_b = manifest_lib.shard_files(b, "pairs")
    assert [f.split("/")[-1] for f in files_a] == [f.split("/")[-1] for f in files_b]
    assert all(Path(x).read_bytes() == Path(y).read_bytes() for x, y in zip(files_a, files_b, strict=True))


def test_unreconciled_counts_fail():
    summary = {"files": {"pairs": [{"rows": 3}], "parallel": [], "rejects": []}, "output_by_source": {"s": 3},
               "record_rejects": Counter(), "text_rejects": Counter(), "rejected_by_source": Counter()}
    counts = manifest_lib.reconcile({"s": 4}, summary)
    assert not counts["reconciled"]
    with pytest.raises(manifest_lib.ReconciliationError, match="s: 4 in, 3 out, 0 rejected"):
        manifest_lib.check({"counts": counts})


def test_commit_refuses_then_replaces_without_mixing(tmp_path):
    out = str(tmp_path / "ds")
    staging = outdir.prepare(out, overwrite=False)
    write_shard([row(i) for i in range(5)], "pairs", f"{staging}/pairs/{shard_name(0, 2)}", OutputConfig())
    write_shard([row(i) for i in range(5, 9)], "pairs", f"{staging}/pairs/{shard_name(1, 2)}", OutputConfig())
    outdir.commit(staging, out, manifest_lib.build_manifest({}, staging))
    assert validate_dataset(out)["counts"]["pairs_rows"] == 9
    with pytest.raises(outdir.OutputExistsError, match="--overwrite"):
        outdir.prepare(out, overwrite=False)
    staging = outdir.prepare(out, overwrite=True)
    write_shard([row(i) for i in range(3)], "pairs", f"{staging}/pairs/{shard_name(0, 1)}", OutputConfig())
    outdir.commit(staging, out, manifest_lib.build_manifest({}, staging))
    names = sorted(p.name for p in (tmp_path / "ds" / "pairs").iterdir())
    assert names == [shard_name(0, 1)]
    assert not [p for p in (tmp_path / "ds").iterdir() if p.name.startswith(".staging-")]
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["counts"]["pairs_rows"] == 3


def test_interrupted_build_is_cleaned_and_foreign_dirs_refused(tmp_path):
    out = str(tmp_path / "ds")
    staging = outdir.prepare(out, overwrite=False)
    write_shard([row(1)], "pairs", f"{staging}/pairs/{shard_name(0, 1)}", OutputConfig())
    # crash here: no commit; no manifest, so the dataset is not readable ...
    with pytest.raises(DatasetError, match="no manifest.json"):
        validate_dataset(out)
    # ... and the next run cleans the leftovers without --overwrite
    outdir.prepare(out, overwrite=False)
    assert staging.split("/")[-1] not in [p.name for p in (tmp_path / "ds").iterdir()]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(outdir.OutputExistsError, match="not written by m3curate"):
        outdir.prepare(str(foreign), overwrite=False)


def test_validate_dataset_detects_missing_and_altered_shards(tmp_path):
    out = str(tmp_path / "ds")
    staging = outdir.prepare(out, overwrite=False)
    write_shard([row(i) for i in range(4)], "pairs", f"{staging}/pairs/{shard_name(0, 1)}", OutputConfig())
    outdir.commit(staging, out, manifest_lib.build_manifest({}, staging))
    shard = tmp_path / "ds" / "pairs" / shard_name(0, 1)
    write_shard([row(i) for i in range(2)], "pairs", str(shard), OutputConfig())
    with pytest.raises(DatasetError, match="2 rows, manifest says 4"):
        validate_dataset(out)
    shard.unlink()
    with pytest.raises(DatasetError, match="missing"):
        validate_dataset(out)
