"""Ablation of the trainer's additions (issue 16, point 5): base, + CCLM cross view, + MVP
concepts, MVP two-stage vs joint, + masked region modelling.

Protocol (issue 14's): every variant trains with the same steps, seeds and data order as the
base; its setting (the new objectives' weight, from ``--weights``) is chosen per variant by
mean recall on the dataset's ``validation`` split (averaged over the seeds), and only the
chosen setting is reported on the ``test`` split, per seed, paired with the base of the same
seed (mean difference, and the exact two-sided sign-flip permutation p-value over the
seeds). Settings are never chosen on test.

The dataset must be a built m3curate dataset with ``train``, ``validation`` and ``test``
splits (each test/validation image with its captions in every language). The concept
variants need ``concepts.txt`` and texts with concepts (the [concepts] stage); the region
variants need regions with features (the [regions] stage; with labels for MRC). A variant
whose data is missing is skipped with the reason (nothing is made up).

Variants (each on top of the base, pretrain.demo's DEMO_SETTINGS):
  base       ITC + weak (RC3 soft target) + TTC + MLM + ITM
  cclm       + TTM and conditional MLM on parallel text (weight w)
  mvp        + concepts as inputs, TCP, RCA (and ICP, WCA with regions) in one joint stage (w)
  mvp2       the same objectives in MVP's two stages: unimodal (MLM, TCP, [MRFR, ICP]) for
             --stage1 of the steps, then cross-modal (ITC, weak, RCA, [WCA], ITM, MLM)
  roi        + regions as inputs only (RC3's ROI + patch input, no new objective): the
             reference for mrm and for the region part of mvp/mvp2, which also feed regions
  mrm        + regions as inputs, MRFR and MRC (w; MRC only with labelled regions)

With 3 seeds the smallest possible sign-flip p-value is 0.25: a significant difference
needs at least 6 seeds (p >= 1/32 = 0.031).

usage: python benchmarks/ablation_trainer.py --data DS --out OUT [--steps 600] [--seeds 0,1,2]
           [--variants base,cclm,mvp,mvp2,roi,mrm] [--weights 0.5,1.0] [--stage1 0.3]
Record the load average beside the numbers (the script prints it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pretrain.config import load_config, merge  # noqa: E402
from pretrain.demo import DEMO_SETTINGS  # noqa: E402
from pretrain.evaluate import evaluate  # noqa: E402
from pretrain.shards import open_dataset, read_unit  # noqa: E402
from pretrain.train import run_training  # noqa: E402

VARIANTS = ("base", "cclm", "mvp", "mvp2", "roi", "mrm")


def data_facts(data: Path) -> dict[str, Any]:
    """What the dataset offers: region feature size, labels, concepts."""
    ds = open_dataset(str(data), full_validation=False)
    facts = {"region_dim": 0, "labels": False, "concepts": (data / "concepts.txt").is_file(), "text_concepts": False}
    for unit in ds.pairs[:4]:
        for row in read_unit(unit, ["split", "regions", "texts"], "train"):
            reg = row.get("regions") or {}
            if reg.get("features"):
                facts["region_dim"] = len(reg["features"][0])
                facts["labels"] |= any(x is not None for x in reg.get("labels") or [])
            facts["text_concepts"] |= any(t.get("concepts") for t in row["texts"])
    return facts


def variant_config(name: str, w: float, facts: dict[str, Any], steps: int, stage1: float) -> dict[str, Any] | str:
    """The overrides of one variant at weight ``w``, or why the data cannot run it."""
    regions = {"region_dim": facts["region_dim"], "max_regions": 36} if facts["region_dim"] else None
    if name == "base":
        return {}
    if name == "cclm":
        return {"loss": {"ttm": w, "cmlm": w}}
    if name in ("roi", "mrm"):
        if not regions:
            return "the dataset has no region features ([regions] stage)"
        return {"model": regions, "loss": {"mrfr": w, **({"mrc": w} if facts["labels"] else {})} if name == "mrm" else {}}
    if not (facts["concepts"] and facts["text_concepts"]):
        return "the dataset has no concepts.txt or no text concepts ([concepts] stage)"
    model = {"concepts": -1, **(regions or {})}
    mvp = {"tcp": w, "rca": w, **({"icp": w, "wca": w} if regions else {})}
    if name == "mvp":
        return {"model": model, "loss": mvp}
    first = max(1, int(steps * stage1))
    uni = {"mlm": 1.0, "tcp": w, **({"mrfr": w, "icp": w} if regions else {})}
    cross = {"itc": 1.0, "weak": 1.0, "ttc": 1.0, "rca": w, **({"wca": w} if regions else {}), "itm": 1.0, "mlm": 1.0}
    return {"model": model, "schedule": [{"name": "unimodal", "steps": first, "unimodal": True, "loss": uni},
                                         {"name": "crossmodal", "steps": steps - first, "loss": cross}]}


def train_and_score(data: Path, out: Path, overrides: dict[str, Any], seed: int, steps: int) -> dict[str, Any]:
    settings = merge(DEMO_SETTINGS, {"train": {"steps": steps, "warmup_steps": max(1, steps // 10), "seed": seed}})
    cfg = load_config(None, merge(settings, overrides))
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    run_training(cfg, str(data), str(out), quiet=True)
    scores = {split: evaluate(str(out), str(data), split)["mean_r_mean"] for split in ("validation", "test")}
    return {**scores, "seconds": round(time.perf_counter() - t0, 1)}


def sign_flip_p(diffs: list[float]) -> float:
    """Exact two-sided p-value of the mean paired difference under random sign flips."""
    observed = abs(sum(diffs))
    flips = list(itertools.product((1, -1), repeat=len(diffs)))
    return sum(abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - 1e-12 for signs in flips) / len(flips)


def report(results: dict[str, Any], seeds: list[int]) -> str:
    base = results["base"]["test"]
    lines = ["| variant | chosen w | val mR (mean) | test mR per seed | test mean | Δ vs base (paired) | p (sign flip) |",
             "|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        if "skipped" in res:
            lines.append(f"| {name} | skipped: {res['skipped']} | | | | | |")
            continue
        diffs = [res["test"][s] - base[s] for s in seeds]
        delta = f"{statistics.mean(diffs):+.2f}" if name != "base" else "-"
        p = f"{sign_flip_p(diffs):.3f}" if name != "base" else "-"
        per_seed = ", ".join(f"{res['test'][s]:.2f}" for s in seeds)
        lines.append(f"| {name} | {res['w']} | {res['val']:.2f} | {per_seed} | "
                     f"{statistics.mean(res['test'].values()):.2f} | {delta} | {p} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: python benchmarks/ablation_trainer.py --data out/demo/dataset --out /tmp/abl "
                                        "--steps 600 --seeds 0,1,2")
    ap.add_argument("--data", required=True, type=Path, help="built dataset with train/validation/test splits")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--weights", default="0.5,1.0", help="weights of the new objectives tried on validation")
    ap.add_argument("--stage1", type=float, default=0.3, help="mvp2: share of the steps in the unimodal stage")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) < 3:
        ap.error("--seeds: give at least 3 seeds (the comparison is paired per seed)")
    names = [v for v in args.variants.split(",") if v]
    bad = sorted(set(names) - set(VARIANTS))
    if bad:
        ap.error(f"--variants: unknown {bad}; use {list(VARIANTS)}")
    names = ["base", *[n for n in names if n != "base"]]
    facts = data_facts(args.data)
    print(f"data: {facts}; load average {os.getloadavg()}", flush=True)
    results: dict[str, Any] = {}
    for name in names:
        weights = [0.0] if name in ("base", "roi") else [float(w) for w in args.weights.split(",")]
        runs: dict[float, dict[int, dict]] = {}
        for w in weights:
            over = variant_config(name, w, facts, args.steps, args.stage1)
            if isinstance(over, str):
                results[name] = {"skipped": over}
                break
            runs[w] = {s: train_and_score(args.data, args.out / f"{name}-w{w}-s{s}", over, s, args.steps) for s in seeds}
            print(f"{name} w={w}: {json.dumps(runs[w])}; load {os.getloadavg()[0]:.1f}", flush=True)
        if name in results:
            print(f"{name}: skipped ({results[name]['skipped']})")
            continue
        best = max(runs, key=lambda w: statistics.mean(r["validation"] for r in runs[w].values()))  # validation only
        results[name] = {"w": best, "val": statistics.mean(r["validation"] for r in runs[best].values()),
                         "test": {s: runs[best][s]["test"] for s in seeds}, "all": {str(w): r for w, r in runs.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation_trainer.json").write_text(json.dumps(results, indent=1))
    table = report(results, seeds)
    (args.out / "ablation_trainer.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
