"""The dataset card written with every build: YAML front matter that parses, one config per
table that has shards, features from the declared schemas."""

from __future__ import annotations

import yaml

from curation.output.card import CARD_SPLIT, render_card


def manifest(parallel_files: list[dict]) -> dict:
    counts = {"pairs_rows": 2, "parallel_rows": 0, "input_records": 3, "output_records": 2, "rejected_records": 1,
              "by_source": {"cc": {"input": 3, "output": 2, "rejected": 1}}}
    return {"schema_version": "1.1", "counts": counts, "languages": {"de": 1, "en": 2, "und": 1, "zh_Hant": 1},
            "files": {"pairs": [{"path": "pairs/part-00000-of-00001.parquet", "rows": 2}], "parallel": parallel_files}}


def test_card_front_matter_parses_and_lists_only_tables_with_shards():
    card = render_card(manifest([]))
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert [c["config_name"] for c in meta["configs"]] == ["pairs"]
    assert meta["configs"][0]["data_files"] == [{"split": CARD_SPLIT, "path": "pairs/*.parquet"}]
    assert meta["language"] == ["de", "en", "zh"]
    texts = next(f for f in meta["dataset_info"][0]["features"] if f["name"] == "texts")
    assert {"name": "relevance", "dtype": "float32"} in texts["list"]
    with_parallel = yaml.safe_load(render_card(manifest([{"path": "parallel/p.parquet", "rows": 4}])).split("---\n")[1])
    assert [c["config_name"] for c in with_parallel["configs"]] == ["pairs", "parallel"]
    assert render_card(manifest([])) == card  # deterministic, like the manifest
