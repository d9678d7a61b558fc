"""Masked patch modelling (SimMIM, loss.mpm): the masks the loader draws, the loss against a
case computed by hand (masked patches only), the [MASK] embedding replacing exactly the
masked patches, ITC's image untouched by the masking, the config's refusals, the loss
falling in a unimodal stage of the real trainer, and resume bit for bit across a stage
boundary with MPM on."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest
import torch
from pretrain_helpers import micro_config, write_dataset
from test_pt_resume import _same_run

from pretrain.config import ConfigError, LossConfig, ModelConfig
from pretrain.data import build_loader
from pretrain.images import MEAN, STD
from pretrain.losses import RC3Loss
from pretrain.model import build_model
from pretrain.sampling import mask_patches, masked_blocks
from pretrain.shards import dataset_texts, open_dataset
from pretrain.tokenizer import train_tokenizer
from pretrain.train import run_training

torch.set_num_threads(1)

CPU = {"device": "cpu"}
OFF = {"itc": 0.0, "weak": 0.0, "ttc": 0.0, "mlm": 0.0, "itm": 0.0}
# 4 x 4 px images of 2 x 2 px patches: a 2 x 2 patch grid, 12 values per patch
SMALL = ModelConfig(image_size=4, patch_size=2, vision_width=8, vision_layers=1, vision_heads=2, text_width=8,
                    text_layers=1, text_heads=2, embed_dim=4, max_text_len=8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("mpm") / "ds", n=40)
    data = open_dataset(str(root))
    tok_path = root.parent / "tok.model"
    tok = train_tokenizer(dataset_texts(data), micro_config().tokenizer, tok_path)
    return root, data, tok, tok_path


def _model(loss: LossConfig, cfg: ModelConfig = SMALL):
    torch.manual_seed(0)
    return build_model(cfg, loss, 10, 0)


def _batch(images: torch.Tensor, masked: torch.Tensor) -> dict[str, torch.Tensor]:
    b = images.shape[0]
    return {"images": images, "patch_masked": masked, "text_ids": torch.tensor([[1, 5, 6, 2]] * b),
            "relevance": torch.ones(b), "is_weak": torch.zeros(b, dtype=torch.bool), "has_anchor": torch.zeros(b, dtype=torch.bool)}


def _pixel(value: int, channel: int) -> float:
    return (value / 255 - MEAN[channel]) / STD[channel]


def test_mask_patches_masks_whole_squares_ceil_of_the_share():
    assert masked_blocks(4, 0.6) == 3 and masked_blocks(10, 0.3) == 3 and masked_blocks(49, 0.6) == 30  # base: 120 of 196
    for seed in range(20):
        mask = mask_patches(4, 2, 0.6, random.Random(seed))
        grid = torch.tensor(mask).view(4, 4)
        squares = grid.view(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(4, 4)  # (square, its 4 patches)
        assert (squares.all(1) | ~squares.any(1)).all(), mask  # a square is masked whole or not at all
        assert squares.all(1).sum() == 3
        assert mask == mask_patches(4, 2, 0.6, random.Random(seed))  # seeded: the same draw again
    one = [mask_patches(4, 1, 0.25, random.Random(s)) for s in range(50)]
    assert all(sum(m) == 4 for m in one) and len({tuple(m) for m in one}) > 10


def test_loss_by_hand_over_the_masked_patches_only():
    model = _model(LossConfig(**OFF, mpm=2.0))
    with torch.no_grad():  # the head predicts 0 for every patch, whatever the encoder says
        model.mpm.predict.weight.zero_()
        model.mpm.predict.bias.zero_()
    images = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    images[0, :, 0:2, 2:4] = 255  # patch 1 (top right) is white: visible below, so it must not count
    masked = torch.tensor([[True, False, False, True]])  # patches 0 (top left) and 3 (bottom right)
    out = model(_batch(images, masked))
    assert out["mpm_pred"].shape == out["mpm_target"].shape == (2, 12)
    # target of a black pixel, channel c: (0 - MEAN[c]) / STD[c]; the loss is the mean |0 - target|
    # over 2 patches x (2 x 2 pixels x 3 channels)
    expected = sum(MEAN[c] / STD[c] for c in range(3)) / 3
    assert expected == pytest.approx((2.1179 + 2.0357 + 1.8044) / 3, abs=1e-4)  # 1.9860
    losses = RC3Loss(model.loss_cfg)(**out)
    assert losses["mpm"].item() == pytest.approx(expected, rel=1e-6)
    assert losses["loss"].item() == pytest.approx(2 * expected, rel=1e-6)  # loss.mpm = 2, the rest 0
    # patch 1 masked instead of patch 3: its white pixels now count, |0 - (1 - MEAN) / STD|
    out = model(_batch(images, torch.tensor([[True, True, False, False]])))
    white = sum(abs(_pixel(255, c)) for c in range(3)) / 3
    assert RC3Loss(model.loss_cfg)(**out)["mpm"].item() == pytest.approx((expected + white) / 2, rel=1e-6)


def test_norm_pix_target_by_hand():
    model = _model(LossConfig(**OFF, mpm=1.0, mpm_norm_pix=True))
    images = torch.arange(48, dtype=torch.uint8).view(1, 3, 4, 4) * 5
    out = model(_batch(images, torch.tensor([[False, False, True, False]])))  # patch 2: rows 2-3, columns 0-1
    values = [_pixel(int(images[0, c, 2 + i, j]), c) for i in range(2) for j in range(2) for c in range(3)]
    mean, var = statistics.fmean(values), statistics.variance(values)  # MAE: unbiased variance, eps 1e-6
    expected = [(v - mean) / math.sqrt(var + 1e-6) for v in values]
    assert out["mpm_target"][0].tolist() == pytest.approx(expected, abs=1e-5)
    pred = out["mpm_pred"][0].tolist()
    by_hand = sum(abs(p - t) for p, t in zip(pred, expected, strict=True)) / 12
    assert RC3Loss(model.loss_cfg)(**out)["mpm"].item() == pytest.approx(by_hand, rel=1e-5)


def test_mask_token_replaces_the_masked_patches_and_nothing_else():
    model = _model(LossConfig(**OFF, mpm=1.0)).eval()
    torch.manual_seed(1)
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    masked = torch.tensor([[True, False, False, True], [False, True, False, False]])
    token = model.mpm.mask_token
    plain, hidden = model.vision.embed(images), model.vision.embed(images, (masked, token))
    pos = model.vision.pos[0]
    for row in range(2):
        assert torch.equal(hidden[row, 0], plain[row, 0])  # [CLS]
        for p in range(4):
            want = token[0, 0] + pos[1 + p] if masked[row, p] else plain[row, 1 + p]
            assert torch.equal(hidden[row, 1 + p], want), (row, p)
    # the prediction of a masked patch cannot see that patch's pixels; it sees the visible ones
    out = model(_batch(images, masked))
    changed = images.clone()
    changed[0, :, 0:2, 0:2] = 255 - changed[0, :, 0:2, 0:2]  # patch 0 of row 0: masked
    again = model(_batch(changed, masked))
    assert torch.equal(again["mpm_pred"], out["mpm_pred"]) and not torch.equal(again["mpm_target"], out["mpm_target"])
    changed = images.clone()
    changed[0, :, 0:2, 2:4] = 255 - changed[0, :, 0:2, 2:4]  # patch 1 of row 0: visible
    again = model(_batch(changed, masked))
    assert not torch.equal(again["mpm_pred"][:2], out["mpm_pred"][:2]) and torch.equal(again["mpm_pred"][2:], out["mpm_pred"][2:])
    assert torch.equal(again["mpm_target"], out["mpm_target"])


def test_itc_sees_the_unmasked_image_in_a_joint_step(dataset):
    _, data, tok, _ = dataset
    cfg = micro_config(loss={"mpm": 1.0})
    batch, _ = next(iter(build_loader(data, cfg, tok)))
    assert batch["patch_masked"].shape == (8, 16) and batch["patch_masked"].sum(1).tolist() == [12] * 8
    model = build_model(cfg.model, cfg.loss, tok.vocab_size, tok.pad_id).eval()
    torch.manual_seed(0)  # ITM's negatives are drawn
    out = model(batch)
    assert {"mpm_pred", "itm_logits", "mlm_logits"} <= set(out)
    assert torch.equal(out["image_features"], model.encode_image(batch["images"])[0])
    model.set_stage(LossConfig(**{**vars(cfg.loss), "mpm": 0.0}))
    torch.manual_seed(0)
    without = model(batch)
    assert "mpm_pred" not in without
    for key in ("image_features", "text_features", "itm_logits", "mlm_logits"):
        assert torch.equal(out[key], without[key]), key
    losses = RC3Loss(cfg.loss)(**out)
    losses["loss"].backward()
    assert model.mpm.embed.weight.grad.abs().sum() > 0 and model.mpm.predict.weight.grad.abs().sum() > 0
    # no masks are drawn when no stage has MPM, and the other draws stay as they were
    plain, _ = next(iter(build_loader(data, micro_config(), tok)))
    assert "patch_masked" not in plain and torch.equal(plain["mlm_ids"], batch["mlm_ids"])


@pytest.mark.parametrize(("change", "message"), [
    ({"model": {"image_size": 8}}, r"1 x 1 patch grid \(model.image_size 8 / model.patch_size 8\) cannot have both"),
    ({"data": {"mpm_block": 3}}, r"data.mpm_block = 3 does not divide the model's 4 x 4 patch grid .*use one of \[1, 2\]"),
    ({"data": {"mpm_mask_prob": 0.8}}, r"masks 4 of the 4 squares of data.mpm_block = 2 patches .* data.mpm_block in \[1\]"),
    ({"data": {"mpm_mask_prob": 1.0}}, r"data.mpm_mask_prob must be in \(0, 1\)"),
    ({"data": {"mpm_mask_prob": 0.0}}, r"data.mpm_mask_prob must be in \(0, 1\)"),
    ({"data": {"mpm_block": 0}}, r"data.mpm_block = 0: the side of a masked square in patches"),
    ({"loss": {"mpm_norm_pix": 1}}, r"loss.mpm_norm_pix = 1; use true or false"),
    ({"loss": {"mpm": -1.0}}, r"loss weights must be >= 0"),
])
def test_config_errors_name_the_setting(change, message):
    sections = {k: {**({"mpm": 1.0} if k == "loss" else {}), **v} for k, v in change.items()}
    sections.setdefault("loss", {"mpm": 1.0})
    with pytest.raises(ConfigError, match=message):
        micro_config(**sections)


def test_config_accepts_mpm_in_a_unimodal_stage():
    cfg = micro_config(model={"image_size": 8}, train={"steps": 2})  # mpm off: a 1 x 1 grid is fine
    assert cfg.loss.mpm == 0
    cfg = micro_config(schedule=[{"name": "uni", "steps": 2, "unimodal": True, "loss": {"mlm": 1.0, "mpm": 0.5}}],
                       train={"steps": 2})
    assert cfg.loss.mpm == 0.5 and cfg.loss.itc == 0 and cfg.data.mpm_mask_prob == 0.6 and cfg.data.mpm_block == 2


UNIMODAL = {"name": "unimodal", "steps": 3, "unimodal": True, "loss": {"mlm": 1.0, "mpm": 1.0}}
CROSSMODAL = {"name": "crossmodal", "steps": 3, "loss": {"itc": 1.0, "weak": 1.0, "itm": 1.0, "mlm": 1.0, "mpm": 0.5}}


def test_mpm_loss_falls_in_a_unimodal_stage(tmp_path, dataset):
    root, _, _, tok_path = dataset
    cfg = micro_config(schedule=[{**UNIMODAL, "steps": 30}], train={"steps": 30, "warmup_steps": 2, "lr": 3e-3, **CPU},
                       tokenizer={"model": str(tok_path)})
    run_training(cfg, str(root), str(tmp_path / "run"), quiet=True)
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    mpm = [m["mpm"] for m in logged]
    assert len(mpm) == 30 and "itm" not in logged[0]
    first, last = statistics.fmean(mpm[:5]), statistics.fmean(mpm[-5:])
    assert last < 0.5 * first, (first, last)


def test_resume_is_bit_for_bit_across_the_stage_boundary_with_mpm(tmp_path, dataset):
    root, _, _, tok_path = dataset
    cfg = micro_config(schedule=[UNIMODAL, CROSSMODAL], train={"steps": 6, "ckpt_every": 2, "keep_checkpoints": 0, **CPU},
                       data={"batch_size": 6, "parallel_batch_size": 4}, tokenizer={"model": str(tok_path)})
    straight = run_training(cfg, str(root), str(tmp_path / "a"), quiet=True)
    assert run_training(cfg, str(root), str(tmp_path / "b"), stop_at=2, quiet=True)["step"] == 2
    resumed = run_training(cfg, str(root), str(tmp_path / "b"), resume=True, quiet=True)
    _same_run(straight["checkpoint"], resumed["checkpoint"])
    logged = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in logged] == [0, 0, 0, 1, 1, 1] and all("mpm" in m for m in logged)
    assert "itm" not in logged[0] and "itm" in logged[3]
