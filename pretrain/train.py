"""The training loop: AdamW, cosine schedule with warmup, clipping, accumulation, DDP, resume.

``run_training(cfg, data_dir, out_dir)`` is the whole command; the pieces are small:
``setup`` (device, tokenizer, dataset, model, optimiser, restore), ``train_step`` (one
optimiser step over ``accum_steps`` micro-batches) and ``save`` (an atomic checkpoint with
every rank's RNG state and data position). A resumed run continues bit-for-bit where the
interrupted one stopped (tests/pretrain/test_resume.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pretrain.checkpoint import (
    load_checkpoint,
    load_init_weights,
    prune,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_checkpoints,
)
from pretrain.config import PretrainConfig, TrainConfig
from pretrain.data import build_loader
from pretrain.distributed import (
    DistEnv,
    all_gather_object,
    average_metrics,
    barrier,
    init_distributed,
)
from pretrain.losses import RC3Loss
from pretrain.model import RC3Model, build_model
from pretrain.progress import Progress
from pretrain.shards import Dataset, dataset_texts, open_dataset
from pretrain.tokenizer import Tokenizer, train_tokenizer


class CosineSchedule:
    """Linear warmup to ``lr`` then cosine decay to ``lr * min_lr_ratio``; state is one int."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig):
        self.optimizer, self.cfg, self.step_count = optimizer, cfg, 0
        self._apply()

    def lr_at(self, step: int) -> float:
        c = self.cfg
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
        floor = c.lr * c.min_lr_ratio
        return floor + (c.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = int(state["step"])
        self._apply()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, embeddings, positional/CLS tokens or the temperature."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        flat = p.ndim < 2 or name.endswith((".pos", ".cls", "region_type", "logit_scale")) or ".tok." in name
        (no_decay if flat else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class Run:
    """Everything a step needs. ``positions``: per logical worker, the stream positions of
    the last batch consumed; ``next_worker``: which worker's batch comes next."""

    cfg: PretrainConfig
    env: DistEnv
    out: Path
    tokenizer: Tokenizer
    data: Dataset
    model: RC3Model
    forward: nn.Module
    loss: RC3Loss
    optimizer: torch.optim.Optimizer
    schedule: CosineSchedule
    step: int = 0
    positions: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_worker: int = 0
    autocast: bool = False


def _tokenizer(cfg: PretrainConfig, data: Dataset, out: Path, env: DistEnv, ckpt: dict[str, Any] | None) -> Tokenizer:
    if ckpt is not None:
        return Tokenizer(ckpt["tokenizer"])
    if cfg.tokenizer.model:
        return Tokenizer.load(cfg.tokenizer.model)
    path = out / "tokenizer.model"
    if env.is_main and not path.exists():
        train_tokenizer(dataset_texts(data, cfg.data.split), cfg.tokenizer, path)
    barrier()
    return Tokenizer.load(path)


def _latest(out: Path, resume: bool) -> dict[str, Any] | None:
    found = step_checkpoints(out)
    if found and not resume:
        raise FileExistsError(f"{out} already holds checkpoints; pass --resume to continue that run, or use another --out")
    return load_checkpoint(found[-1][1]) if (found and resume) else None


def _wrap(model: RC3Model, cfg: PretrainConfig, env: DistEnv) -> nn.Module:
    forward: nn.Module = model
    if env.world > 1:
        ids = [env.device.index] if env.device.type == "cuda" else None
        forward = nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=cfg.model.region_dim > 0)
    if cfg.train.compile:
        forward = torch.compile(forward)
    return forward


def setup(cfg: PretrainConfig, data_dir: str, out_dir: str, resume: bool = False) -> Run:
    """Device, dataset (through schemas.dataset), tokenizer, model, optimiser; restores a
    checkpoint when resuming."""
    env = init_distributed(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.precision == "bf16" and env.device.type != "cuda":
        raise ValueError("train.precision = \"bf16\" needs CUDA; use \"auto\" (fp32 on CPU)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = _latest(out, resume)
    data = open_dataset(data_dir, full_validation=env.is_main)
    torch.manual_seed(cfg.train.seed * 1000 + env.rank)
    tok = _tokenizer(cfg, data, out, env, ckpt)
    model = build_model(cfg.model, cfg.loss, tok.vocab_size, tok.pad_id)
    if cfg.init and ckpt is None:
        load_init_weights(model, cfg.init)
    model.to(env.device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr, betas=tuple(cfg.train.betas))
    run = Run(cfg, env, out, tok, data, model, _wrap(model, cfg, env), RC3Loss(cfg.loss), optimizer,
              CosineSchedule(optimizer, cfg.train), autocast=env.device.type == "cuda" and cfg.train.precision != "fp32")
    if ckpt is not None:
        _restore(run, ckpt)
    if env.is_main:
        (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "model": vars(model.cfg)}, indent=1, sort_keys=True))
    return run


def _restore(run: Run, ckpt: dict[str, Any]) -> None:
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.schedule.load_state_dict(ckpt["schedule"])
    run.step = int(ckpt["step"])
    rngs, data = ckpt["rng"], ckpt["data"]
    same_layout = data["world"] == run.env.world and data["workers"] == run.cfg.data.num_workers
    if len(rngs) == run.env.world:
        set_rng_state(rngs[run.env.rank])
    if same_layout:
        mine = data["ranks"][run.env.rank]
        run.positions, run.next_worker = dict(mine["positions"]), int(mine["next_worker"])
    else:  # another layout cannot replay the streams: start every stream at a fresh epoch
        epoch = 1 + max((p[t][0] for r in data["ranks"] for p in r["positions"].values() for t in ("pairs", "parallel") if t in p), default=-1)
        run.positions = {w: {"pairs": [epoch, 0], "parallel": [epoch, 0]} for w in range(max(1, run.cfg.data.num_workers))}
        print(f"resume: world/workers changed ({data['world']}/{data['workers']} -> {run.env.world}/"
              f"{run.cfg.data.num_workers}); data streams restart at epoch {epoch}")


def batches(run: Run) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, Any]]]:
    """The rank's batch stream, restarted at the recorded positions."""
    loader = build_loader(run.data, run.cfg, run.tokenizer, run.env.rank, run.env.world, run.positions, run.next_worker)
    yield from loader


def train_step(run: Run, stream: Iterator) -> dict[str, Any]:
    """One optimiser step over ``accum_steps`` micro-batches; returns detached metrics."""
    cfg, accum = run.cfg.train, run.cfg.train.accum_steps
    run.forward.train()
    totals: dict[str, torch.Tensor] = {}
    wait = 0.0
    for micro in range(accum):
        t0 = time.perf_counter()
        batch, meta = next(stream)
        wait += time.perf_counter() - t0
        run.positions[meta["worker"]] = meta["state"]
        run.next_worker = (meta["worker"] + 1) % max(1, run.cfg.data.num_workers)
        batch = {k: v.to(run.env.device, non_blocking=True) for k, v in batch.items()}
        sync = contextlib.nullcontext() if micro == accum - 1 or run.env.world == 1 else run.forward.no_sync()
        with sync:
            with torch.autocast(run.env.device.type, dtype=torch.bfloat16, enabled=run.autocast):
                losses = run.loss(**run.forward(batch))
            (losses["loss"] / accum).backward()
        for k, v in losses.items():
            totals[k] = totals.get(k, 0) + v.detach() / accum
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
    metrics = {"lr": run.optimizer.param_groups[0]["lr"], "data_wait_s": wait, **totals}
    if grad_norm is not None:
        metrics["grad_norm"] = grad_norm.detach()
    run.optimizer.step()
    run.schedule.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    return metrics


def save(run: Run) -> Path | None:
    """Atomic checkpoint RUN/checkpoints/step-N.pt (rank 0 writes; all ranks contribute)."""
    mine = {"positions": run.positions, "next_worker": run.next_worker}
    ranks, rngs = all_gather_object(mine), all_gather_object(rng_state())
    path = None
    if run.env.is_main:
        state = {"step": run.step, "config": run.cfg.to_dict(), "model_config": vars(run.model.cfg),
                 "tokenizer": run.tokenizer.model_proto, "model": run.model.state_dict(),
                 "optimizer": run.optimizer.state_dict(), "schedule": run.schedule.state_dict(), "rng": rngs,
                 "data": {"world": run.env.world, "workers": run.cfg.data.num_workers, "ranks": ranks}}
        path = save_checkpoint(run.out / "checkpoints" / f"step-{run.step:08d}.pt", state)
        prune(run.out, run.cfg.train.keep_checkpoints)
    barrier()
    return path


def _log_values(run: Run, metrics: dict[str, Any], samples: int, elapsed: float) -> dict[str, Any]:
    values = average_metrics({k: float(v) for k, v in metrics.items()}, run.env.device)
    values["samples_per_s"] = samples / max(elapsed, 1e-9)
    skipped: dict[str, int] = {}
    for pos in run.positions.values():
        for key, n in pos.get("stats", {}).items():
            if key.startswith("skipped/"):
                skipped[key[8:]] = skipped.get(key[8:], 0) + n
    values["skipped"] = skipped
    return values


def run_training(cfg: PretrainConfig, data_dir: str, out_dir: str, resume: bool = False,
                 stop_at: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """Train until ``cfg.train.steps`` (or ``stop_at``, a simulated interruption); returns
    the final step, checkpoint path and last logged metrics."""
    run = setup(cfg, data_dir, out_dir, resume)
    progress = Progress(run.out / "metrics.jsonl", cfg.train.steps, run.env.is_main, start_step=run.step, show=not quiet)
    target = min(cfg.train.steps, stop_at or cfg.train.steps)
    if run.step:
        progress.message(f"resumed at step {run.step}")
    global_batch = cfg.data.batch_size * cfg.train.accum_steps * run.env.world
    stream = batches(run)
    last: dict[str, Any] = {}
    path = None
    t_log, samples, t0 = time.perf_counter(), 0, time.perf_counter()
    try:
        while run.step < target:
            metrics = train_step(run, stream)
            samples += global_batch
            if run.step % cfg.train.log_every == 0 or run.step == target:
                now = time.perf_counter()
                last = _log_values(run, metrics, samples, now - t_log)
                progress.log(run.step, last)
                t_log, samples = now, 0
            if run.step % cfg.train.ckpt_every == 0 or run.step == target:
                path = save(run)
    finally:
        stream.close()
        progress.close()
    if path is None and run.env.is_main:  # nothing to train: the checkpoint already holds this step
        found = step_checkpoints(run.out)
        path = found[-1][1] if found else None
    return {"step": run.step, "checkpoint": str(path) if path else None, "metrics": last,
            "seconds": round(time.perf_counter() - t0, 2)}
