"""WCA (MVP's word <-> concept grounding) by hand: each region-concept token of an image is a
query scored against every text's words (its best word, padding excluded), contrasted over
the texts; weak rows ask no query; RC3Loss weighs it by ``loss.wca``. (RCA, TCP, ICP, MRC,
MRFR, TTM and CMLM have their hand-computed tests in test_pt_mvp_losses.py and
test_pt_losses.py.)"""

from __future__ import annotations

import math

import pytest
import torch

from pretrain.config import LossConfig
from pretrain.losses import RC3Loss
from pretrain.mvp import grounding_inputs

# region-concept tokens: image 0 has one ([1, 0]), image 1 one ([0, 3]) and an empty slot
QUERIES = torch.tensor([[[1.0, 0.0], [9.0, 9.0]], [[0.0, 3.0], [5.0, 5.0]]])
QUERY_MASK = torch.tensor([[True, False], [True, False]])
# words after [CLS]: text 0 has [0.6, 0.8] and [2, 0]; text 1 has [0, 1] and a padded [1, 0]
WORDS = torch.tensor([[[0.6, 0.8], [2.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
WORD_MASK = torch.tensor([[True, True], [True, False]])
EYE = torch.eye(2)


def _nll(own: float, *others: float) -> float:
    return math.log(sum(math.exp(x - own) for x in (own, *others)))


def _loss(strict: torch.Tensor, scale: float) -> dict[str, torch.Tensor]:
    wca = grounding_inputs(QUERIES, QUERY_MASK & strict[:, None], WORDS, WORD_MASK, width=3)
    return RC3Loss(LossConfig(weak_form="strict", wca=2.0))(
        image_features=EYE, text_features=EYE, logit_scale=torch.tensor(scale), relevance=torch.ones(2),
        is_weak=torch.zeros(2, dtype=torch.bool), has_anchor=torch.zeros(2, dtype=torch.bool), wca=wca)


def test_wca_scores_each_region_concept_by_its_best_word_per_text():
    strict = torch.tensor([True, True])
    # concept [1, 0] of image 0: text 0's best word is [1, 0] (1.0), text 1's only real word [0, 1] (0.0);
    # concept [0, 1] of image 1: text 0's best is [0.6, 0.8] (0.8), text 1's [0, 1] (1.0)
    out = _loss(strict, 1.0)
    assert out["wca"].item() == pytest.approx((_nll(1.0, 0.0) + _nll(1.0, 0.8)) / 2, abs=1e-6)
    assert out["loss"].item() == pytest.approx(out["itc"].item() + 2.0 * out["wca"].item(), abs=1e-6)
    scaled = _loss(strict, 3.0)["wca"].item()  # the similarities are divided by ITC's temperature
    assert scaled == pytest.approx((_nll(3.0, 0.0) + _nll(3.0, 2.4)) / 2, abs=1e-6)


def test_wca_ignores_padded_words_and_weak_rows_queries():
    # had text 1's padded [1, 0] counted, image 0's concept would score 1.0 there too: log 2
    with_padding = grounding_inputs(QUERIES, QUERY_MASK, WORDS, torch.ones(2, 2, dtype=torch.bool), width=3)
    loss = RC3Loss(LossConfig(wca=1.0)).grounding(*with_padding, torch.tensor(1.0)).item()
    assert loss == pytest.approx((math.log(2) + _nll(1.0, 0.8)) / 2, abs=1e-6)
    # row 1 weak: its concept asks nothing, its words stay candidates
    assert _loss(torch.tensor([True, False]), 1.0)["wca"].item() == pytest.approx(_nll(1.0, 0.0), abs=1e-6)
