"""``m3curate report DIR``: one self-contained HTML page about a built dataset.

It reads the manifest and the pairs shards through ``schemas.dataset`` and draws its charts
as inline SVG, so the page needs no plotting library, no network and no JavaScript, and can
be attached to a ticket or opened from a bucket.

Every number the page takes from the manifest carries ``data-key``, the JSON list of keys
that leads to it in manifest.json, so a test (or a reader) can check the page against the
manifest. The distributions the manifest does not hold (LID confidence, text length, image
size, code-switch rate) come from one pass over the pairs shards that reads no image bytes,
capped at ``SCAN_ROWS`` rows (the page says when the cap was hit).
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from curation.stages import ORDER
from schemas.dataset import load_manifest, shard_paths

SAMPLES = 12
SCAN_ROWS = 200_000
BAR_WIDTH = 420
BINS = 10
WORD_BUCKETS = ((1, 4), (5, 9), (10, 14), (15, 19), (20, 29), (30, 49), (50, None))
SIDE_BUCKETS = ((1, 127), (128, 255), (256, 511), (512, 1023), (1024, 2047), (2048, None))


def _key(path: list[Any]) -> str:
    return html.escape(json.dumps(path), quote=True)


def _num(value: int | float, path: list[Any] | None = None, tag: str = "span") -> str:
    attr = f' data-key="{_key(path)}"' if path else ""
    return f"<{tag}{attr}>{value:,}</{tag}>"


def _bars(title: str, counts: dict[str, int | float], keys: dict[str, list[Any]] | None = None, unit: str = "") -> str:
    """A horizontal bar chart as inline SVG; ``keys`` tags each value with its manifest path."""
    if not counts:
        return f"<h3>{html.escape(title)}</h3><p class=muted>none</p>"
    top = max(counts.values()) or 1
    row_h, label_w = 20, 220
    parts = [f'<svg width="{label_w + BAR_WIDTH + 90}" height="{row_h * len(counts) + 4}" role="img">']
    for i, (label, value) in enumerate(counts.items()):
        y = i * row_h + 2
        w = max(1, int(BAR_WIDTH * value / top))
        key = f' data-key="{_key(keys[label])}"' if keys and label in keys else ""
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{html.escape(str(label))}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 6}" fill="#4a78c2"/>')
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 14}"{key}>{value:,}{unit}</text>')
    parts.append("</svg>")
    return f"<h3>{html.escape(title)}</h3>" + "".join(parts)


def _multiples(title: str, rows: dict[str, dict[str, Any]], bins: list[str], note: str = "") -> str:
    """Small multiples: one mini histogram per row (``counts``), with ``n`` and ``mean`` beside it.

    rows: label -> {"counts": [...], "n": int, "mean": float | None, "keys": {"n": path, "mean": path}}.
    """
    if not rows:
        return f"<h3>{html.escape(title)}</h3><p class=muted>none</p>"
    row_h, label_w, bar_w = 24, 200, 18 if len(bins) > 7 else 40
    width = label_w + bar_w * len(bins) + 220
    parts = [f'<svg width="{width}" height="{row_h * len(rows) + 18}" role="img">']
    for j, b in enumerate(bins):  # bin labels under the last row, every other one
        if j % 2 == 0 or bar_w > 18:
            parts.append(f'<text x="{label_w + j * bar_w}" y="{row_h * len(rows) + 14}" class=tick>{html.escape(b)}</text>')
    for i, (label, row) in enumerate(rows.items()):
        y, top = i * row_h, max(row["counts"]) or 1
        parts.append(f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{html.escape(label)}</text>')
        for j, c in enumerate(row["counts"]):
            h = 0 if not c else max(1, int((row_h - 6) * c / top))
            parts.append(f'<rect x="{label_w + j * bar_w}" y="{y + row_h - 3 - h}" width="{bar_w - 2}" height="{h}" '
                         f'fill="#4a78c2"><title>{html.escape(bins[j])}: {c:,}</title></rect>')
        keys = row.get("keys", {})
        n = f'<tspan data-key="{_key(keys["n"])}">{row["n"]:,}</tspan>' if "n" in keys else f"{row['n']:,}"
        mean = row.get("mean")
        mean_txt = "" if mean is None else (
            f' · mean <tspan data-key="{_key(keys["mean"])}">{mean}</tspan>' if "mean" in keys else f" · mean {mean:.3f}")
        extra = f" · {row['extra']}" if row.get("extra") else ""
        parts.append(f'<text x="{label_w + bar_w * len(bins) + 8}" y="{y + 16}">n {n}{mean_txt}{extra}</text>')
    parts.append("</svg>")
    return f"<h3>{html.escape(title)}</h3>{f'<p class=muted>{note}</p>' if note else ''}" + "".join(parts)


def _bucket(value: int, buckets: tuple[tuple[int, int | None], ...]) -> int:
    return next(i for i, (lo, hi) in enumerate(buckets) if hi is None or lo <= value <= hi or value < lo)


def _bucket_labels(buckets: tuple[tuple[int, int | None], ...]) -> list[str]:
    return [f"{lo}+" if hi is None else f"{lo}–{hi}" for lo, hi in buckets]


def _unit_bins() -> list[str]:
    return [f"{i / BINS:.1f}" for i in range(BINS)]


class _Stats:
    """The distributions of one pass over pairs rows (texts and image sizes only)."""

    def __init__(self) -> None:
        self.rows = 0
        self.lid: dict[str, list[float]] = {}
        self.words: dict[str, list[int]] = {}
        self.sides = [0] * len(SIDE_BUCKETS)
        self.switch_rates: list[float] = []
        self.span_langs: Counter[str] = Counter()
        self.rows_switched = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        self.sides[_bucket(max(row["image"]["width"], row["image"]["height"]), SIDE_BUCKETS)] += 1
        texts = row["texts"]
        switched = False
        for t in texts:
            if t["lang_score"] is not None:
                self.lid.setdefault(t["lang"], []).append(t["lang_score"])
            self.words.setdefault(t["kind"], []).append(len(t["text"].split()))
            if t["kind"] == "codeswitch" and t["derived_from"] is not None:
                source_words = len(texts[t["derived_from"]]["text"].split()) or 1
                spans = t["spans"] or []
                self.switch_rates.append(min(1.0, len(spans) / source_words))
                self.span_langs.update(s["lang"] for s in spans)
                switched = switched or bool(spans)
        self.rows_switched += switched


def _hist(values: list[float]) -> list[int]:
    counts = [0] * BINS
    for v in values:
        counts[min(BINS - 1, max(0, int(v * BINS)))] += 1
    return counts


def _scan(directory: str, manifest: dict[str, Any]) -> tuple[_Stats, list[dict[str, Any]]]:
    """Distributions over (at most SCAN_ROWS) pairs rows, and the first SAMPLES rows with images."""
    stats, samples = _Stats(), []
    for path in shard_paths(directory, "pairs", manifest):
        shard = pq.ParquetFile(path)
        if len(samples) < SAMPLES:
            for batch in shard.iter_batches(batch_size=SAMPLES, columns=["id", "texts", "image"]):
                samples.extend(batch.to_pylist()[: SAMPLES - len(samples)])
                break
        for batch in shard.iter_batches(batch_size=1024, columns=["texts", "image.width", "image.height"]):
            for row in batch.to_pylist():
                if stats.rows >= SCAN_ROWS:
                    return stats, samples
                stats.add(row)
    return stats, samples


def _mark_spans(text: str, spans: list[dict[str, Any]] | None) -> str:
    """The text with every switched span in <mark data-lang=...>."""
    out, at = [], 0
    for s in sorted(spans or [], key=lambda s: s["start"]):
        if s["start"] < at or s["end"] > len(text):
            continue  # overlapping or out of range: show the text plainly there
        out.append(html.escape(text[at:s["start"]]))
        out.append(f'<mark data-lang="{html.escape(s["lang"])}" title="switched into {html.escape(s["lang"])}">'
                   f"{html.escape(text[s['start']:s['end']])}</mark>")
        at = s["end"]
    return "".join(out) + html.escape(text[at:])


def _sample_html(row: dict[str, Any]) -> str:
    image = row["image"]
    mime = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}.get(image["format"], "jpeg")
    src = f"data:image/{mime};base64,{base64.b64encode(image['bytes']).decode()}"
    items = []
    for t in row["texts"]:
        body = _mark_spans(t["text"], t["spans"]) if t["kind"] == "codeswitch" else html.escape(t["text"])
        rel = f" <span class=muted>relevance {t['relevance']:.2f}</span>" if t["relevance"] is not None else ""
        items.append(f"<li><b>{html.escape(t['kind'])}</b> [{html.escape(t['lang'])}] {body}{rel}</li>")
    alt = html.escape(row["id"], quote=True)
    return f'<div class=sample><img src="{src}" width=96 alt="{alt}"><ul>{"".join(items)}</ul></div>'


def _stage_table(counts: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{s['stage']}</td>{_num(s['input'], ['counts', 'stages', i, 'input'], 'td')}"
        f"{_num(s['output'], ['counts', 'stages', i, 'output'], 'td')}"
        f"<td>{', '.join(f'{html.escape(k)}: ' + _num(v, ['counts', 'stages', i, 'rejected', k]) for k, v in s['rejected'].items())}</td></tr>"
        for i, s in enumerate(counts["stages"])
    )
    return f"<table><tr><th>stage</th><th>in</th><th>out</th><th>rejected</th></tr>{rows}</table>"


STYLE = """body{font:14px system-ui,sans-serif;margin:2em;max-width:1000px}svg text{font-size:12px}svg .tick{font-size:9px;fill:#666}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.sample{display:flex;gap:1em;margin:.5em 0}.sample ul{margin:0}.muted{color:#888}
mark{background:#ffe08a;border-radius:2px}mark[data-lang]::after{content:attr(data-lang);font-size:9px;vertical-align:super;color:#a60}"""


def in_stage_order(by_reason: dict[str, int]) -> dict[str, int]:
    """``stage/reason`` counts in the order records pass the stages (the registry's), then
    by reason; a stage the registry does not know goes last."""
    def key(item: tuple[str, int]) -> tuple[int, str]:
        stage, _, reason = item[0].partition("/")
        return (ORDER.index(stage) if stage in ORDER else len(ORDER), reason)

    return dict(sorted(by_reason.items(), key=key))


def _relevance(manifest: dict[str, Any]) -> str:
    rows = {}
    for lang, scorers in manifest.get("relevance", {}).get("by_lang", {}).items():
        for scorer, cell in scorers.items():
            base = ["relevance", "by_lang", lang, scorer]
            keys = {"n": [*base, "n"], **({"mean": [*base, "mean"]} if cell["mean"] is not None else {})}
            rows[f"{lang} · {scorer}"] = {"counts": cell["counts"], "n": cell["n"], "mean": cell["mean"], "keys": keys,
                                         "extra": f"{cell['null']} unscored" if cell["null"] else ""}
    return _multiples("Weak-text relevance per language and scorer", rows, _unit_bins())


def _distributions(stats: _Stats) -> list[str]:
    note = f"from the first {stats.rows:,} images" if stats.rows >= SCAN_ROWS else f"all {stats.rows:,} images"
    lid = {lang: {"counts": _hist(v), "n": len(v), "mean": sum(v) / len(v)} for lang, v in sorted(stats.lid.items())}
    words = {kind: {"counts": [sum(_bucket(w, WORD_BUCKETS) == i for w in v) for i in range(len(WORD_BUCKETS))],
                    "n": len(v), "mean": sum(v) / len(v)} for kind, v in sorted(stats.words.items())}
    rates = stats.switch_rates
    switch = {"switched words / source words": {"counts": _hist(rates), "n": len(rates), "mean": sum(rates) / len(rates)}} if rates else {}
    share = f"{stats.rows_switched:,} of {stats.rows:,} images have a text with switched spans"
    return [
        _multiples("LID confidence per language", lid, _unit_bins(), note),
        _multiples("Text length in words, per kind", words, _bucket_labels(WORD_BUCKETS), note),
        _bars("Image size: longest side in pixels", dict(zip(_bucket_labels(SIDE_BUCKETS), stats.sides, strict=True))),
        _multiples("Code-switch rate per code-switched text", switch, _unit_bins(), share),
        _bars("Switched spans by language", dict(sorted(stats.span_langs.items()))),
    ]


def render_report(directory: str) -> str:
    """The report page of the dataset in ``directory`` as an HTML string."""
    manifest = load_manifest(directory)
    counts = manifest["counts"]
    stats, samples = _scan(directory, manifest)
    c = ["counts"]
    by_kind = {f"{kind} · {lang}": n for kind, langs in manifest.get("languages_by_kind", {}).items() for lang, n in langs.items()}
    kind_keys = {f"{kind} · {lang}": ["languages_by_kind", kind, lang]
                 for kind, langs in manifest.get("languages_by_kind", {}).items() for lang in langs}
    rejects = in_stage_order(counts["rejected_by_reason"])
    texts = in_stage_order(counts.get("rejected_texts_by_reason", {}))
    body = [
        f"<h1>m3curate dataset report</h1><p>{html.escape(directory)} · schema {manifest['schema_version']} · "
        f"reconciled: <b>{counts['reconciled']}</b></p>",
        f"<p>{_num(counts['input_records'], [*c, 'input_records'])} input records → {_num(counts['output_records'], [*c, 'output_records'])} kept, "
        f"{_num(counts['rejected_records'], [*c, 'rejected_records'])} rejected; {_num(counts['pairs_rows'], [*c, 'pairs_rows'])} images, "
        f"{_num(counts['parallel_rows'], [*c, 'parallel_rows'])} parallel rows.</p>",
        "<h2>Stages</h2>" + _stage_table(counts),
        _bars("Rejects by stage/reason", rejects, {k: [*c, "rejected_by_reason", k] for k in rejects}),
        _bars("Dropped texts by stage/reason", texts, {k: [*c, "rejected_texts_by_reason", k] for k in texts}),
        _bars("Texts by language", manifest["languages"], {k: ["languages", k] for k in manifest["languages"]}),
        _bars("Texts by kind and language", by_kind, kind_keys),
        _relevance(manifest),
        *_distributions(stats),
        _bars("Records by source", {k: v["output"] for k, v in counts["by_source"].items()},
              {k: [*c, "by_source", k, "output"] for k in counts["by_source"]}),
        "<h2>Samples</h2><p class=muted>switched spans of code-switched texts are <mark data-lang=xx>marked</mark></p>"
        + "".join(_sample_html(r) for r in samples),
        "<h2>Tools</h2><pre>" + html.escape(json.dumps(manifest["tools"], indent=1)) + "</pre>",
    ]
    return f"<!doctype html><meta charset=utf-8><title>m3curate report</title><style>{STYLE}</style>{''.join(body)}"


def write_report(directory: str) -> Path:
    """Write DIR/report.html (local directories) and return its path."""
    out = Path(directory) / "report.html"
    out.write_text(render_report(directory), encoding="utf-8")
    return out
