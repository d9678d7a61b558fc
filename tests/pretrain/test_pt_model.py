"""The model's forward feeds the loss exactly, and every learnable parameter gets a gradient."""

from __future__ import annotations

import inspect

import pytest
import torch
from pretrain_helpers import micro_config, write_dataset

from pretrain.checkpoint import load_init_weights, save_checkpoint
from pretrain.data import build_loader
from pretrain.losses import RC3Loss
from pretrain.model import build_model
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


@pytest.mark.parametrize("form", ["soft", "regularizer"])
def test_forward_keys_are_the_loss_kwargs_and_all_parameters_learn(region_data, form):
    cfg = micro_config(model={"region_dim": 6, "max_regions": 4}, loss={"weak_form": form},
                       data={"batch_size": 12, "kind_weights": {"caption": 1, "translation": 1, "codeswitch": 1, "weak": 3}})
    tok, batch = _batch(region_data, cfg)
    assert batch["is_weak"].any() and batch["region_mask"].any() and (batch["mlm_labels"] != -100).any()
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.loss, tok.vocab_size, tok.pad_id)
    out = model(batch)
    accepted = set(inspect.signature(RC3Loss.forward).parameters) - {"self"}
    assert set(out) <= accepted
    assert {"src_features", "mlm_logits", "itm_logits"} <= set(out)
    assert ("anchor_features" in out) == (form == "regularizer")
    losses = RC3Loss(cfg.loss)(**out)
    assert set(losses) == {"itc", "weak", "ttc", "mlm", "itm", "loss"}
    losses["loss"].backward()
    silent = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert silent == []


def test_switched_off_objectives_have_no_heads(region_data):
    cfg = micro_config(loss={"mlm": 0, "itm": 0, "ttc": 0})
    tok, batch = _batch(region_data, cfg)
    model = build_model(cfg.model, cfg.loss, tok.vocab_size, tok.pad_id)
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert not names & {"fusion", "itm_head", "mlm_transform", "mlm_bias"}
    out = model(batch)
    assert not {"mlm_logits", "itm_logits", "src_features"} & set(out)
    RC3Loss(cfg.loss)(**out)["loss"].backward()


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
