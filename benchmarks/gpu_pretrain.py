"""The GPU check's pre-trainer parts: the base-model benchmark, and 50 bf16 training steps.

``bench``: ``bench_pretrain.gpu_bench`` as ``bench_pretrain.py --device cuda --preset base
--batch-size 128 --compile --data DEMO``: the real loader on the demo dataset first (224 px,
``workers`` processes), then FLOPs of one step, compilation, 20 timed steps; samples/s, MFU
against 989 TFLOP/s (H100/H200 dense bf16), peak memory, loader / step.

``train``: the trainer itself (``run_training``: tokenizer, loader, model, AdamW, cosine, a
checkpoint) on the demo dataset, ``base`` in bf16 autocast on CUDA for 50 steps, logging
every step; the loss must be finite at every step and its mean over the last ten steps
below that over the first ten.

In a rehearsal: ``tiny`` in fp32 on CPU (the trainer refuses bf16 without CUDA), smaller
batches, 20 training steps, and no torch.compile.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from gpu_record import Ctx, Recorder

MFU_TARGET, LOADER_TARGET = 40.0, 3.0
TRAIN_STEPS = {False: 50, True: 20}


def _bench_argv(ctx: Ctx) -> list[str]:
    if ctx.rehearse:
        return ["--synthetic", "--device", "cpu", "--preset", "tiny", "--batch-size", "8", "--steps", "3",
                "--threads", "1", "--data", ctx.dataset, "--workers", "1", "--loader-batches", "6"]
    workers = min(12, max(1, (os.cpu_count() or 2) - 4))
    return ["--device", "cuda", "--preset", "base", "--batch-size", "128", "--compile", "--steps", "20",
            "--data", ctx.dataset, "--workers", str(workers), "--loader-batches", str(10 * workers)]


def bench(ctx: Ctx, rec: Recorder) -> None:
    import bench_pretrain

    argv = _bench_argv(ctx)
    rec.note("`python benchmarks/bench_pretrain.py " + " ".join(a if a != ctx.dataset else "DEMO/dataset" for a in argv) + "`")
    if ctx.rehearse:
        rec.data["notes"].insert(0, "rehearsal: tiny preset, fp32 on CPU, batch 8; torch.compile skipped (Inductor's "
                                    "CPU build takes minutes on two cores); no MFU (no GPU peak to divide by)")

    def keep(figures: dict) -> None:
        rec.figure(**{k: v for k, v in figures.items() if not (ctx.rehearse and k in ("mfu", "achieved_tflops"))})

    args = bench_pretrain.parse_args(argv)
    try:
        out = bench_pretrain.gpu_bench(args, report=keep)
    except Exception as err:  # keep the eager figures: the GPU time is too short to lose them
        if not args.compile:
            raise
        rec.check("torch.compile ran", False, f"{type(err).__name__}: {err}".splitlines()[0][:300])
        rec.note("torch.compile failed: the step figures below are eager ones")
        loader = rec.data["figures"].get("loader_samples_per_s")
        args.compile, args.data = False, None
        out = bench_pretrain.gpu_bench(args, report=keep)
        if loader:
            out["loader_over_step"] = round(loader / out["samples_per_s"], 2)
            keep(out)
    if not ctx.rehearse:
        rec.target("MFU", round(100 * out["mfu"], 1), MFU_TARGET, " %")
        rec.target("loader / step", out["loader_over_step"], LOADER_TARGET, "x")


def _train_config(ctx: Ctx):
    from pretrain.config import load_config

    gpu = not ctx.rehearse
    batch = 32 if gpu else 16
    return load_config(None, {
        "model": {"preset": "base" if gpu else "tiny"},
        "data": {"batch_size": batch, "parallel_batch_size": batch, "num_workers": 6 if gpu else 1,
                 "null_relevance": 0.5},
        "train": {"steps": TRAIN_STEPS[ctx.rehearse], "warmup_steps": 5, "lr": 1e-4 if gpu else 5e-4, "log_every": 1,
                  "ckpt_every": 10**6, "keep_checkpoints": 1, "precision": "bf16" if gpu else "fp32",
                  "device": ctx.device, "threads": 0 if gpu else 1}})


def train(ctx: Ctx, rec: Recorder) -> None:
    from pretrain.train import run_training

    cfg = _train_config(ctx)
    rec.figure(preset=cfg.preset, device=ctx.device, precision=cfg.train.precision,
               batch_size=cfg.data.batch_size, steps=cfg.train.steps, loader_workers=cfg.data.num_workers)
    if ctx.rehearse:
        rec.note("rehearsal: tiny preset in fp32 on CPU (bf16 autocast needs CUDA), 20 steps of batch 16")
    out_dir = Path(ctx.work) / "run"
    result = run_training(cfg, ctx.dataset, str(out_dir), quiet=True)
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    losses = [float(r["loss"]) for r in records]
    k = max(3, len(losses) // 5)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    rec.figure(seconds=result["seconds"], first_loss=round(losses[0], 4), last_loss=round(losses[-1], 4),
               samples_per_s=round(records[-1].get("samples_per_s", 0.0), 1))
    rec.check("loss finite", all(math.isfinite(x) for x in losses), f"{len(losses)} steps logged")
    rec.check("loss falling", last < first, f"mean of the first {k} steps {first:.3f} -> last {k} {last:.3f}")
