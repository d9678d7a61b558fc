"""A progress line on stderr for long local work (``build``'s read, ``export``).

One self-overwriting line (``\\r``), redrawn at most every ``INTERVAL`` seconds, so its
cost does not grow with the number of records. It is shown only when stderr is a terminal:
a log file or a CI capture gets no carriage-return noise. ``M3CURATE_PROGRESS=1`` forces it
on (``0`` off) whatever stderr is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

INTERVAL = 0.5
ENV = "M3CURATE_PROGRESS"


def progress_enabled(stream: TextIO | None = None) -> bool:
    """Whether to draw progress on ``stream`` (stderr): the environment's say, else is it a terminal."""
    forced = os.environ.get(ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def eta(done: float, total: float, elapsed: float) -> str:
    """Time left at the mean rate so far, or ``?`` before there is a rate."""
    if done <= 0 or elapsed <= 0 or total <= done:
        return "?" if total > done else "0:00"
    return fmt_duration((total - done) * elapsed / done)


class ProgressLine:
    """One status line, redrawn in place at most every ``interval`` seconds.

    stream: where to draw (stderr). enabled: None decides by ``progress_enabled``.
    interval: the least time between two redraws.
    """

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None, interval: float = INTERVAL):
        self.stream = stream or sys.stderr
        self.enabled = progress_enabled(self.stream) if enabled is None else enabled
        self.interval = interval
        self.started = time.monotonic()
        self._next = self.started + interval  # nothing before there is a rate worth showing
        self._shown = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def due(self) -> bool:
        """True when enabled and the last redraw is at least ``interval`` old (cheap: one clock read)."""
        return self.enabled and time.monotonic() >= self._next

    def show(self, text: str) -> None:
        """Redraw the line now (callers check ``due()`` first)."""
        if not self.enabled:
            return
        width = max(20, shutil.get_terminal_size((120, 24)).columns - 1)
        text = text[:width]
        self.stream.write("\r" + text + " " * max(0, self._shown - len(text)))
        self.stream.flush()
        self._shown = len(text)
        self._next = time.monotonic() + self.interval

    def done(self, text: str | None = None) -> None:
        """Leave the last state (or ``text``) on its own line."""
        if not self.enabled or not (self._shown or text):
            return
        if text is not None:
            self.show(text)
        self.stream.write("\n")
        self.stream.flush()
        self._shown = 0


class Counter:
    """Items done of a known total, drawn as ``label: done/total unit · rate · ETA``."""

    def __init__(self, label: str, total: int, unit: str = "rows", line: ProgressLine | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.line = line or ProgressLine()
        self.done = 0

    def add(self, n: int = 1) -> None:
        self.done += n
        if self.line.due():
            self.line.show(self.text())

    def text(self) -> str:
        elapsed = self.line.elapsed
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return (f"[m3curate] {self.label}: {self.done:,}/{self.total:,} {self.unit} · {rate:,.0f} {self.unit}/s · "
                f"ETA {eta(self.done, self.total, elapsed)}")

    def close(self) -> None:
        self.line.done(f"[m3curate] {self.label}: {self.done:,} {self.unit} in {fmt_duration(self.line.elapsed)}")


class Ticker:
    """Redraws ``text(elapsed)`` on a ProgressLine from a background thread while a blocking
    call runs (a local Beam pipeline); the last text stays on its own line at exit.

    text: makes the line from the seconds elapsed. line: where to draw.
    """

    def __init__(self, text: Callable[[float], str], line: ProgressLine):
        self.text, self.line = text, line
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="m3curate-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.line.interval):
            with contextlib.suppress(Exception):  # a progress line must never break the work it shows
                self.line.show(self.text(self.line.elapsed))

    def __enter__(self) -> Ticker:
        if self.line.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):
            self.line.done(self.text(self.line.elapsed))
