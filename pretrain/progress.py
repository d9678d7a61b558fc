"""Progress on stderr and metrics as JSON lines (one object per logged step).

The JSON lines are the machine-readable record (loss per objective, throughput, learning
rate, skipped samples); the progress line is for the person watching. No tqdm: one
carriage-return line is all a training loop needs, and it must degrade to plain lines
when stderr is a file (torchrun, CI logs).

``metrics.jsonl`` follows the checkpoints: a run that starts at step S (resumed from the
checkpoint of step S, or S = 0 afresh) first drops the records of steps after S, which an
interrupted run logged past its last checkpoint, so every step appears once, in order.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from pretrain.checkpoint import write_text_atomic
from pretrain.stages import OBJECTIVES


def _eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def trim_metrics(path: str | Path, step: int) -> int:
    """Keep the records of steps <= ``step`` (and drop a torn last line); returns how many
    were dropped. The file is rewritten atomically, and only when something goes."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def _step_of(line: str) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("step") if isinstance(record, dict) and isinstance(record.get("step"), int) else None


# The losses the progress line shows, when the run computes them (metrics.jsonl has all).
LOSS_KEYS = ("loss", *OBJECTIVES)  # every objective the trainer logs, in the stages' order

class Progress:
    """Writes RUN/metrics.jsonl (from ``start_step`` on, see ``trim_metrics``) and a
    progress line; silent on ranks other than 0."""

    def __init__(self, path: str | Path | None, total: int, enabled: bool = True, stream: TextIO | None = None,
                 start_step: int = 0, show: bool = True):
        self.total, self.enabled, self.show = total, enabled, show
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        if path and enabled:
            trim_metrics(path, start_step)
        self.file = open(path, "a", encoding="utf-8") if (path and enabled) else None  # noqa: SIM115
        self.start = time.perf_counter()
        self.first_step = start_step

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3), **metrics}
        if self.file:
            self.file.write(json.dumps(record, sort_keys=True) + "\n")
            self.file.flush()
        if not self.show:
            return
        done = step - self.first_step
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        losses = " ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k in LOSS_KEYS)
        line = (f"step {step}/{self.total} {losses} | {metrics.get('samples_per_s', 0):.0f} samples/s"
                f" | lr {metrics.get('lr', 0):.2e} | eta {_eta((self.total - step) / max(rate, 1e-9))}")
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.enabled and self.show:
            self.stream.write(("\n" if self.tty else "") + text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.show and self.tty:
            self.stream.write("\n")
        if self.file:
            self.file.close()
