"""A build of a small generated corpus with the regions (demo shapes) and concepts stages:
the rows validate, every text and region has its concepts, concepts.txt is listed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.concepts.vocab import demo_vocabulary, write_vocabulary
from curation.config import load_config
from curation.demo import synth
from curation.demo.corpus import write_corpus
from curation.demo.run import add_codeswitch
from curation.demo.synth import LANGUAGES
from curation.output.manifest import shard_files
from curation.pipeline import run_build
from schemas.dataset import check_shards, validate_dataset


@pytest.fixture(scope="module")
def built(tmp_path_factory, lid_model_path: str) -> Path:
    root = tmp_path_factory.mktemp("concepts_build")
    toml = write_corpus(root, n=24, seed=5)
    write_vocabulary(str(root / "inputs" / "concepts.txt"), demo_vocabulary(synth))
    stages = f'\n[lid]\nmodel = "{lid_model_path}"\nlow_confidence = "und"\n' + add_codeswitch(root, LANGUAGES)
    stages += '\n[regions]\nsource = "shapes"\nmissing = "keep"\n\n[concepts]\nvocabulary = "inputs/concepts.txt"\n'
    with toml.open("a", encoding="utf-8") as handle:
        handle.write(stages)
    run_build(load_config(toml), str(root / "dataset"))
    return root / "dataset"


def _rows(directory: Path) -> list[dict]:
    return [r for p in shard_files(str(directory), "pairs") for r in pq.read_table(p).to_pylist()]


def test_rows_validate_and_carry_regions_and_concepts(built: Path):
    manifest = validate_dataset(str(built))
    rows = _rows(built)
    assert rows and manifest["schema_version"] == "1.2"
    vocabulary = (built / "concepts.txt").read_text().splitlines()
    assert vocabulary == demo_vocabulary(synth)
    for row in rows:
        regions = row["regions"]
        assert regions["extractor"] == "demo-shapes:v1" and len(regions["boxes"]) >= 1
        assert len(regions["concepts"]) == len(regions["labels"]) and set(regions["concepts"]) <= set(synth.SHAPES)
        for text in row["texts"]:
            assert text["concepts"] is not None and set(text["concepts"]) <= set(vocabulary)
            assert len(set(text["concepts"])) == len(text["concepts"])
        caption = next(t for t in row["texts"] if t["kind"] == "caption")
        # the strict caption names every shape the detector labelled
        assert set(regions["concepts"]) <= set(caption["concepts"])


def test_code_switched_texts_get_the_concepts_of_their_source(built: Path):
    switched = [(row["texts"][t["derived_from"]], t) for row in _rows(built) for t in row["texts"]
                if t["kind"] == "codeswitch"]
    assert switched
    same = sum(set(src["concepts"]) == set(t["concepts"]) for src, t in switched)
    assert same == len(switched)


def test_concepts_file_is_listed_like_a_shard_and_counters_run(built: Path):
    manifest = json.loads((built / "manifest.json").read_text())
    data = (built / "concepts.txt").read_bytes()
    entry = manifest["files"]["concepts"]
    assert entry == [{"path": "concepts.txt", "rows": 19, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    assert manifest["concepts"]["source"] == "concepts.txt" and manifest["concepts"]["concepts"] == 19
    check_shards(str(built), manifest, ("concepts",), digests=True)
    counters = json.loads((built / "run.json").read_text())["counters"]
    assert counters["concepts/texts"] == counters["concepts/texts_with_concepts"] + counters.get(
        "concepts/texts_without_concepts", 0)
    assert counters["concepts/texts_with_concepts"] > 0
    assert counters["regions/in"] == counters["regions/kept"] == counters["regions/with_regions"]
    assert counters["concepts/boxes_mapped"] == counters["regions/boxes"] > 0
    stages = [s["stage"] for s in manifest["counts"]["stages"]]
    assert stages[-5:] == ["split", "regions", "lid", "codeswitch", "concepts"]
