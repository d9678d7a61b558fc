"""``m3curate relevance score|eval``: the relevance stage's own commands, on TSV files."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

EXAMPLE = """example:
  m3curate relevance score --in weak.tsv --out scored.tsv --dictionaries dicts/
  m3curate relevance score --in weak.tsv --out scored.tsv --scorer embedding --encoder models/labse
  m3curate relevance eval --pairs aligned.tsv --dictionaries dicts/
  m3curate relevance eval --pairs aligned.tsv --graded graded.tsv --scorer lexical,embedding \\
      --dictionaries dicts/ --encoder models/enc --json
  m3curate relevance calibrate --pairs aligned.tsv --dictionaries dicts/ --out lexical-cal.json
  m3curate relevance eval --pairs heldout.tsv --dictionaries dicts/ --calibration-map lexical-cal.json

Files are TSV: text<TAB>lang<TAB>anchor<TAB>anchor_lang (graded files add <TAB>grade).
`score` writes the same columns plus relevance and scorer (relevance empty where the
scorer cannot judge the pair). `eval` pairs each text with another's anchor (a seeded
shuffle) and reports ROC-AUC aligned vs shuffled and the score distributions, and with
--graded the Spearman correlation with the grades. `calibrate` fits a monotone map from
the scorer's raw score to the probability that a pair is aligned (aligned pairs against
the same pairs shuffled), for `[relevance] calibration_map` or `--calibration-map`."""

SETTINGS = ("dictionaries", "encoder", "mt_model", "mt_engine", "back_translate", "chrf_beta", "calibration",
            "cos_low", "cos_high", "device", "batch_size", "calibration_map")


def _log(message: str) -> None:
    print(f"[m3curate relevance] {message}", file=sys.stderr, flush=True)


def as_flags(message: str) -> str:
    """A config error in the words of these commands: ``relevance.mt_model`` -> ``--mt-model``."""
    return re.sub(r"relevance\.(\w+)", lambda m: f"--{m.group(1).replace('_', '-')}"
                  if m.group(1) in (*SETTINGS, "scorer") else m.group(0), message)


def _config(args: argparse.Namespace, scorer: str) -> Any:
    from curation.relevance.config import relevance_config_from_dict

    data: dict[str, Any] = {"scorer": scorer}
    for name in SETTINGS:
        value = getattr(args, name, None)
        if value not in (None, False, ""):
            data[name] = value
    try:
        return relevance_config_from_dict(data, ".")
    except ValueError as err:
        raise type(err)(as_flags(str(err))) from None


def _scorer(args: argparse.Namespace, scorer: str) -> Any:
    from curation.relevance.build import build_scorer

    try:
        return build_scorer(_config(args, scorer))
    except ValueError as err:
        raise type(err)(as_flags(str(err))) from None


def _score(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.relevance.eval import read_pairs, score_all, unscored_counts, unscored_warnings

    pairs = read_pairs(args.input)
    scorer = _scorer(args, args.scorer)
    scores = score_all(scorer, pairs, args.batch_size, log=_log)
    for line in unscored_warnings(scorer, unscored_counts(scorer, pairs, scores), len(pairs)):
        print(line, file=sys.stderr)
    if args.out not in (None, "-"):
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out = sys.stdout if args.out in (None, "-") else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        out.write("text\tlang\tanchor\tanchor_lang\trelevance\tscorer\n")
        for p, s in zip(pairs, scores, strict=True):
            out.write(f"{p.text}\t{p.lang}\t{p.anchor}\t{p.anchor_lang}\t{'' if s is None else f'{s:.4f}'}\t{scorer.id}\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if out is not sys.stdout:
        print(f"scored {len(pairs)} pairs ({sum(s is None for s in scores)} unscored) into {args.out}")
    return 0


def _eval(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.relevance.eval import (
        evaluate_aligned,
        evaluate_graded,
        read_graded,
        read_pairs,
        unscored_warnings,
    )

    pairs = read_pairs(args.pairs)
    graded = read_graded(args.graded) if args.graded else None
    reports = []
    for name in args.scorer.split(","):
        scorer = _scorer(args, name.strip())
        report = {"aligned_vs_shuffled": evaluate_aligned(scorer, pairs, args.seed, log=_log)}
        aligned = report["aligned_vs_shuffled"]
        for line in unscored_warnings(scorer, aligned["unscored_by"], len(pairs)):
            print(line, file=sys.stderr)
        if graded is not None:
            report["graded"] = evaluate_graded(scorer, *graded, log=_log)
        reports.append(report)
    if args.json:
        print(json.dumps(reports, indent=1, ensure_ascii=False, allow_nan=False))
        return 0
    for r in reports:
        a = r["aligned_vs_shuffled"]
        line = (f"{a['scorer']}: AUC {a['auc']}  aligned mean {a['aligned'].get('mean')} median "
                f"{a['aligned'].get('p50')}  shuffled mean {a['shuffled'].get('mean')} median "
                f"{a['shuffled'].get('p50')}  unscored {a['unscored']}")
        if "graded" in r:
            line += f"  Spearman {r['graded']['spearman']} (mean by grade {r['graded']['mean_by_grade']})"
        print(line)
    return 0


def _calibrate(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.relevance.calibrate import fit, write
    from curation.relevance.eval import read_pairs

    calibration = fit(_scorer(args, args.scorer), read_pairs(args.pairs), args.method, args.seed)
    write(calibration, args.out)
    a, s = calibration["aligned_mean"], calibration["shuffled_mean"]
    print(f"{calibration['scorer']} {args.method} calibration on {calibration['aligned']} aligned and "
          f"{calibration['shuffled']} shuffled pairs: aligned mean {a['raw']} -> {a['calibrated']}, shuffled mean "
          f"{s['raw']} -> {s['calibrated']}; written to {args.out}")
    return 0


def _scorer_flags(p: argparse.ArgumentParser, default: str = "lexical") -> None:
    p.add_argument("--scorer", default=default,
                   help="lexical | translate | embedding (eval: a comma-separated list, e.g. lexical,embedding)")
    p.add_argument("--dictionaries", help="MUSE {src}-{tgt}.txt directory (lexical)")
    p.add_argument("--encoder", help="sentence encoder directory (embedding)")
    p.add_argument("--mt-model", dest="mt_model", help="translation model directory (translate)")
    p.add_argument("--mt-engine", dest="mt_engine", default="fairseq", help="fairseq | ctranslate2")
    p.add_argument("--back-translate", dest="back_translate", action="store_true",
                   help="embedding: translate the weak text into the anchor language first")
    p.add_argument("--chrf-beta", dest="chrf_beta", type=float, default=1.0, help="translate: chrF beta (1 = chrF1)")
    p.add_argument("--calibration", default="linear", help="embedding: linear | logistic")
    p.add_argument("--cos-low", dest="cos_low", type=float, default=0.0, help="embedding: cosine scored 0")
    p.add_argument("--cos-high", dest="cos_high", type=float, default=1.0, help="embedding: cosine scored 1")
    p.add_argument("--device", default="cpu", help="cpu | cuda (encoder)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    p.add_argument("--calibration-map", dest="calibration_map",
                   help="a calibration from `relevance calibrate`: scores become P(aligned)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``m3curate relevance`` with its score and eval sub-commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    rel = sub.add_parser("relevance", help="weak-text relevance (RC3): score a file, evaluate scorers",
                         epilog=EXAMPLE, formatter_class=fmt,
                         description="Score weakly-aligned texts against their anchors, or evaluate scorers.")
    cmds = rel.add_subparsers(dest="relevance_command", required=True, metavar="COMMAND")
    score = cmds.add_parser("score", help="score a TSV of (text, lang, anchor, anchor_lang)", epilog=EXAMPLE,
                            formatter_class=fmt)
    score.add_argument("--in", dest="input", required=True, help="TSV: text, lang, anchor, anchor_lang")
    score.add_argument("--out", help="TSV to write (default: stdout)")
    _scorer_flags(score, "lexical")
    score.set_defaults(func=_score)
    ev = cmds.add_parser("eval", help="ROC-AUC aligned vs shuffled; Spearman against graded relevance",
                         epilog=EXAMPLE, formatter_class=fmt)
    ev.add_argument("--pairs", required=True, help="aligned pairs TSV: text, lang, anchor, anchor_lang")
    ev.add_argument("--graded", help="graded TSV: text, lang, anchor, anchor_lang, grade")
    ev.add_argument("--seed", type=int, default=0, help="seed of the shuffle that makes mismatched pairs")
    ev.add_argument("--json", action="store_true", help="print the full report as JSON")
    _scorer_flags(ev, "lexical")
    ev.set_defaults(func=_eval)
    cal = cmds.add_parser("calibrate", help="fit a map from raw score to P(aligned) on aligned pairs",
                          epilog=EXAMPLE, formatter_class=fmt)
    cal.add_argument("--pairs", required=True, help="aligned pairs TSV: text, lang, anchor, anchor_lang")
    cal.add_argument("--out", required=True, help="the calibration JSON to write")
    cal.add_argument("--method", choices=("isotonic", "logistic"), default="isotonic",
                     help="isotonic (pool adjacent violators; default) or logistic")
    cal.add_argument("--seed", type=int, default=0, help="seed of the shuffle that makes mismatched pairs")
    _scorer_flags(cal, "lexical")
    cal.set_defaults(func=_calibrate)
