"""MVP's and M3P's new objectives against small cases computed by hand: the concept grounding
loss (rca/wca), masked region classification (MRC) and masked concept recovery (tcp/icp),
through RC3Loss with their weights; and the schedule's config checks."""

from __future__ import annotations

import math

import pytest
import torch

from pretrain.config import ConfigError, LossConfig, load_config, stage_loss
from pretrain.losses import GroundingLoss, RC3Loss
from pretrain.mvp import grounding_inputs
from pretrain.stages import stage_bounds, stage_index

EYE = torch.eye(2)


def _nll(own: float, *others: float) -> float:
    return math.log(sum(math.exp(x - own) for x in (own, *others)))


def test_grounding_takes_the_best_key_per_row_and_contrasts_the_rows():
    # query 0 = [1, 0] of row 0, query 1 = [0, 1] of row 1; row 0's second key is padding
    queries, owner = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [-1.0, 0.0]]])
    mask = torch.tensor([[True, False], [True, True]])
    # s(q0, row0) = 1, s(q0, row1) = max(0.6, -1) = 0.6; s(q1, row0) = 0 (its [0, 1] key is padding), s(q1, row1) = 0.8
    loss = GroundingLoss()(queries, owner, keys, mask, torch.tensor(1.0))
    assert loss.item() == pytest.approx((_nll(1.0, 0.6) + _nll(0.8, 0.0)) / 2, abs=1e-6)
    scaled = GroundingLoss()(queries, owner, keys, mask, torch.tensor(3.0))
    assert scaled.item() == pytest.approx((_nll(3.0, 1.8) + _nll(2.4, 0.0)) / 2, abs=1e-6)
    # had the padding counted, query 1 would find its own [0, 1] in row 0 and score 1 there
    unmasked = GroundingLoss()(queries, owner, keys, torch.ones(2, 2, dtype=torch.bool), torch.tensor(1.0))
    assert unmasked.item() == pytest.approx((_nll(1.0, 0.6) + _nll(0.8, 1.0)) / 2, abs=1e-6)
    # a row with no key at all scores -2 (below any cosine), not NaN
    empty = GroundingLoss()(queries[:1], owner[:1], keys, torch.tensor([[True, False], [False, False]]), torch.tensor(1.0))
    assert empty.item() == pytest.approx(_nll(1.0, -2.0), abs=1e-6)


def test_grounding_inputs_keep_valid_queries_with_their_rows_and_pad_the_keys():
    queries = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 2.0], [5.0, 5.0]]])
    q_mask = torch.tensor([[True, False], [True, True]])
    keys, k_mask = torch.tensor([[[2.0, 0.0]], [[0.0, 3.0]]]), torch.tensor([[True], [True]])
    q, owner, k, km = grounding_inputs(queries, q_mask, keys, k_mask, width=3)
    assert owner.tolist() == [0, 1, 1]
    assert q.flatten().tolist() == pytest.approx([0.6, 0.8, 0.0, 1.0, 2 ** -0.5, 2 ** -0.5])
    assert k.shape == (2, 3, 2) and k[0, 0].tolist() == [1.0, 0.0] and km.tolist() == [[True, False, False]] * 2


def test_mrc_and_concept_recovery_are_cross_entropies_weighted_by_the_stage():
    cfg = LossConfig(itc=0.0, weak=0.0, ttc=0.0, mlm=0.0, itm=0.0, mrc=2.0, tcp=0.5, icp=3.0, rca=0.25)
    loss = RC3Loss(cfg)
    mrc_logits, mrc_labels = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 2])
    tcp_logits, tcp_labels = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([1])
    icp_logits, icp_labels = torch.tensor([[1.0, 1.0, 1.0, 1.0]]), torch.tensor([3])
    rca = (torch.tensor([[1.0, 0.0]]), torch.tensor([0]), EYE[:, None, :], torch.ones(2, 1, dtype=torch.bool))
    out = loss(EYE, EYE, torch.tensor(1.0), torch.ones(2), torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool),
               mrc_logits=mrc_logits, mrc_labels=mrc_labels, tcp_logits=tcp_logits, tcp_labels=tcp_labels,
               icp_logits=icp_logits, icp_labels=icp_labels, rca=rca)
    mrc = (_nll(2.0, 0.0, 0.0) + _nll(0.0, 0.0, 1.0)) / 2  # log(1 + 2/e^2) and log(2 + e)
    assert out["mrc"].item() == pytest.approx(mrc, abs=1e-6)
    assert out["tcp"].item() == pytest.approx(math.log(4 / 3), abs=1e-6)  # p = 3 / (1 + 3)
    assert out["icp"].item() == pytest.approx(math.log(4), abs=1e-6)      # uniform over 4 concepts
    assert out["rca"].item() == pytest.approx(_nll(1.0, 0.0), abs=1e-6)
    assert out["loss"].item() == pytest.approx(2 * mrc + 0.5 * math.log(4 / 3) + 3 * math.log(4) + 0.25 * _nll(1.0, 0.0), abs=1e-5)
    assert set(out) == {"itc", "mrc", "tcp", "icp", "rca", "loss"}  # itc is always reported, weighted 0 here


SCHEDULE = [{"name": "unimodal", "steps": 3, "unimodal": True, "loss": {"mlm": 1.0, "ttc": 0.5}},
            {"name": "crossmodal", "steps": 2, "loss": {"itc": 1.0, "itm": 1.0, "mlm": 0.5}}]


def test_schedule_stages_weights_and_bounds():
    cfg = load_config(None, {"schedule": SCHEDULE, "train": {"steps": 6, "warmup_steps": 1}})
    assert [s.name for s in cfg.schedule] == ["unimodal", "crossmodal"]
    # the model's heads: each objective's largest stage weight
    assert (cfg.loss.itc, cfg.loss.mlm, cfg.loss.ttc, cfg.loss.itm, cfg.loss.weak) == (1.0, 1.0, 0.5, 1.0, 0.0)
    first, second = (stage_loss(cfg, s) for s in cfg.schedule)
    assert (first.mlm, first.ttc, first.itc, first.itm) == (1.0, 0.5, 0.0, 0.0)
    assert (second.mlm, second.itc, second.ttc) == (0.5, 1.0, 0.0)
    assert [stage_index(cfg.schedule, s) for s in range(6)] == [0, 0, 0, 1, 1, 1]  # the last stage runs to train.steps
    assert stage_bounds(cfg.schedule) == [("unimodal", 0, 3), ("crossmodal", 3, 5)]
    assert load_config(None, cfg.to_dict()).to_dict() == cfg.to_dict()  # a checkpoint's config reads back the same


@pytest.mark.parametrize(("change", "message"), [
    ({"schedule": [{**SCHEDULE[0], "loss": {"itm": 1.0}}]}, r"schedule\[0\] \(unimodal\): unimodal = true has no cross-attention"),
    ({"schedule": [{**SCHEDULE[0], "loss": {"mlm": 1.0, "mrm": 1.0}}]}, r"loss: unknown objective\(s\) \['mrm'\]"),
    ({"schedule": [{**SCHEDULE[0], "steps": 0}]}, r"steps must be an integer >= 1"),
    ({"schedule": [SCHEDULE[0], {**SCHEDULE[1], "name": "unimodal"}]}, "stage names must differ"),
    ({"schedule": SCHEDULE, "train": {"steps": 4}}, r"train.steps = 4 ends before the schedule does \(3 \+ 2 = 5 steps\)"),
    ({"schedule": SCHEDULE, "loss": {"itm": 2.0}}, r"loss.itm = 2.0 with a \[\[schedule\]\]"),
    ({"schedule": [{**SCHEDULE[0], "loss": {"tcp": 1.0}}]}, "loss.tcp = 1.0 predicts or aligns concepts"),
])
def test_schedule_errors_name_the_stage_and_setting(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"train": {"steps": 6, "warmup_steps": 1}, **change})
