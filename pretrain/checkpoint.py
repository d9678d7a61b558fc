"""Checkpoints: plain dicts of tensors and Python scalars, written atomically, loaded safely.

Everything stored is a tensor, dict, list, tuple, str, bytes, int, float, bool or None, so
``torch.load(weights_only=True)`` reads it with no allow-list and nothing is unpickled
beyond that. Every load goes through ``torch_load``: a file that needs any other global (a
pickle that calls ``os.system``) is refused with a one-line ``UnsafeCheckpointError``
naming the global, the same refusal ``m3curate mt`` gives, not torch's generic advice. A checkpoint is written to a temporary file in the same directory, fsynced and
renamed into place: a crash leaves the previous checkpoint intact, never a partial one.
It carries the resolved config and the tokenizer's bytes, so evaluation needs nothing else,
and ``--resume`` continues the run the checkpoint describes (``resume_config``).
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pretrain.config import PretrainConfig, config_from_dict

FORMAT = "m3curate-rc3/1"
STEP_FILE = re.compile(r"^step-(\d+)\.pt$")

# What a resumed run may change: the step target (an explicit extension; the cosine is then
# that of a run planned for the new number of steps) and bookkeeping or placement that
# changes no formula. The data order changes with num_workers (the streams restart at a new
# epoch); threads, compile and device change float rounding, so the run is no longer bit
# for bit. Every other setting is the run's own and a change is refused.
RESUMABLE = ("train.steps", "train.log_every", "train.ckpt_every", "train.keep_checkpoints", "train.threads",
             "train.compile", "train.device", "data.num_workers")


class ResumeError(ValueError):
    """--resume was asked to change what the run is; the message names the setting."""


class UnsafeCheckpointError(ValueError):
    """The file needs a global beyond plain data to unpickle; the message names it."""


def torch_load(path: str | Path, mmap: bool = False) -> Any:
    """``torch.load`` on CPU with ``weights_only=True``, its failures as one-line errors:
    UnsafeCheckpointError naming the refused global(s), ValueError for a file that is not a
    readable PyTorch checkpoint."""
    try:
        with warnings.catch_warnings():  # torch warns of a plain pickle's protocol: not news here
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError:
                if not mmap:  # legacy (pre-zip) files cannot be mapped: read them whole
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        names = _unsafe_globals(Path(path), str(err))
        if names:
            raise UnsafeCheckpointError(
                f"{path}: refused to load: the checkpoint needs {', '.join(names)}, which is not on the allow-list of "
                "safe globals (m3curate checkpoints hold only tensors, dicts, lists, strings and numbers). Unpickling "
                "it could run code; use a checkpoint written by m3curate pretrain") from None
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({_reason(err)})") from None
    except (RuntimeError, EOFError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({_reason(err)})") from None


def _unsafe_globals(path: Path, message: str) -> list[str]:
    """The globals the file asks for, as ``module.name`` (empty when none can be told):
    from torch's scan of a zip checkpoint, its error message, or the pickle's opcodes."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # a legacy (non-zip) file or a plain pickle: look further
        pass
    named = re.findall(r"GLOBAL ([\w.]+)", message)
    return named or _pickle_globals(path)


def _pickle_globals(path: Path, limit: int = 1_000_000) -> list[str]:
    """``module.name`` of each GLOBAL / STACK_GLOBAL opcode of a plain pickle file (the
    first ``limit`` opcodes; STACK_GLOBAL takes the two strings pushed before it)."""
    found: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as handle:
            for i, (op, arg, _) in enumerate(pickletools.genops(handle)):
                if i >= limit:
                    break
                if op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # not a pickle, or a truncated one: report what was seen
        pass
    return sorted(set(found))


def _reason(err: BaseException) -> str:
    """The informative part of a torch.load error (its first lines are generic advice)."""
    text = str(err)
    for marker in ("WeightsUnpickler error:", "Do it only if you got the file from a trusted source."):
        if marker in text:
            text = text.split(marker, 1)[1]
    text = text.split("Check the documentation", 1)[0]
    return " ".join(text.split())[:300] or type(err).__name__


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


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place: a reader
    (or a crash) sees the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True`` (``torch_load``); refuse files that are not m3curate
    RC3 checkpoints."""
    path = resolve_checkpoint(path)
    state = torch_load(path)
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
    raw = torch_load(resolve_checkpoint(path))
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


def saved_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The resolved config (TOML-shaped dict) of RUN's latest checkpoint, None without one.
    Read through a memory map: the weights are not loaded."""
    found = step_checkpoints(run_dir)
    if not found:
        return None
    state = torch_load(found[-1][1], mmap=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{found[-1][1]}: not an m3curate RC3 checkpoint (format {FORMAT})")
    return state["config"]


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """{"train.steps": 10, ..., "preset": "tiny"}: one entry per setting (a dict-valued
    setting such as data.lang_weights is one entry)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            out[key] = value
    return out


def resume_config(ckpt: dict[str, Any], requested: PretrainConfig) -> tuple[PretrainConfig, list[str]]:
    """The config a resumed run continues with, and the RESUMABLE settings that changed.

    The run is the checkpoint's: ``requested`` may differ from it only in RESUMABLE settings,
    and ``train.steps`` may not fall below the checkpoint's step; anything else raises
    ResumeError naming the first differing setting (and how many more differ)."""
    saved = config_from_dict(ckpt["config"])
    old, new = _flat(saved.to_dict()), _flat(requested.to_dict())
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    refused = [k for k in changed if k not in RESUMABLE]
    if refused:
        key, more = refused[0], f" (and {len(refused) - 1} more: {', '.join(refused[1:4])})" if len(refused) > 1 else ""
        raise ResumeError(f"--resume: {key} = {new.get(key)!r} differs from the run's {old.get(key)!r}{more}; a resumed "
                          f"run keeps its settings except {', '.join(RESUMABLE)}. Drop the change, or train a new run "
                          "in another --out")
    step = int(ckpt["step"])
    if requested.train.steps < step:
        raise ResumeError(f"--resume: train.steps = {requested.train.steps} is below the checkpoint's step {step}; "
                          f"give --steps {step} or more")
    train = {k.split(".", 1)[1]: new[k] for k in changed if k.startswith("train.")}
    data = {k.split(".", 1)[1]: new[k] for k in changed if k.startswith("data.")}
    return replace(saved, train=replace(saved.train, **train), data=replace(saved.data, **data)), changed
