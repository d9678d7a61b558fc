"""One GPU check: every CUDA path of m3curate and its GPU figures, in one budgeted command.

    benchmarks/gpu_check.sh                # a CUDA machine: at most 8 minutes, install included
    benchmarks/gpu_check.sh --rehearse     # the same script on CPU with tiny shapes

``gpu_check.sh`` prepares the environment (CUDA torch, then ``make install``) and runs this
driver. Each part runs in its own process with a time budget; one that overruns is stopped
(its process group killed) and keeps what it had recorded. After every part the driver
rewrites OUT/gpu_check.json (everything) and OUT/gpu_check.md (a section ready to paste
into benchmarks/RESULTS.md); OUT/logs/ holds each part's output.

Parts, in order (cheap ones first, so a late overrun costs the least):
  mt_engines      fairseq engine fp32/fp16/bf16 and CTranslate2 float16/int8_float16 on a
                  random M2M-100-418M-shaped model: sentences/s and agreement against
                  fairseq-generate (fp16) in the same run; target CTranslate2 >= 3x
  mt_exactness    the fairseq engine equals fairseq-generate on CUDA fp32 (the demo's
                  trained MT model, held-out captions, beams 1 and 4)
  ddp_parity      two DDP ranks with half the batch each train like one process (nccl on
                  two GPUs; on one GPU NCCL refuses two ranks, so: gloo ranks on the one
                  GPU, plus a single-rank nccl DDP step)
  train_bf16      the trainer (run_training) on the demo dataset, bf16 on CUDA, 50 steps:
                  loss finite and falling
  pretrain_bench  bench_pretrain.py --device cuda --preset base --compile: samples/s, MFU
                  (target >= 40 %), peak memory, loader (demo data) / step (target >= 3x)

The demo data (``m3curate demo --pretrain-minutes 0``: the curated dataset and the demo's
trained MT model) is built in the background while the MT engines are timed.

A rehearsal runs every part on CPU with tiny shapes (fp32 for fp16/bf16, float32/int8 for
CTranslate2's CUDA types, gloo for nccl, no torch.compile); its verdicts say "rehearsal" and
judge only the correctness checks, never a performance target. Its budgets stretch with the
machine's load (``stretch``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from gpu_record import Ctx, Recorder, outcome, verdict  # noqa: E402
from gpu_report import markdown  # noqa: E402


@dataclass(frozen=True)
class Part:
    """name: the part's key; run: ``module:function`` taking (Ctx, Recorder); budget and
    rehearse_budget: seconds; demo: needs the demo data; title and target: for the report."""

    name: str
    run: str
    budget: int
    rehearse_budget: int
    demo: bool
    title: str
    target: str


PARTS = (
    Part("mt_engines", "gpu_mt:engines", 170, 120, False, "MT engines, M2M-100-418M shape",
         "CTranslate2 float16 >= 3x fairseq-generate; fairseq engine float16 >= 1x"),
    Part("mt_exactness", "gpu_mt:exactness", 45, 60, True, "fairseq engine = fairseq-generate, CUDA fp32",
         "same text, scores within 1e-5, beams 1 and 4"),
    Part("ddp_parity", "gpu_ddp:parity", 60, 60, True, "DDP parity (nccl)",
         "2 ranks x half batch = 1 process x whole batch"),
    Part("train_bf16", "gpu_pretrain:train", 75, 60, True, "trainer, bf16 on CUDA, demo data",
         "50 steps: loss finite and falling"),
    Part("pretrain_bench", "gpu_pretrain:bench", 150, 60, True, "bench_pretrain base, bf16, compile",
         "MFU >= 40 %; loader >= 3x step"),
)
PROBE = Part("machine", "gpu_record:probe", 60, 60, False, "machine", "")
DEMO_BUDGET = {False: 240, True: 300}
DEMO_SAMPLES = {False: 600, True: 100}
MIN_PART_S = 15


def stretch(rehearse: bool) -> float:
    """How much a rehearsal's budgets stretch on a busy machine: its load average per CPU,
    between 1 and 4. There they catch a hung part, not a slow one (the rehearsal takes about
    two minutes on two idle cores); a GPU run's budgets never stretch."""
    if not rehearse:
        return 1.0
    return min(4.0, max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)))


def _stop(proc: subprocess.Popen) -> None:
    """End the process group this driver started for ``proc`` (the part and its children)."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class Demo:
    """``m3curate demo`` in the background: the dataset and the demo's trained MT model."""

    def __init__(self, out: Path, rehearse: bool, log: Path):
        self.out, self.log, self.budget = out, log, DEMO_BUDGET[rehearse] * stretch(rehearse)
        code = "import sys; from curation.cli import main; sys.exit(main(sys.argv[1:]))"
        cmd = [sys.executable, "-c", code, "demo", "--out", str(out), "--samples", str(DEMO_SAMPLES[rehearse]),
               "--pretrain-minutes", "0", "--overwrite"]
        self.started = time.monotonic()
        with open(log, "w", encoding="utf-8") as handle:
            # CPU only (its MT stage and fairseq-train run there anyway): the GPU is the parts' alone
            self.proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""})
        self.state: tuple[str, str] | None = None

    def wait(self, deadline: float) -> tuple[str, str]:
        """('ok', '') once built; ('timeout' | 'error', why) otherwise; waits at most until
        the demo's own budget or ``deadline`` (monotonic)."""
        if self.state is None:
            limit = min(self.started + self.budget, deadline)
            try:
                rc = self.proc.wait(timeout=max(0.0, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                _stop(self.proc)
                self.state = ("timeout", f"the demo build was stopped after {time.monotonic() - self.started:.0f} s")
            else:
                tail = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
                self.state = ("ok", "") if rc == 0 else ("error", f"m3curate demo exited {rc}: {tail[0][-200:]}")
            self.seconds = time.monotonic() - self.started
        return self.state


def run_child(part: Part, ctx: Ctx, out: Path, timeout: float) -> tuple[str, str, dict, float]:
    """(status, detail, result, seconds) of one part run in its own process group."""
    work = Path(ctx.work) / part.name
    work.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(ctx.rehearse, ctx.device, str(work), ctx.demo, ctx.gpus)
    ctx_path, result_path = work / "ctx.json", out / "parts" / f"{part.name}.json"
    ctx.save(ctx_path)
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "gpu_check.py"), "--child", part.run, "--ctx", str(ctx_path),
           "--result", str(result_path)]
    started = time.monotonic()
    with open(out / "logs" / f"{part.name}.log", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            rc = None
    seconds = time.monotonic() - started
    result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else {}
    if rc is None:
        return "timeout", f"{timeout:.0f} s", result, seconds
    if rc != 0:
        why = result.get("error") or f"exit {rc}, see logs/{part.name}.log"
        return "error", why.strip().splitlines()[-1][-300:], result, seconds
    return "ok", "", result, seconds


def child_main(spec: str, ctx_path: str, result_path: str) -> int:
    """Run one part (``module:function``) in this process; its errors go into the result."""
    module, func = spec.split(":")
    rec = Recorder(Path(result_path))
    try:
        getattr(__import__(module), func)(Ctx.load(Path(ctx_path)), rec)
    except Exception:
        rec.data["error"] = traceback.format_exc()[-3000:]
        rec._save()
        traceback.print_exc()
        return 2
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rehearse", action="store_true", help="CPU, tiny shapes: the same parts, no GPU figure")
    p.add_argument("--out", default="out/gpu-check", help="results folder (default out/gpu-check)")
    p.add_argument("--work", help="scratch folder for models and data (default: a temporary folder, removed)")
    p.add_argument("--demo", help="reuse this `m3curate demo` output (its dataset/ and models/mt/) instead of building one")
    p.add_argument("--parts", help=f"comma list of parts to run (default all: {','.join(p.name for p in PARTS)})")
    p.add_argument("--deadline", type=float, help="seconds for the whole check, counted from GPU_CHECK_T0 when the "
                   "shell script set it (default 480 on GPU, 600 in a rehearsal, whose budgets allow for a busy machine)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--ctx", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    chosen = args.parts.split(",") if args.parts else [part.name for part in PARTS]
    unknown = sorted(set(chosen) - {part.name for part in PARTS})
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}; parts are {', '.join(part.name for part in PARTS)}")
    args.selected = [part for part in PARTS if part.name in chosen]
    return args


def _write(report: dict, out: Path) -> None:
    for name, text in (("gpu_check.json", json.dumps(report, indent=1)), ("gpu_check.md", markdown(report))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, out / name)


def _say(text: str) -> None:
    print(f"[gpu-check] {text}", flush=True)


def _entry(part: Part, status: str, detail: str, result: dict, seconds: float, budget: float, rehearse: bool) -> dict:
    return {"name": part.name, "title": part.title, "target": part.target, "status": status,
            "outcome": outcome(status, result, rehearse), "verdict": verdict(status, result, rehearse, detail),
            "seconds": round(seconds, 1), "budget_s": round(budget), "result": result}


def _probe(args: argparse.Namespace, ctx: Ctx, out: Path, report: dict) -> Ctx | None:
    """The machine's versions and GPUs; None (and the reason in the report) when a GPU run
    finds no CUDA device."""
    status, detail, result, _ = run_child(PROBE, ctx, out, PROBE.budget)
    report["machine"] = result.get("figures", {})
    gpus = int(report["machine"].get("gpus", 0))
    if status != "ok":
        report["error"] = f"machine probe failed: {detail}"
    elif not args.rehearse and gpus == 0:
        report["error"] = (f"no CUDA device visible to torch {report['machine'].get('torch')} (CUDA "
                           f"{report['machine'].get('cuda')}); gpu_check.sh installs CUDA torch, or run --rehearse")
    return None if "error" in report else Ctx(ctx.rehearse, ctx.device, ctx.work, ctx.demo, gpus)


def _demo_for(part: Part, demo: Demo | None, deadline: float) -> str:
    """'' when the part may start, else why it is skipped."""
    if not part.demo or demo is None:
        return ""
    state, why = demo.wait(deadline)
    return "" if state == "ok" else f"no demo data ({why})"


def run_parts(args: argparse.Namespace, ctx: Ctx, out: Path, report: dict, deadline: float, demo: Demo | None) -> None:
    for part in args.selected:
        budget = part.rehearse_budget * stretch(True) if args.rehearse else part.budget
        skip = _demo_for(part, demo, deadline)
        if demo is not None and "demo" not in report and demo.state is not None:
            report["demo"] = {"status": demo.state[0], "detail": demo.state[1], "seconds": round(demo.seconds, 1)}
        left = deadline - time.monotonic() - 5
        if not skip and left < MIN_PART_S:
            skip = f"the check's overall budget is spent ({left + 5:.0f} s left)"
        if skip:
            entry = _entry(part, "skipped", skip, {}, 0.0, budget, args.rehearse)
        else:
            _say(f"{part.name}: {part.title} (budget {min(budget, left):.0f} s)")
            entry = _entry(part, *run_child(part, ctx, out, min(budget, left)), min(budget, left), args.rehearse)
        report["parts"].append(entry)
        _say(f"{part.name}: {entry['verdict']} [{entry['seconds']:.0f} s]")
        _write(report, out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, args.ctx, args.result)
    t0 = float(os.environ.get("GPU_CHECK_T0", time.time()))
    deadline = time.monotonic() - (time.time() - t0) + (args.deadline or (600 * stretch(True) if args.rehearse else 480))
    out = Path(args.out).resolve()  # the parts run from the repository root
    for sub in ("logs", "parts"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="m3-gpu-check-")).resolve()
    demo_dir = Path(args.demo).resolve() if args.demo else work / "demo"
    ctx = Ctx(args.rehearse, "cpu" if args.rehearse else "cuda", str(work), str(demo_dir), 0)
    report = {"check": "benchmarks/gpu_check.sh", "mode": "rehearsal" if args.rehearse else "gpu",
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "install_s": float(os.environ.get("GPU_CHECK_INSTALL_S", 0)),
              "deadline_s": round(deadline - time.monotonic() + (time.time() - t0)),
              "budget_stretch": round(stretch(args.rehearse), 2), "parts": []}
    demo = None
    if any(p.demo for p in args.selected) and not args.demo:
        _say(f"building the demo data in the background ({DEMO_SAMPLES[args.rehearse]} samples; logs/demo.log)")
        demo = Demo(work / "demo", args.rehearse, out / "logs" / "demo.log")
    try:
        probed = _probe(args, ctx, out, report)
        if probed is not None:
            run_parts(args, probed, out, report, deadline, demo)
    finally:
        if demo is not None and demo.proc.poll() is None:
            _stop(demo.proc)
        report["seconds"] = round(time.time() - t0, 1)
        _write(report, out)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    _say(f"done in {report['seconds']:.0f} s: {out / 'gpu_check.json'}, {out / 'gpu_check.md'}")
    if "error" in report:
        _say(f"ERROR: {report['error']}")
        return 1
    bad = [p["name"] for p in report["parts"] if p["outcome"] in ("fail", "error", "timeout", "skipped")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
