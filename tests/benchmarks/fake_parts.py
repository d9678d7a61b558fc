"""Parts for the GPU check's driver tests: one that overruns its budget, one that fails."""

from __future__ import annotations

import time


def overrun(ctx, rec) -> None:
    rec.figure(measured_before_the_stop=42.0)
    time.sleep(60)
    rec.figure(never=1)


def broken(ctx, rec) -> None:
    rec.figure(partial=1)
    raise RuntimeError("the engine said no")
