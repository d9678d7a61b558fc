"""The GPU check (benchmarks/gpu_check.sh): its driver's budgets and verdicts, and its CPU
rehearsal end to end, so that the script cannot rot before a GPU machine is lent.

The rehearsal runs every part with tiny shapes on CPU; a GPU figure can only come from a
GPU run, so every rehearsal verdict must say "rehearsal" and no performance target may be
judged, while the correctness checks (exactness, DDP parity, a falling loss) must pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from gpu_record import Ctx, outcome, verdict  # noqa: E402
from gpu_report import markdown  # noqa: E402

PARTS = ["mt_engines", "mt_exactness", "ddp_parity", "train_bf16", "pretrain_bench"]


def _run_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, func: str, timeout: float):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    out = tmp_path / "out"
    for sub in ("logs", "parts"):
        (out / sub).mkdir(parents=True)
    part = gpu_check.Part("fake", f"fake_parts:{func}", 1, 1, False, "a fake part", "none")
    return gpu_check.run_child(part, Ctx(True, "cpu", str(tmp_path / "work"), None, 0), out, timeout)


def test_a_part_over_its_budget_is_stopped_and_keeps_what_it_measured(tmp_path, monkeypatch):
    status, detail, result, seconds = _run_fake(tmp_path, monkeypatch, "overrun", timeout=4)
    assert status == "timeout" and seconds < 20
    assert result["figures"] == {"measured_before_the_stop": 42.0}
    line = verdict(status, result, rehearse=False, detail=detail)
    assert line.startswith("STOPPED at its budget") and "measured_before_the_stop 42" in line


def test_a_failing_part_reports_its_error(tmp_path, monkeypatch):
    status, detail, result, _ = _run_fake(tmp_path, monkeypatch, "broken", timeout=30)
    assert status == "error" and "the engine said no" in detail
    assert result["figures"] == {"partial": 1} and "RuntimeError" in result["error"]


def test_verdicts_judge_targets_on_gpu_only():
    result = {"figures": {"mfu": 0.31}, "checks": [{"name": "loss falling", "ok": True, "detail": ""}],
              "targets": [{"name": "MFU", "value": 31.0, "goal": 40.0, "unit": " %", "met": False}], "notes": []}
    assert outcome("ok", result, rehearse=False) == "miss"
    assert verdict("ok", result, rehearse=False).startswith("MISSED: MFU 31 % (target >= 40 %: MISSED)")
    assert outcome("ok", result, rehearse=True) == "rehearsal"
    assert verdict("ok", result, rehearse=True).startswith("rehearsal, no GPU figure")
    result["checks"][0]["ok"] = False
    assert outcome("ok", result, rehearse=True) == "fail" and verdict("ok", result, True).startswith("FAIL")


def test_a_part_is_skipped_once_the_overall_budget_is_spent(tmp_path):
    rc = gpu_check.main(["--rehearse", "--parts", "mt_engines", "--deadline", "1", "--out", str(tmp_path / "out"),
                         "--work", str(tmp_path / "work")])
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert rc == 1
    (part,) = report["parts"]
    assert part["status"] == "skipped" and "overall budget is spent" in part["verdict"]


def test_the_markdown_of_a_rehearsal_says_it_holds_no_gpu_figure():
    text = markdown({"mode": "rehearsal", "date": "today", "machine": {"gpus": 0}, "parts": []})
    assert "REHEARSAL" in text.splitlines()[0] and "none of its numbers is a GPU figure" in text


@pytest.mark.slow
def test_rehearsal_runs_every_part_on_cpu(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh"), "--rehearse", "--out", str(out),
                           "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=900)
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["mode"] == "rehearsal" and report["demo"]["status"] == "ok", report.get("demo")
    assert [p["name"] for p in report["parts"]] == PARTS
    bad = [(p["name"], p["verdict"]) for p in report["parts"] if p["outcome"] != "rehearsal"]
    assert not bad and proc.returncode == 0, (bad, (proc.stdout + proc.stderr)[-3000:])
    for part in report["parts"]:
        assert part["status"] == "ok" and part["verdict"].startswith("rehearsal, no GPU figure")
        assert part["result"]["targets"] == []  # no performance target judged on CPU
        assert all(c["ok"] for c in part["result"]["checks"]), part["result"]["checks"]
    by_name = {p["name"]: p["result"] for p in report["parts"]}
    engines = by_name["mt_engines"]["tables"]["engines"]
    assert [(r["engine"], r["dtype"]) for r in engines] == [
        ("fairseq-generate", "float32"), ("m3curate CTranslate2 engine", "float16 (ran float32)"),
        ("m3curate fairseq engine", "float16 (ran float32)"), ("m3curate CTranslate2 engine", "int8_float16 (ran int8)"),
        ("m3curate fairseq engine", "bfloat16 (ran float32)"), ("m3curate fairseq engine", "float32 (ran float32)")]
    assert engines[2]["same_output"] == "48/48"  # the fairseq engine decodes exactly as fairseq-generate
    checks = {c["name"] for r in by_name.values() for c in r["checks"]}
    assert {"beam 1 same text", "beam 4 same text", "gloo 2 ranks on cpu = one process", "loss falling"} <= checks
    assert "mfu" not in by_name["pretrain_bench"]["figures"]
    assert by_name["pretrain_bench"]["figures"]["loader_over_step"] > 0
    text = (out / "gpu_check.md").read_text()
    assert text.startswith("## GPU check REHEARSAL") and "| MT engines" in text
