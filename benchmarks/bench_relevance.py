"""Relevance scoring throughput: each scorer inside the pipeline against the scorer called
directly in a loop, in the same run (issue 6: pipeline cost at most 1.3x the direct call
for ``lexical`` and ``embedding``).

Rows are demo-like pairs rows (an English caption and one German weak text of a graded
construction, a 1 kB stand-in for the image bytes). Timings:

- direct: ``scorer.score`` over the same pairs, ``batch_size`` at a time, in a loop.
- pipeline: ``beam.Create(rows) | ScoreRelevance | count`` on FnApiRunner, minus the same
  pipeline with a pass-through stage (``Create`` and the sink cost the same with any stage,
  and exist in a build anyway): that difference is what the stage costs.

Usage: python benchmarks/bench_relevance.py [--rows N] [--repeat R] [--out RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codeswitch.dictionary import write_muse_dictionaries  # noqa: E402
from curation.records import text_entry  # noqa: E402
from curation.relevance import ScoreRelevance, score_rows  # noqa: E402
from curation.relevance_build import build_scorer  # noqa: E402
from curation.relevance_config import RelevanceConfig  # noqa: E402
from curation.relevance_encoders import train_fasttext_encoder  # noqa: E402
from curation.relevance_scorers import Pair  # noqa: E402
from curation.synth import LANGUAGES, caption, generate, lexicon_pairs, sample_rng, sample_scene  # noqa: E402
from curation.synth_weak import GRADED_KINDS, graded_weak_text  # noqa: E402


def make_rows(n: int) -> list[dict]:
    samples = generate(min(n, 500), 11, image_size=32)
    rows = []
    for i in range(n):
        s = samples[i % len(samples)]
        text, _, _ = graded_weak_text(s.scene, "de", sample_rng(11, "b", i), GRADED_KINDS[i % 4])
        texts = [text_entry(s.captions["en"], "caption", "bench", "en"), text_entry(text, "weak", "bench", "de", anchor=0)]
        rows.append({"id": f"r{i:07d}", "source": "bench", "source_id": str(i), "split": "train",
                     "provenance": {"file": "f", "row": i, "url": None, "member": None},
                     "image": {"bytes": bytes(1024), "width": 32, "height": 32, "format": "JPEG", "sha256": "0" * 64},
                     "regions": None, "texts": texts})
    return rows


class _PassThrough(beam.PTransform):
    def expand(self, tables: dict) -> tuple[dict, beam.PCollection]:
        return dict(tables), tables["pairs"] | beam.FlatMap(lambda _: ())


class _Expand(beam.DoFn):
    """Rows made inside the pipeline from a template (``Create`` of 10^5 rows would pickle
    them all into the job graph, and dominate the timing)."""

    def __init__(self, template: list[dict], per_chunk: int):
        self.template, self.per_chunk = template, per_chunk

    def process(self, chunk: int):
        t = self.template
        for i in range(chunk * self.per_chunk, (chunk + 1) * self.per_chunk):
            yield {**t[i % len(t)], "id": f"r{i:08d}"}


def run_pipeline(rows: list[dict], stage: beam.PTransform, n: int) -> float:
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    chunks = 20
    made = p | "Chunks" >> beam.Create(list(range(chunks))) | "Rows" >> beam.ParDo(_Expand(rows, n // chunks))
    tables = {"pairs": made, "parallel": p | "Q" >> beam.Create([])}
    out, rejects = tables | "Stage" >> stage
    (out["pairs"], rejects) | beam.Flatten() | beam.combiners.Count.Globally()
    start = time.perf_counter()
    p.run().wait_until_finish()
    return time.perf_counter() - start


def run_direct(rows: list[dict], cfg: RelevanceConfig) -> tuple[float, float]:
    """(seconds of scorer.score over all pairs, seconds of score_rows over all rows)."""
    scorer = build_scorer(cfg)
    pairs = [Pair(r["texts"][1]["text"], "de", r["texts"][0]["text"], "en") for r in rows]
    scorer.score(pairs[: cfg.batch_size])  # warm (encoder, caches)
    start = time.perf_counter()
    for k in range(0, len(pairs), cfg.batch_size):
        scorer.score(pairs[k:k + cfg.batch_size])
    direct = time.perf_counter() - start
    start = time.perf_counter()
    for k in range(0, len(rows), cfg.batch_size):
        score_rows(rows[k:k + cfg.batch_size], scorer, cfg, Counter())
    return direct, time.perf_counter() - start


def bench(name: str, cfg: RelevanceConfig, rows: list[dict], repeat: int) -> dict:
    """Best-of-``repeat`` timings; the pipeline's rows cycle through the same 2,000 rows."""
    direct, rowfn, piped, base = [], [], [], []
    n, template = len(rows), rows[:2000]
    for _ in range(repeat):
        d, r = run_direct(rows, cfg)
        direct.append(d)
        rowfn.append(r)
        base.append(run_pipeline(template, _PassThrough(), n))
        piped.append(run_pipeline(template, ScoreRelevance(cfg), n))
    d, r, pp, b = min(direct), min(rowfn), min(piped), min(base)
    return {"scorer": name, "pairs": n, "direct_per_s": n / d, "rows_fn_per_s": n / r,
            "pipeline_per_s": n / pp, "stage_per_s": n / max(pp - b, 1e-9), "ratio": (pp - b) / d,
            "ratio_total": pp / d}


def setup(work: Path) -> dict[str, RelevanceConfig]:
    write_muse_dictionaries(work / "dicts", {("en", t): lexicon_pairs("en", t) for t in LANGUAGES if t != "en"})
    lines = [f"{caption(sc, 'en')} {caption(sc, 'de')}" for sc in (sample_scene(sample_rng(5, 'e', i)) for i in range(3000))]
    enc = train_fasttext_encoder(lines, work / "enc", dim=16, epochs=5, multilingual=True)
    return {"lexical": RelevanceConfig(enabled=True, dictionaries=str(work / "dicts"), batch_size=64),
            "embedding": RelevanceConfig(enabled=True, scorer="embedding", encoder=str(enc), batch_size=64,
                                         cos_low=0.9, cos_high=1.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/RESULTS-relevance.md")
    args = parser.parse_args()
    rows = make_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = setup(Path(tmp))
        results = [bench(name, cfg, rows, args.repeat) for name, cfg in cfgs.items()]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, Beam {beam.__version__}"
    lines = [f"## {datetime.date.today().isoformat()}: {args.rows} rows, best of {args.repeat}; {machine}", "",
             "| scorer | direct pairs/s | score_rows rows/s | pipeline pairs/s (total) | stage pairs/s (total - pass-through) | stage / direct | total / direct |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['scorer']} | {r['direct_per_s']:,.0f} | {r['rows_fn_per_s']:,.0f} | {r['pipeline_per_s']:,.0f} | "
                     f"{r['stage_per_s']:,.0f} | {r['ratio']:.2f}x | {r['ratio_total']:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
