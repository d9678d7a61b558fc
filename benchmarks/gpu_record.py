"""What one part of the GPU check knows (``Ctx``) and what it records (``Recorder``).

Each part runs in its own process (``benchmarks/gpu_check.py`` starts it and stops it at
its budget). The part writes its figures, its targets, its correctness checks and its
tables through a ``Recorder``, which rewrites the part's result file after every update:
a part stopped at its budget still leaves everything it had measured until then.

``verdict`` turns a result into the one line the check prints for the part. In a rehearsal
(CPU, tiny shapes) a performance target is never judged: the line says "rehearsal" and
what ran instead of the CUDA path; the correctness checks (exactness, parity, a falling
loss) are judged in both modes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Ctx:
    """rehearse: CPU and tiny shapes instead of CUDA and the real ones. device: cuda or cpu.
    work: this part's scratch folder. demo: the ``m3curate demo`` output the pre-trainer and
    exactness parts read (its dataset/ and models/mt/), or None. gpus: CUDA devices seen."""

    rehearse: bool
    device: str
    work: str
    demo: str | None
    gpus: int

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Ctx:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    @property
    def dataset(self) -> str:
        if self.demo is None:
            raise RuntimeError("this part needs the demo data, and none was built")
        return str(Path(self.demo) / "dataset")


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become strings, tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class Recorder:
    """A part's result: figures (name -> value), targets (judged on GPU only), checks
    (judged always), notes, and tables (name -> rows); saved atomically on every update."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = {"figures": {}, "targets": [], "checks": [], "notes": [], "tables": {}}
        self._save()

    def figure(self, **values: Any) -> None:
        self.data["figures"].update(values)
        self._save()

    def target(self, name: str, value: float, goal: float, unit: str = "") -> bool:
        """A performance target: ``value`` >= ``goal``; returns whether it is met."""
        met = bool(value >= goal)
        self.data["targets"].append({"name": name, "value": value, "goal": goal, "unit": unit, "met": met})
        self._save()
        return met

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.data["checks"].append({"name": name, "ok": bool(ok), "detail": detail})
        self._save()
        return bool(ok)

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        self._save()

    def row(self, table: str, row: dict[str, Any]) -> None:
        self.data["tables"].setdefault(table, []).append(row)
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_clean(self.data), indent=1), encoding="utf-8")
        os.replace(tmp, self.path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def outcome(status: str, result: dict[str, Any], rehearse: bool) -> str:
    """pass / miss (a performance target missed) / fail (a check failed) / rehearsal, or the
    status itself when the part did not finish (timeout, error, skipped)."""
    if status != "ok":
        return status
    if any(not c["ok"] for c in result.get("checks", [])):
        return "fail"
    if rehearse:
        return "rehearsal"
    return "miss" if any(not t["met"] for t in result.get("targets", [])) else "pass"


def verdict(status: str, result: dict[str, Any], rehearse: bool, detail: str = "") -> str:
    """The part's one-line verdict against its targets."""
    checks = result.get("checks", [])
    failed = [f"{c['name']} ({c['detail']})" for c in checks if not c["ok"]]
    passed = [c["name"] for c in checks if c["ok"]]
    head = {"timeout": f"STOPPED at its budget{': ' + detail if detail else ''}",
            "error": f"ERROR: {detail}", "skipped": f"SKIPPED: {detail}"}.get(status)
    if head:
        partial = "; ".join(f"{k} {_fmt(v)}" for k, v in list(result.get("figures", {}).items())[:4])
        return head + (f" (had: {partial})" if partial and status == "timeout" else "")
    if failed:
        return "FAIL: " + "; ".join(failed)
    if rehearse:
        ran = "; ".join(n.removeprefix("rehearsal: ") for n in result.get("notes", [])[:1])
        return "rehearsal, no GPU figure: " + (f"{len(passed)} checks ok; " if passed else "") + ran
    targets = result.get("targets", [])
    parts = [f"{t['name']} {_fmt(t['value'])}{t['unit']} (target >= {_fmt(t['goal'])}{t['unit']}: "
             f"{'met' if t['met'] else 'MISSED'})" for t in targets]
    word = "MISSED" if any(not t["met"] for t in targets) else "PASS"
    return f"{word}: " + "; ".join(parts + ([f"{len(passed)} checks ok ({', '.join(passed)})"] if passed else []))


def probe(ctx: Ctx, rec: Recorder) -> None:
    """The machine and the versions every figure depends on (a part of its own, so the
    driver itself never initialises CUDA)."""
    import platform
    from importlib.metadata import version

    import ctranslate2
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = sorted({torch.cuda.get_device_name(i) for i in range(gpus)})
    rec.figure(cpu=f"{cpu}, {os.cpu_count()} CPUs", gpus=gpus, gpu=", ".join(names) or "none",
               torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version(),
               fairseq=version("fairseq-fixed"), ctranslate2=ctranslate2.__version__,
               ct2_cuda_devices=ctranslate2.get_cuda_device_count(),
               load=" ".join(f"{x:.1f}" for x in os.getloadavg()))
    if os.environ.get("M3_CUBLAS_SHIM"):  # benchmarks/gpu_offline.sh: CTranslate2 on cuBLAS 13
        rec.figure(ct2_cublas=os.environ["M3_CUBLAS_SHIM"])
