"""Ablation of the trainer's additions (issue 16, point 5): base, + CCLM cross view, + MVP
concepts, MVP two-stage vs joint, + masked region modelling; and issue 14.4's patches only
vs patches + ROI.

Protocol (issue 14's): every variant trains with the same steps, seeds and data order as the
base; its setting (the new objectives' weight, from ``--weights``) is chosen per variant by
mean recall on the dataset's ``validation`` split (averaged over the seeds; only weights run
on every seed compete), and only the chosen setting is reported on the ``test`` split, per
seed, paired with the reference of the same seed: mean difference ± sd, the exact two-sided
sign-flip permutation p-value and the paired t-test's p over the seeds, per language too.
Settings are never chosen on test.

The dataset must be a built m3curate dataset with ``train``, ``validation`` and ``test``
splits (each test/validation image with its captions in every language), e.g. ``m3curate
demo --samples 3400 --held-out 1000 --validation 400 --pretrain-minutes 0``. The concept
variants need ``concepts.txt`` and texts with concepts (the [concepts] stage); the region
variants need regions with features (the [regions] stage; with labels for MRC). A variant
whose data is missing is skipped with the reason (nothing is made up).

Variants (each on top of the base, pretrain.demo's DEMO_SETTINGS):
  base       ITC + weak (RC3 soft_target: the default when these ran, pinned) + TTC + MLM + ITM
  cclm       + TTM and conditional MLM on parallel text (weight w)
  mvp        + concepts as inputs, TCP, RCA (and ICP, WCA with regions) in one joint stage (w)
  mvp2       the same objectives in MVP's two stages: unimodal (MLM, TCP, [MRFR, ICP]) for
             --stage1 of the steps, then cross-modal (ITC, weak, TTC, RCA, [WCA], ITM, MLM)
  mvp2t      mvp2 with TTC (text-text contrastive on parallel rows, a unimodal objective) also
             in the unimodal stage: text MLM alone leaves the text encoder slow to learn
             contrastive [CLS] features (benchmarks/RESULTS.md, "Why MVP's two stages fail")
  roi        + regions as inputs only (RC3's ROI + patch input, no new objective): the
             reference for mrm and for the region part of mvp/mvp2, which also feed regions
  mrm        + regions as inputs, MRFR and MRC (w; MRC only with labelled regions)

Each run is one child process (``--jobs`` of them at a time) writing
``OUT/results/<variant>-w<w>-s<seed>.json``; a result already there for the same steps is
kept, so an interrupted ablation continues where it stopped, and ``--report`` rebuilds the
tables from the results alone. With 3 seeds the smallest possible sign-flip p-value is 0.25:
a significant difference needs at least 6 seeds (p >= 1/32 = 0.031).

usage: python benchmarks/ablation_trainer.py --data DS --out OUT [--steps 400] [--seeds 0,1,2]
           [--variants base,cclm,mvp,mvp2,mvp2t,roi,mrm] [--weights 0.5,1.0] [--stage1 0.3]
           [--jobs 1] [--device auto] [--report]
Record the load average beside the numbers (each result records it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("base", "cclm", "mvp", "mvp2", "mvp2t", "roi", "mrm")
UNWEIGHTED = ("base", "roi")  # no new objective: one run per seed, nothing to choose
# (variant, reference): what each addition is measured against, paired per seed
COMPARISONS = (("cclm", "base"), ("mvp", "base"), ("mvp2", "base"), ("roi", "base"), ("mrm", "base"),
               ("mrm", "roi"), ("mvp", "roi"), ("mvp2", "mvp"), ("mvp2t", "mvp2"), ("mvp2t", "mvp"))


def data_facts(data: Path) -> dict[str, Any]:
    """What the dataset offers: region feature size, labels, concepts."""
    from pretrain.shards import open_dataset, read_unit

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
    uni = {"mlm": 1.0, "tcp": w, **({"mrfr": w, "icp": w} if regions else {}), **({"ttc": 1.0} if name == "mvp2t" else {})}
    cross = {"itc": 1.0, "weak": 1.0, "ttc": 1.0, "rca": w, **({"wca": w} if regions else {}), "itm": 1.0, "mlm": 1.0}
    return {"model": model, "schedule": [{"name": "unimodal", "steps": first, "unimodal": True, "loss": uni},
                                         {"name": "crossmodal", "steps": steps - first, "loss": cross}]}


def load_average() -> float:
    """The 1-minute load average (NaN where the system does not report it)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def run_id(name: str, w: float, seed: int) -> str:
    return f"{name}-w{w:g}-s{seed}"


def plan(names: list[str], weights: list[float], seeds: list[int]) -> list[tuple[str, float, int]]:
    """Every (variant, weight, seed) to run, seed by seed (a cut-short ablation keeps whole seeds)."""
    return [(n, w, s) for s in seeds for n in names for w in ([0.0] if n in UNWEIGHTED else weights)]


def run_config(overrides: dict[str, Any], seed: int, steps: int, device: str = "auto") -> Any:
    """The PretrainConfig of one run: the demo settings, ``steps`` with a tenth of them
    warm-up, ``seed``, ``device``, then ``overrides``."""
    from pretrain.config import load_config, merge
    from pretrain.demo import DEMO_SETTINGS

    settings = merge(DEMO_SETTINGS, {"train": {"steps": steps, "warmup_steps": max(1, steps // 10), "seed": seed,
                                               "device": device},
                                     # the default weak form when the recorded runs ran (now the regulariser)
                                     "loss": {"weak_form": "soft_target"}})
    return load_config(None, merge(settings, overrides))


def train_and_score(data: Path, out: Path, overrides: dict[str, Any], seed: int, steps: int,
                    device: str = "auto") -> dict[str, Any]:
    """One run: train, then mean recall (and per language) on validation and test."""
    from pretrain.evaluate import evaluate
    from pretrain.train import run_training

    cfg = run_config(overrides, seed, steps, device)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    run_training(cfg, str(data), str(out), quiet=True)
    t1 = time.perf_counter()
    res: dict[str, Any] = {"train_seconds": round(t1 - t0, 1)}
    for split in ("validation", "test"):
        ev = evaluate(str(out), str(data), split, device=device)
        res[split] = ev["mean_r_mean"]
        res[f"{split}_langs"] = {lang: m["r_mean"] for lang, m in ev["languages"].items()}
    res["eval_seconds"] = round(time.perf_counter() - t1, 1)
    return res


def run_one(args: argparse.Namespace, spec: str) -> int:
    """Child process: one (variant, weight, seed); writes its result JSON."""
    import torch

    name, w, seed = spec.split(":")
    w_f, seed_i = float(w), int(seed)
    facts = data_facts(args.data)
    over = variant_config(name, w_f, facts, args.steps, args.stage1)
    path = args.out / "results" / f"{run_id(name, w_f, seed_i)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"variant": name, "w": w_f, "seed": seed_i, "steps": args.steps, "stage1": args.stage1,
                              "load_start": load_average()}
    if isinstance(over, str):
        record["skipped"] = over
    else:
        record.update(train_and_score(args.data, args.out / "runs" / run_id(name, w_f, seed_i), over, seed_i,
                                      args.steps, args.device))
        record.update(overrides=over, torch=str(torch.__version__),
                      device=torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    record["load_end"] = load_average()
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return 0


def load_results(out: Path, steps: int | None = None) -> list[dict[str, Any]]:
    """Every result JSON under OUT/results (of ``steps`` when given), in file name order."""
    rows = [json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))]
    return [r for r in rows if steps is None or r["steps"] == steps]


def orchestrate(args: argparse.Namespace, jobs: list[tuple[str, float, int]]) -> None:
    """Run the missing jobs, ``args.jobs`` child processes at a time, each logging to OUT/logs."""
    done = {(r["variant"], r["w"], r["seed"]) for r in load_results(args.out, args.steps)}
    todo = [j for j in jobs if j not in done]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done; load average {load_average()}", flush=True)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    running: list[tuple[subprocess.Popen, tuple[str, float, int], Any]] = []
    while todo or running:
        while todo and len(running) < args.jobs:
            job = todo.pop(0)
            log = open(args.out / "logs" / f"{run_id(*job)}.log", "w")  # noqa: SIM115 (closed when the child ends)
            cmd = [sys.executable, __file__, "--data", str(args.data), "--out", str(args.out), "--steps", str(args.steps),
                   "--stage1", str(args.stage1), "--device", args.device, "--one", f"{job[0]}:{job[1]}:{job[2]}"]
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), job, log))
        time.sleep(1)
        for proc, job, log in [r for r in running if r[0].poll() is not None]:
            log.close()
            running.remove((proc, job, log))
            status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see logs/{run_id(*job)}.log)"
            print(f"{run_id(*job)}: {status}; load {load_average()}", flush=True)


def paired(diffs: list[float]) -> dict[str, float]:
    """Mean paired difference, its sd, the exact sign-flip p and the paired t-test's p."""
    n = len(diffs)
    sd = statistics.stdev(diffs) if n > 1 else float("nan")
    t_p = float("nan")
    if n > 1 and sd > 0:
        from scipy import stats

        t_p = float(2 * stats.t.sf(abs(statistics.mean(diffs)) / (sd / math.sqrt(n)), n - 1))
    return {"mean": statistics.mean(diffs), "sd": sd, "sign_flip_p": sign_flip_p(diffs), "t_p": t_p}


def sign_flip_p(diffs: list[float]) -> float:
    """Exact two-sided p-value of the mean paired difference under random sign flips."""
    observed = abs(sum(diffs))
    flips = list(itertools.product((1, -1), repeat=len(diffs)))
    return sum(abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - 1e-12 for signs in flips) / len(flips)


def choose(rows: list[dict[str, Any]], seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Per variant: the weight with the best mean validation mR among weights run on every
    seed (ties: the smaller weight), its validation mean and its per-seed test results.
    Test numbers play no part in the choice."""
    by: dict[str, dict[float, dict[int, dict]]] = {}
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if "skipped" in r:
            out[r["variant"]] = {"skipped": r["skipped"]}
        elif r["seed"] in seeds:
            by.setdefault(r["variant"], {}).setdefault(r["w"], {})[r["seed"]] = r
    for name, runs in by.items():
        full = {w: per for w, per in sorted(runs.items()) if len(per) == len(seeds)}
        val = {w: statistics.mean(per[s]["validation"] for s in seeds) for w, per in full.items()}
        if not val:
            out[name] = {"incomplete": {w: sorted(per) for w, per in runs.items()}}
            continue
        best = max(val, key=lambda w: (val[w], -w))
        out[name] = {"w": best, "val": val[best], "val_by_w": val, "runs": full[best]}
    return out


def _f(x: float, sign: bool = False) -> str:
    return "n/a" if x != x else (f"{x:+.2f}" if sign else f"{x:.2f}")


def _p(x: float) -> str:
    return "n/a" if x != x else ("<0.001" if x < 0.001 else f"{x:.3f}")


def report(rows: list[dict[str, Any]], seeds: list[int]) -> str:
    """Markdown: per variant the chosen weight, validation means, test mR per seed, mean ± sd,
    per language; then the paired comparisons."""
    chosen = choose(rows, seeds)
    langs = sorted({lang for c in chosen.values() for r in c.get("runs", {}).values() for lang in r["test_langs"]})
    lines = ["| variant | chosen w (val mean per w) | val mean | test mR per seed | test mean ± sd | "
             + " / ".join(langs) + " |", "|---|---|---|---|---|---|"]
    for name in [v for v in VARIANTS if v in chosen]:
        c = chosen[name]
        if "runs" not in c:
            lines.append(f"| {name} | {'skipped: ' + c['skipped'] if 'skipped' in c else 'incomplete: ' + str(c['incomplete'])} | | | | |")
            continue
        test = [c["runs"][s]["test"] for s in seeds]
        per_w = ", ".join(f"{w:g}: {v:.2f}" for w, v in c["val_by_w"].items())
        per_lang = " / ".join(f"{statistics.mean(c['runs'][s]['test_langs'][lang] for s in seeds):.2f}" for lang in langs)
        lines.append(f"| {name} | {c['w']:g} ({per_w}) | {c['val']:.2f} | " + ", ".join(f"{s}: {t:.2f}" for s, t in zip(seeds, test, strict=True))
                     + f" | **{statistics.mean(test):.2f}** ± {_f(statistics.stdev(test))} | {per_lang} |")
    lines += ["", "| comparison (paired per seed) | Δ per seed | Δ mean ± sd | p sign-flip | p t | Δ " + " / ".join(langs) + " |",
              "|---|---|---|---|---|---|"]
    for a, b in COMPARISONS:
        if "runs" not in chosen.get(a, {}) or "runs" not in chosen.get(b, {}):
            continue
        ra, rb = chosen[a]["runs"], chosen[b]["runs"]
        diffs = [ra[s]["test"] - rb[s]["test"] for s in seeds]
        st = paired(diffs)
        per_lang = " / ".join(_f(statistics.mean(ra[s]["test_langs"][lang] - rb[s]["test_langs"][lang] for s in seeds), True)
                              for lang in langs)
        lines.append(f"| {a} − {b} | " + ", ".join(_f(d, True) for d in diffs) + f" | {_f(st['mean'], True)} ± {_f(st['sd'])} | "
                     f"{_p(st['sign_flip_p'])} | {_p(st['t_p'])} | {per_lang} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example: python benchmarks/ablation_trainer.py --data out/demo/dataset --out /tmp/abl "
                                        "--steps 400 --seeds 0,1,2 --weights 0.5,1.0 --jobs 1")
    ap.add_argument("--data", required=True, type=Path, help="built dataset with train/validation/test splits")
    ap.add_argument("--out", required=True, type=Path, help="results/, runs/, logs/ and the report go here")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--weights", default="0.5,1.0", help="weights of the new objectives tried on validation")
    ap.add_argument("--stage1", type=float, default=0.3, help="mvp2: share of the steps in the unimodal stage")
    ap.add_argument("--jobs", type=int, default=1, help="training processes at a time (default 1)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="train.device and evaluation's")
    ap.add_argument("--report", action="store_true", help="only rebuild the report from OUT/results")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: VARIANT:W:SEED
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        return run_one(args, args.one)
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) < 3:
        sys.exit("--seeds: give at least 3 seeds (the comparison is paired per seed)")
    names = [v for v in args.variants.split(",") if v]
    bad = sorted(set(names) - set(VARIANTS))
    if bad:
        sys.exit(f"--variants: unknown {bad}; use {list(VARIANTS)}")
    if args.jobs < 1:
        sys.exit("--jobs: at least 1")
    names = ["base", *[n for n in names if n != "base"]]
    weights = [float(w) for w in args.weights.split(",")]
    jobs = plan(names, weights, seeds)
    if not args.report:
        orchestrate(args, jobs)
    table = report([r for r in load_results(args.out, args.steps) if (r["variant"], r["w"], r["seed"]) in set(jobs)], seeds)
    (args.out / "ablation_trainer.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
