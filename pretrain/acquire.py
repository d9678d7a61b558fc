"""``m3curate pretrain acquire``: add languages to a trained model cheaply (MLA).

The trained model is frozen, bit for bit; per new language a small ``LanguageEncoder``
(``pretrain.acquisition.encoder``: its own SentencePiece vocabulary, token embeddings and
bottleneck adapters in front of the frozen text encoder) is trained in two stages:

1. **Native Language Transfer** (``nlt_steps``): on ``parallel`` rows pairing the pivot
   (English) with the new language, the squared distance between the new-language sentence
   embedding and the frozen model's embedding of the English side (both unit vectors:
   ``2 - 2 cos``), MLA's MSE.
2. **Language Exposure** (``le_steps``): symmetric InfoNCE between frozen image embeddings
   and the new language's captions from ``pairs``, at the frozen model's temperature.
   Candidates showing the row's own image or text elsewhere in the batch are not negatives.

``run_acquisition(base_checkpoint, data_dir, out_dir, cfg)`` writes ``OUT/checkpoints/step-N.pt``:
the base checkpoint's config, tokenizer and weights unchanged (``m3curate evaluate`` reads it
like any checkpoint and serves the old languages exactly as before) plus an ``acquisition``
entry: the encoders, their tokenizers, and the state a resume needs (optimiser, RNG, stream
positions). On CPU a resumed run ends bit for bit where an uninterrupted one does
(deterministic kernels, as the trainer).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pretrain.acquisition.data import language_texts, scan_languages, stream_state, streams
from pretrain.acquisition.encoder import (
    AcquiredModel,
    build_encoders,
    init_from_base,
    parameter_count,
)
from pretrain.acquisition.losses import le_loss, nlt_loss
from pretrain.checkpoint import (
    load_checkpoint,
    prune,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_checkpoints,
)
from pretrain.config import LossConfig, ModelConfig, TokenizerConfig
from pretrain.distributed import pick_device
from pretrain.model import RC3Model
from pretrain.shards import Dataset, open_dataset, seeded
from pretrain.tokenizer import Tokenizer, train_tokenizer
from pretrain.train import deterministic_cpu
from schemas.rows import TEXT_KINDS

# Settings a resumed acquisition may change: bookkeeping and placement, and le_steps (the
# last stage's length: an extension; its cosine becomes that of the new length).
RESUMABLE = ("ckpt_every", "log_every", "threads", "device", "keep_checkpoints", "le_steps")


@dataclass
class AcquireConfig:
    """langs: languages to acquire; pivot: the language the base model serves whose text
    embeddings NLT imitates. nlt_steps / le_steps: optimiser steps of each stage (either
    may be 0). batch_size: samples per language per step. lr, warmup_steps, weight_decay:
    AdamW with linear warmup then cosine to lr/10, restarted for each stage. vocab_size:
    each new language's SentencePiece vocabulary (a soft limit). adapter_layers /
    adapter_dim: bottleneck adapters per encoder (adapter_dim 0 = text width / 4).
    embed_rank: factorise each new embedding table to this rank (0 = full text width).
    le_kinds: text kinds Language Exposure trains on. max_trainable_share: refuse encoders
    larger than this share of the base model's parameters."""

    langs: list[str] = field(default_factory=list)
    pivot: str = "en"
    nlt_steps: int = 200
    le_steps: int = 100
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 10
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    vocab_size: int = 1000
    adapter_layers: int = 2
    adapter_dim: int = 0
    embed_rank: int = 0
    le_kinds: list[str] = field(default_factory=lambda: ["caption", "translation"])
    split: str = "train"
    seed: int = 0
    shuffle_buffer: int = 256
    max_trainable_share: float = 0.10
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    threads: int = 0
    device: str = "auto"

    def validate(self) -> None:
        problems = []
        if not self.langs or len(set(self.langs)) != len(self.langs):
            problems.append(f"langs = {self.langs}: give one or more distinct languages")
        if self.pivot in self.langs:
            problems.append(f"langs: {self.pivot!r} is the pivot, which the base model already serves")
        if self.nlt_steps < 0 or self.le_steps < 0 or self.nlt_steps + self.le_steps == 0:
            problems.append("nlt_steps and le_steps must be >= 0, and not both 0")
        if self.batch_size < 2:
            problems.append(f"batch_size = {self.batch_size}: at least 2 (Language Exposure contrasts within the batch)")
        if min(self.adapter_layers, self.adapter_dim, self.embed_rank) < 0 or self.vocab_size < 8:
            problems.append("adapter_layers, adapter_dim and embed_rank must be >= 0, vocab_size >= 8")
        unknown = sorted(set(self.le_kinds) - set(TEXT_KINDS))
        if unknown or not self.le_kinds:
            problems.append(f"le_kinds = {self.le_kinds}: use text kinds among {', '.join(TEXT_KINDS)}")
        if problems:
            raise ValueError("acquire: " + "; ".join(problems))


def stage_lr(cfg: AcquireConfig, step: int) -> float:
    """The learning rate at global step ``step``: warmup then cosine to lr/10, per stage."""
    first = step < cfg.nlt_steps
    k, n = (step, cfg.nlt_steps) if first else (step - cfg.nlt_steps, cfg.le_steps)
    warm = min(cfg.warmup_steps, max(1, n // 4))
    if k < warm:
        return cfg.lr * (k + 1) / warm
    progress = (k - warm) / max(1, n - warm)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@dataclass
class Acquisition:
    """Everything a step needs; ``streams_state``: per language and stage, position and skips."""

    cfg: AcquireConfig
    base_state: dict[str, Any]
    base: RC3Model
    base_tok: Tokenizer
    tokenizers: dict[str, Tokenizer]
    encoders: nn.ModuleDict
    optimizer: torch.optim.Optimizer
    device: torch.device
    data: Dataset
    step: int = 0
    streams_state: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def load_base(path: str | Path) -> tuple[dict[str, Any], RC3Model, Tokenizer]:
    """The base checkpoint's state, its model (frozen, eval mode) and tokenizer."""
    state = load_checkpoint(path)
    state["base_path"] = str(resolve_checkpoint(path))
    if "acquisition" in state:
        raise ValueError(f"{path}: already holds acquired languages {sorted(state['acquisition']['tokenizers'])}; "
                         "acquire from the base run (acquiring on top of an acquisition is not supported yet)")
    return (state, *frozen_model(state))


def frozen_model(state: dict[str, Any]) -> tuple[RC3Model, Tokenizer]:
    """A checkpoint's model in eval mode with every parameter frozen, and its tokenizer."""
    tok = Tokenizer(state["tokenizer"])
    model = RC3Model(ModelConfig(**state["model_config"]), LossConfig(**state["config"]["loss"]), tok.pad_id)
    model.load_state_dict(state["model"])
    return model.eval().requires_grad_(False), tok


def _tokenizers(cfg: AcquireConfig, data: Dataset, saved: dict[str, Any] | None) -> dict[str, Tokenizer]:
    """Each new language's SentencePiece model: trained on its texts, or a resumed run's."""
    if saved is not None:
        return {lang: Tokenizer(proto) for lang, proto in saved["tokenizers"].items()}
    tok_cfg = TokenizerConfig(vocab_size=cfg.vocab_size)
    return {lang: train_tokenizer(language_texts(data, lang, cfg.split), tok_cfg, seed=cfg.seed) for lang in cfg.langs}


def _check_data(cfg: AcquireConfig, found: dict[str, dict[str, Any]], root: str) -> None:
    for lang, f in found.items():
        if cfg.nlt_steps and not f["nlt"]:
            raise ValueError(f"{root}: no parallel rows pair {cfg.pivot!r} with {lang!r} in split {cfg.split!r}; "
                             "Native Language Transfer needs them (or set nlt_steps = 0)")
        if cfg.le_steps and not f["le"]:
            raise ValueError(f"{root}: no pairs rows with a {lang!r} text of kind {'/'.join(cfg.le_kinds)} in split "
                             f"{cfg.split!r}; Language Exposure needs them (or set le_steps = 0)")


def _resume_config(saved: dict[str, Any], requested: AcquireConfig, step: int) -> AcquireConfig:
    """The run's own config, with only RESUMABLE settings taken from ``requested``."""
    own = AcquireConfig(**saved)
    for f in fields(AcquireConfig):
        new, old = getattr(requested, f.name), getattr(own, f.name)
        if new != old and f.name not in RESUMABLE:
            raise ValueError(f"acquire --resume: {f.name} = {new!r} differs from the run's {old!r}; a resumed "
                             f"acquisition keeps its settings except {', '.join(RESUMABLE)}")
        if f.name in RESUMABLE:
            setattr(own, f.name, new)
    if own.nlt_steps + own.le_steps < step:
        raise ValueError(f"acquire --resume: le_steps = {own.le_steps} ends before the checkpoint's step {step}")
    return own


def setup(base_checkpoint: str, data_dir: str, out: Path, cfg: AcquireConfig, resume: bool) -> Acquisition:
    """Base (frozen), dataset, tokenizers, encoders, optimiser; a resumed run's state."""
    found_ckpts = step_checkpoints(out)
    if found_ckpts and not resume:
        raise FileExistsError(f"{out} already holds checkpoints; pass resume (--resume) to continue, or use another --out")
    own = load_checkpoint(found_ckpts[-1][1]) if (found_ckpts and resume) else None
    saved = own["acquisition"] if own is not None else None
    if saved is not None:
        cfg = _resume_config(saved["config"], cfg, int(own["step"]))
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    state, base, base_tok = load_base(base_checkpoint) if own is None else _base_from(own)
    data = open_dataset(data_dir)
    found = scan_languages(data, cfg.langs, cfg.pivot, list(cfg.le_kinds), cfg.split)
    _check_data(cfg, found, data_dir)
    tokenizers = _tokenizers(cfg, data, saved)
    settings = {"adapter_layers": cfg.adapter_layers, "adapter_dim": cfg.adapter_dim, "embed_rank": cfg.embed_rank}
    encoders, copied = _fresh_encoders(cfg, base, base_tok, tokenizers, settings)
    info = _sizes(cfg, base, encoders, tokenizers, copied)
    device = pick_device(cfg.device)
    base.to(device)
    encoders.to(device)
    optimizer = torch.optim.AdamW(_groups(encoders, cfg.weight_decay), lr=cfg.lr)
    run = Acquisition(cfg, state, base, base_tok, tokenizers, encoders, optimizer, device, data, info=info)
    if saved is not None:
        encoders.load_state_dict(saved["encoders"])
        optimizer.load_state_dict(saved["optimizer"])
        set_rng_state(saved["rng"])
        run.step, run.streams_state = int(own["step"]), saved["streams"]
    return run


def _fresh_encoders(cfg: AcquireConfig, base: RC3Model, base_tok: Tokenizer, tokenizers: dict[str, Tokenizer],
                    settings: dict[str, Any]) -> tuple[nn.ModuleDict, dict[str, int]]:
    """Each language's encoder initialised from a seed of its own (seed, language), so that a
    language acquired alongside others starts, and trains, as it would alone."""
    encoders, copied = nn.ModuleDict(), {}
    for lang in sorted(tokenizers):
        lang_seed = seeded(cfg.seed, "acquire-init", lang).getrandbits(62)
        torch.manual_seed(lang_seed)
        encoders[lang] = build_encoders(base, {lang: tokenizers[lang]}, settings)[lang]
        generator = torch.Generator().manual_seed(lang_seed)
        copied[lang] = init_from_base(encoders[lang], tokenizers[lang], base, base_tok, generator)
    torch.manual_seed(cfg.seed)
    return encoders, copied


def _base_from(own: dict[str, Any]) -> tuple[dict[str, Any], RC3Model, Tokenizer]:
    """The frozen base as an acquisition checkpoint carries it."""
    state = {k: v for k, v in own.items() if k not in ("acquisition", "format")}
    state["step"], state["base_path"] = own["acquisition"]["base"]["step"], own["acquisition"]["base"]["checkpoint"]
    return (state, *frozen_model(state))


def _groups(encoders: nn.ModuleDict, weight_decay: float) -> list[dict[str, Any]]:
    decay = [p for n, p in encoders.named_parameters() if p.ndim >= 2 and ".tok." not in n]
    flat = [p for n, p in encoders.named_parameters() if not (p.ndim >= 2 and ".tok." not in n)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": flat, "weight_decay": 0.0}]


def _sizes(cfg: AcquireConfig, base: RC3Model, encoders: nn.ModuleDict, tokenizers: dict[str, Tokenizer],
           copied: dict[str, int]) -> dict[str, Any]:
    """Parameter counts; refuses encoders over ``max_trainable_share`` of the base."""
    base_n, trained = parameter_count(base), parameter_count(encoders)
    share = trained / base_n
    if share > cfg.max_trainable_share:
        raise ValueError(f"acquire: the encoders have {trained:,} parameters, {share:.1%} of the base's {base_n:,}, "
                         f"over max_trainable_share = {cfg.max_trainable_share:.0%}; set embed_rank (e.g. 32) or lower "
                         "vocab_size, adapter_layers or adapter_dim")
    return {"base_params": base_n, "trainable_params": trained, "trainable_share": round(share, 4),
            "vocab": {lang: tok.vocab_size for lang, tok in tokenizers.items()}, "pieces_from_base": copied}


def acquire_step(run: Acquisition, current: dict[str, Any], stage: str) -> dict[str, float]:
    """One optimiser step: the stage's loss for every language, summed."""
    lr = stage_lr(run.cfg, run.step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    loss_fn = nlt_loss if stage == "nlt" else le_loss
    losses = {lang: loss_fn(run.encoders[lang], run.tokenizers[lang], run.base, run.base_tok,
                            stream.batch(run.cfg.batch_size), run.device) for lang, stream in current.items()}
    total = sum(losses.values())
    total.backward()
    if run.cfg.grad_clip > 0:  # per language: one language's gradients never scale another's
        for lang in current:
            nn.utils.clip_grad_norm_(run.encoders[lang].parameters(), run.cfg.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    return {"lr": lr, **{f"{stage}/{lang}": float(v.detach()) for lang, v in losses.items()}}


def save(run: Acquisition, out: Path) -> Path:
    """OUT/checkpoints/step-N.pt: the base checkpoint's entries unchanged, plus ``acquisition``."""
    base = {k: v for k, v in run.base_state.items() if k not in ("format", "base_path", "step")}
    base["model"] = {k: v.cpu() for k, v in run.base.state_dict().items()}  # the frozen model as used (tested unchanged)
    acquisition = {"config": asdict(run.cfg), "tokenizers": {k: t.model_proto for k, t in run.tokenizers.items()},
                   "settings": {"adapter_layers": run.cfg.adapter_layers, "adapter_dim": run.cfg.adapter_dim,
                                "embed_rank": run.cfg.embed_rank},
                   "encoders": run.encoders.state_dict(), "optimizer": run.optimizer.state_dict(), "rng": rng_state(),
                   "streams": run.streams_state, "info": run.info,
                   "base": {"checkpoint": run.base_state["base_path"], "step": int(run.base_state["step"])}}
    path = save_checkpoint(out / "checkpoints" / f"step-{run.step:08d}.pt", {**base, "step": run.step, "acquisition": acquisition})
    prune(out, run.cfg.keep_checkpoints)
    return path


def _log(out: Path, step: int, values: dict[str, Any], resume_step: int | None = None) -> None:
    """Append to OUT/acquire_metrics.jsonl; on resume first drop records after the checkpoint."""
    path = out / "acquire_metrics.jsonl"
    if resume_step is not None and path.exists():
        keep = [line for line in path.read_text(encoding="utf-8").splitlines() if json.loads(line)["step"] <= resume_step]
        path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    if values:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")


def run_acquisition(base_checkpoint: str, data_dir: str, out_dir: str, cfg: AcquireConfig, resume: bool = False,
                    stop_at: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """Acquire ``cfg.langs`` on the frozen model of ``base_checkpoint`` (a file or run folder)
    from the dataset ``data_dir``; checkpoints in ``out_dir``. ``resume`` continues the latest
    checkpoint there (its settings; only RESUMABLE ones may change); ``stop_at`` stops early
    at that global step (NLT steps come first, then LE), as an interruption would."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with deterministic_cpu(cfg.device):
        run = setup(base_checkpoint, data_dir, out, cfg, resume)
        cfg = run.cfg
        _log(out, run.step, {}, resume_step=run.step)
        total = cfg.nlt_steps + cfg.le_steps
        target = min(total, stop_at or total)
        if not quiet:
            print(f"acquire {','.join(cfg.langs)}: {run.info['trainable_params']:,} trainable parameters "
                  f"({run.info['trainable_share']:.1%} of the frozen {run.info['base_params']:,}); step {run.step} of {total}")
        path, last = None, {}
        for stage, end in (("nlt", cfg.nlt_steps), ("le", total)):
            stop = min(end, target)
            if run.step >= stop:
                continue
            current = streams(run.data, stage, cfg, run.streams_state, run.base.cfg.image_size)
            while run.step < stop:
                last = acquire_step(run, current, stage)
                run.streams_state = stream_state(current, stage, run.streams_state)
                if run.step % cfg.log_every == 0 or run.step == stop:
                    _log(out, run.step, last)
                    if not quiet:
                        print(f"acquire step {run.step}/{total} " + " ".join(f"{k} {v:.4g}" for k, v in last.items()))
                if run.step % cfg.ckpt_every == 0 or run.step in (stop, cfg.nlt_steps):
                    path = save(run, out)
    found = step_checkpoints(out)
    return {"step": run.step, "checkpoint": str(path or (found[-1][1] if found else "")), "metrics": last, **run.info}


def load_acquired(checkpoint: str | Path, base: RC3Model, base_tok: Tokenizer, state: dict[str, Any] | None = None) -> AcquiredModel | RC3Model:
    """The model ``evaluate`` uses: ``base`` itself for a checkpoint without acquired
    languages, else an ``AcquiredModel`` routing each acquired language to its encoder."""
    state = state if state is not None else load_checkpoint(checkpoint)
    if "acquisition" not in state:
        return base
    device = next(base.parameters()).device
    return AcquiredModel.from_state(base, base_tok, state["acquisition"]).to(device).eval()


def saved_config(out_dir: str | Path) -> dict[str, Any] | None:
    """The AcquireConfig (as a dict) of the latest checkpoint in ``out_dir``; None without one."""
    found = step_checkpoints(out_dir)
    return load_checkpoint(found[-1][1])["acquisition"]["config"] if found else None
