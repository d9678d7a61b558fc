"""``m3curate lid train|eval|predict``: the language-ID stage's own commands."""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLE = """example:
  m3curate lid train --data labelled.tsv --out lid.bin
  m3curate lid eval --model lid.bin --data heldout.tsv
  m3curate lid eval --model lid.176.ftz --data heldout.tsv --json
  m3curate lid predict --model lid.176.bin --in captions.txt --out langs.tsv

Labelled data: one example a line, "lang<TAB>text" or fastText's "__label__lang text".
Models: lid.176.bin/.ftz (labels __label__en) and GlotLID/OpenLID (__label__eng_Latn);
codes are normalised to ISO 639-1 (else 639-3), a script suffix only where unusual."""


def _train(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.lid.tools import train_lid

    # fastText draws its own progress line (verbose 2) when stderr is a terminal
    info = train_lid(args.data, args.out, dim=args.dim, epochs=args.epochs, lr=args.lr, minn=args.minn,
                     maxn=args.maxn, bucket=args.bucket, loss=args.loss, threads=args.threads, seed=args.seed,
                     verbose=2 if sys.stderr.isatty() else 0)
    print(f"trained {info['model']} on {info['examples']} examples in {len(info['languages'])} languages")
    return 0


def _eval(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.lid.tools import evaluate_lid, format_eval_table

    report = evaluate_lid(args.model, args.data, max_chars=args.max_chars)
    print(json.dumps(report, indent=1, sort_keys=True) if args.json else format_eval_table(report))
    return 0


def _predict(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.lid.tools import predict_file

    n = predict_file(args.model, args.input, args.out, k=args.k, fmt=args.format, max_chars=args.max_chars)
    if args.out not in (None, "-"):
        print(f"labelled {n} lines into {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``m3curate lid`` with its train, eval and predict sub-commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    lid = sub.add_parser("lid", help="language identification with fastText: train, eval, predict",
                         epilog=EXAMPLE, formatter_class=fmt,
                         description="Train, evaluate or run a fastText language-ID model on files.")
    cmds = lid.add_subparsers(dest="lid_command", required=True, metavar="COMMAND")
    train = cmds.add_parser("train", help="train a fastText LID model (character n-grams)", epilog=EXAMPLE,
                            formatter_class=fmt)
    train.add_argument("--data", required=True, help="labelled TSV (lang<TAB>text) or fastText format")
    train.add_argument("--out", required=True, help="model file to write (.bin)")
    train.add_argument("--dim", type=int, default=16)
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--lr", type=float, default=0.5)
    train.add_argument("--minn", type=int, default=2, help="shortest character n-gram")
    train.add_argument("--maxn", type=int, default=4, help="longest character n-gram")
    train.add_argument("--bucket", type=int, default=200_000, help="n-gram hash buckets (lid.176: 2,000,000)")
    train.add_argument("--loss", default="softmax", choices=("softmax", "hs"))
    train.add_argument("--threads", type=int, default=1, help="1 is reproducible; more is faster")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_train)
    ev = cmds.add_parser("eval", help="accuracy, macro-F1, per-language P/R, confusions", epilog=EXAMPLE,
                         formatter_class=fmt)
    ev.add_argument("--model", required=True)
    ev.add_argument("--data", required=True, help="labelled TSV")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.add_argument("--max-chars", type=int, default=1000)
    ev.set_defaults(func=_eval)
    pr = cmds.add_parser("predict", help="label each line of a text file", epilog=EXAMPLE, formatter_class=fmt)
    pr.add_argument("--model", required=True)
    pr.add_argument("--in", dest="input", default="-", help="text file, one text a line ('-': stdin)")
    pr.add_argument("--out", default=None, help="output file (default stdout)")
    pr.add_argument("-k", type=int, default=1, help="how many languages per line")
    pr.add_argument("--format", choices=("tsv", "jsonl"), default="tsv")
    pr.add_argument("--max-chars", type=int, default=1000)
    pr.set_defaults(func=_predict)
