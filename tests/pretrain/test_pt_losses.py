"""Each objective against a small case computed by hand, and the direction each weak form
moves a pair: pulled for r = 1, pushed for r = 0, held where r says in between. CCLM's
cross-view terms (TTM, conditional MLM) and masked region modelling (MRFR, MRC) too."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pretrain.config import ConfigError, LossConfig, load_config
from pretrain.losses import (
    ContrastiveLoss,
    ITMLoss,
    MaskedLMLoss,
    RC3Loss,
    RegionClassLoss,
    RegionFeatureLoss,
    RelevanceRegularizer,
    soft_target_infonce,
    weighted_infonce,
)

E = math.e
EYE = torch.eye(2)
HARD = math.log(1 + 1 / E)  # -log(e / (e + 1)): own pair at logit 1, the other at 0


def _nll(own: float, *others: float) -> float:
    """-log softmax of ``own`` among ``own`` and ``others``."""
    return math.log(sum(math.exp(x - own) for x in (own, *others)))


def test_itc_asymmetric():
    # images = I, so logits[i, j] = texts[j][i]: image->text rows are [2, 1.5] and [-1, 0],
    # text->image rows (the columns) are [2, -1] and [1.5, 0]
    texts = torch.tensor([[2.0, -1.0], [1.5, 0.0]])
    i2t = [_nll(2.0, 1.5), _nll(0.0, -1.0)]
    t2i = [_nll(2.0, -1.0), _nll(0.0, 1.5)]
    rows = soft_target_infonce(EYE, texts, torch.tensor(1.0), torch.ones(2))
    assert rows.tolist() == pytest.approx([(i2t[0] + t2i[0]) / 2, (i2t[1] + t2i[1]) / 2], abs=1e-6)
    loss = ContrastiveLoss()(EYE, texts, torch.tensor(1.0))
    assert loss.item() == pytest.approx(sum(i2t + t2i) / 4, abs=1e-6)
    # a dropped or doubled direction would give one of these instead
    assert abs(sum(i2t) / 2 - loss.item()) > 0.1 and abs(sum(t2i) / 2 - loss.item()) > 0.1
    scaled = ContrastiveLoss()(EYE, texts, torch.tensor(2.0))
    expected = (_nll(4, 3) + _nll(0, -2) + _nll(4, -2) + _nll(0, 3)) / 4
    assert scaled.item() == pytest.approx(expected, abs=1e-6)


def test_soft_target_puts_r_on_the_pair_and_spreads_the_rest_over_the_others():
    # N = 3, logits = I: log p(own) = 1 - L, log p(other) = -L with L = log(e + 2), both ways;
    # target [r, (1 - r) / 2, (1 - r) / 2] gives -(r (1 - L) + (1 - r)(-L)) = L - r
    eye3, big_l = torch.eye(3), math.log(E + 2)
    r = torch.tensor([1.0, 0.5, 0.0])
    rows = soft_target_infonce(eye3, eye3, torch.tensor(1.0), r)
    assert rows.tolist() == pytest.approx([big_l - 1, big_l - 0.5, big_l], abs=1e-6)
    # asymmetric logits, row 0 with r = 0.2: the two directions differ
    texts = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 1.0], [0.0, 0.5, 0.0]])  # logits[i, j] = texts[j][i]
    row0 = soft_target_infonce(eye3, texts, torch.tensor(1.0), torch.tensor([0.2, 1.0, 1.0]))[0]
    i2t = 0.2 * _nll(1, 2, 0) + 0.4 * _nll(2, 1, 0) + 0.4 * _nll(0, 1, 2)  # image 0 over texts [1, 2, 0]
    t2i = 0.2 * _nll(1, 0, 0) + 0.4 * _nll(0, 1, 0) + 0.4 * _nll(0, 1, 0)  # text 0 over images [1, 0, 0]
    assert row0.item() == pytest.approx((i2t + t2i) / 2, abs=1e-6)


def _cos_after_step(loss_fn, image: torch.Tensor, text: torch.Tensor, row: int = 0, lr: float = 0.05) -> tuple[float, float]:
    """cos(image[row], text[row]) before and after one SGD step on ``loss_fn(image, text)``."""
    image, text = image.clone().requires_grad_(True), text.clone().requires_grad_(True)
    loss_fn(image, text).backward()
    before = torch.cosine_similarity(image[row], text[row], dim=0).item()
    with torch.no_grad():
        after = torch.cosine_similarity(image[row] - lr * image.grad[row], text[row] - lr * text.grad[row], dim=0).item()
    return before, after


def _unit(*rows: list[float]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_soft_target_pulls_pushes_and_holds_by_relevance():
    image, text = _unit([1, 0.2, 0], [0, 1, 0.3], [0.2, 0, 1]), _unit([0.6, 0.8, 0], [0.1, 1, 0], [0, 0.3, 1])
    scale = torch.tensor(5.0)

    def step(r0: float) -> tuple[float, float]:
        return _cos_after_step(lambda a, b: soft_target_infonce(a, b, scale, torch.tensor([r0, 1.0, 1.0]))[0], image, text)

    before, pulled = step(1.0)
    assert pulled > before
    before, pushed = step(0.0)
    assert pushed < before
    # held in between: where the model already gives pair 0 probability r in both
    # directions (logits s * I with N = 2: p = sigmoid(s)), the gradient vanishes
    s = 1.5
    p = 1 / (1 + math.exp(-s))
    a = EYE.clone().requires_grad_(True)
    soft_target_infonce(a, EYE, torch.tensor(s), torch.tensor([p, p])).sum().backward()
    assert a.grad.abs().max().item() < 1e-6


def test_weighted_infonce_puts_mass_r_on_the_own_image_and_never_pushes():
    soft = 0.5 * HARD
    rows = weighted_infonce(EYE, EYE, torch.tensor(1.0), torch.tensor([1.0, 0.5]))
    assert rows.tolist() == pytest.approx([HARD, soft], abs=1e-6)
    assert weighted_infonce(EYE, EYE, torch.tensor(1.0), torch.tensor([0.0, 0.0])).tolist() == [0.0, 0.0]
    # spread: the text's remaining 1 - r = 0.5 goes uniformly over the images
    uniform = 0.5 * math.log(1 + 1 / E) + 0.5 * math.log(1 + E)  # CE of a uniform target over N = 2
    spread = weighted_infonce(EYE, EYE, torch.tensor(1.0), torch.tensor([1.0, 0.5]), spread=True)
    assert spread[1].item() == pytest.approx((0.5 * HARD + 0.5 * HARD + 0.5 * uniform) / 2, abs=1e-6)
    images = EYE.clone().requires_grad_(True)
    weighted_infonce(images, EYE, torch.tensor(1.0), torch.tensor([0.0, 0.0]), spread=True).sum().backward()
    assert images.grad is None or not images.grad.any(), "the spread part teaches the text side only"


IMAGE = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
WEAK = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
ANCHOR = torch.tensor([[0.8, 0.6], [1.0, 0.0]])  # cos(v0, a0) = 0.8, cos(v0, w0) = 0.6


def _reg(r0: float, image=IMAGE, weak=WEAK, anchor=ANCHOR) -> torch.Tensor:
    return RelevanceRegularizer()(image, weak, anchor, torch.tensor([r0, 1.0]), torch.tensor([1.0, 0.0]))


def test_regularizer_aims_weak_similarity_at_r_times_anchor_similarity():
    # row 0: (0.6 - 0.5 * 0.8)^2 = 0.04; row 1 masked out; divided by 2 rows
    assert _reg(0.5).item() == pytest.approx(0.02, abs=1e-6)
    assert _reg(1.0).item() == pytest.approx((0.6 - 0.8) ** 2 / 2, abs=1e-6)
    assert _reg(0.0).item() == pytest.approx(0.6**2 / 2, abs=1e-6)
    image, weak, anchor = (t.clone().requires_grad_(True) for t in (IMAGE, WEAK, ANCHOR))
    _reg(0.5, image, weak, anchor).backward()
    # d/dv0 of (v0.w0 - target)^2 / 2 with the target constant: (0.6 - 0.4) * w0
    assert image.grad[0].tolist() == pytest.approx([0.2 * 0.6, 0.2 * 0.8], abs=1e-6)
    assert weak.grad[0].tolist() == pytest.approx([0.2 * 1.0, 0.0], abs=1e-6)
    assert anchor.grad is None or not anchor.grad.any(), "the anchor is the reference, never pulled"


def test_regularizer_pulls_pushes_and_holds_by_relevance():
    image, weak = _unit([1, 0], [1, 0]), _unit([0.6, 0.8], [0, 1])
    before, pulled = _cos_after_step(lambda v, w: _reg(1.0, v, w), image, weak)
    assert before == pytest.approx(0.6) and pulled > before  # towards cos(v, a) = 0.8
    _, pushed = _cos_after_step(lambda v, w: _reg(0.0, v, w), image, weak)
    assert pushed < before  # towards orthogonal
    held = _unit([1, 0], [1, 0]), _unit([0.4, math.sqrt(1 - 0.16)], [0, 1])  # cos = 0.4 = 0.5 * 0.8
    v, w = (t.clone().requires_grad_(True) for t in held)
    _reg(0.5, v, w).backward()
    assert v.grad.abs().max().item() < 1e-6 and w.grad.abs().max().item() < 1e-6


def test_mlm_and_itm_cross_entropy():
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)], [5.0, 0.0, 0.0]])
    # row 0 label 2: -log(2 / 4); row 1 ignored
    assert MaskedLMLoss()(logits, torch.tensor([2, -100])).item() == pytest.approx(math.log(2.0), abs=1e-6)
    assert MaskedLMLoss()(logits[:0], torch.tensor([], dtype=torch.long)).item() == 0.0
    itm = ITMLoss()(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 3.0]]), torch.tensor([1, 0, -100]))
    assert itm.item() == pytest.approx((math.log(1 + E**2) + math.log(1 + E)) / 2, abs=1e-6)


def _rows(form: str, has_anchor: bool = True, **weights: float) -> dict[str, torch.Tensor]:
    kwargs = dict(image_features=EYE, text_features=EYE, logit_scale=torch.tensor(1.0),
                  relevance=torch.tensor([1.0, 0.5]), is_weak=torch.tensor([False, True]),
                  has_anchor=torch.tensor([False, has_anchor]), anchor_features=EYE.flip(0))
    return RC3Loss(LossConfig(weak_form=form, **weights))(**kwargs)


SOFT_TARGET = math.log(1 + E) - 0.5  # N = 2, logits I, target [0.5, 0.5]: -(0.5 (1 - L) - 0.5 L)


def test_rc3_loss_forms_split_strict_and_weak_rows():
    # each row's loss is divided by all N = 2 rows: a weak row weighs what a strict row does
    weighted = _rows("weighted_infonce")
    assert weighted["itc"].item() == pytest.approx(HARD / 2, abs=1e-6)
    assert weighted["weak"].item() == pytest.approx(0.5 * HARD / 2, abs=1e-6)
    soft = _rows("soft_target")
    assert soft["itc"].item() == pytest.approx(HARD / 2, abs=1e-6)
    assert soft["weak"].item() == pytest.approx(SOFT_TARGET / 2, abs=1e-6)
    # weak as strict: one hard InfoNCE over both rows, no weak term
    strict = _rows("strict")
    assert strict["itc"].item() == pytest.approx(HARD, abs=1e-6) and "weak" not in strict
    # regulariser: row 1 has an anchor, so it leaves the InfoNCE; cos(v1, w1) = 1,
    # r * cos(v1, a1) = 0.5 * 0 -> (1 - 0)^2, over 2 rows
    reg = _rows("regularizer")
    assert reg["itc"].item() == pytest.approx(HARD / 2, abs=1e-6)
    assert reg["weak"].item() == pytest.approx(0.5, abs=1e-6)
    # without an anchor the regulariser's weak row takes the soft target
    assert _rows("regularizer", has_anchor=False)["weak"].item() == pytest.approx(SOFT_TARGET / 2, abs=1e-6)
    scaled = _rows("regularizer", itc=2.0, weak=0.5)
    assert scaled["loss"].item() == pytest.approx(2 * scaled["itc"].item() + 0.5 * scaled["weak"].item(), abs=1e-6)


def _warmup_config(**loss: object):
    return load_config(None, {"loss": {"weak_form": "regularizer", "weak_warmup": 3, **loss}, "train": {"steps": 10, "warmup_steps": 1}})


def test_weak_warmup_trains_soft_target_then_the_regularizer():
    """loss.weak_warmup = 3: steps 0-2 give the weak row the soft target (SOFT_TARGET / 2, as
    in soft_target), steps 3+ the regulariser ((1 - 0.5 * 0)^2 / 2 = 0.5, row 1 out of the
    InfoNCE); the strict row's ITC is HARD / 2 throughout. The stage follows the step alone,
    so a run resumed at step 5 is in the regulariser's stage."""
    from types import SimpleNamespace

    from pretrain.config import WEAK_WARMUP_STAGES, config_from_dict, stage_loss
    from pretrain.train import enter_stage

    cfg = _warmup_config()
    assert [(s.name, s.steps) for s in cfg.schedule] == [(WEAK_WARMUP_STAGES[0], 3), (WEAK_WARMUP_STAGES[1], 1)]
    assert cfg.schedule[0].loss == cfg.schedule[1].loss == {"itc": 1.0, "weak": 1.0, "ttc": 1.0, "mlm": 1.0, "itm": 1.0}
    kwargs = dict(image_features=EYE, text_features=EYE, logit_scale=torch.tensor(1.0), relevance=torch.tensor([1.0, 0.5]),
                  is_weak=torch.tensor([False, True]), has_anchor=torch.tensor([False, True]), anchor_features=EYE.flip(0))
    expected = {0: SOFT_TARGET / 2, 2: SOFT_TARGET / 2, 3: 0.5, 9: 0.5}
    for step, weak in expected.items():
        run = SimpleNamespace(cfg=cfg, step=step, stage=-1, model=SimpleNamespace(set_stage=lambda *_: None), loss=None)
        enter_stage(run)
        out = run.loss(**kwargs)
        assert out["weak"].item() == pytest.approx(weak, abs=1e-6), step
        assert out["itc"].item() == pytest.approx(HARD / 2, abs=1e-6)
    assert [stage_loss(cfg, s).weak_form for s in cfg.schedule] == ["soft_target", "regularizer"]
    assert cfg.loss.weak_form == "regularizer"  # the model encodes anchors from the start
    assert config_from_dict(cfg.to_dict()) == cfg  # a run's saved config (resume, evaluate) reads back as it was
    assert load_config(None, {"loss": {"weak_form": "regularizer"}}).schedule == []  # 0: no warm-up, no stages


@pytest.mark.parametrize(("loss", "message"), [
    ({"weak_form": "soft_target", "weak_warmup": 3}, "weak_warmup applies to weak_form = \"regularizer\" only"),
    ({"weak_form": "regularizer", "weak_warmup": 10}, r"weak_warmup = 10: .* in \[0, train.steps\) \(train.steps = 10\)"),
    ({"weak_form": "regularizer", "weak_warmup": -1}, "weak_warmup = -1"),
    ({"weak_form": "regularizer", "weak_warmup": 2.5}, "weak_warmup = 2.5"),
])
def test_weak_warmup_is_refused_where_it_means_nothing(loss, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"loss": loss, "train": {"steps": 10, "warmup_steps": 1}})


def test_weak_warmup_and_a_schedule_of_ones_own_are_refused_together():
    with pytest.raises(ConfigError, match=r"weak_warmup = 2 runs as a schedule of its own .* cannot be combined"):
        load_config(None, {"loss": {"weak_form": "regularizer", "weak_warmup": 2}, "train": {"steps": 10, "warmup_steps": 1},
                           "schedule": [{"name": "one", "steps": 5, "loss": {"itc": 1.0, "weak": 1.0}}]})


def test_weak_form_names():
    assert LossConfig().weak_form == "regularizer"  # chosen on validation (pretrain/README.md)
    # "soft" is the old name of the relevance-weighted InfoNCE: read as it, saved as it
    old = load_config(None, {"loss": {"weak_form": "soft", "weak_spread": True}})
    assert old.loss.weak_form == "weighted_infonce" and old.to_dict()["loss"]["weak_form"] == "weighted_infonce"
    assert LossConfig(weak_form="soft").weak_form == "weighted_infonce"  # a checkpoint's saved config
    with pytest.raises(ConfigError, match="weak_spread applies to weak_form = \"weighted_infonce\" only"):
        load_config(None, {"loss": {"weak_form": "soft_target", "weak_spread": True}})


def test_mrfr_is_the_squared_error_averaged_over_masked_regions_and_dimensions():
    # two masked regions of D = 2: (1-0)^2 + (2-0)^2 + (0-3)^2 + (0-4)^2 = 30 over M * D = 4
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    loss = RegionFeatureLoss()(pred, target)
    assert loss.item() == pytest.approx(7.5)
    loss.backward()
    assert pred.grad.flatten().tolist() == pytest.approx([0.5, 1.0, -1.5, -2.0])  # 2 (pred - f) / 4
    empty = RegionFeatureLoss()(torch.zeros(0, 2, requires_grad=True), torch.zeros(0, 2))
    assert empty.item() == 0.0 and empty.requires_grad  # a batch with no masked region


def test_mrc_cross_entropy_and_kl_to_the_detector_distribution():
    # softmax([0, ln 2, 0]) = [1/4, 1/2, 1/4]
    logits = torch.tensor([[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0]])
    ce = RegionClassLoss()(logits, labels=torch.tensor([1, 2]))
    assert ce.item() == pytest.approx((math.log(2) + math.log(3)) / 2, abs=1e-6)
    # KL([1/2, 1/2, 0] || [1/4, 1/2, 1/4]) = 1/2 ln 2 (a zero class adds nothing);
    # KL(uniform || uniform) = 0
    probs = torch.tensor([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    kl = RegionClassLoss()(logits, probs=probs)
    assert kl.item() == pytest.approx(0.5 * math.log(2) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="labels .MRC. or probs"):
        RegionClassLoss()(logits)


def test_rc3_loss_adds_the_cross_view_and_region_terms_by_their_weights():
    cfg = LossConfig(weak_form="strict", ttm=0.5, cmlm=2.0, mrfr=3.0)
    out = RC3Loss(cfg)(image_features=EYE, text_features=EYE, logit_scale=torch.tensor(1.0), relevance=torch.ones(2),
                       is_weak=torch.zeros(2, dtype=torch.bool), has_anchor=torch.zeros(2, dtype=torch.bool),
                       ttm_logits=torch.tensor([[0.0, 1.0], [1.0, 0.0], [3.0, 3.0]]), ttm_labels=torch.tensor([1, 0, -100]),
                       cmlm_logits=torch.tensor([[0.0, math.log(3.0)]]), cmlm_labels=torch.tensor([0]),
                       mrfr_pred=torch.tensor([[2.0]]), mrfr_target=torch.tensor([[0.0]]))
    assert out["ttm"].item() == pytest.approx(math.log(1 + 1 / E), abs=1e-6)  # both rows at logit margin 1
    assert out["cmlm"].item() == pytest.approx(math.log(4), abs=1e-6)  # -log(1 / 4)
    assert out["mrfr"].item() == pytest.approx(4.0)
    expected = HARD + 0.5 * out["ttm"].item() + 2.0 * math.log(4) + 3.0 * 4.0
    assert out["loss"].item() == pytest.approx(expected, abs=1e-5)
    assert set(out) == {"itc", "ttm", "cmlm", "mrfr", "loss"}


def test_new_objectives_are_off_by_default_and_refused_without_their_data():
    loss = LossConfig()
    assert (loss.ttm, loss.cmlm, loss.mrfr, loss.mrc) == (0.0, 0.0, 0.0, 0.0)
    data = load_config().data
    assert (data.cmlm_mask_prob, data.cmlm_max_masks, data.mrm_mask_prob) == (0.4, 12, 0.15)
    with pytest.raises(ConfigError, match="loss.ttm = 1.0 trains on parallel rows; set data.parallel_batch_size > 0"):
        load_config(None, {"loss": {"ttm": 1.0}, "data": {"parallel_batch_size": 0}})
    with pytest.raises(ConfigError, match="loss.mrfr = 1.0 masks region features; set model.region_dim"):
        load_config(None, {"loss": {"mrfr": 1.0}})
    # MRC is accepted with regions (the trainer then checks that the data has labels), refused without
    with pytest.raises(ConfigError, match="loss.mrc = 1.0 works on masked regions; set model.region_dim"):
        load_config(None, {"loss": {"mrc": 1.0}})
    assert load_config(None, {"loss": {"mrc": 1.0}, "model": {"region_dim": 8, "max_regions": 4}}).loss.mrc == 1.0
    for name in ("tcp", "icp", "rca", "wca"):
        with pytest.raises(ConfigError, match=f"loss.{name} = 1.0 predicts or aligns concepts; set model.concepts = -1"):
            load_config(None, {"loss": {name: 1.0}, "model": {"region_dim": 8, "max_regions": 4}})
    with pytest.raises(ConfigError, match="data.cmlm_max_masks must be at least 1"):
        load_config(None, {"data": {"cmlm_max_masks": 0}})
    on = load_config(None, {"loss": {"ttm": 1.0, "cmlm": 1.0, "mrfr": 1.0}, "model": {"region_dim": 8, "max_regions": 4}})
    assert (on.loss.ttm, on.loss.cmlm, on.loss.mrfr) == (1.0, 1.0, 1.0)


def test_weak_warmup_resumes_bit_for_bit_across_the_switch(tmp_path):
    """6 steps with weak_warmup = 3 straight == 2 steps, stop, resume: the resumed run enters
    the soft_target stage, then the regulariser's, at the step the straight run does."""
    from pretrain_helpers import micro_config, write_dataset

    from pretrain.checkpoint import load_checkpoint
    from pretrain.train import run_training

    torch.set_num_threads(1)
    root = write_dataset(tmp_path / "ds", n=24)
    cfg = micro_config(data={"batch_size": 6, "parallel_batch_size": 4}, loss={"weak_form": "regularizer", "weak_warmup": 3},
                       train={"steps": 6, "ckpt_every": 2, "keep_checkpoints": 0, "device": "cpu"})
    straight = run_training(cfg, str(root), str(tmp_path / "a"), quiet=True)
    run_training(cfg, str(root), str(tmp_path / "b"), stop_at=2, quiet=True)
    resumed = run_training(cfg, str(root), str(tmp_path / "b"), resume=True, quiet=True)
    a, b = load_checkpoint(straight["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    logged = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in logged] == [0, 0, 0, 1, 1, 1]
