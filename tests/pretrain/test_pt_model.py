"""The model's forward feeds the loss exactly (the cross-view and region objectives too),
every learnable parameter gets a gradient, and ITM draws its hard negatives as ALBEF does,
never a copy of the positive's text or image."""

from __future__ import annotations

import inspect
import math
from collections import Counter

import pytest
import torch
from pretrain_helpers import micro_config, write_dataset

from pretrain import model as model_module
from pretrain.checkpoint import load_init_weights, save_checkpoint
from pretrain.data import build_loader
from pretrain.losses import RC3Loss
from pretrain.model import build_model, draw_negatives, itm_negative_weights, same_pair_content
from pretrain.shards import dataset_texts, open_dataset
from pretrain.tokenizer import train_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def region_data(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("regions") / "ds", regions=True)
    return open_dataset(str(root))


def _batch(data, cfg):
    tok = train_tokenizer(dataset_texts(data), cfg.tokenizer)
    batch, _ = next(iter(build_loader(data, cfg, tok)))
    return tok, batch


@pytest.mark.parametrize("form", ["regularizer", "soft_target", "weighted_infonce"])
def test_forward_keys_are_the_loss_kwargs_and_all_parameters_learn(region_data, form):
    cfg = micro_config(model={"region_dim": 6, "max_regions": 4}, loss={"weak_form": form, "ttm": 1.0, "cmlm": 1.0, "mrfr": 1.0},
                       data={"batch_size": 12, "kind_weights": {"caption": 1, "translation": 1, "codeswitch": 1, "weak": 3}})
    tok, batch = _batch(region_data, cfg)
    assert batch["is_weak"].any() and batch["region_mask"].any() and (batch["mlm_labels"] != -100).any()
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.loss, tok.vocab_size, tok.pad_id)
    out = model(batch)
    accepted = set(inspect.signature(RC3Loss.forward).parameters) - {"self"}
    assert set(out) <= accepted
    assert {"src_features", "mlm_logits", "itm_logits", "ttm_logits", "cmlm_logits", "mrfr_pred"} <= set(out)
    assert ("anchor_features" in out) == (form == "regularizer")
    losses = RC3Loss(cfg.loss)(**out)
    assert set(losses) == {"itc", "weak", "ttc", "mlm", "itm", "ttm", "cmlm", "mrfr", "loss"}
    losses["loss"].backward()
    silent = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert silent == []


def test_switched_off_objectives_have_no_heads(region_data):
    cfg = micro_config(loss={"mlm": 0, "itm": 0, "ttc": 0})
    tok, batch = _batch(region_data, cfg)
    model = build_model(cfg.model, cfg.loss, tok.vocab_size, tok.pad_id)
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert not names & {"fusion", "itm_head", "mlm_transform", "mlm_bias", "region_head"}
    out = model(batch)
    assert not {"mlm_logits", "itm_logits", "src_features", "ttm_logits", "cmlm_logits", "mrfr_pred"} & set(out)
    RC3Loss(cfg.loss)(**out)["loss"].backward()


def test_cross_view_alone_shares_the_fusion_and_heads(region_data):
    """CCLM: one fusion encoder, one matching head, one MLM head for both views; TTM and
    conditional MLM build them when ITM and MLM are off, and add no parameters beside them
    (equal widths), so ITM/MLM checkpoints and cross-view ones hold the same tensors."""
    both = micro_config(loss={"ttm": 1.0, "cmlm": 1.0})
    alone = micro_config(loss={"itm": 0.0, "mlm": 0.0, "ttm": 1.0, "cmlm": 1.0})
    plain = micro_config()
    shapes = [{n: p.shape for n, p in build_model(c.model, c.loss, 100, 0).named_parameters()} for c in (both, alone, plain)]
    assert shapes[0] == shapes[1] == shapes[2]
    tok, batch = _batch(region_data, alone)
    out = build_model(alone.model, alone.loss, tok.vocab_size, tok.pad_id)(batch)
    assert {"ttm_logits", "cmlm_logits"} <= set(out) and not {"itm_logits", "mlm_logits"} & set(out)


def test_init_from_checkpoint_names_shape_mismatches(tmp_path, region_data):
    cfg = micro_config()
    model = build_model(cfg.model, cfg.loss, 100, 0)
    save_checkpoint(tmp_path / "a.pt", {"model": model.state_dict()})
    other = build_model(cfg.model, cfg.loss, 100, 0)
    assert load_init_weights(other, tmp_path / "a.pt") == []
    assert torch.equal(other.vision.pos, model.vision.pos)
    wider = micro_config(model={"image_size": 64})
    with pytest.raises(ValueError, match=r"vision\.pos: checkpoint \(1, 17, 32\) vs model \(1, 65, 32\)"):
        load_init_weights(build_model(wider.model, wider.loss, 100, 0), tmp_path / "a.pt")


# Four pairs: rows 0 and 2 show the same text, rows 1 and 3 the same image (equal keys, not
# equal pixels). Row 0's candidates by similarity: 2 (excluded), 1, 3.
TEXT_IDS = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0], [1, 5, 6, 2], [1, 8, 9, 2]])
IMAGE_KEY = torch.tensor([10, 11, 12, 11])
SIM = torch.tensor([[1.0, 0.5, 0.9, 0.2],
                    [0.1, 1.0, 0.3, 0.95],
                    [0.9, 0.0, 1.0, 0.6],
                    [0.4, 0.9, 0.1, 1.0]])
EXCLUDED = {0: {0, 2}, 1: {1, 3}, 2: {0, 2}, 3: {1, 3}}


def _draws(weights: torch.Tensor, n: int = 4000) -> list[Counter]:
    torch.manual_seed(0)
    counts = [Counter() for _ in range(weights.shape[0])]
    for _ in range(n):
        index, valid = draw_negatives(weights)
        assert valid.all()
        for row, col in enumerate(index.tolist()):
            counts[row][col] += 1
    return counts


def test_itm_hard_negatives():
    same = same_pair_content(TEXT_IDS, IMAGE_KEY)
    assert {i: set(torch.nonzero(same[i]).flatten().tolist()) for i in range(4)} == EXCLUDED
    scale = 1 / 0.07
    weights = itm_negative_weights(SIM, scale, same)
    for i, excluded in EXCLUDED.items():  # ALBEF: softmax(sim / temp) + 1e-5, then zeros
        soft = [math.exp(scale * s) for s in SIM[i].tolist()]
        expected = [0.0 if j in excluded else soft[j] / sum(soft) + 1e-5 for j in range(4)]
        assert weights[i].tolist() == pytest.approx(expected, rel=1e-4, abs=1e-9)
    counts = _draws(weights)
    for i, excluded in EXCLUDED.items():
        assert not set(counts[i]) & excluded
    # the temperature is used: at 1/0.07, row 0 takes candidate 1 (sim 0.5 against 0.2) with
    # p = 1 / (1 + e^(-0.3 / 0.07)) = 0.986; with raw cosines it would be 1 / (1 + e^-0.3) = 0.57
    assert 0.97 < counts[0][1] / 4000 < 0.995
    assert 0.53 < _draws(itm_negative_weights(SIM, 1.0, same))[0][1] / 4000 < 0.61
    index, valid = draw_negatives(weights, hardest=True)
    assert index.tolist() == [1, 2, 3, 0] and valid.all()


def test_itm_rows_without_a_valid_negative_get_none():
    ids = torch.tensor([[1, 5, 2], [1, 5, 2], [1, 6, 2]])  # rows 0 and 1 share a text...
    same = same_pair_content(ids, torch.tensor([3, 4, 3]))  # ...rows 0 and 2 an image
    weights = itm_negative_weights(torch.zeros(3, 3), 14.0, same)
    assert weights[0].tolist() == [0.0, 0.0, 0.0]
    for hardest in (False, True):
        index, valid = draw_negatives(weights, hardest)
        assert index.tolist() == [0, 2, 1] and valid.tolist() == [False, True, True]
    # without image keys only the diagonal counts as the same image
    assert same_pair_content(ids).tolist() == [[True, True, False], [True, True, False], [False, False, True]]


def test_model_draws_itm_negatives_at_its_temperature_and_drops_invalid_rows(region_data, monkeypatch):
    cfg = micro_config(loss={"mlm": 0, "ttc": 0})
    tok, batch = _batch(region_data, cfg)
    assert batch["image_key"].dtype == torch.long and batch["image_key"].unique().numel() > 1
    # row 1 shows row 0's text; every row but 1 shows row 0's image: row 0 has no valid
    # negative, every other row's only one is row 1 (or, for row 1, rows 2..)
    ids, keys = batch["text_ids"], batch["image_key"]
    ids[1] = ids[0]
    assert (ids[2:] != ids[0]).any(dim=1).all()
    keys[:] = keys[0]
    keys[1] += 1
    model = build_model(cfg.model, cfg.loss, tok.vocab_size, tok.pad_id)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1 / 0.02))
    weights_calls, draws = [], []
    real_weights, real_draw = model_module.itm_negative_weights, model_module.draw_negatives
    monkeypatch.setattr(model_module, "itm_negative_weights", lambda *a: weights_calls.append(a) or real_weights(*a))
    monkeypatch.setattr(model_module, "draw_negatives", lambda *a: draws.append(real_draw(*a)) or draws[-1])
    labels = model(batch)["itm_labels"]
    b = ids.shape[0]
    assert [float(a[1]) for a in weights_calls] == pytest.approx([50.0, 50.0])  # 1 / temperature
    for _, _, excluded in weights_calls:
        assert torch.equal(excluded, same_pair_content(ids, keys))
    for index, valid in draws:  # per text (negative images), then per image (negative texts)
        assert valid.tolist() == [False] + [True] * (b - 1)
        assert index[0] == 0 and (index[2:] == 1).all() and index[1] >= 2
    neg = labels[b:]
    assert neg[0] == neg[b] == -100 and (neg[1:b] == 0).all() and (neg[b + 1 :] == 0).all()
