"""Checkpoints: plain dicts of tensors and Python scalars, written atomically, loaded safely.

Everything stored is a tensor, dict, list, tuple, str, bytes, int, float, bool or None, so
``torch.load(weights_only=True)`` reads it with no allow-list and nothing is unpickled
beyond that. A checkpoint is written to a temporary file in the same directory, fsynced and
renamed into place: a crash leaves the previous checkpoint intact, never a partial one.
It carries the resolved config and the tokenizer's bytes, so evaluation needs nothing else.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "m3curate-rc3/1"
STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomic write of ``state`` (plus the format tag) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``; refuse files that are not m3curate RC3 checkpoints."""
    path = resolve_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an m3curate RC3 checkpoint (format {FORMAT})")
    return state


def step_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of RUN/checkpoints/step-*.pt, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_FILE.match(p.name))]
    return sorted(found)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its latest checkpoint)."""
    p = Path(path)
    if p.is_dir():
        found = step_checkpoints(p)
        if not found:
            raise FileNotFoundError(f"{p}: no checkpoints/step-*.pt in this run directory")
        return found[-1][1]
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    return p


def prune(run_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest step checkpoints (keep <= 0 keeps all)."""
    if keep > 0:
        for _, path in step_checkpoints(run_dir)[:-keep]:
            path.unlink(missing_ok=True)


def load_init_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Start ``model`` from a checkpoint's weights (an m3curate checkpoint or a bare state dict).

    Shapes must match exactly; every mismatch is listed in one error. Returns the names of
    parameters the checkpoint lacks (they keep their fresh initialisation, e.g. a new head).
    """
    raw = torch.load(resolve_checkpoint(path), map_location="cpu", weights_only=True)
    weights = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: holds no state dict")
    own = model.state_dict()
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
           for k, v in weights.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"init checkpoint {path} does not fit the model config; shape mismatch for "
                         + "; ".join(bad[:8]) + (f" (and {len(bad) - 8} more)" if len(bad) > 8 else ""))
    missing = sorted(set(own) - set(weights))
    model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
    return missing


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU and every CUDA device). Python's and NumPy's
    generators are never used by the trainer, so they need no saving."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
