"""Two gloo processes with half the batch each train like one process with the whole batch.

Both runs go through the trainer's own pieces (init_distributed, the DDP wrapper,
train_step, RC3Loss's gathers), with every objective whose value depends only on the global
batch on: ITC, the regulariser, TTC, MLM, conditional MLM on parallel text and MRFR on
region features; and, in a second run, MVP's concept recovery (text and image), the
region/word-concept grounding (keys gathered across ranks) and MRC. ITM and TTM are off: their hard negatives are drawn from the local batch by
design (as in ALBEF/CCLM), so they are not expected to match.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pretrain_helpers import CONCEPTS, micro_config, write_dataset

from pretrain.concepts import Vocabularies, scan_region_labels
from pretrain.data import build_loader
from pretrain.distributed import init_distributed
from pretrain.losses import RC3Loss
from pretrain.model import build_model
from pretrain.shards import dataset_texts, open_dataset
from pretrain.tokenizer import train_tokenizer
from pretrain.train import CosineSchedule, Run, _wrap, param_groups, train_step

STEPS = 3
DATA = {"batch_size": 8, "parallel_batch_size": 8, "kind_weights": {"caption": 1, "translation": 1, "codeswitch": 1, "weak": 2}}
CFGS = {"rc3": {"loss": {"itm": 0.0, "weak_form": "regularizer", "cmlm": 1.0, "mrfr": 1.0, "mpm": 1.0},
                "model": {"region_dim": 6, "max_regions": 4}, "data": DATA},
        "mvp": {"loss": {"itm": 0.0, "mrc": 1.0, "tcp": 1.0, "icp": 1.0, "rca": 1.0, "wca": 1.0},
                "model": {"region_dim": 6, "max_regions": 4, "concepts": -1, "max_concepts": 4}, "data": DATA}}


def _config(name: str):
    cfg = micro_config(**CFGS[name])
    return cfg, replace(cfg.model, concepts=len(CONCEPTS) if cfg.model.concepts else 0, region_classes=4 if cfg.loss.mrc else 0)


def _train(batches: list[dict[str, torch.Tensor]], vocab: int, pad: int, name: str) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    cfg, model_cfg = _config(name)
    env = init_distributed("cpu")
    torch.manual_seed(0)
    model = build_model(model_cfg, cfg.loss, vocab, pad)
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)
    run = Run(cfg, env, Path("."), None, None, model, _wrap(model, cfg, env), RC3Loss(cfg.loss), opt, CosineSchedule(opt, cfg.train))
    run.loss(**run.forward(batches[0]))["loss"].backward()  # the gradient itself: Adam's steps hide its scale
    grads = {f"grad/{n}": p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    opt.zero_grad(set_to_none=True)
    stream = iter((b, {"worker": 0, "state": {}}) for b in batches)
    for _ in range(STEPS):
        train_step(run, stream)
    return {**grads, **{k: v.detach().clone() for k, v in model.state_dict().items()}}


def _half(batch: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        n = value.shape[0] // 2
        out[key] = value[rank * n : (rank + 1) * n]
    return out


def _worker(rank: int, port: int, batches: list, vocab: int, pad: int, out: str, name: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    try:
        state = _train([_half(b, rank) for b in batches], vocab, pad, name)
        if rank == 0:
            torch.save(state, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rc3", "mvp"])
def test_two_process_gloo_matches_one_process(tmp_path, name):
    data = open_dataset(str(write_dataset(tmp_path / "ds", n=40, regions=True, concepts=name == "mvp")))
    cfg, model_cfg = _config(name)
    tok = train_tokenizer(dataset_texts(data), cfg.tokenizer)
    vocab = Vocabularies(list(CONCEPTS), scan_region_labels(data, "train")) if name == "mvp" else None
    stream = iter(build_loader(data, cfg, tok, vocab=vocab))
    batches = [next(stream)[0] for _ in range(STEPS)]
    assert all(b["is_weak"].any() and (b["has_anchor"] & b["is_weak"]).any() for b in batches[:1])
    # the halves differ in how many tokens, concepts and regions they mask
    masks = ("par_mlm_labels", "region_masked") if name == "rc3" else ("concepts_masked", "region_masked")
    counts = [[int((_half(b, r)[key] != (-100 if key == "par_mlm_labels" else 0)).sum()) for r in (0, 1)]
              for b in batches for key in masks]
    assert min(min(c) for c in counts) > 0 and any(c[0] != c[1] for c in counts)
    single = _train(batches, tok.vocab_size, tok.pad_id, name)
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(_free_port(), batches, tok.vocab_size, tok.pad_id, str(out), name), nprocs=2, join=True)
    double = torch.load(out, weights_only=True)
    for key, value in single.items():
        # Gradients must agree to 1e-6. A weight may differ by a few % of one Adam step (lr
        # 1e-3): where a gradient is as small as Adam's eps (1e-8), m / (sqrt(v) + eps) turns
        # the float noise of another summation order into up to ~5e-5 of movement.
        atol = 1e-6 if key.startswith("grad/") else 5e-5
        torch.testing.assert_close(double[key], value, rtol=1e-4, atol=atol, msg=lambda m, n=key: f"{n}: {m}")
    torch.manual_seed(0)
    initial = build_model(model_cfg, cfg.loss, tok.vocab_size, tok.pad_id).state_dict()
    assert sum(not torch.equal(initial[k], single[k]) for k in initial) > 0.9 * len(initial)  # training moved them
