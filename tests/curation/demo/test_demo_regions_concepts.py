"""The demo build runs [regions] (shape detector) and [concepts] (the generator's words):
every image's detected shapes are concepts of its English caption, and concepts.txt is the
generator's vocabulary, listed in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from curation.concepts.vocab import demo_vocabulary
from curation.demo import synth


def _rows(dataset: Path) -> list[dict]:
    return [row for path in sorted((dataset / "pairs").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_demo_dataset_has_regions_and_concepts(demo_out: Path) -> None:
    dataset = demo_out / "dataset"
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert (dataset / "concepts.txt").read_text(encoding="utf-8").split("\n")[:-1] == demo_vocabulary(synth)
    assert [entry["path"] for entry in manifest["files"]["concepts"]] == ["concepts.txt"]
    rows = _rows(dataset)
    with_regions = [row for row in rows if row["regions"]]
    assert len(with_regions) >= 0.95 * len(rows)
    for row in with_regions:
        regions = row["regions"]
        assert regions["extractor"] == "demo-shapes:v1"
        assert len(regions["boxes"]) == len(regions["features"]) == len(regions["labels"]) == len(regions["concepts"])
        assert set(regions["labels"]) <= set(synth.SHAPES)
        english = [t for t in row["texts"] if t["kind"] == "caption" and t["lang"] == "en"]
        for text in english:  # what the detector saw is what the caption says (the demo's images are clean)
            assert set(regions["concepts"]) <= set(text["concepts"]), (text["text"], regions["concepts"])
    texts = [t for row in rows for t in row["texts"]]
    assert all(t["concepts"] is not None for t in texts)
    by_lang = {t["lang"]: t for t in texts if t["kind"] in ("caption", "translation") and t["concepts"]}
    assert {"en", "de", "fr", "es"} <= set(by_lang)  # other languages reach concepts through the dictionaries
