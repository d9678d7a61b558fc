"""The GPU check's Markdown section, ready to paste into benchmarks/RESULTS.md.

One summary table (part, verdict, time against budget), then each part's own table or
figures and notes. A rehearsal says so in its heading and its first line, so its CPU
numbers can never be mistaken for GPU figures.
"""

from __future__ import annotations

from typing import Any

ENGINE_COLUMNS = (("engine", "engine"), ("dtype", "dtype"), ("sentences_per_s", "sentences/s"),
                  ("vs_generate", "vs fairseq-generate"), ("same_output", "same output as fairseq-generate"))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value).replace("|", "/")


def _table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...] | None = None) -> list[str]:
    columns = columns or tuple((k, k) for k in rows[0])
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(key, "")) for key, _ in columns) + " |" for row in rows]
    return lines


def _header(report: dict[str, Any]) -> list[str]:
    rehearse = report["mode"] == "rehearsal"
    m = report.get("machine", {})
    command = "benchmarks/gpu_check.sh" + (" --rehearse" if rehearse else "")
    lines = [f"## GPU check{' REHEARSAL (CPU, tiny shapes)' if rehearse else ''}: `{command}` ({report['date']})", ""]
    if rehearse:
        lines += ["**A rehearsal on CPU with tiny shapes: it proves the script and every part's code path run; "
                  "none of its numbers is a GPU figure. The GPU figures are still to be taken.**", ""]
    lines += [f"- machine: {m.get('cpu', '?')}; GPU: {m.get('gpu', '?')} (x{m.get('gpus', 0)}); load average at "
              f"start {m.get('load', '?')}",
              f"- torch {m.get('torch', '?')} (CUDA {m.get('cuda')}), Python {m.get('python', '?')}, fairseq "
              f"{m.get('fairseq', '?')}, ctranslate2 {m.get('ctranslate2', '?')}",
              f"- whole check {report.get('seconds', '?')} s (environment set-up {report.get('install_s', 0):.0f} s "
              f"of it), overall budget {report.get('deadline_s', '?')} s"
              + (f" (budgets stretched x{report['budget_stretch']} for the machine's load)"
                 if report.get("budget_stretch", 1) > 1 else "")]
    demo = report.get("demo")
    if demo:
        lines.append(f"- demo data (`m3curate demo --pretrain-minutes 0`, in the background): {demo['status']}"
                     f" in {demo['seconds']} s {demo['detail']}".rstrip())
    if report.get("error"):
        lines.append(f"- **stopped: {report['error']}**")
    return lines + [""]


def _part(entry: dict[str, Any]) -> list[str]:
    result = entry.get("result", {})
    lines = [f"### {entry['title']} (`{entry['name']}`)", "", f"Verdict: {entry['verdict']}", ""]
    tables = result.get("tables", {})
    for name, rows in tables.items():
        if rows:
            lines += _table(rows, ENGINE_COLUMNS if name == "engines" else None) + [""]
    figures = {k: v for k, v in result.get("figures", {}).items() if not isinstance(v, dict | list)}
    if figures:
        lines += ["- " + "; ".join(f"{k} {_cell(v)}" for k, v in figures.items())]
    lines += [f"- {note}" for note in result.get("notes", [])]
    lines += [f"- check {c['name']}: {'ok' if c['ok'] else 'FAILED'} ({c['detail']})" for c in result.get("checks", [])]
    return lines + [""]


def markdown(report: dict[str, Any]) -> str:
    lines = _header(report)
    summary = [{"part": f"{p['title']} (`{p['name']}`)", "target": p["target"], "verdict": p["verdict"],
                "time": f"{p['seconds']:.0f} s / {p['budget_s']} s"} for p in report.get("parts", [])]
    if summary:
        lines += _table(summary) + [""]
    for entry in report.get("parts", []):
        lines += _part(entry)
    return "\n".join(lines).rstrip() + "\n"
