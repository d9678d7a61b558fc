"""The training loop: AdamW, cosine schedule with warmup, clipping, accumulation, DDP, resume.

``run_training(cfg, data_dir, out_dir)`` is the whole command; the pieces are small:
``setup`` (device, tokenizer, dataset, model, optimiser, restore), ``train_step`` (one
optimiser step over ``accum_steps`` micro-batches) and ``save`` (an atomic checkpoint with
every rank's RNG state and data position).

``--resume`` continues the run of the latest checkpoint: its config (``resume_config``: only
the step target and bookkeeping may change), schedule, optimiser, RNG and data streams, and
``metrics.jsonl`` from the checkpoint's step. On CPU it is bit for bit the run that was not
interrupted when the numerics match (same torch threads, torch version, CPU kernels, world
size and workers; tests/pretrain/test_pt_resume.py): the trainer turns on torch's
deterministic kernels there, without which the backward of ITM's negative indexing sums in
thread order. On CUDA the same state is restored but kernels use atomic adds, so a resumed
run agrees with an uninterrupted one only to float rounding; the run says so when it resumes.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pretrain.checkpoint import (
    load_checkpoint,
    load_init_weights,
    prune,
    resume_config,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_checkpoints,
    write_text_atomic,
)
from pretrain.concepts import Vocabularies, require_labels, resolve_concepts, scan_region_labels
from pretrain.config import PretrainConfig, stage_loss
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
from pretrain.optim import CosineSchedule, deterministic_cpu, lr_at, param_groups
from pretrain.progress import Progress
from pretrain.shards import Dataset, dataset_texts, open_dataset
from pretrain.stages import Stage, stage_index
from pretrain.tokenizer import Tokenizer, train_tokenizer


@dataclass
class Run:
    """Everything a step needs. ``positions``: per logical worker, the stream positions of
    the last batch consumed; ``next_worker``: which worker's batch comes next. ``vocab``: the
    concepts and detector labels; ``stage``: the schedule's stage the model is set to (-1:
    none yet)."""

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
    notes: list[str] = field(default_factory=list)
    vocab: Vocabularies = field(default_factory=Vocabularies)
    stage: int = -1


def run_vocabularies(cfg: PretrainConfig, data: Dataset, ckpt: dict[str, Any] | None = None) -> Vocabularies:
    """The run's concept vocabulary (model.concepts: the dataset's concepts.txt, or the
    checkpoint's when resuming) and detector labels (loss.mrc: the training split's labels,
    or the checkpoint's); empty lists for what the run does not use."""
    saved = ckpt or {}
    concepts = resolve_concepts(cfg.model.concepts, data.root, saved.get("concepts"))
    labels: list[str] = []
    if cfg.loss.mrc > 0:
        labels = saved.get("region_labels") or scan_region_labels(data, cfg.data.split)
        require_labels(labels, data.root, cfg.data.split)
    return Vocabularies(concepts, labels)


def enter_stage(run: Run) -> Stage | None:
    """Set the model and the loss to the stage of ``run.step`` (with a schedule); returns the
    stage when it changed, else None. The stage depends on the step alone, so a resumed run
    is in the stage the uninterrupted one is in."""
    stages = run.cfg.schedule
    if not stages or stage_index(stages, run.step) == run.stage:
        return None
    run.stage = stage_index(stages, run.step)
    stage = stages[run.stage]
    run.model.set_stage(stage_loss(run.cfg, stage), stage.unimodal)
    run.loss = RC3Loss(stage_loss(run.cfg, stage))
    return stage


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
        # heads idle in a stage, and region or concept heads without inputs in a batch, get no gradient
        unused = cfg.model.region_dim > 0 or cfg.model.concepts != 0 or bool(cfg.schedule)
        forward = nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)
    if cfg.train.compile:
        forward = torch.compile(forward)
    return forward


def setup(cfg: PretrainConfig, data_dir: str, out_dir: str, resume: bool = False, verify: bool = False) -> Run:
    """Device, dataset (through schemas.dataset; ``verify``: shard digests too, on the main
    rank), tokenizer, model, optimiser; when resuming, the checkpoint's run
    (``resume_config``) and its state."""
    env = init_distributed(cfg.train.device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = _latest(out, resume)
    changed: list[str] = []
    if ckpt is not None:
        cfg, changed = resume_config(ckpt, cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.precision == "bf16" and env.device.type != "cuda":
        raise ValueError("train.precision = \"bf16\" needs CUDA; use \"auto\" (fp32 on CPU)")
    data = open_dataset(data_dir, full_validation=env.is_main, verify=verify and env.is_main)
    torch.manual_seed(cfg.train.seed * 1000 + env.rank)
    tok = _tokenizer(cfg, data, out, env, ckpt)
    vocab = run_vocabularies(cfg, data, ckpt)
    model = build_model(replace(cfg.model, concepts=len(vocab.concepts), region_classes=len(vocab.labels)), cfg.loss,
                        tok.vocab_size, tok.pad_id)
    if cfg.init and ckpt is None:
        load_init_weights(model, cfg.init)
    model.to(env.device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr, betas=tuple(cfg.train.betas))
    run = Run(cfg, env, out, tok, data, model, _wrap(model, cfg, env), RC3Loss(cfg.loss), optimizer,
              CosineSchedule(optimizer, cfg.train), autocast=env.device.type == "cuda" and cfg.train.precision != "fp32",
              vocab=vocab)
    if ckpt is not None:
        _restore(run, ckpt)
        run.notes += _resume_notes(run, ckpt, changed)
    if env.is_main:
        _write_config(out, cfg, model)
    return run


def _write_config(out: Path, cfg: PretrainConfig, model: RC3Model) -> None:
    """RUN/config.json: the run's resolved config. A resume leaves it untouched unless it
    changed a RESUMABLE setting (e.g. extended train.steps), which it then records."""
    path = out / "config.json"
    text = json.dumps({**cfg.to_dict(), "model": vars(model.cfg)}, indent=1, sort_keys=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)


def numerics(run: Run) -> dict[str, Any]:
    """What decides float rounding besides the config: equal on both sides of a resume, a
    CPU run continues bit for bit."""
    return {"device": run.env.device.type, "threads": torch.get_num_threads(), "torch": str(torch.__version__),
            "cpu_kernels": str(torch.backends.cpu.get_cpu_capability()), "compile": run.cfg.train.compile}


def _resume_notes(run: Run, ckpt: dict[str, Any], changed: list[str]) -> list[str]:
    """What a resumed run tells its user: a moved step target and whether it is bit for bit."""
    notes, step = [], run.step
    if "train.steps" in changed:
        old_steps, old_lr = ckpt["config"]["train"]["steps"], ckpt["optimizer"]["param_groups"][0]["lr"]
        notes.append(f"resume: train.steps {old_steps} -> {run.cfg.train.steps}: the cosine schedule is now that of a run of "
                     f"{run.cfg.train.steps} steps (lr at step {step}: {old_lr:.3g} -> {lr_at(run.cfg.train, step):.3g})")
    saved, now = ckpt.get("numerics", {}), numerics(run)
    reasons = [f"{k} {saved[k]} -> {now[k]}" for k in now if k in saved and saved[k] != now[k]]
    if "data.num_workers" in changed or ckpt["data"]["world"] != run.env.world:
        reasons.append("the data streams restarted")
    if now["device"] == "cuda":
        reasons.append("CUDA kernels are not deterministic")
    if reasons:
        notes.append(f"resume: the run continues from step {step}, not bit for bit ({'; '.join(reasons)})")
    return notes


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
        run.notes.append(f"resume: world/workers changed ({data['world']}/{data['workers']} -> {run.env.world}/"
                         f"{run.cfg.data.num_workers}); data streams restart at epoch {epoch}")


def batches(run: Run) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, Any]]]:
    """The rank's batch stream, restarted at the recorded positions."""
    loader = build_loader(run.data, run.cfg, run.tokenizer, run.env.rank, run.env.world, run.positions, run.next_worker,
                          run.vocab)
    yield from loader


def train_step(run: Run, stream: Iterator) -> dict[str, Any]:
    """One optimiser step over ``accum_steps`` micro-batches; returns detached metrics."""
    cfg, accum = run.cfg.train, run.cfg.train.accum_steps
    enter_stage(run)
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
    if run.cfg.schedule:
        metrics["stage"] = run.stage
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
                 "numerics": numerics(run), **_vocab_state(run.vocab),
                 "data": {"world": run.env.world, "workers": run.cfg.data.num_workers, "ranks": ranks}}
        path = save_checkpoint(run.out / "checkpoints" / f"step-{run.step:08d}.pt", state)
        prune(run.out, run.cfg.train.keep_checkpoints)
    barrier()
    return path


def _vocab_state(vocab: Vocabularies) -> dict[str, list[str]]:
    """The vocabularies a checkpoint carries (only those the run uses)."""
    return {k: v for k, v in (("concepts", vocab.concepts), ("region_labels", vocab.labels)) if v}


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
                 stop_at: int | None = None, quiet: bool = False, verify: bool = False) -> dict[str, Any]:
    """Train until ``train.steps`` (the resumed run's, see ``resume_config``) or ``stop_at``
    (a simulated interruption); returns the final step, checkpoint path and last metrics.
    ``verify``: check every shard's sha256 against the manifest before training."""
    with deterministic_cpu(cfg.train.device):
        run = setup(cfg, data_dir, out_dir, resume, verify)
        progress = Progress(run.out / "metrics.jsonl", run.cfg.train.steps, run.env.is_main, start_step=run.step,
                            show=not quiet)
        try:
            for note in run.notes:
                progress.message(note)
            if run.step:
                progress.message(f"resumed at step {run.step} of {run.cfg.train.steps}")
            last, path = _loop(run, progress, min(run.cfg.train.steps, stop_at or run.cfg.train.steps))
        finally:
            progress.close()
    if path is None and run.env.is_main:  # nothing to train: the checkpoint already holds this step
        found = step_checkpoints(run.out)
        path = found[-1][1] if found else None
    return {"step": run.step, "checkpoint": str(path) if path else None, "metrics": last["metrics"],
            "seconds": last["seconds"]}


def _loop(run: Run, progress: Progress, target: int) -> tuple[dict[str, Any], Path | None]:
    """Steps up to ``target``: log every log_every, checkpoint every ckpt_every and at the end."""
    cfg = run.cfg
    global_batch = cfg.data.batch_size * cfg.train.accum_steps * run.env.world
    stream = batches(run)
    last: dict[str, Any] = {}
    path = None
    t_log, samples, t0, first = time.perf_counter(), 0, time.perf_counter(), run.step + 1
    if cfg.train.compile and run.step < target:
        progress.message("train.compile: compiling the model with torch.compile; the first step can take minutes")
    try:
        while run.step < target:
            stage = enter_stage(run)
            if stage is not None:
                progress.message(f"stage {run.stage + 1}/{len(cfg.schedule)} {stage.name!r} from step {run.step + 1}"
                                 f"{' (unimodal)' if stage.unimodal else ''}: {', '.join(f'{k} {v:g}' for k, v in stage.loss.items())}")
            metrics = train_step(run, stream)
            if cfg.train.compile and run.step == first:
                progress.message(f"train.compile: first step done in {time.perf_counter() - t0:.0f} s")
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
    return {"metrics": last, "seconds": round(time.perf_counter() - t0, 2)}, path
