"""Optimisation pieces of the trainer: the learning-rate schedule, AdamW's parameter groups,
and torch's deterministic CPU kernels (which bit-exact resume needs)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from pretrain.config import TrainConfig
from pretrain.distributed import pick_device


def lr_at(c: TrainConfig, step: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of a ``c.steps``-step run."""
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
    floor = c.lr * c.min_lr_ratio
    return floor + (c.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class CosineSchedule:
    """Linear warmup to ``lr`` then cosine decay to ``lr * min_lr_ratio``; state is one int."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig):
        self.optimizer, self.cfg, self.step_count = optimizer, cfg, 0
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.cfg, self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = int(state["step"])
        self._apply()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, embeddings (tokens, concepts), positional/CLS/type
    tokens or the temperature."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        flat = p.ndim < 2 or name.endswith((".pos", ".cls", "_type", "logit_scale")) or ".tok." in name or ".embed." in name
        (no_decay if flat else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@contextlib.contextmanager
def deterministic_cpu(device: str) -> Iterator[None]:
    """On CPU, torch's deterministic kernels for the duration: without them the backward of
    indexing with repeated indices (ITM's negatives) adds into the gradient in thread order,
    and two identical runs with more than one thread drift apart (1e-5 in 20 steps). The
    serial kernel costs little at these sizes. Uninitialised memory is not NaN-filled (that
    would cost every allocation and changes no result). CUDA is left as it is."""
    if pick_device(device).type != "cpu":
        yield
        return
    import torch.utils.deterministic as det

    before, fill = torch.are_deterministic_algorithms_enabled(), det.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    det.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
        det.fill_uninitialized_memory = fill
