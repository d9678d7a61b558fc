"""The GPU check's DDP parity: two ranks with half the batch each train like one process.

What tests/pretrain/test_pt_ddp.py checks with gloo on CPU, here on the demo dataset and on
the GPU: the trainer's own pieces (init_distributed, its DDP wrapper, train_step, RC3Loss's
cross-rank gathers), ``tiny`` in fp32 with TF32 off, ITM off (its negatives come from the
local batch by design), 3 AdamW steps of 16 rows, weak texts drawn often (so RC3's weak
term, with its anchors, crosses ranks too). Compared: the gradient of the first batch, then every
parameter after the steps.

With two or more GPUs the two ranks use nccl, one GPU each. NCCL refuses two ranks on one
GPU ("Duplicate GPU detected", NCCL >= 2.5), so on a one-GPU machine the check is in two
halves: the two ranks share the GPU over gloo (CUDA tensors, host-staged collectives: the
same DDP and gather arithmetic on CUDA), and one nccl rank runs the steps through a DDP
wrapper (NCCL initialises and DDP's reducer runs through it), which must equal the plain run.
A rehearsal runs the gloo pair on CPU.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gpu_record import Ctx, Recorder

STEPS = 3
OVERRIDES = {"model": {"preset": "tiny"}, "loss": {"itm": 0.0, "weak_form": "regularizer"},
             "data": {"batch_size": 16, "parallel_batch_size": 16, "num_workers": 0, "null_relevance": 0.5,
                      "kind_weights": {"caption": 1, "translation": 1, "codeswitch": 1, "weak": 8}},
             "train": {"lr": 1e-3, "warmup_steps": 0, "steps": STEPS, "precision": "fp32", "threads": 1}}
# (gradient atol, parameter atol), plus rtol 1e-4: the CPU pair is the test's; CUDA kernels
# pick other reduction orders for half a batch, so ten times that
TOLERANCE = {"cpu": (1e-6, 2e-5), "cuda": (1e-5, 2e-4)}


def _config(device: str):
    from pretrain.config import load_config

    return load_config(None, {**OVERRIDES, "train": {**OVERRIDES["train"], "device": device}})


def _no_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(1)


def _train(batches: list[dict], vocab: int, pad: int, env, force_ddp: bool = False) -> dict[str, torch.Tensor]:
    """The test's run: the first batch's gradient, then STEPS train_steps; all on the CPU after."""
    from pretrain.losses import RC3Loss
    from pretrain.model import build_model
    from pretrain.train import CosineSchedule, Run, _wrap, param_groups, train_step

    cfg = _config(env.device.type)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.loss, vocab, pad).to(env.device)
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)
    forward = _wrap(model, cfg, env)
    if force_ddp and forward is model:
        ids = [env.device.index] if env.device.type == "cuda" else None
        forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    run = Run(cfg, env, Path("."), None, None, model, forward, RC3Loss(cfg.loss), opt, CosineSchedule(opt, cfg.train))
    first = {k: v.to(env.device) for k, v in batches[0].items()}
    run.loss(**run.forward(first))["loss"].backward()
    grads = {f"grad/{n}": p.grad.detach().cpu().clone() for n, p in model.named_parameters() if p.grad is not None}
    opt.zero_grad(set_to_none=True)
    stream = iter((b, {"worker": 0, "state": {}}) for b in batches)
    for _ in range(STEPS):
        train_step(run, stream)
    return {**grads, **{k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def _slice(batch: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    return {k: v[rank * (v.shape[0] // world):(rank + 1) * (v.shape[0] // world)] for k, v in batch.items()}


def _worker(rank: int, port: int, mode: tuple[str, str, list[int]], batches: list, vocab: int, pad: int, out: str) -> None:
    """One rank: joins the group (``mode``: backend, device type, local rank of each rank)."""
    from pretrain.distributed import init_distributed

    backend, device, local = mode
    world = len(local)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(local[rank]))
    _no_tf32()
    if device == "cuda" and (backend == "gloo" or world == 1):  # not what init_distributed would pick: join first
        dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        env = init_distributed(device)
        state = _train([_slice(b, rank, world) for b in batches], vocab, pad, env, force_ddp=True)
        if rank == 0:
            torch.save(state, out)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compare(single: dict[str, torch.Tensor], other: dict[str, torch.Tensor], device: str) -> tuple[bool, float, float, int]:
    """(within tolerance, worst gradient difference, worst parameter difference, parameter
    elements not compared). A parameter element whose first gradient is within the gradient
    tolerance of zero is not compared after the steps: there the two runs' gradients are
    float noise of either sign, which AdamW's normalised step turns into moves of up to its
    learning rate (seen on the demo data: a gradient of 1.4e-9 in one run, -7.5e-9 in the
    other, parameters 3.6e-5 apart after 3 steps)."""
    grad_atol, param_atol = TOLERANCE[device]
    ok, worst, skipped = True, {True: 0.0, False: 0.0}, 0
    for name, value in single.items():
        is_grad = name.startswith("grad/")
        a, b = value.double(), other[name].double()
        diff = (a - b).abs()
        if not is_grad and f"grad/{name}" in single:
            noise = single[f"grad/{name}"].double().abs() <= grad_atol
            skipped += int(noise.sum())
            diff = diff.masked_fill(noise, 0.0)
        ok &= bool((diff <= (grad_atol if is_grad else param_atol) + 1e-4 * a.abs()).all())
        worst[is_grad] = max(worst[is_grad], float(diff.max()) if diff.numel() else 0.0)
    return ok, worst[True], worst[False], skipped


def _modes(ctx: Ctx) -> list[tuple[str, str, list[int]]]:
    if ctx.rehearse:
        return [("gloo", "cpu", [0, 0])]
    if ctx.gpus >= 2:
        return [("nccl", "cuda", [0, 1])]
    return [("gloo", "cuda", [0, 0]), ("nccl", "cuda", [0])]


def _batches(ctx: Ctx) -> tuple[list[dict], int, int]:
    from pretrain.data import build_loader
    from pretrain.shards import dataset_texts, open_dataset
    from pretrain.tokenizer import train_tokenizer

    cfg = _config(ctx.device)
    data = open_dataset(ctx.dataset)
    tok = train_tokenizer(dataset_texts(data), cfg.tokenizer)
    stream = iter(build_loader(data, cfg, tok))
    return [next(stream)[0] for _ in range(STEPS)], tok.vocab_size, tok.pad_id


def parity(ctx: Ctx, rec: Recorder) -> None:
    from pretrain.distributed import DistEnv

    _no_tf32()
    batches, vocab, pad = _batches(ctx)
    device = torch.device("cuda", 0) if ctx.device == "cuda" else torch.device("cpu")
    single = _train(batches, vocab, pad, DistEnv(device=device))
    weak, anchored = int(batches[0]["is_weak"].sum()), int((batches[0]["is_weak"] & batches[0]["has_anchor"]).sum())
    rec.figure(gpus=ctx.gpus, steps=STEPS, batch=int(batches[0]["text_ids"].shape[0]), weak_rows=weak,
               weak_rows_with_anchor=anchored)
    rec.check("the first batch has weak texts with anchors", anchored > 0, f"{weak} weak rows, {anchored} with an anchor")
    if ctx.rehearse:
        rec.note("rehearsal: two gloo ranks on CPU (the GPU run uses nccl)")
    elif ctx.gpus < 2:
        rec.note("one GPU: NCCL refuses two ranks on one GPU, so the pair shares it over gloo and nccl runs one DDP rank")
    for mode in _modes(ctx):
        backend, dev, local = mode
        label = f"{backend} {len(local)} rank{'s' if len(local) > 1 else ''} on {dev}"
        out = Path(ctx.work) / f"{backend}-{len(local)}.pt"
        try:
            mp.spawn(_worker, args=(_free_port(), mode, batches, vocab, pad, str(out)), nprocs=len(local), join=True)
        except Exception as err:  # the other mode still runs; this one fails its check
            rec.check(f"{label} = one process", False, f"the ranks failed: {str(err).strip().splitlines()[-1][:300]}")
            continue
        ok, grad_diff, param_diff, skipped = _compare(single, torch.load(out, weights_only=True), dev)
        rec.row("parity", {"run": label, "max_grad_diff": f"{grad_diff:.1e}", "max_param_diff": f"{param_diff:.1e}",
                           "tolerance": "grad {:.0e}, param {:.0e}, rtol 1e-4".format(*TOLERANCE[dev]),
                           "params_not_compared": f"{skipped} (first gradient within grad tolerance of 0)"})
        rec.check(f"{label} = one process", ok, f"max diff: gradients {grad_diff:.1e}, parameters {param_diff:.1e}")
    initial = _initial(vocab, pad)
    moved = sum(not torch.equal(v, single[k]) for k, v in initial.items())
    rec.check("training moved the parameters", moved > 0.9 * len(initial), f"{moved} of {len(initial)} tensors changed")


def _initial(vocab: int, pad: int) -> dict[str, torch.Tensor]:
    from pretrain.model import build_model

    cfg = _config("cpu")
    torch.manual_seed(0)
    return build_model(cfg.model, cfg.loss, vocab, pad).state_dict()
