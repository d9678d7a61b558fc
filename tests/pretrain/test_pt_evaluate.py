"""The itm_eval metrics on hand-made score matrices, and the benchmark folder layouts."""

from __future__ import annotations

import json

import pytest
import torch
from pretrain_helpers import jpeg

from pretrain.demo import chance_r_mean
from pretrain.evalsets import load_benchmark
from pretrain.evaluate import recall_metrics


def test_recall_with_several_captions_per_image():
    # image 0 has captions 0 and 1, image 1 has caption 2
    i2t = torch.tensor([[0.1, 0.9, 0.5],    # best own caption (1) ranks first
                        [0.8, 0.7, 0.6]])   # own caption ranks third
    t2i = torch.tensor([[0.2, 0.3],         # caption 0: its image ranks second
                        [0.9, 0.1],         # caption 1: first
                        [0.0, 0.5]])        # caption 2: first
    m = recall_metrics(i2t, t2i, [0, 0, 1])
    assert (m["txt_r1"], m["txt_r5"], m["txt_r10"]) == (50.0, 100.0, 100.0)
    assert m["img_r1"] == pytest.approx(200 / 3) and m["img_r5"] == 100.0
    assert m["r_mean"] == pytest.approx((50 + 100 + 100 + 200 / 3 + 100 + 100) / 6)


def test_ties_count_against_the_model():
    flat = torch.zeros(20, 20)
    m = recall_metrics(flat, flat, list(range(20)))
    assert m["txt_r1"] == m["img_r1"] == 0.0 and m["txt_r10"] == 0.0
    assert chance_r_mean(20) == pytest.approx(100 * (1 + 5 + 10) / 20 / 3)


def test_benchmark_layouts(tmp_path):
    lists = tmp_path / "m30k"
    (lists / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (lists / "images" / name).write_bytes(jpeg("red", "left"))
    (lists / "images.txt").write_text("a.jpg\nb.jpg\n")
    (lists / "captions.en.txt").write_text("a red square\na blue square\n")
    (lists / "captions.de.1.txt").write_text("rot\nblau\n")
    (lists / "captions.de.2.txt").write_text("ein rotes\nein blaues\n")
    got = load_benchmark(lists)
    assert len(got.images) == 2 and got.images[1]() == jpeg("red", "left")
    assert got.captions["en"] == [(0, "a red square"), (1, "a blue square")]
    assert sorted(got.captions["de"]) == [(0, "ein rotes"), (0, "rot"), (1, "blau"), (1, "ein blaues")]
    (lists / "captions.fr.txt").write_text("rouge\n")
    with pytest.raises(ValueError, match="must align"):
        load_benchmark(lists)

    jsonl = tmp_path / "heldout"
    (jsonl / "images").mkdir(parents=True)
    (jsonl / "images" / "x.jpg").write_bytes(jpeg("red", "left"))
    rows = [{"image": "images/x.jpg", "caption": "a red square", "caption_de": "rot", "captions": {"fr": ["rouge", "r"]}}]
    (jsonl / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    got = load_benchmark(jsonl)
    assert got.captions == {"en": [(0, "a red square")], "de": [(0, "rot")], "fr": [(0, "rouge"), (0, "r")]}
    with pytest.raises(FileNotFoundError, match="captions.jsonl"):
        load_benchmark(tmp_path)
