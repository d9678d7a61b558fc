"""Splits without leakage (curation/clean/splits.py): one image, one split; a held-out
caption's duplicates join it; nothing is dropped; moves chain across rounds."""

from __future__ import annotations

import tempfile

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from curation.clean.keys import unique_rows
from curation.clean.splits import moves, rank
from schemas.rows import text_entry


def row(rid: str, split: str, image: str, caption: str) -> dict:
    return {"id": rid, "source": "src", "source_id": rid, "split": split,
            "provenance": {"file": "f", "row": 0, "url": None, "member": None},
            "image": {"sha256": image}, "texts": [
                text_entry(caption, "caption", "src", "en"), text_entry("ein Bild", "weak", "src", "de", anchor=0)]}


def assign_splits(p: beam.Pipeline, rows: list[dict]) -> beam.PCollection:
    """The rows through the spine's decisions with dedup off: only split moves apply."""
    splits = {r["split"] for r in rows}
    directory = tempfile.mkdtemp(prefix="splits-")
    kept, _ = unique_rows(p | beam.Create(rows), "Pairs", "none", splits, directory)
    return kept


def test_rank_puts_test_first_and_train_last():
    assert sorted(["train", "zzz", "val", "test", "dev", "aaa"], key=rank) == ["test", "val", "dev", "aaa", "zzz",
                                                                                "train"]
    assert list(moves(("k", [("a", "train"), ("b", "test"), ("c", "val")]))) == [("a", "test"), ("c", "test")]


def run(rows: list[dict], expected: list[tuple[str, str]]) -> dict[str, int]:
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    out = assign_splits(p, rows)
    assert_that(out | beam.Map(lambda r: (r["id"], r["split"])), equal_to(expected))
    result = p.run()
    result.wait_until_finish()
    return {c.key.metric.name: c.committed for c in
            result.metrics().query(MetricsFilter().with_namespace("split"))["counters"]}


def test_an_image_and_its_duplicate_captions_stay_in_one_split():
    rows = [row("t1", "train", "img-a", "a red circle"),     # same image as a test row
            row("x1", "test", "img-a", "a blue square"),
            row("t2", "train", "img-b", "a blue square"),    # same caption as x1 (test)
            row("t3", "train", "img-b", "a green star"),     # same image as t2: follows it (round 2)
            row("t4", "train", "img-c", "a green star"),     # same caption as t3: follows it (round 3)
            row("v1", "val", "img-d", "a yellow moon"),
            row("t5", "train", "img-e", "a yellow moon"),    # caption of a val row
            row("t6", "train", "img-f", "nothing shared")]
    counters = run(rows, [("t1", "test"), ("t2", "test"), ("t3", "test"), ("t4", "test"), ("t5", "val"),
                          ("t6", "train"), ("v1", "val"), ("x1", "test")])
    assert counters == {"in": 8, "kept": 8, "moved_train_to_test": 4, "moved_train_to_val": 1}


def test_rows_are_unchanged_apart_from_their_split():
    rows = [row("t1", "train", "img-a", "x"), row("x1", "test", "img-a", "y")]
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    out = assign_splits(p, rows)
    assert_that(out, equal_to([{**rows[0], "split": "test"}, rows[1]]))
    p.run().wait_until_finish()
