"""The ``m3curate`` command line: parse, load a typed config, call the command's run().

Heavy imports (Beam, Pillow, torch, fastText) happen inside the command that needs them,
so ``m3curate --help`` starts fast. Every failure exits non-zero with a one-line reason.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable


class _QuietOptionalImports(logging.Filter):
    """Beam warns at import when its optional GCP clients are absent; that is expected locally."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()

BUILD_EXAMPLE = """example:
  m3curate build --config curation/example_build.toml --out out/ds
  m3curate build --config build.toml --out out/ds --overwrite --direct_num_workers 2 \\
      --direct_running_mode multi_processing
  m3curate build --config build.toml --out gs://bucket/ds --runner DataflowRunner \\
      --project P --region us-central1 --temp_location gs://bucket/tmp

Options after --config/--out/--overwrite go to Apache Beam unchanged. Without --runner
the build runs locally on FnApiRunner (offline). On a local runner a progress line (records
and bytes read per source, rate, ETA) is drawn on stderr when it is a terminal;
M3CURATE_PROGRESS=0 turns it off, M3CURATE_PROGRESS=1 forces it."""

DEMO_EXAMPLE = """example:
  m3curate demo --out demo-out
  m3curate demo --out /tmp/d --samples 200 --seed 1 --overwrite
  m3curate demo --out /tmp/d --langs en,de,fr,es,it --samples 3000 --held-out 1000 --validation 300"""


EXPORT_EXAMPLE = """examples:
  m3curate export out/ds --format webdataset --out out/wds --langs en,de --kinds caption,translation
      (then open_clip: --train-data 'out/wds/train/{000000..000003}.tar' --dataset-type webdataset)
  m3curate export out/ds --format cclm --out out/cclm --splits train
      (out/cclm/cclm.yaml: the train_file / train_file_text keys for CCLM's Pretrain config)
  m3curate export out/ds --format hf --out out/hf && python -c \\
      "import datasets; print(datasets.load_from_disk('out/hf'))"

The build folder itself also loads with datasets.load_dataset("parquet", data_dir="out/ds/pairs")
or, through its dataset card (README.md), datasets.load_dataset("out/ds", "pairs")."""


def _csv(value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _export(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.output.export import ExportConfig, run_export

    options = {"langs": args.langs, "splits": args.splits, "per": args.per, "table": args.table,
               "images": args.images, "shard_size": args.shard_size}
    cfg = ExportConfig(args.format, **({"kinds": args.kinds} if args.kinds else {}), **options)
    record = run_export(args.dir, args.out, cfg, overwrite=args.overwrite)
    counts = ", ".join(f"{k} {v:,}" for k, v in record["counts"].items()) or "nothing matched the options"
    print(f"exported {args.dir} as {args.format} to {args.out}: {counts}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    from schemas.rows import TEXT_KINDS

    export = sub.add_parser("export", help="write a built dataset as WebDataset tars, CCLM JSON lines or a "
                            "Hugging Face dataset", epilog=EXPORT_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Export the dataset in DIR (written by m3curate build) in the formats other "
                            "trainers read, choosing languages, text kinds and splits. OUT appears whole or not at all.")
    export.add_argument("dir", help="a directory written by m3curate build")
    export.add_argument("--format", required=True, choices=("webdataset", "cclm", "hf"), help="output format")
    export.add_argument("--out", required=True, help="output folder (local)")
    export.add_argument("--langs", type=_csv, help="languages to keep, comma-separated (default: all; 'zh' keeps zh_Hant); "
                        "their order is the preference for the chosen text")
    export.add_argument("--kinds", type=_csv, help=f"text kinds to keep, in order of preference for the chosen text "
                        f"(default: {','.join(TEXT_KINDS)})")
    export.add_argument("--splits", type=_csv, help="splits to keep, comma-separated (default: all)")
    export.add_argument("--per", choices=("image", "text"), default="image",
                        help="one sample per image with the chosen text (default), or one per selected text")
    export.add_argument("--table", choices=("pairs", "parallel"), default="pairs",
                        help="hf only: the image-text pairs (default) or the parallel text")
    export.add_argument("--images", choices=("embed", "files"), default="embed",
                        help="cclm only: images as base64 in each line (default) or as files with their path")
    export.add_argument("--shard-size", type=int, default=10_000,
                        help="samples per tar shard / lines per JSON-lines file (default 10000)")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    export.set_defaults(func=_export)


def _build(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.config import load_config
    from curation.output.summary import print_summary
    from curation.pipeline import run_build

    cfg = load_config(args.config)
    manifest = run_build(cfg, args.out, beam_args, overwrite=args.overwrite)
    print_summary(manifest, args.out)
    return 0


def _demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.demo.run import run_demo

    run_demo(args.out, samples=args.samples, seed=args.seed, overwrite=args.overwrite, beam_args=beam_args,
             pretrain_minutes=args.pretrain_minutes, langs=tuple(args.langs.split(",")), held_out=args.held_out,
             validation=args.validation)
    return 0


def _count_or_fraction(text: str) -> int | float:
    """--held-out/--validation: "1000" is a count, "0.1" a fraction (the demo generator's rule)."""
    from curation.demo.corpus import count_or_fraction

    return count_or_fraction(text)


def _validate(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.output.summary import validate_dataset

    validate_dataset(args.dir)
    print(f"{args.dir}: valid m3curate dataset")
    return 0


def _report(args: argparse.Namespace, beam_args: list[str]) -> int:
    from curation.output.report import write_report

    print(f"wrote {write_report(args.dir)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m3curate",
        description="Curate multilingual vision-language pre-training data with Apache Beam, and train on it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    build = sub.add_parser("build", help="run the curation pipeline", epilog=BUILD_EXAMPLE, formatter_class=fmt,
                           description="Read the inputs a TOML config lists, validate and dedup them, and write "
                           "Parquet pairs/parallel/rejects shards plus manifest.json to --out.")
    build.add_argument("--config", required=True, help="build config (TOML); see curation/example_build.toml")
    build.add_argument("--out", required=True, help="output directory (local path or gs://...)")
    build.add_argument("--overwrite", action="store_true", help="replace the dataset already in --out")
    build.set_defaults(func=_build)

    demo = sub.add_parser("demo", help="generate a synthetic corpus and build it, offline", epilog=DEMO_EXAMPLE,
                          formatter_class=fmt, description="Generate a small synthetic multilingual image-text "
                          "corpus in every input format, then run build on it.")
    demo.add_argument("--out", required=True, help="directory for the corpus and the dataset")
    demo.add_argument("--samples", type=int, default=600, help="number of generated images (default 600)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the generator (default 0)")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    demo.add_argument("--pretrain-minutes", type=float, default=3.0,
                      help="CPU minutes for the tiny RC3 pre-training run (0: skip it; default 3)")
    demo.add_argument("--langs", default="en,de,fr,es",
                      help="caption languages, en first (default en,de,fr,es; add it for Italian)")
    demo.add_argument("--held-out", type=_count_or_fraction, default=0.1,
                      help="test images (inputs/heldout): a count or a fraction of --samples (default 0.1)")
    demo.add_argument("--validation", type=_count_or_fraction, default=0,
                      help="validation images (inputs/validation), a count or a fraction (default 0: none)")
    demo.set_defaults(func=_demo)

    validate = sub.add_parser("validate", help="check a built dataset against the schema",
                              epilog="example:\n  m3curate validate out/ds", formatter_class=fmt,
                              description="Validate every shard listed in DIR/manifest.json against the data contract.")
    validate.add_argument("dir", help="a directory written by m3curate build")
    validate.set_defaults(func=_validate)

    report = sub.add_parser("report", help="write DIR/report.html with counts, rejects, languages and samples",
                            epilog="example:\n  m3curate report demo-out/dataset", formatter_class=fmt,
                            description="A self-contained HTML page (inline SVG charts and sample images) about a built dataset.")
    report.add_argument("dir", help="a directory written by m3curate build")
    report.set_defaults(func=_report)
    _add_export(sub)
    _register_stage_commands(sub)
    return parser


def _register_stage_commands(sub: argparse._SubParsersAction) -> None:
    """Each stage package adds its own command (``m3curate codeswitch``, ``lid``, ``mt``...)."""
    from codeswitch.cli import register as register_codeswitch
    from curation.lid.cli import register as register_lid
    from curation.relevance.cli import register as register_relevance
    from pretrain.cli import register as register_pretrain
    from translate.cli import register as register_mt

    register_lid(sub)
    register_mt(sub)
    register_codeswitch(sub)
    register_relevance(sub)
    register_pretrain(sub)


def _own_flags(parser: argparse.ArgumentParser, command: str) -> list[str]:
    """The options of one subcommand (for the nearest-option hint)."""
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        sub = getattr(action, "choices", {}).get(command)
        if sub is not None:
            return list(sub._option_string_actions)
    return []


def main(argv: list[str] | None = None) -> int:
    logging.getLogger().addFilter(_QuietOptionalImports())
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("build", "demo"):
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    func: Callable[[argparse.Namespace, list[str]], int] = args.func
    try:
        if rest:
            from curation.pipeline import check_beam_args

            check_beam_args(rest, _own_flags(parser, args.command))
        return func(args, rest)
    except KeyboardInterrupt:
        print("m3curate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`... | head -1`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush is quiet too
        return 0
    except Exception as err:  # one line for the user; the traceback with M3CURATE_DEBUG=1
        import os

        if os.environ.get("M3CURATE_DEBUG"):
            raise
        print(f"m3curate {args.command}: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
