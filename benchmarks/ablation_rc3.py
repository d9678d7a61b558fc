"""Ablation of issue 14 point 2: what RC3's weak-pair objective buys, in a protocol that can fail.

Corpora (``curation.demo.corpus``, built by the real pipeline, whose relevance stage scores
every weak text with the lexical scorer against its English anchor), each with
``--held-out`` test images (inputs/heldout) and ``--validation`` images (inputs/validation),
disjoint from training and from each other in images and captions:
  web   RC3's setting: no MT stage; strict texts are the English captions and their
        code-switched versions; a graded de/fr/es alt-text on every on-disk image.
  demo  the ``m3curate demo`` build (MT of every caption, code-switching, weak texts on 60%).

Runs (same steps, seeds, data order and model; only the weak texts' treatment differs):
  a  strict only         weak texts never sampled
  b  weak as strict      weak_form "strict": weak texts are ITC pairs, MLM targets, ITM positives
  p  (b') strict in ITC  soft_target with every weak r = 1: CLIP's InfoNCE on the weak pairs,
                         but, as in c, no MLM target and no ITM positive (differs from c in r only)
  c  RC3 default form    the default weak_form with the pipeline's relevance (this is also (f))
  d  other RC3 form      soft_target <-> regularizer, pipeline relevance
  e  constant r = 0.5    default form, every weak r = 0.5
  g  constructed grades  default form, the generator's grades (1.0 / 0.6 / 0.3 / 0.0)
  h  calibrated          default form, the pipeline's raw scores through an isotonic calibration
                         (``m3curate relevance calibrate`` on the validation split's parallel pairs)
  w  warm-up form        regularizer after a soft_target warm-up as long as the LR warm-up
                         (loss.weak_warmup = steps // 10), pipeline relevance: a third candidate
                         for the default, compared with c and d on validation (``--report``)
The default form is chosen on validation only (``--form auto``: the higher mean validation mR
of the soft_target and regularizer runs with pipeline relevance, i.e. c and d); every run is
then reported on test, per seed, paired with c of the same seed (sign-flip permutation over
seeds, exact; paired t). ``--no-aux`` drops the code-switched captions and TTC in every run.

Each run is one child process (``--jobs`` at a time, niced); its result is a JSON under
OUT/results/<corpus>[-noaux]/ and a finished run is never repeated (delete it to redo).

usage: python benchmarks/ablation_rc3.py --corpus web --out /tmp/rc3 [--samples 4000]
           [--held-out 1000] [--validation 400] [--steps 400] [--seeds 0,1,2] [--runs cdabpegh]
           [--jobs 2] [--no-aux] [--report results.md]
       python benchmarks/ablation_rc3.py --gate --seeds 0,1,2,3,4,5,6,7 --out /tmp/rc3 [--gate-steps 50,100] [--report gate.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ablation_trainer import paired  # noqa: E402
from rc3_corpora import build_corpus, dataset_for, weak_truth  # noqa: E402

KINDS = ("whole", "part", "wrong_colour", "unrelated")
FORMS = ("soft_target", "regularizer")
NO_AUX = {"data": {"kind_weights": {"codeswitch": 0.0}}, "loss": {"ttc": 0.0}}
# letter: (title, relevance variant of the dataset, form: a weak_form, "default", "other" or None)
ROLES = {
    "a": ("strict only", "built", None),
    "b": ("weak as strict everywhere (ITC, MLM, ITM)", "built", "strict"),
    "p": ("(b') weak as strict in ITC only (soft_target, r = 1)", "ones", "soft_target"),
    "c": ("RC3 default form, pipeline relevance (= f)", "built", "default"),
    "d": ("the other RC3 form, pipeline relevance", "built", "other"),
    "e": ("default form, constant r = 0.5", "half", "default"),
    "g": ("default form, constructed grades", "grades", "default"),
    "h": ("default form, calibrated pipeline relevance", "calibrated", "default"),
    "w": ("soft_target warm-up (steps // 10), then the regulariser, pipeline relevance", "built", "warmup_regularizer"),
}
# Candidates for the default whose validation means the report lists (the choice of c is among FORMS).
CANDIDATES = (*FORMS, "warmup_regularizer")
NEEDS_FORM = {k for k, (_, _, form) in ROLES.items() if form in ("default", "other")} - {"c", "d"}


def run_id(letter: str, form: str | None) -> str:
    """The identity of a run's configuration (the letters c and d map onto these)."""
    _, data, role_form = ROLES[letter]
    if role_form is None:
        return "strict_only"
    resolved = role_form if role_form not in ("default", "other") else form
    if role_form == "other":
        resolved = FORMS[1 - FORMS.index(form)]
    return f"{data}-{resolved}"


def overrides(letter: str, form: str | None, steps: int, seed: int, no_aux: bool) -> dict:
    from pretrain.config import merge
    from pretrain.demo import DEMO_SETTINGS

    cfg = merge(DEMO_SETTINGS, {"train": {"steps": steps, "warmup_steps": steps // 10, "seed": seed}})
    cfg = merge(cfg, NO_AUX) if no_aux else cfg
    ident = run_id(letter, form)
    if ident == "strict_only":
        return merge(cfg, {"data": {"kind_weights": {"weak": 0.0}}})
    form = ident.split("-", 1)[1]
    if form == "warmup_regularizer":  # the regulariser after a soft_target warm-up as long as the LR's
        return merge(cfg, {"loss": {"weak_form": "regularizer", "weak_warmup": steps // 10}})
    return merge(cfg, {"loss": {"weak_form": form}})


def weak_similarity(run_dir: Path, data: Path, truth: dict[str, dict]) -> dict[str, float]:
    """Mean cos(image, weak text) per construction after training: does the objective order
    weak pairs by relevance (RC3's intent) or pull them all alike (weak as strict)?"""
    import torch

    from pretrain.evaluate import encode_images, encode_texts, load_model
    from pretrain.shards import open_dataset, read_unit

    model, tok = load_model(run_dir, torch.device("cpu"))
    images, texts, kinds = [], [], []
    for unit in open_dataset(str(data), full_validation=False).pairs:
        for row in read_unit(unit, ["source_id", "split", "image", "texts"], "train"):
            for t in row["texts"]:
                if t["kind"] == "weak" and row["source_id"] in truth:
                    images.append(lambda b=row["image"]["bytes"]: b)
                    texts.append(t["text"])
                    kinds.append(truth[row["source_id"]]["relevance_kind"])
    img, _ = encode_images(model, images, torch.device("cpu"))
    txt, _ = encode_texts(model, tok, texts, torch.device("cpu"))
    cos = (img * txt).sum(-1).tolist()
    return {k: round(statistics.mean(c for c, x in zip(cos, kinds, strict=True) if x == k), 3)
            for k in KINDS if k in kinds}


def run_one(args: argparse.Namespace) -> int:
    """Child process: train one (run, seed), evaluate on validation and test, write its JSON."""
    from pretrain.config import load_config
    from pretrain.evaluate import evaluate
    from pretrain.train import run_training

    root = Path(args.out) / args.corpus
    ident = run_id(args.one, args.form)
    run_dir = Path(args.out) / "runs" / results_dir(args).name / f"{ident}-seed{args.seed}"
    data = dataset_for(ROLES[args.one][1], root)
    cfg = load_config(None, overrides(args.one, args.form, args.steps, args.seed, args.no_aux))
    shutil.rmtree(run_dir, ignore_errors=True)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    trained = run_training(cfg, str(data), str(run_dir), quiet=True)
    seconds = time.perf_counter() - t0
    res = {"id": ident, "seed": args.seed, "steps": args.steps, "no_aux": args.no_aux, "corpus": args.corpus,
           "weak_form": cfg.loss.weak_form, "weak_warmup": cfg.loss.weak_warmup, "data": str(data), "train_seconds": round(seconds, 1),
           "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2), "final_metrics": trained["metrics"]}
    for split, folder in (("validation", "validation"), ("test", "heldout")):
        ev = evaluate(str(run_dir), str(root / "inputs" / folder))
        res[split] = {"mean_r_mean": ev["mean_r_mean"], "languages": ev["languages"]}
    res["weak_cos"] = weak_similarity(run_dir, data, weak_truth(root / "inputs" / "weak.jsonl"))
    path = results_dir(args) / f"{ident}-seed{args.seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # 3 x 8 runs of checkpoints do not fit /tmp
    print(f"{ident} seed {args.seed}: validation {res['validation']['mean_r_mean']:.2f} test "
          f"{res['test']['mean_r_mean']:.2f} ({seconds:.0f} s training, load {load0:.1f})", flush=True)
    return 0


def results_dir(args: argparse.Namespace) -> Path:
    return Path(args.out) / "results" / (args.corpus + ("-noaux" if args.no_aux else ""))


def load_results(folder: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for path in sorted(folder.glob("*-seed*.json")):
        res = json.loads(path.read_text())
        out[(res["id"], res["seed"])] = res
    return out


def choose_form(results: dict[tuple[str, int], dict], seeds: list[int]) -> tuple[str | None, dict[str, float]]:
    """The RC3 form with the higher mean validation mR with pipeline relevance over ``seeds``
    (None until both forms have every seed). Test numbers are never read here."""
    means = {}
    for form in FORMS:
        vals = [results[(f"built-{form}", s)]["validation"]["mean_r_mean"] for s in seeds if (f"built-{form}", s) in results]
        if len(vals) < len(seeds):
            return None, means
        means[form] = statistics.mean(vals)
    return max(FORMS, key=lambda f: (means[f], f == FORMS[0])), means


def candidates_table(results: dict[tuple[str, int], dict], seeds: list[int]) -> str:
    """Markdown: validation mR per seed of each CANDIDATES form (pipeline relevance) and which
    of the candidates with every seed validation picks. Test numbers are never read here."""
    lines, means = ["| form | validation mR per seed | mean |", "|---|---|---|"], {}
    for form in CANDIDATES:
        vals = {s: results[(f"built-{form}", s)]["validation"]["mean_r_mean"] for s in seeds if (f"built-{form}", s) in results}
        if len(vals) == len(seeds):
            means[form] = statistics.mean(vals.values())
        mean = f"{statistics.mean(vals.values()):.2f}" if vals else "-"
        lines.append(f"| {form} | {' / '.join(f'{s}: {v:.2f}' for s, v in vals.items()) or 'missing'} | {mean} |")
    best = max(means, key=lambda f: (means[f], f == FORMS[0])) if means else None
    return "\n".join(lines) + f"\n\nvalidation picks {best} among the forms with every seed ({', '.join(means) or 'none'})"


def plan(letters: str, seeds: list[int], form: str | None = None) -> list[tuple[str, str | None, int]]:
    """(letter, form, seed) jobs in priority order. With the default ``form`` given (``--form``),
    c and d are jobs of their own in their letter's place; else c and d become one job per RC3
    form and seed (the default is not known until both have run) and form "default" waits for it."""
    jobs: list[tuple[str, str | None, int]] = []
    for letter in letters:
        for seed in seeds:
            if letter in "cd" and form:
                jobs.append((letter, form, seed))
            elif letter in "cd":
                jobs += [("c", form, seed) for form in FORMS if ("c", form, seed) not in jobs]
            else:
                jobs.append((letter, "default" if letter in NEEDS_FORM else None, seed))
    return jobs


def orchestrate(args: argparse.Namespace, seeds: list[int]) -> list[str]:
    """Run the plan, ``args.jobs`` children at a time; returns what did not run, and why."""
    done = load_results(results_dir(args))
    pending = [j for j in plan(args.runs, seeds, None if args.form == "auto" else args.form)
               if j[1] == "default" or (run_id(j[0], j[1]), j[2]) not in done]
    running: dict[subprocess.Popen, tuple] = {}
    failed, t_end = [], time.time() + 60 * args.deadline_min
    while pending or running:
        form = args.form if args.form != "auto" else choose_form(load_results(results_dir(args)), seeds)[0]
        ready = [j for j in pending if j[1] != "default" or form]
        while ready and len(running) < args.jobs and time.time() < t_end:
            letter, f, seed = job = ready.pop(0)
            pending.remove(job)
            f = form if f == "default" else f
            if (run_id(letter, f), seed) in load_results(results_dir(args)):
                continue
            cmd = [sys.executable, __file__, "--one", letter, "--form", f or "soft_target", "--seed", str(seed)]
            cmd += child_flags(args)
            log = results_dir(args) / "logs" / f"{run_id(letter, f)}-seed{seed}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            running[subprocess.Popen(["nice", "-n", str(args.nice), *cmd], stdout=log.open("w"), stderr=subprocess.STDOUT)] = (
                letter, f, seed, log)
            print(f"[{time.strftime('%H:%M:%S')}] start {run_id(letter, f)} seed {seed} (load {os.getloadavg()[0]:.1f})", flush=True)
        if time.time() >= t_end and not running:
            break
        time.sleep(5)
        for proc in [p for p in running if p.poll() is not None]:
            letter, f, seed, log = running.pop(proc)
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            print(f"[{time.strftime('%H:%M:%S')}] end {run_id(letter, f)} seed {seed}: rc {proc.returncode} {tail}", flush=True)
            if proc.returncode:
                failed.append(f"{run_id(letter, f)} seed {seed}: exit {proc.returncode}, see {log}")
    return failed + [f"({j[0]}) seed {j[2]}: not started (deadline {args.deadline_min} min)" for j in pending]


def child_flags(args: argparse.Namespace) -> list[str]:
    return ["--corpus", args.corpus, "--out", args.out, "--steps", str(args.steps)] + (["--no-aux"] if args.no_aux else [])


def score(res: dict, split: str, langs: list[str] | None = None) -> float:
    """A run's mean recall on ``split``: over all languages, or the mean over ``langs``."""
    if not langs:
        return res[split]["mean_r_mean"]
    return statistics.mean(res[split]["languages"][lang]["r_mean"] for lang in langs)


def report(results: dict[tuple[str, int], dict], seeds: list[int], form: str | None, letters: str,
           langs: list[str] | None = None) -> str:
    """Markdown: per run the test mR per seed, mean +- sd, validation mean, paired test vs c
    (``langs``: the mean over those languages instead of all)."""
    if form is None:
        return "default form not chosen yet: the soft_target and regularizer runs (c, d) are incomplete"
    base = {s: score(results[(run_id("c", form), s)], "test", langs) for s in seeds if (run_id("c", form), s) in results}
    lines = ["| run | config | test mR per seed | test mean ± sd | val mean | Δ vs (c) per seed | Δ mean ± sd | p sign-flip "
             "| p t | test de / en / es / fr | cos(image, weak) " + " / ".join(KINDS) + " |", "|" + "---|" * 11]
    for letter in letters:
        ident = run_id(letter, form)
        mine = [results[(ident, s)] for s in seeds if (ident, s) in results]
        if not mine:
            lines.append(f"| ({letter}) {ROLES[letter][0]} | {ident} | missing | | | | | | | | |")
            continue
        test = [score(r, "test", langs) for r in mine]
        sd = f" ± {statistics.stdev(test):.2f}" if len(test) > 1 else ""
        diffs = [score(r, "test", langs) - base[r["seed"]] for r in mine if r["seed"] in base]
        st = paired(diffs) if letter != "c" and len(diffs) > 1 else None
        per_lang = " / ".join(f"{statistics.mean(r['test']['languages'][x]['r_mean'] for r in mine):.2f}"
                              for x in sorted(mine[0]["test"]["languages"]))
        cos = " / ".join(f"{statistics.mean(r['weak_cos'].get(k, float('nan')) for r in mine):.2f}" for k in KINDS)
        seeds_txt = ", ".join(f"{r['seed']}: {score(r, 'test', langs):.2f}" for r in mine)
        lines.append(f"| ({letter}) {ROLES[letter][0]} | {ident} | {seeds_txt} | **{statistics.mean(test):.2f}**{sd} | "
                     f"{statistics.mean(score(r, 'validation', langs) for r in mine):.2f} | "
                     + (", ".join(f"{d:+.2f}" for d in diffs) if st else "-") + " | "
                     + (f"{st['mean']:+.2f} ± {st['sd']:.2f} | {st['sign_flip_p']:.3f} | {st['t_p']:.3f}" if st else "- | - | -")
                     + f" | {per_lang} | {cos} |")
    return "\n".join(lines)


# The learning test's setting (tests/pretrain/test_pt_learns.py) per candidate form; the
# warm-up is as long as that test's LR warm-up (5 steps), as w's is at 400 steps.
GATE_FORMS = {"soft_target": {}, "regularizer": {"weak_form": "regularizer"},
              "warmup_regularizer": {"weak_form": "regularizer", "weak_warmup": 5}}


def gate(out: Path, seeds: list[int], lengths: list[int]) -> str:
    """Markdown: held-out r_mean per language of test_pt_learns's run (micro model, 32 test
    images, chance 16.7; pass = every language above 2 x chance) per form, length in steps
    and train.seed, run one after another in this process."""
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "pretrain"))
    from pretrain_helpers import micro_config
    from test_pt_learns import write_scenes

    from pretrain.demo import chance_r_mean
    from pretrain.evaluate import evaluate
    from pretrain.train import run_training

    torch.set_num_threads(1)
    bar, lines = 2 * chance_r_mean(32), ["| form | steps | " + " | ".join(f"seed {s} de / en" for s in seeds) + " | passes |",
                                         "|---|---|" + "---|" * (len(seeds) + 1)]
    for (name, loss), steps in ((f, n) for f in GATE_FORMS.items() for n in lengths):
        cells, passed = [], 0
        for seed in seeds:
            tmp = out / "gate" / f"{name}-seed{seed}"
            shutil.rmtree(tmp, ignore_errors=True)
            data = write_scenes(tmp / "scenes")
            cfg = micro_config(data={"batch_size": 32, "parallel_batch_size": 0, "shuffle_buffer": 64},
                               loss={"weak_form": "soft_target", **loss},
                               train={"steps": steps, "warmup_steps": 5, "lr": 2e-3, "ckpt_every": steps, "log_every": 10,
                                      "seed": seed})
            run_training(cfg, str(data), str(tmp / "run"), quiet=True)
            got = evaluate(str(tmp / "run"), str(data), split="test", device="cpu")["languages"]
            passed += all(m["r_mean"] > bar for m in got.values())
            cells.append(" / ".join(f"{got[lang]['r_mean']:.2f}" for lang in ("de", "en")))
            shutil.rmtree(tmp)
        lines.append(f"| {name} | {steps} | " + " | ".join(cells) + f" | {passed} of {len(seeds)} |")
    return "\n".join(lines) + f"\n\npass: every language above 2 x chance = {bar:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=("demo", "web"), default="web")
    ap.add_argument("--samples", type=int, default=4000, help="generated samples (before the test/validation split)")
    ap.add_argument("--held-out", type=int, default=1000, help="test images (inputs/heldout)")
    ap.add_argument("--validation", type=int, default=400, help="validation images (inputs/validation)")
    ap.add_argument("--out", default="/tmp/rc3", help="corpora, runs and results (all reused)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", default="cdabpegh", help="letters, in priority order")
    ap.add_argument("--form", default="auto", help="auto (chosen on validation) | soft_target | regularizer")
    ap.add_argument("--jobs", type=int, default=2, help="training processes at a time")
    ap.add_argument("--nice", type=int, default=5)
    ap.add_argument("--deadline-min", type=float, default=90.0, help="start no run after this many minutes")
    ap.add_argument("--no-aux", action="store_true", help="no code-switched captions, no TTC (see above)")
    ap.add_argument("--report", help="only write the Markdown report of what has run to this file")
    ap.add_argument("--langs", help="report only: recall as the mean over these languages (e.g. de,es,fr: those only "
                    "the weak texts carry under --no-aux) instead of all")
    ap.add_argument("--gate", action="store_true", help="instead: the learning test's run per candidate form, "
                    "--gate-steps and --seeds (e.g. --seeds 0,1,2,3,4,5,6,7), table to --report if given")
    ap.add_argument("--gate-steps", default="50,100", help="--gate: the run lengths to try")
    ap.add_argument("--one", choices=sorted(ROLES), help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return run_one(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.gate:
        text = gate(Path(args.out), seeds, [int(n) for n in args.gate_steps.split(",")])
        print(text)
        if args.report:
            Path(args.report).write_text(text + "\n", encoding="utf-8")
        return 0
    root = Path(args.out) / args.corpus
    failed: list[str] = []
    if not args.report:
        build_corpus(root, args.corpus, args.samples, args.held_out, args.validation)
        for variant in sorted({ROLES[k][1] for k in args.runs}):
            dataset_for(variant, root)  # made here once, not by two children at a time
        failed = orchestrate(args, seeds)
    results = load_results(results_dir(args))
    form, means = (args.form, {}) if args.form != "auto" else choose_form(results, seeds)
    text = (f"default form on validation: {form} (validation mean mR {means})\n\n"
            + candidates_table(results, seeds) + "\n\n" + report(results, seeds, form, args.runs, args.langs.split(",") if args.langs else None) + "".join(f"\n- not run: {f}" for f in failed))
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
