"""The itm_eval metrics on hand-made score matrices, ITM re-ranking, and the benchmark folder layouts."""

from __future__ import annotations

import json

import pytest
import torch
from pretrain_helpers import jpeg

from pretrain.demo import chance_r_mean
from pretrain.evalsets import load_benchmark
from pretrain.evaluate import _rerank, recall_metrics


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


def _match_boost(positive: list[list[int]]):
    """A fake ITM head: log-odds 10 for a query's own candidates, 0 for the others."""
    return lambda row, cols: torch.tensor([10.0 if int(c) in positive[row] else 0.0 for c in cols])


def test_rerank_only_reorders_the_top_k():
    # 12 images, one caption each; every image ranks the captions 0, 1, ..., 11 by ITC, so
    # image i finds its own caption at rank i: ITC alone gives R@1/5/10 = 1/12, 5/12, 10/12
    sims = -torch.arange(12, dtype=torch.float32).repeat(12, 1) / 100
    own = [[i] for i in range(12)]
    itc = recall_metrics(sims, sims, list(range(12)))
    assert (itc["txt_r1"], itc["txt_r5"], itc["txt_r10"]) == pytest.approx((100 / 12, 500 / 12, 1000 / 12))
    # ITM at K = 3 lifts the own caption of images 0-2 to rank 0; images 3-11 keep ITC ranks 3-11
    i2t = _rerank(sims, 3, _match_boost(own))
    m = recall_metrics(i2t, sims, list(range(12)))
    assert (m["txt_r1"], m["txt_r5"], m["txt_r10"]) == pytest.approx((300 / 12, 500 / 12, 1000 / 12))
    # K = 1: only image 0 can move; R@5 and R@10 are ITC's (they were 1/12 with all ranks
    # beyond K tied at -1e4, because ties count against the model)
    m = recall_metrics(_rerank(sims, 1, _match_boost(own)), sims, list(range(12)))
    assert (m["txt_r1"], m["txt_r5"], m["txt_r10"]) == pytest.approx((100 / 12, 500 / 12, 1000 / 12))


@pytest.mark.parametrize("k", [1, 2, 3, 5, 9, 12])
def test_recall_beyond_k_is_the_itc_recall(k):
    # 6 images x 12 captions (2 each), ITC scores on a coarse grid so that ties occur
    gen = torch.Generator().manual_seed(k)
    txt2img = [t // 2 for t in range(12)]
    sims = torch.randint(0, 6, (6, 12), generator=gen).float() / 5
    positive_i2t = [[t for t in range(12) if txt2img[t] == i] for i in range(6)]
    positive_t2i = [[txt2img[t]] for t in range(12)]
    itm = torch.randn(6, 12, generator=gen)  # an arbitrary ITM head
    itc = recall_metrics(sims, sims.t(), txt2img)
    i2t = _rerank(sims, k, lambda i, cols: itm[i, cols])
    t2i = _rerank(sims.t(), k, lambda t, cols: itm[cols, t])
    m = recall_metrics(i2t, t2i, txt2img)
    for n in (1, 5, 10):
        if n >= k:
            assert (m[f"txt_r{n}"], m[f"img_r{n}"]) == (itc[f"txt_r{n}"], itc[f"img_r{n}"]), n
    # an ITM head that knows the answer lifts to rank 0 every positive ITC ranked below k
    boosted = recall_metrics(_rerank(sims, k, _match_boost(positive_i2t)),
                             _rerank(sims.t(), k, _match_boost(positive_t2i)), txt2img)
    if k in (1, 5, 10):
        assert boosted["txt_r1"] >= itc[f"txt_r{k}"] and boosted["img_r1"] >= itc[f"img_r{k}"]
