"""Loader vs training-step throughput (CPU, ``tiny``) and samples/s + MFU (GPU, ``base``, bf16).

CPU mode measures, in one run on the demo dataset:
  loader  samples/s of the DataLoader alone (decode, augment, tokenise, mask, collate),
  step    samples/s of forward + backward + AdamW on batches already in memory,
  e2e     samples/s of the real loop (loader feeding the step) and the share of time spent
          waiting for data.
The loader must be at least 3x the step rate so that it is never the bottleneck.

GPU mode (``--device cuda``, needs a CUDA machine; not runnable on the CPU-only dev box)
times training steps of ``base`` (ViT-B/16 + 12-layer text + 6-layer fusion) on synthetic
batches with bf16 autocast, optionally torch.compile, and reports model FLOPs utilisation:
FLOPs of one step counted by torch.utils.flop_counter (matmuls, convolutions, attention;
forward and backward) divided by step time and the GPU's dense bf16 peak (--peak-tflops,
989 for H100/H200 SXM), and the peak GPU memory. With ``--data`` it also times the loader
on that dataset with the same preset and batch size (``--workers`` processes) and reports
loader / step, which must be >= 3 for the loader not to starve the GPU.

usage: python benchmarks/bench_pretrain.py --data /tmp/m3-demo/dataset [--workers 1]
       python benchmarks/bench_pretrain.py --device cuda --preset base --batch-size 128 --compile \
           [--data demo-out/dataset --workers 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain.config import load_config  # noqa: E402
from pretrain.data import build_loader  # noqa: E402
from pretrain.losses import RC3Loss  # noqa: E402
from pretrain.model import build_model  # noqa: E402
from pretrain.shards import dataset_texts, open_dataset  # noqa: E402
from pretrain.tokenizer import train_tokenizer  # noqa: E402
from pretrain.train import CosineSchedule, Run, _wrap, param_groups, train_step  # noqa: E402


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import os

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} CPUs ({model}){gpu}, torch {torch.__version__}"


def loader_rate(data, cfg, tok, batches: int) -> float:
    stream = iter(build_loader(data, cfg, tok))
    next(stream)  # workers started, shuffle buffer filled
    t0 = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * cfg.data.batch_size / (time.perf_counter() - t0)


def make_run(cfg, tok, device: torch.device) -> Run:
    from pretrain.distributed import DistEnv

    env = DistEnv(device=device)
    model = build_model(cfg.model, cfg.loss, tok.vocab_size if tok else 32000, tok.pad_id if tok else 0).to(device)
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, fused=device.type == "cuda")
    return Run(cfg, env, Path("."), tok, None, model, _wrap(model, cfg, env), RC3Loss(cfg.loss), opt,
               CosineSchedule(opt, cfg.train), autocast=device.type == "cuda")


def step_rate(run: Run, batches: list, steps: int) -> tuple[float, float]:
    """(samples/s over ``steps`` timed steps, seconds of the two warm-up steps before them,
    torch.compile's compilation included)."""
    stream = iter([(b, {"worker": 0, "state": {}}) for b in batches] * (steps // len(batches) + 3))
    t0 = time.perf_counter()
    for _ in range(2):
        train_step(run, stream)  # warm-up (and compilation)
    if run.env.device.type == "cuda":
        torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(run, stream)
    if run.env.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * run.cfg.data.batch_size / (time.perf_counter() - t0), warm


def cpu_bench(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    cfg = load_config(None, {"data": {"num_workers": args.workers, "batch_size": args.batch_size,
                                      "null_relevance": 0.5}, "train": {"steps": 10**6, "warmup_steps": 0}})
    data = open_dataset(args.data)
    tok = train_tokenizer(dataset_texts(data), cfg.tokenizer)
    loader = loader_rate(data, cfg, tok, args.loader_batches)
    run = make_run(cfg, tok, torch.device("cpu"))
    stream = iter(build_loader(data, cfg, tok))
    cached = [next(stream) for _ in range(4)]
    step, _ = step_rate(run, [b for b, _ in cached], args.steps)
    t0, waited = time.perf_counter(), 0.0
    for _ in range(args.steps):
        waited += train_step(run, stream)["data_wait_s"]
    e2e_time = time.perf_counter() - t0
    return {"mode": "cpu", "preset": "tiny", "batch_size": cfg.data.batch_size, "workers": args.workers,
            "threads": args.threads, "loader_samples_per_s": round(loader, 1), "step_samples_per_s": round(step, 1),
            "loader_over_step": round(loader / step, 2), "e2e_samples_per_s": round(args.steps * cfg.data.batch_size / e2e_time, 1),
            "e2e_data_wait_share": round(waited / e2e_time, 3), "step_seconds": round(cfg.data.batch_size / step, 3)}


def synthetic_batch(cfg, batch: int, text_len: int, device: torch.device) -> dict[str, torch.Tensor]:
    size, v = cfg.model.image_size, 32000
    ids = lambda n: torch.randint(5, v, (n, text_len), device=device)  # noqa: E731
    labels = torch.full((batch, text_len), -100, device=device)
    labels[:, 1 : 1 + max(1, text_len * 15 // 100)] = 7
    return {"images": torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8, device=device),
            "text_ids": ids(batch), "mlm_ids": ids(batch), "mlm_labels": labels,
            "relevance": torch.ones(batch, device=device), "is_weak": torch.zeros(batch, dtype=torch.bool, device=device),
            "has_anchor": torch.zeros(batch, dtype=torch.bool, device=device), "anchor_ids": ids(batch),
            "src_ids": ids(batch), "tgt_ids": ids(batch)}


def step_flops(run: Run, batch: dict[str, torch.Tensor]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(run.env.device.type, dtype=torch.bfloat16, enabled=run.autocast):
        run.loss(**run.model(batch))["loss"].backward()
    run.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def data_loader_rate(args: argparse.Namespace) -> float:
    """samples/s of the real loader on ``args.data`` with the preset's image size and text
    length, ``args.batch_size`` and ``args.workers`` processes."""
    cfg = load_config(None, {"model": {"preset": args.preset},
                             "data": {"num_workers": args.workers, "batch_size": args.batch_size,
                                      "parallel_batch_size": args.batch_size, "null_relevance": 0.5}})
    data = open_dataset(args.data)
    tok = train_tokenizer(dataset_texts(data), cfg.tokenizer)
    return loader_rate(data, cfg, tok, args.loader_batches)


def gpu_bench(args: argparse.Namespace, report: Callable[[dict], None] | None = None) -> dict:
    """Synthetic-batch step timing and MFU; meant for CUDA (bf16), runs on CPU (fp32) as a smoke
    test. ``report`` gets the figures so far after each stage (a caller that may be stopped
    keeps them)."""
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    out: dict = {"mode": f"synthetic-{device.type}", "preset": args.preset, "batch_size": args.batch_size,
                 "compile": args.compile}
    report = report or (lambda figures: None)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if args.data:
        out.update(loader_samples_per_s=round(data_loader_rate(args), 1), loader_workers=args.workers)
        report(out)
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = load_config(None, {"model": {"preset": args.preset},
                             "data": {"batch_size": args.batch_size, "parallel_batch_size": args.batch_size},
                             "train": {"steps": 10**6, "warmup_steps": 0, "compile": args.compile,
                                       "precision": "bf16" if device.type == "cuda" else "fp32"}})
    run = make_run(cfg, None, device)
    batch = synthetic_batch(cfg, args.batch_size, args.text_len, device)
    flops = step_flops(run, batch)
    out.update(tflops_per_step=round(flops / 1e12, 3))
    report(out)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rate, warm = step_rate(run, [batch], args.steps)
    achieved = flops * rate / args.batch_size
    out.update(samples_per_s=round(rate, 1), warmup_s=round(warm, 1), achieved_tflops=round(achieved / 1e12, 1),
               mfu=round(achieved / (args.peak_tflops * 1e12), 3))
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if "loader_samples_per_s" in out:
        out["loader_over_step"] = round(out["loader_samples_per_s"] / rate, 2)
    report(out)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--synthetic", action="store_true", help="synthetic-batch step timing + MFU (implied by cuda)")
    ap.add_argument("--data", help="a built dataset (CPU mode: required, default /tmp/m3-demo/dataset; "
                    "GPU mode: optional, for the loader / step ratio)")
    ap.add_argument("--preset", default="base", help="GPU mode model preset")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--text-len", type=int, default=32, help="GPU mode synthetic text length")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--loader-batches", type=int, default=40)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.synthetic or args.device == "cuda":
        result = gpu_bench(args)
    else:
        args.data = args.data or "/tmp/m3-demo/dataset"
        result = cpu_bench(args)
    result.update(machine=machine(), date=time.strftime("%Y-%m-%d"))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
