"""The spine's decisions on key records, applied to rows streamed back from disk
(curation/clean/keys.py): repeated ids, duplicates and split moves give the rows and
rejects they gave when the rows themselves were grouped."""

from __future__ import annotations

import hashlib
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from curation.clean.keys import KeyRecord, _ApplyFn, key_record, unique_rows
from curation.output.runs import RunWriter, encode_row
from schemas.rows import text_entry


def pair(source_id: str, caption: str, image: bytes, row: int = 0, rid: str | None = None, split: str = "train"
         ) -> dict:
    return {"id": rid or f"id-{source_id}", "source": "s", "source_id": source_id, "split": split,
            "provenance": {"file": "f.jsonl", "row": row, "url": None, "member": None},
            "image": {"bytes": image, "width": 8, "height": 8, "format": "JPEG",
                      "sha256": hashlib.sha256(image).hexdigest()},
            "regions": None, "texts": [text_entry(caption, "caption", "s", "en")]}


SEEN: dict[str, list] = {}


def collect(element, name: str) -> None:
    SEEN[name].append(element)  # FnApiRunner runs in this process; this module is pickled by reference


def run(rows: list[dict], tmp_path: Path, splits=("train",), key: str = "image+caption"
        ) -> tuple[list[dict], list, dict[str, int]]:
    kept, rejected = SEEN["kept"], SEEN["rejected"] = [], []
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    out, rejects = unique_rows(p | beam.Create(rows), "Pairs", key, splits, str(tmp_path))
    out | "Kept" >> beam.Map(collect, "kept")
    rejects | "Rejected" >> beam.Map(collect, "rejected")
    result = p.run()
    result.wait_until_finish()
    counters = {f"{c.key.metric.namespace}/{c.key.metric.name}": c.committed
                for c in result.metrics().query(MetricsFilter())["counters"]
                if c.key.metric.namespace in ("dedup", "split")}
    return kept, rejected, counters


def test_a_repeated_id_keeps_the_first_by_provenance_and_stays_out_of_dedup(tmp_path: Path):
    rows = [pair("a", "one", b"1", row=2, rid="X"),   # same id as the next, later in the file
            pair("a", "two", b"2", row=1, rid="X"),   # first: kept
            pair("b", "one", b"1", row=3)]            # same content as the rejected X: not a duplicate of it
    kept, rejected, counters = run(rows, tmp_path)
    assert sorted((r["id"], r["provenance"]["row"]) for r in kept) == [("X", 1), ("id-b", 3)]
    (reject,) = rejected
    assert (reject.key, reject.record_id) == ("dedup/duplicate_id", "X")
    assert "at f.jsonl:1, was kept" in reject.detail and "bytes" not in reject.raw["image"]
    assert counters == {"dedup/rejected_duplicate_id": 1, "dedup/in": 2, "dedup/kept": 2,
                        "split/in": 2, "split/kept": 2}


def test_duplicates_keep_the_smallest_identity_and_name_it(tmp_path: Path):
    rows = [pair(k, "same", b"img") for k in ("k3", "k1", "k2")] + [pair("k0", "other", b"img")]
    kept, rejected, counters = run(rows, tmp_path)
    assert sorted(r["source_id"] for r in kept) == ["k0", "k1"]
    assert sorted((r.source_id, r.key) for r in rejected) == [("k2", "dedup/duplicate"), ("k3", "dedup/duplicate")]
    assert all("as kept record s:k1 (id id-k1)" in r.detail and "same image+caption" in r.detail for r in rejected)
    assert counters["dedup/rejected_duplicate"] == 2 and counters["dedup/kept"] == 2


def test_dedup_off_keeps_duplicates_and_counts_nothing_in_dedup(tmp_path: Path):
    rows = [pair(k, "same", b"img") for k in ("k1", "k2")]
    kept, rejected, counters = run(rows, tmp_path, key="none")
    assert len(kept) == 2 and not rejected
    assert counters == {"split/in": 2, "split/kept": 2}


def test_a_moved_row_is_the_same_row_in_its_new_split(tmp_path: Path):
    rows = [pair("t", "a dog", b"A"), pair("x", "a cat", b"A", split="test")]
    kept, _, counters = run(rows, tmp_path, splits=("train", "test"))
    assert sorted(kept, key=lambda r: r["id"]) == [{**rows[0], "split": "test"}, rows[1]]
    assert counters["split/moved_train_to_test"] == 1


def test_apply_streams_many_runs_and_decisions_in_id_order(tmp_path: Path):
    """Rows in several runs (a tiny budget), decisions in another: each row meets its own."""
    rows = [pair(f"k{i:03d}", f"c{i}", bytes([i])) for i in range(60)]
    runs = RunWriter(str(tmp_path), budget=500)
    segments = [s for r in rows for _, s in runs.add(0, r["id"], encode_row(r))] + [s for _, s in runs.flush()]
    assert len(segments) > 3
    decisions = RunWriter(str(tmp_path))
    decisions.add(0, "id-k010", encode_row(("duplicate", ("s", "k009", "id-k009"))))
    decisions.add(0, "id-k020", encode_row(("split", "test")))
    decided = [s for _, s in decisions.flush()]
    fn = _ApplyFn("pairs", "image")
    out = list(fn.process((0, [("rows", s) for s in segments] + [("decisions", s) for s in decided])))
    rows_out = [o for o in out if isinstance(o, dict)]
    rejects = [o.value for o in out if not isinstance(o, dict)]
    assert [r["id"] for r in rows_out] == sorted(r["id"] for r in rows if r["id"] != "id-k010")
    assert [r["split"] for r in rows_out if r["id"] == "id-k020"] == ["test"]
    assert [(r.record_id, r.detail) for r in rejects] == [("id-k010", "same image as kept record s:k009 (id id-k009)")]


def test_a_key_record_is_small_and_holds_what_the_decisions_read():
    row = pair("k1", "a caption", b"x" * 5000)
    record = KeyRecord(*key_record(row, "pairs", "image+caption"))
    assert (record.id, record.source_id, record.provenance, record.split) == ("id-k1", "k1", ("f.jsonl", 0, ""), "train")
    assert record.image == row["image"]["sha256"] and len(record.captions) == 1
    assert len(encode_row(tuple(record))) < 300 < len(encode_row(row))
