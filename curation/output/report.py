"""``m3curate report DIR``: one self-contained HTML page about a built dataset.

It reads the manifest and a sample of the shards through ``schemas.dataset`` and draws
its charts as inline SVG, so the page needs no plotting library, no network and no
JavaScript, and can be attached to a ticket or opened from a bucket.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from curation.stages import ORDER
from schemas.dataset import load_manifest, shard_paths

SAMPLES = 12
BAR_WIDTH = 420


def _bars(title: str, counts: dict[str, int | float], unit: str = "") -> str:
    """A horizontal bar chart as inline SVG."""
    if not counts:
        return f"<h3>{html.escape(title)}</h3><p class=muted>none</p>"
    top = max(counts.values()) or 1
    row_h, label_w = 20, 220
    parts = [f'<svg width="{label_w + BAR_WIDTH + 90}" height="{row_h * len(counts) + 4}" role="img">']
    for i, (label, value) in enumerate(counts.items()):
        y = i * row_h + 2
        w = max(1, int(BAR_WIDTH * value / top))
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{html.escape(str(label))}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 6}" fill="#4a78c2"/>')
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 14}">{value:,}{unit}</text>')
    parts.append("</svg>")
    return f"<h3>{html.escape(title)}</h3>" + "".join(parts)


def _histogram(values: list[float], bins: int = 10) -> dict[str, int]:
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int(v * bins))] += 1
    return {f"{i / bins:.1f}–{(i + 1) / bins:.1f}": c for i, c in enumerate(counts)}


def _collect(directory: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Text kinds, relevance values and a few sample rows from the pairs shards."""
    kinds: dict[str, int] = {}
    relevance: list[float] = []
    samples: list[dict[str, Any]] = []
    for path in shard_paths(directory, "pairs", manifest):
        table = pq.read_table(path, columns=["id", "texts", "image"])
        for row in table.to_pylist():
            for text in row["texts"]:
                kinds[text["kind"]] = kinds.get(text["kind"], 0) + 1
                if text["relevance"] is not None:
                    relevance.append(text["relevance"])
            if len(samples) < SAMPLES:
                samples.append(row)
    return {"kinds": kinds, "relevance": relevance, "samples": samples}


def _sample_html(row: dict[str, Any]) -> str:
    image = row["image"]
    mime = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}.get(image["format"], "jpeg")
    src = f"data:image/{mime};base64,{base64.b64encode(image['bytes']).decode()}"
    texts = "".join(
        f"<li><b>{html.escape(t['kind'])}</b> [{html.escape(t['lang'])}] {html.escape(t['text'])}</li>" for t in row["texts"]
    )
    return f'<div class=sample><img src="{src}" width=96><ul>{texts}</ul></div>'


def _stage_table(counts: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{s['stage']}</td><td>{s['input']:,}</td><td>{s['output']:,}</td>"
        f"<td>{html.escape(', '.join(f'{k}: {v}' for k, v in s['rejected'].items()))}</td></tr>"
        for s in counts["stages"]
    )
    return f"<table><tr><th>stage</th><th>in</th><th>out</th><th>rejected</th></tr>{rows}</table>"


STYLE = """body{font:14px system-ui,sans-serif;margin:2em;max-width:1000px}svg text{font-size:12px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.sample{display:flex;gap:1em;margin:.5em 0}.sample ul{margin:0}.muted{color:#888}"""


def in_stage_order(by_reason: dict[str, int]) -> dict[str, int]:
    """``stage/reason`` counts in the order records pass the stages (the registry's), then
    by reason; a stage the registry does not know goes last."""
    def key(item: tuple[str, int]) -> tuple[int, str]:
        stage, _, reason = item[0].partition("/")
        return (ORDER.index(stage) if stage in ORDER else len(ORDER), reason)

    return dict(sorted(by_reason.items(), key=key))


def render_report(directory: str) -> str:
    """The report page of the dataset in ``directory`` as an HTML string."""
    manifest = load_manifest(directory)
    counts = manifest["counts"]
    data = _collect(directory, manifest)
    body = [
        f"<h1>m3curate dataset report</h1><p>{html.escape(directory)} · schema {manifest['schema_version']} · "
        f"reconciled: <b>{counts['reconciled']}</b></p>",
        f"<p>{counts['input_records']:,} input records → {counts['output_records']:,} kept, "
        f"{counts['rejected_records']:,} rejected; {counts['pairs_rows']:,} images, {counts['parallel_rows']:,} parallel rows.</p>",
        "<h2>Stages</h2>" + _stage_table(counts),
        _bars("Rejects by stage/reason", in_stage_order(counts["rejected_by_reason"])),
        _bars("Dropped texts by stage/reason", in_stage_order(counts.get("rejected_texts_by_reason", {}))),
        _bars("Texts by language", manifest["languages"]),
        _bars("Texts by kind", dict(sorted(data["kinds"].items()))),
        _bars("Weak-text relevance", _histogram(data["relevance"])) if data["relevance"] else "",
        _bars("Records by source", {k: v["output"] for k, v in counts["by_source"].items()}),
        "<h2>Samples</h2>" + "".join(_sample_html(r) for r in data["samples"]),
        "<h2>Tools</h2><pre>" + html.escape(json.dumps(manifest["tools"], indent=1)) + "</pre>",
    ]
    return f"<!doctype html><meta charset=utf-8><title>m3curate report</title><style>{STYLE}</style>{''.join(body)}"


def write_report(directory: str) -> Path:
    """Write DIR/report.html (local directories) and return its path."""
    out = Path(directory) / "report.html"
    out.write_text(render_report(directory), encoding="utf-8")
    return out
