"""A build's rows never wait in FnApiRunner's memory (issue 12.1): between fused stages the
runner holds whole PCollections (ListBuffer) and everything behind a GroupByKey
(GroupingBuffer). With the rows on disk (curation/clean/keys.py, the writer's runs) those
hold only run descriptors, key records' runs and counts, whatever the build's size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.config import load_config
from curation.demo.synth import encode_jpeg, render, sample_rng, sample_scene
from curation.pipeline import run_build

PAIRS = 400


def corpus(root: Path, n: int) -> tuple[Path, int]:
    """n JSONL pairs naming 80 JPEGs: source "a" (train), and every tenth row in source "b"
    (test, its own images); every tenth row of "a" repeats the one before. Returns the
    config and the image bytes the rows name."""
    (root / "images").mkdir(parents=True)
    images = [encode_jpeg(render(sample_scene(sample_rng(5, "buffers", i)), 64)) for i in range(80)]
    for i, data in enumerate(images):
        (root / "images" / f"{i}.jpg").write_bytes(data)
    lines: dict[str, list[str]] = {"a": [], "b": []}
    named = 0
    for i in range(n):
        j = i - 1 if i % 10 == 9 else i  # a duplicate of the row before
        image = j % 40 + (40 if i % 10 == 5 else 0)
        named += len(images[image])
        lines["b" if i % 10 == 5 else "a"].append(json.dumps({"key": f"k{i}", "caption": f"picture {j}",
                                                              "image": f"images/{image}.jpg"}))
    for name, rows in lines.items():
        (root / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    sources = "".join(f'[[sources]]\nname = "{name}"\nformat = "jsonl"\nkind = "pair"\npaths = ["{root}/{name}.jsonl"]\n'
                      f'image_root = "{root}"\nlang = "en"\nsplit = "{split}"\n\n'
                      for name, split in (("a", "train"), ("b", "test")))
    (root / "build.toml").write_text(sources + "[image]\nmax_side = 64\nmin_side = 16\n")
    return root / "build.toml", named


@pytest.mark.slow
def test_no_runner_buffer_holds_the_rows(tmp_path: Path, runner_buffers: dict[str, int]):
    peaks = runner_buffers
    config, image_bytes = corpus(tmp_path / "in", PAIRS)
    manifest = run_build(load_config(config), str(tmp_path / "out"), progress=False)
    assert manifest["counts"]["rejected_by_reason"] == {"dedup/duplicate": PAIRS // 10}
    assert manifest["counts"]["pairs_rows"] == PAIRS - PAIRS // 10
    assert peaks["list"] < image_bytes / 10, peaks  # run descriptors; the rows would be all of them, several times
    assert peaks["group"] < PAIRS / 4, peaks  # descriptors: a few per partition and run, not one per row
