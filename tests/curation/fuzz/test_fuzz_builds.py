"""Whole builds on hostile input, and hostile [[sources]] settings (issue 13.3).

A build either finishes with input = output + rejected (the manifest reconciles, the
dataset validates) or fails before the pipeline with a one-line ``ConfigError``; it never
crashes in the middle and never drops a record silently.
"""

from __future__ import annotations

from typing import Any

from fuzz_inputs import (
    BUILD_EXAMPLES,
    json_values,
    jsonl_bytes,
    members,
    png,
    rows,
    samples_in,
    write_tar,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.config import (
    FORMATS,
    ConfigError,
    SourceConfig,
    config_from_dict,
    load_config,
)
from curation.pipeline import run_build
from schemas.dataset import validate_dataset

SOURCE_FIELDS = [f for f in SourceConfig.__dataclass_fields__ if f not in ("name", "format", "paths")]
toml_values = json_values.filter(lambda v: v is not None) | st.sampled_from(["confined", "any", "pair", "weak"])


@given(src=st.fixed_dictionaries(
    {"name": st.text(max_size=8) | st.integers(), "format": st.sampled_from(FORMATS) | st.text(max_size=6),
     "paths": st.lists(st.text(max_size=8), max_size=2) | st.text(max_size=8) | st.integers()},
    optional={name: toml_values for name in SOURCE_FIELDS},
) | json_values)
def test_source_settings_are_accepted_or_refused_in_one_line(src: Any) -> None:
    try:
        cfg = config_from_dict({"sources": [src]}, "/base")
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)
        return
    (source,) = cfg.sources
    assert all(isinstance(p, str) for p in source.paths) and source.image_paths in ("confined", "any")


BUILD_TOML = """
[[sources]]
name = "table"
format = "jsonl"
kind = "{kind}"
paths = ["data/c.jsonl"]
lang = "en"

[[sources]]
name = "shards"
format = "webdataset"
kind = "{kind}"
paths = ["data/s.tar"]

[image]
min_side = 8
"""


@settings(max_examples=BUILD_EXAMPLES)
@given(rows_=st.lists(rows, max_size=5), members_=members, kind=st.sampled_from(["pair", "weak"]))
def test_build_reconciles_on_random_rows_and_members(tmp_path_factory, rows_, members_, kind) -> None:
    root = tmp_path_factory.mktemp("build")
    (root / "data").mkdir()
    (root / "data" / "img.png").write_bytes(png())
    (root / "data" / "c.jsonl").write_bytes(jsonl_bytes(rows_, False))
    shard = write_tar(members_)
    (root / "data" / "s.tar").write_bytes(shard)
    (root / "b.toml").write_text(BUILD_TOML.format(kind=kind))
    cfg = load_config(root / "b.toml")
    manifest = run_build(cfg, str(root / "ds"))
    counts = manifest["counts"]
    assert counts["reconciled"]
    inputs = {name: c["input"] for name, c in counts["by_source"].items()}
    assert inputs.get("table", 0) == len(rows_) and inputs.get("shards", 0) == samples_in(shard)
    assert counts["input_records"] == counts["output_records"] + counts["rejected_records"]
    validate_dataset(str(root / "ds"))


def test_two_records_with_one_id_become_one_row_and_a_reject(tmp_path) -> None:
    """Found by the fuzzer: a repeated `key` crashed the writer (pairs: column 'id': has
    duplicate values); the first record is kept, the other is dedup/duplicate_id."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "img.png").write_bytes(png())
    two = [{"key": "a", "caption": "a red cat", "image": "img.png"}, {"key": "a", "caption": "a blue dog",
                                                                         "image": "img.png"}]
    (tmp_path / "data" / "c.jsonl").write_bytes(jsonl_bytes(two, True))
    (tmp_path / "data" / "s.tar").write_bytes(write_tar([]))
    (tmp_path / "b.toml").write_text(BUILD_TOML.format(kind="pair"))
    manifest = run_build(load_config(tmp_path / "b.toml"), str(tmp_path / "ds"))
    assert manifest["counts"]["reconciled"] and manifest["counts"]["output_records"] == 1
    assert manifest["counts"]["rejected_by_reason"] == {"dedup/duplicate_id": 1}
    import pyarrow.parquet as pq

    (kept,) = pq.read_table(tmp_path / "ds" / "pairs").to_pylist()
    assert kept["texts"][0]["text"] == "a red cat"  # the first in the file
