"""Eval sets carry regions (issue 14.4): a curated split's rows bring their regions (and
concepts) to evaluation; a region model refuses a set without regions; a model without
regions ignores them."""

from __future__ import annotations

import json

import pytest
import torch
from pretrain_helpers import jpeg, micro_config, write_dataset

from pretrain.distributed import pick_device
from pretrain.evalsets import load_evalset
from pretrain.evaluate import encode_image_set, evaluate, evaluate_set, load_model
from pretrain.shards import dataset_texts, open_dataset
from pretrain.tokenizer import train_tokenizer
from pretrain.train import run_training

torch.set_num_threads(1)
CPU = {"device": "cpu"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("evalregions")
    with_regions = write_dataset(base / "regions", n=24, n_test=8, regions=True, concepts=True)
    without = write_dataset(base / "plain", n=24, n_test=8)
    tok_path = base / "tok.model"
    train_tokenizer(dataset_texts(open_dataset(str(with_regions))), micro_config().tokenizer, tok_path)
    common = {"train": {"steps": 2, **CPU}, "tokenizer": {"model": str(tok_path)}}
    region_run = base / "region_run"
    run_training(micro_config(model={"region_dim": 6, "max_regions": 4, "concepts": -1}, loss={"mrfr": 1.0, "mrc": 1.0, "rca": 1.0},
                              **common), str(with_regions), str(region_run), quiet=True)
    plain_run = base / "plain_run"
    run_training(micro_config(**common), str(with_regions), str(plain_run), quiet=True)
    return with_regions, without, region_run, plain_run


def test_curated_eval_set_carries_regions_and_concepts(runs):
    with_regions, without, _, _ = runs
    got = load_evalset(str(with_regions), "test")
    assert len(got.regions) == len(got.images) == 8 and got.has_regions()
    assert got.regions[0]["features"][0] == pytest.approx([0.5, -1.0, 2.0, 0.0, 1.0, 0.25])
    assert got.concepts["en"][0][1] == "square" and len(got.concepts["en"]) == len(got.captions["en"])
    assert not load_evalset(str(without), "test").has_regions()


def test_region_model_uses_the_regions_and_refuses_a_set_without(runs, tmp_path):
    with_regions, without, region_run, _ = runs
    result = evaluate(str(region_run), str(with_regions), "test", device="cpu", rerank=3)
    assert set(result["languages"]) == {"de", "en"} and result["mean_r_mean"] > 0
    model, _ = load_model(region_run, pick_device("cpu"))
    evalset = load_evalset(str(with_regions), "test")
    feats, _, masks = encode_image_set(model, evalset.images, pick_device("cpu"), evalset.regions)
    assert masks[0].shape[1] == 1 + 16 + 4 + 4  # [CLS], patches, regions, region concepts
    moved = [{**r, "features": [f[::-1] for f in r["features"]]} for r in evalset.regions]  # (LayerNorm ignores a shift)
    assert not torch.allclose(feats, encode_image_set(model, evalset.images, pick_device("cpu"), moved)[0])
    with pytest.raises(ValueError, match=r"reads 4 region features of size 6 per image \(model.region_dim\), and this eval "
                                         "set has no regions"):
        evaluate(str(region_run), str(without), "test", device="cpu")
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg("red", "left"))
    (folder / "captions.jsonl").write_text(json.dumps({"image": "a.jpg", "caption": "a red square"}))
    with pytest.raises(ValueError, match="this eval set has no regions"):
        evaluate(str(region_run), str(folder), device="cpu")


def test_model_without_regions_ignores_them(runs):
    with_regions, without, _, plain_run = runs
    model, tok = load_model(plain_run, pick_device("cpu"))
    a = evaluate_set(model, tok, load_evalset(str(with_regions), "test"), pick_device("cpu"))
    b = evaluate_set(model, tok, load_evalset(str(without), "test"), pick_device("cpu"))
    assert a == b
