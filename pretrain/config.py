"""Typed pre-training configuration: small dataclasses, loaded from TOML, validated once.

``load_config(path, overrides)`` returns a ``PretrainConfig`` or raises ``ConfigError``
naming the setting and the fix, before any data is read or model built. Model sizes are
presets (``tiny`` for tests and the demo, ``base`` = ViT-B/16 + 12-layer text, CCLM-like
6-layer fusion) that a ``[model]`` table may override field by field.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pretrain.stages import OBJECTIVES, Stage, StageError, parse_schedule, union_weights
from schemas import TEXT_KINDS

# RC3's two forms first (the default is the first), then the relevance-weighted InfoNCE and
# the weak-as-strict baseline; pretrain/README.md gives each formula.
WEAK_FORMS = ("soft_target", "regularizer", "weighted_infonce", "strict")
# Old names still read from configs and checkpoints: "soft" was the relevance-weighted
# InfoNCE's name before it stopped being the default (it never was RC3's objective).
WEAK_FORM_ALIASES = {"soft": "weighted_infonce"}
PRECISIONS = ("auto", "fp32", "bf16")
# The two stages loss.weak_warmup trains in: soft_target first, then the regulariser.
WEAK_WARMUP_STAGES = ("weak_warmup", "rc3")


class ConfigError(ValueError):
    """The configuration is wrong; the message says which setting and what to change."""


@dataclass
class ModelConfig:
    """Sizes of the three encoders.

    image_size/patch_size: the ViT's square input and patch side (image_size % patch_size == 0).
    *_width/*_layers/*_heads: transformer sizes of the vision, text and fusion encoders
        (fusion shares the text width: text tokens cross-attend to image tokens).
    embed_dim: size of the normalised ITC/TTC embeddings.
    max_text_len: tokens per text, [CLS] and [EOS] included; longer texts are cut.
    region_dim/max_regions: size and number of precomputed ROI features fed next to the
        patches (0 = the model has no region input and ignores ``regions`` in the data).
    concepts: MVP's concept level (pretrain/README.md): 0 = off; -1 = on, with the
        vocabulary of the dataset's concepts.txt; N > 0 = on, and concepts.txt must list N.
        Each text's concepts become extra tokens after its words, each region's concept a
        token beside the region.
    max_concepts: concept tokens per text at most (the first ones, in order of occurrence).
    vocab_size/region_classes: set from the tokenizer and from the detector labels of the
        data (loss.mrc), never by hand.
    """

    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    fusion_layers: int = 1
    mlp_ratio: float = 2.0
    embed_dim: int = 64
    max_text_len: int = 32
    dropout: float = 0.0
    region_dim: int = 0
    max_regions: int = 0
    concepts: int = 0
    max_concepts: int = 8
    vocab_size: int = 0
    region_classes: int = 0


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),
    "base": ModelConfig(image_size=224, patch_size=16, vision_width=768, vision_layers=12, vision_heads=12,
                        text_width=768, text_layers=12, text_heads=12, fusion_layers=6, mlp_ratio=4.0,
                        embed_dim=256, max_text_len=64, dropout=0.0),
}


@dataclass
class DataConfig:
    """What the loader reads and how it samples.

    split: the ``split`` value of training rows.
    batch_size/parallel_batch_size: image rows and parallel rows per rank per micro-step
        (parallel_batch_size 0 turns TTC's data off).
    kind_weights/lang_weights: the per-step text policy: each row offers its texts with
        weight kind_weights[kind] * lang_weights[lang]; one is drawn per row per step. Kinds
        and languages not listed weigh 1 (``kind_weights = {weak = 0}`` drops weak texts only).
        A translation of a weak text (``mt.back_translate``) counts as weak, with its relevance.
    null_relevance: what a weak text with no relevance score gets: a number in [0, 1]
        used as its r, or "skip" (not offered). Relevance is null until the relevance stage runs.
    crop_scale/hflip: augmentation. Flips are off by default: captions name left and right.
    mask_prob/span_mask_prob/max_masks: MLM masking; tokens inside code-switched spans are
        masked with span_mask_prob (M3P masks switched words preferentially).
    cmlm_mask_prob/cmlm_max_masks: masking of the parallel side that conditional MLM predicts
        (loss.cmlm); CCLM's pre-training configs use 0.4 and at most 12.
    mrm_mask_prob: share of an image's regions masked (feature zeroed) for masked region
        modelling (loss.mrfr/mrc/icp); at least one region of an image with any (UNITER/M3P: 0.15).
    concept_mask_prob: share of a text's concept tokens masked for text concept prediction
        (loss.tcp); at least one of a text with any.
    mpm_mask_prob/mpm_block: masked patch modelling (loss.mpm, SimMIM): the patch grid is cut
        into squares of mpm_block x mpm_block patches and ceil(share * squares) of them are
        masked. SimMIM's ViT-B recipe: 0.6 of 32 px squares over 16 px patches, which the
        defaults (0.6, 2) give the base preset exactly (120 of 196 patches).
    """

    split: str = "train"
    batch_size: int = 32
    parallel_batch_size: int = 32
    num_workers: int = 1
    shuffle_buffer: int = 256
    kind_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TEXT_KINDS, 1.0))
    lang_weights: dict[str, float] = field(default_factory=dict)
    null_relevance: float | str = "skip"
    crop_scale: list[float] = field(default_factory=lambda: [0.8, 1.0])
    hflip: bool = False
    mask_prob: float = 0.15
    span_mask_prob: float = 0.5
    max_masks: int = 12
    cmlm_mask_prob: float = 0.4
    cmlm_max_masks: int = 12
    mrm_mask_prob: float = 0.15
    concept_mask_prob: float = 0.15
    mpm_mask_prob: float = 0.6
    mpm_block: int = 2


@dataclass
class LossConfig:
    """Objective weights (0 switches an objective and its heads off) and their settings.

    weak_form: how a weak pair's proximity follows its relevance r (formulas and the reason
        for the default in pretrain/README.md). RC3's forms: regularizer (default, chosen on
        validation: cos(image, weak) aimed at r * cos(image, anchor), the target detached;
        weak texts without an anchor use soft_target) and soft_target (contrastive target r
        on the own pair, 1 - r spread over the batch's other candidates, both directions). Also
        weighted_infonce (InfoNCE with the row weighted by r: not RC3's, kept for comparison;
        "soft" is its old name and is still read as it) and strict (weak texts are strict
        pairs; the ablation baseline).
    weak_spread: weighted_infonce only: also spread the text's remaining 1 - r uniformly
        over all images (text side only).
    weak_warmup: regularizer only: the first N optimiser steps train every weak row with
        soft_target, the regulariser takes over from step N (0 = from the start). The
        regulariser learns slowly from an untrained model (pretrain/README.md). It runs as
        a two-stage schedule ("weak_warmup", then "rc3", same weights; ``stage_loss``), so
        a resumed run is in the form the uninterrupted one is in; not combinable with a
        [[schedule]] of one's own.
    itm_negatives: sample (ALBEF/CCLM: draw by softmax of the temperature-scaled ITC
        similarities, same text or same image excluded) or hardest (the most similar of those);
        TTM draws its negatives the same way.
    ttm/cmlm: CCLM's cross view on parallel rows: text-text matching with hard negatives and
        MLM of one side conditioned on the other, both through the fusion encoder with the
        other text as context. Off by default: configs and checkpoints written before they
        existed keep their objectives (and their parameters) when read.
    mrfr: masked region feature regression (UNITER/M3P), needs model.region_dim > 0. Off by
        default, like every objective that needs more than the base data.
    mrc: masked region classification (UNITER/M3P MRC) against the detector label of each
        masked region (``regions.labels``); needs model.region_dim > 0 and labelled regions.
    tcp/icp: MVP's masked concept recovery: masked concept tokens of the text (tcp) or of the
        masked regions (icp) predicted over the concept vocabulary; need model.concepts.
    rca: region <-> concept grounding: each text concept against the image's patches and
        regions (max over them), contrasted over the batch's images (MVP's weakly-supervised
        phrase grounding). wca: word <-> concept: each region concept against the text's
        words (max over them), contrasted over the batch's texts. Need model.concepts.
    mpm: masked patch modelling (SimMIM): masked patches' embeddings replaced by a learned
        [MASK] embedding in a second vision pass, their pixels (as the model sees them:
        augmented, normalised) regressed by one linear layer, L1 over the masked patches only.
        Needs no regions: MVP's image-side objective for a unimodal stage on any dataset.
    mpm_norm_pix: regress each patch's pixels normalised by the patch's own mean and
        standard deviation (MAE's norm_pix_loss) instead of the pixels themselves.
    """

    itc: float = 1.0
    weak: float = 1.0
    ttc: float = 1.0
    mlm: float = 1.0
    itm: float = 1.0
    ttm: float = 0.0
    cmlm: float = 0.0
    mrfr: float = 0.0
    mrc: float = 0.0
    tcp: float = 0.0
    icp: float = 0.0
    rca: float = 0.0
    wca: float = 0.0
    mpm: float = 0.0
    mpm_norm_pix: bool = False
    weak_form: str = "regularizer"
    weak_spread: bool = False
    weak_warmup: int = 0
    temperature: float = 0.07
    learn_temperature: bool = True
    itm_negatives: str = "sample"

    def __post_init__(self) -> None:
        # Resolved here, so every reader (validation, the loss, the loader, evaluation of an
        # old checkpoint through LossConfig(**saved)) sees only the current names.
        self.weak_form = WEAK_FORM_ALIASES.get(self.weak_form, self.weak_form)


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping. ``steps`` counts optimiser steps, each of
    ``accum_steps`` micro-batches. precision auto = bf16 autocast on CUDA, fp32 on CPU.
    threads: torch intra-op threads per process (0 = torch's default). On a small shared
    CPU, 1 thread plus a loader worker beats oversubscribed OpenMP threads by far."""

    steps: int = 1000
    warmup_steps: int = 100
    lr: float = 5e-4
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    grad_clip: float = 1.0
    accum_steps: int = 1
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 500
    keep_checkpoints: int = 2
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"
    threads: int = 0


@dataclass
class TokenizerConfig:
    """SentencePiece: ``model`` is an existing .model file (e.g. XLM-R's); empty = train
    one on the dataset's texts into RUN/tokenizer.model."""

    model: str = ""
    vocab_size: int = 4000
    model_type: str = "unigram"
    character_coverage: float = 0.9995
    max_sentences: int = 1_000_000


@dataclass
class PretrainConfig:
    """The whole run. ``init`` optionally names a checkpoint whose model weights start the run.
    ``schedule``: MVP's stages (pretrain/stages.py); empty = one stage with the [loss] weights."""

    preset: str = "tiny"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    init: str = ""
    schedule: list[Stage] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SECTIONS = {"data": DataConfig, "loss": LossConfig, "train": TrainConfig, "tokenizer": TokenizerConfig}


def _section(cls: type, values: dict[str, Any], base: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"[{where}]: unknown setting(s) {unknown}; known: {sorted(known)}")
    return replace(base, **values)


def config_from_dict(data: dict[str, Any]) -> PretrainConfig:
    """Build and validate a config from a TOML-shaped dict (sections as nested dicts)."""
    top = {"preset", "model", "init", "schedule", *SECTIONS}
    unknown = sorted(set(data) - top)
    if unknown:
        raise ConfigError(f"unknown top-level setting(s) {unknown}; known: {sorted(top)}")
    model_values = dict(data.get("model", {}))
    preset = str(model_values.pop("preset", data.get("preset", "tiny")))
    if preset not in PRESETS:
        raise ConfigError(f"model.preset = {preset!r}; use one of {sorted(PRESETS)}")
    cfg = PretrainConfig(preset=preset, init=str(data.get("init", "")))
    cfg.model = _section(ModelConfig, model_values, PRESETS[preset], "model")
    for name, cls in SECTIONS.items():
        setattr(cfg, name, _section(cls, data.get(name, {}), getattr(cfg, name), name))
    try:
        cfg.schedule = parse_schedule(data.get("schedule"))
    except StageError as err:
        raise ConfigError(str(err)) from err
    if cfg.schedule:
        _schedule_weights(cfg, data.get("loss", {}))
    cfg.schedule = _weak_warmup_schedule(cfg)
    validate(cfg)
    return cfg


def _schedule_weights(cfg: PretrainConfig, given: dict[str, Any]) -> None:
    """With a schedule, [loss]'s weights become each objective's largest stage weight (the
    heads the model has); a [loss] weight given by hand must say the same."""
    union = union_weights(cfg.schedule)
    for name in OBJECTIVES:
        if name in given and float(given[name]) != union[name]:
            raise ConfigError(f"loss.{name} = {given[name]} with a [[schedule]]: each stage sets its own weights in its "
                              f"loss table; drop loss.{name} from [loss] (the schedule's largest {name} weight is {union[name]})")
    cfg.loss = replace(cfg.loss, **union)


def _weak_warmup_schedule(cfg: PretrainConfig) -> list[Stage]:
    """With loss.weak_warmup = N > 0: the stages WEAK_WARMUP_STAGES (N steps, then the rest),
    each with [loss]'s weights; a config read back from a run (its schedule is exactly these
    stages) keeps them. Any other [[schedule]] is refused."""
    steps = cfg.loss.weak_warmup
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        return cfg.schedule  # 0 = no warm-up; a wrong value is named by validate()
    weights = {o: float(getattr(cfg.loss, o)) for o in OBJECTIVES if getattr(cfg.loss, o) > 0}
    stages = [Stage(WEAK_WARMUP_STAGES[0], steps, False, dict(weights)), Stage(WEAK_WARMUP_STAGES[1], 1, False, dict(weights))]
    if cfg.schedule and cfg.schedule != stages:
        raise ConfigError(f"loss.weak_warmup = {steps} runs as a schedule of its own ({list(WEAK_WARMUP_STAGES)}) and "
                          "cannot be combined with a [[schedule]]; drop one of them")
    return stages


def stage_loss(cfg: PretrainConfig, stage: Stage | None) -> LossConfig:
    """The loss settings of one stage: [loss] with the stage's weights (None: [loss] itself);
    in loss.weak_warmup's first stage, weak rows train with soft_target."""
    if stage is None:
        return cfg.loss
    loss = replace(cfg.loss, **{o: stage.weight(o) for o in OBJECTIVES})
    return replace(loss, weak_form="soft_target") if cfg.loss.weak_warmup and stage.name == WEAK_WARMUP_STAGES[0] else loss


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PretrainConfig:
    """TOML file (optional) then ``overrides`` (same shape, e.g. {"train": {"steps": 10}})."""
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"config file {path} does not exist") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from err
    return config_from_dict(merge(data, overrides or {}))


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``extra`` wins."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out



def validate(cfg: PretrainConfig) -> None:
    """Cross-field checks (pretrain/config_checks.py); every message names the setting."""
    from pretrain.config_checks import validate_config

    validate_config(cfg)
