"""Validation of a ``PretrainConfig``: cross-field checks, each message naming the setting.

``pretrain.config.validate`` runs them when a config is built (``config_from_dict``), before
any data is read or model built.
"""

from __future__ import annotations

from pretrain.config import (
    PRECISIONS,
    WEAK_FORMS,
    ConfigError,
    DataConfig,
    ModelConfig,
    PretrainConfig,
)
from pretrain.sampling import masked_blocks
from pretrain.stages import OBJECTIVES, StageError, check_steps
from schemas import TEXT_KINDS


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _validate_model(m: ModelConfig) -> None:
    _check(m.image_size % m.patch_size == 0, f"model.image_size ({m.image_size}) must be a multiple of model.patch_size ({m.patch_size})")
    for name in ("vision", "text"):
        width, heads = getattr(m, f"{name}_width"), getattr(m, f"{name}_heads")
        _check(width % heads == 0, f"model.{name}_width ({width}) must be divisible by model.{name}_heads ({heads})")
    _check(m.max_text_len >= 4, "model.max_text_len must be at least 4")
    _check(m.fusion_layers >= 1, "model.fusion_layers must be at least 1")
    _check((m.region_dim > 0) == (m.max_regions > 0), "set model.region_dim and model.max_regions together (both 0 = no regions)")
    _check(m.concepts >= -1, "model.concepts: 0 = off, -1 = the dataset's concepts.txt, N > 0 = its size")
    _check(m.max_concepts >= 1, "model.max_concepts must be at least 1")


def _validate_data(d: DataConfig) -> None:
    _check(d.batch_size >= 2, "data.batch_size must be at least 2 (contrastive losses need negatives)")
    _check(d.parallel_batch_size in (0,) or d.parallel_batch_size >= 2, "data.parallel_batch_size must be 0 (off) or at least 2")
    _check(d.num_workers >= 0, "data.num_workers must be >= 0")
    bad = sorted(set(d.kind_weights) - set(TEXT_KINDS))
    _check(not bad, f"data.kind_weights: unknown kind(s) {bad}; use {list(TEXT_KINDS)}")
    _check(all(w >= 0 for w in [*d.kind_weights.values(), *d.lang_weights.values()]), "data.kind_weights/lang_weights must be >= 0")
    _check(any(d.kind_weights.get(k, 1.0) > 0 for k in TEXT_KINDS), "data.kind_weights: give at least one kind a weight > 0")
    nr = d.null_relevance
    _check(nr == "skip" or (isinstance(nr, int | float) and not isinstance(nr, bool) and 0 <= nr <= 1),
           f"data.null_relevance = {nr!r}; use \"skip\" or a number in [0, 1]")
    _check(len(d.crop_scale) == 2 and 0 < d.crop_scale[0] <= d.crop_scale[1] <= 1,
           "data.crop_scale must be [min, max] with 0 < min <= max <= 1")
    for name in ("mask_prob", "span_mask_prob", "cmlm_mask_prob"):
        _check(0 <= getattr(d, name) < 1, f"data.{name} must be in [0, 1)")
    for name in ("mrm_mask_prob", "concept_mask_prob", "mpm_mask_prob"):
        _check(0 < getattr(d, name) < 1, f"data.{name} must be in (0, 1)")
    for name in ("max_masks", "cmlm_max_masks"):
        _check(getattr(d, name) >= 1, f"data.{name} must be at least 1")


def _validate_objectives(cfg: PretrainConfig) -> None:
    """Objectives that need data or inputs the run does not have are refused here."""
    loss = cfg.loss
    weights = {n: getattr(loss, n) for n in OBJECTIVES}
    _check(all(w >= 0 for w in weights.values()) and any(w > 0 for w in weights.values()),
           "loss weights must be >= 0, at least one > 0")
    for name in ("ttm", "cmlm"):
        _check(weights[name] == 0 or cfg.data.parallel_batch_size > 0,
               f"loss.{name} = {weights[name]} trains on parallel rows; set data.parallel_batch_size > 0 or loss.{name} = 0")
    _check(loss.mrfr == 0 or cfg.model.region_dim > 0,
           f"loss.mrfr = {loss.mrfr} masks region features; set model.region_dim/max_regions or loss.mrfr = 0")
    for name in ("mrc", "icp"):
        _check(weights[name] == 0 or cfg.model.region_dim > 0,
               f"loss.{name} = {weights[name]} works on masked regions; set model.region_dim/max_regions or loss.{name} = 0")
    for name in ("tcp", "icp", "rca", "wca"):
        _check(weights[name] == 0 or cfg.model.concepts != 0,
               f"loss.{name} = {weights[name]} predicts or aligns concepts; set model.concepts = -1 (the dataset's "
               f"concepts.txt) or loss.{name} = 0")
    _check(weights["wca"] == 0 or cfg.model.region_dim > 0,
           f"loss.wca = {weights['wca']} aligns region concepts with words; set model.region_dim/max_regions or loss.wca = 0")
    _validate_mpm(cfg)


def _validate_mpm(cfg: PretrainConfig) -> None:
    """Masked patch modelling needs a patch grid the masking can cut into squares, some of
    them masked and some left visible to predict from."""
    loss, m, d = cfg.loss, cfg.model, cfg.data
    _check(isinstance(loss.mpm_norm_pix, bool), f"loss.mpm_norm_pix = {loss.mpm_norm_pix!r}; use true or false")
    _check(isinstance(d.mpm_block, int) and not isinstance(d.mpm_block, bool) and d.mpm_block >= 1,
           f"data.mpm_block = {d.mpm_block!r}: the side of a masked square in patches, an integer >= 1")
    if loss.mpm == 0:
        return
    grid = m.image_size // m.patch_size
    fits = [b for b in range(1, grid + 1) if grid % b == 0 and 1 <= masked_blocks((grid // b) ** 2, d.mpm_mask_prob) < (grid // b) ** 2]
    where = (f"the model's {grid} x {grid} patch grid (model.image_size {m.image_size} / model.patch_size {m.patch_size})")
    _check(bool(fits), f"loss.mpm = {loss.mpm} predicts masked patches from visible ones, and {where} cannot have both at "
                       f"data.mpm_mask_prob = {d.mpm_mask_prob}; use a smaller model.patch_size or set loss.mpm = 0")
    _check(grid % d.mpm_block == 0, f"data.mpm_block = {d.mpm_block} does not divide {where}; use one of {fits}")
    squares = (grid // d.mpm_block) ** 2
    count = masked_blocks(squares, d.mpm_mask_prob)
    _check(count < squares, f"data.mpm_mask_prob = {d.mpm_mask_prob} masks {count} of the {squares} squares of "
                            f"data.mpm_block = {d.mpm_block} patches in {where}, leaving none visible; lower "
                            f"data.mpm_mask_prob or use data.mpm_block in {fits}")


def validate_config(cfg: PretrainConfig) -> None:
    """Cross-field checks; every message names the setting."""
    _validate_model(cfg.model)
    _validate_data(cfg.data)
    loss, train = cfg.loss, cfg.train
    _check(loss.weak_form in WEAK_FORMS, f"loss.weak_form = {loss.weak_form!r}; use one of {list(WEAK_FORMS)}")
    _check(not loss.weak_spread or loss.weak_form == "weighted_infonce",
           f"loss.weak_spread applies to weak_form = \"weighted_infonce\" only (weak_form is {loss.weak_form!r}); "
           "soft_target already spreads 1 - r, in both directions")
    wu = loss.weak_warmup
    _check(isinstance(wu, int) and not isinstance(wu, bool) and 0 <= wu < train.steps,
           f"loss.weak_warmup = {wu!r}: steps of soft_target before the regulariser, an integer in [0, train.steps) "
           f"(train.steps = {train.steps})")
    _check(wu == 0 or loss.weak_form == "regularizer",
           f"loss.weak_warmup applies to weak_form = \"regularizer\" only (weak_form is {loss.weak_form!r}); set it to 0")
    _check(loss.itm_negatives in ("sample", "hardest"), "loss.itm_negatives: use \"sample\" or \"hardest\"")
    _check(loss.temperature > 0, "loss.temperature must be > 0")
    _validate_objectives(cfg)
    try:
        check_steps(cfg.schedule, train.steps)
    except StageError as err:
        raise ConfigError(str(err)) from err
    _check(train.steps >= 1 and 0 <= train.warmup_steps <= train.steps, "train.warmup_steps must be in [0, train.steps]")
    _check(train.accum_steps >= 1, "train.accum_steps must be >= 1")
    _check(train.threads >= 0, "train.threads must be >= 0 (0 = torch's default)")
    _check(train.precision in PRECISIONS, f"train.precision: use one of {list(PRECISIONS)}")
    _check(train.ckpt_every >= 1 and train.log_every >= 1, "train.ckpt_every and train.log_every must be >= 1")
    _check(len(train.betas) == 2, "train.betas must be [beta1, beta2]")
    _check(cfg.tokenizer.model_type in ("unigram", "bpe"), "tokenizer.model_type: use \"unigram\" or \"bpe\"")
