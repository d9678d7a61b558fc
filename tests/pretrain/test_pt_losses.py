"""Each objective against a small case computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pretrain.config import LossConfig
from pretrain.losses import (
    ContrastiveLoss,
    ITMLoss,
    MaskedLMLoss,
    RC3Loss,
    RelevanceRegularizer,
    soft_infonce,
)

E = math.e
EYE = torch.eye(2)
HARD = math.log(1 + 1 / E)  # -log(e / (e + 1)): own pair at logit 1, the other at 0


def test_itc_is_symmetric_infonce():
    # logits = I: each row's own pair scores 1, the other 0, in both directions
    loss = ContrastiveLoss()(EYE, EYE, torch.tensor(1.0))
    assert loss.item() == pytest.approx(HARD, abs=1e-6)
    scaled = ContrastiveLoss()(EYE, EYE, torch.tensor(2.0))
    assert scaled.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)


SOFT = 0.5 * HARD  # r = 0.5: mass 0.5 on the own pair, in both directions
UNIFORM = 0.5 * math.log(1 + 1 / E) + 0.5 * math.log(1 + E)  # CE of a uniform target over N = 2


def test_soft_targets_put_mass_r_on_the_own_image():
    rows = soft_infonce(EYE, EYE, torch.tensor(1.0), torch.tensor([1.0, 0.5]))
    assert rows.tolist() == pytest.approx([HARD, SOFT], abs=1e-6)
    assert soft_infonce(EYE, EYE, torch.tensor(1.0), torch.tensor([0.0, 0.0])).tolist() == [0.0, 0.0]
    # spread: the text's remaining 1 - r = 0.5 goes uniformly over the images
    spread = soft_infonce(EYE, EYE, torch.tensor(1.0), torch.tensor([1.0, 0.5]), spread=True)
    assert spread[1].item() == pytest.approx((0.5 * HARD + 0.5 * HARD + 0.5 * UNIFORM) / 2, abs=1e-6)
    images = EYE.clone().requires_grad_(True)
    soft_infonce(images, EYE, torch.tensor(1.0), torch.tensor([0.0, 0.0]), spread=True).sum().backward()
    assert images.grad is None or not images.grad.any(), "the spread part teaches the text side only"



def test_regularizer_pulls_weak_similarity_to_r_times_anchor_similarity():
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    weak = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    anchor = torch.tensor([[0.8, 0.6], [1.0, 0.0]])
    # row 0: cos(v, w) = 0.6, r * cos(v, a) = 0.5 * 0.8 = 0.4 -> 0.04; row 1 masked out; / 2 rows
    loss = RelevanceRegularizer()(image, weak, anchor, torch.tensor([0.5, 1.0]), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(0.02, abs=1e-6)
    weak.requires_grad_(True)
    anchor.requires_grad_(True)
    RelevanceRegularizer()(image, weak, anchor, torch.tensor([0.5, 1.0]), torch.tensor([1.0, 0.0])).backward()
    assert weak.grad is not None and weak.grad.abs().sum() > 0
    assert anchor.grad is None or not anchor.grad.any(), "the anchor is the reference, never pulled"


def test_mlm_and_itm_cross_entropy():
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)], [5.0, 0.0, 0.0]])
    # row 0 label 2: -log(2 / 4); row 1 ignored
    assert MaskedLMLoss()(logits, torch.tensor([2, -100])).item() == pytest.approx(math.log(2.0), abs=1e-6)
    assert MaskedLMLoss()(logits[:0], torch.tensor([], dtype=torch.long)).item() == 0.0
    itm = ITMLoss()(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 3.0]]), torch.tensor([1, 0, -100]))
    assert itm.item() == pytest.approx((math.log(1 + E**2) + math.log(1 + E)) / 2, abs=1e-6)


def _rows(form: str, **weights: float) -> dict[str, torch.Tensor]:
    kwargs = dict(image_features=EYE, text_features=EYE, logit_scale=torch.tensor(1.0),
                  relevance=torch.tensor([1.0, 0.5]), is_weak=torch.tensor([False, True]),
                  has_anchor=torch.tensor([False, True]), anchor_features=EYE.flip(0))
    return RC3Loss(LossConfig(weak_form=form, **weights))(**kwargs)


def test_rc3_loss_forms_split_strict_and_weak_rows():
    # each row's loss is divided by all N = 2 rows: a weak row weighs what a strict row does
    soft = _rows("soft")
    assert soft["itc"].item() == pytest.approx(HARD / 2, abs=1e-6)
    assert soft["weak"].item() == pytest.approx(SOFT / 2, abs=1e-6)
    # weak as strict: one hard InfoNCE over both rows, no weak term
    strict = _rows("strict")
    assert strict["itc"].item() == pytest.approx(HARD, abs=1e-6) and "weak" not in strict
    # regulariser: row 1 has an anchor, so it leaves the InfoNCE; cos(v1, w1) = 1,
    # r * cos(v1, a1) = 0.5 * 0 -> (1 - 0)^2, over 2 rows
    reg = _rows("regularizer")
    assert reg["weak"].item() == pytest.approx(0.5, abs=1e-6)
    weighted = _rows("soft", itc=2.0, weak=0.5)
    assert weighted["loss"].item() == pytest.approx(2 * weighted["itc"].item() + 0.5 * weighted["weak"].item(), abs=1e-6)
