"""``m3curate pretrain``, ``m3curate pretrain tokenizer`` and ``m3curate evaluate``.

``register(subparsers)`` adds the parsers to the m3curate CLI; each handler parses into a
typed config (``load_config``: TOML file, then flags), then calls one run function. torch is
imported inside the handlers, so ``m3curate --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

PRETRAIN_EXAMPLE = """example:
  m3curate pretrain --data out/ds --out runs/tiny --steps 2000
  m3curate pretrain --data out/ds --out runs/tiny --resume
  m3curate pretrain --data out/ds --out runs/tiny --resume --steps 4000    # extend the run
  m3curate pretrain --data out/ds --out runs/base --config rc3_base.toml \\
      --set loss.weak_form=soft_target --set data.lang_weights.en=0.5
  torchrun --nproc_per_node 8 $(which m3curate) pretrain --data out/ds --out runs/base \\
      --config rc3_base.toml
  m3curate pretrain tokenizer --data out/ds --out runs/spm.model --vocab-size 32000

Settings come from --config (TOML with [model] [data] [loss] [train] [tokenizer] tables
and optional [[schedule]] stages, each with name, steps, unimodal and its loss weights: MVP's
multi-stage training; see pretrain/README.md), then --set, then the shortcut flags. Checkpoints go to
RUN/checkpoints/step-N.pt, metrics to RUN/metrics.jsonl.

--resume continues the run in --out from its latest checkpoint: the run's own settings
(saved in the checkpoint), step target, learning-rate schedule, optimiser, RNG and data
order; metrics.jsonl continues from the checkpoint's step. --steps N on resume moves the
target to N (the cosine schedule becomes that of an N-step run; warmup is kept). Only
train.steps, log_every, ckpt_every, keep_checkpoints, threads, compile, device and
data.num_workers may change on resume; any other change is refused, naming the setting.
On CPU a resumed run is bit for bit the uninterrupted one when torch threads, torch
version, CPU kernels, world size and workers are unchanged; otherwise (and always on CUDA)
it says it is not, and agrees to float rounding."""

TOKENIZER_EXAMPLE = """example:
  m3curate pretrain tokenizer --data out/ds --out spm.model
  m3curate pretrain tokenizer --data out/ds --out spm.model --vocab-size 32000 --split train

Use the model with --set tokenizer.model=spm.model (an existing model such as XLM-R's
sentencepiece.bpe.model works the same way). --set values are TOML (numbers, true/false,
[lists]); anything that is not valid TOML is taken as a string."""

EVALUATE_EXAMPLE = """example:
  m3curate evaluate --checkpoint runs/tiny --data out/ds --split test
  m3curate evaluate --checkpoint runs/tiny/checkpoints/step-00002000.pt --data multi30k/test2016 \\
      --langs en,de,fr,cs --rerank 16 --json m30k.json

--data is a curated dataset (its --split rows, captions and translations per language) or a
benchmark folder: images.txt + captions.<lang>.txt (one line per image; captions.<lang>.<k>.txt
for several captions per image), or captions.jsonl with image + caption_<lang> fields."""


def parse_set(items: list[str]) -> dict[str, Any]:
    """``section.key=value`` pairs (value in TOML syntax, bare words as strings) -> nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: use section.key=value, e.g. --set train.steps=100")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _overrides(args: argparse.Namespace, resume: bool = False) -> dict[str, Any]:
    """--set, then the shortcut flags. A fresh run's --steps also sets warmup to 10% (at most
    1,000); a resumed run keeps its warmup (--steps only moves the target)."""
    from pretrain.config import merge

    over = parse_set(args.set or [])
    flags = {"train": {"steps": args.steps, "seed": args.seed}, "data": {"batch_size": args.batch_size,
             "num_workers": args.workers}, "model": {"preset": args.preset}}
    for section, values in flags.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            over = merge(over, {section: given})
    if args.steps is not None and not resume and "warmup_steps" not in over.get("train", {}):
        over["train"]["warmup_steps"] = min(args.steps // 10, 1000)
    return over


def _pretrain(args: argparse.Namespace, rest: list[str]) -> int:
    if args.pretrain_command == "tokenizer":
        return _tokenizer(args)
    if not args.data or not args.out:
        raise ValueError("pretrain needs --data DIR and --out RUN (or the `tokenizer` sub-command)")
    from pretrain.train import run_training

    result = run_training(_run_config(args), args.data, args.out, resume=args.resume, verify=args.verify)
    if result["checkpoint"]:
        print(f"pretrain: step {result['step']}, checkpoint {result['checkpoint']} ({result['seconds']} s)")
    return 0


def _run_config(args: argparse.Namespace) -> Any:
    """The config to train with. Resuming a run that has a checkpoint: the checkpoint's
    config with only what this command sets explicitly (--config's keys, --set, flags) on top,
    so that anything left out keeps the run's value (not the preset's default)."""
    from pretrain.checkpoint import saved_config
    from pretrain.config import ConfigError, config_from_dict, load_config, merge

    saved = saved_config(args.out) if args.resume else None
    if saved is None:
        return load_config(args.config, _overrides(args))
    given: dict[str, Any] = {}
    if args.config:  # the file's keys only: its defaults must not replace the run's values
        try:
            given = tomllib.loads(Path(args.config).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"config file {args.config} does not exist") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{args.config}: not valid TOML: {err}") from err
    return config_from_dict(merge(merge(saved, given), _overrides(args, resume=True)))


def _writable_file(path: str, what: str) -> Path:
    """Create ``path``'s folder and prove a file can be written there, before the work."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{what} {path}: is a folder; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except (FileExistsError, NotADirectoryError) as err:
        raise ValueError(f"{what} {path}: {target.parent} is not a folder (a file is in the way)") from err
    except OSError as err:
        raise ValueError(f"{what} {path}: cannot write in {target.parent}: {err.strerror or err}") from err
    return target


def _tokenizer(args: argparse.Namespace) -> int:
    from pretrain.config import load_config
    from pretrain.shards import dataset_texts, open_dataset
    from pretrain.tokenizer import train_tokenizer

    over = parse_set(args.set or [])
    if args.vocab_size:
        over.setdefault("tokenizer", {})["vocab_size"] = args.vocab_size
    cfg = load_config(args.config, over)
    _writable_file(args.out, "--out")
    data = open_dataset(args.data, full_validation=False)
    tok = train_tokenizer(dataset_texts(data, args.split or None), cfg.tokenizer, args.out)
    print(f"pretrain tokenizer: {tok.vocab_size} tokens (specials included) written to {args.out}")
    return 0


def _evaluate(args: argparse.Namespace, rest: list[str]) -> int:
    from pretrain.evaluate import evaluate, format_table

    langs = [x for x in args.langs.split(",") if x] if args.langs else None
    out = _writable_file(args.json, "--json") if args.json else None
    result = evaluate(args.checkpoint, args.data, args.split, langs, args.rerank, args.device, verify=args.verify)
    if args.format in ("table", "both"):
        print(format_table(result))
    if args.format in ("json", "both"):
        print(json.dumps(result, indent=1, sort_keys=True))
    if out:
        from pretrain.checkpoint import write_text_atomic

        write_text_atomic(out, json.dumps(result, indent=1, sort_keys=True))
    return 0


def _add_pretrain(sub: Any, fmt: type) -> None:
    p = sub.add_parser("pretrain", help="pre-train the RC3 model on a curated dataset", epilog=PRETRAIN_EXAMPLE,
                       formatter_class=fmt, description="RC3 pre-training (ITC, relevance-regularised weak-pair "
                       "contrastive, TTC, MLM, ITM) on the pairs/parallel tables of a dataset built by m3curate.")
    p.add_argument("--data", help="dataset directory written by m3curate build")
    p.add_argument("--out", help="run directory: checkpoints, metrics.jsonl, tokenizer.model, config.json")
    p.add_argument("--config", help="TOML config (see pretrain/README.md)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint, with its "
                   "settings and step target (see below)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting (repeatable)")
    p.add_argument("--preset", choices=["tiny", "base"], help="model size preset (default tiny)")
    p.add_argument("--steps", type=int, help="optimiser steps (warmup defaults to 10%%); with --resume, the run's new target")
    p.add_argument("--batch-size", type=int, help="image rows per rank per micro-step")
    p.add_argument("--workers", type=int, help="DataLoader worker processes per rank")
    p.add_argument("--seed", type=int, help="seed of the data order and initialisation")
    p.add_argument("--verify", action="store_true", help="check every shard's sha256 against manifest.json before "
                   "training (reads the whole dataset once; sizes are always checked)")
    p.set_defaults(func=_pretrain, pretrain_command=None)
    inner = p.add_subparsers(dest="pretrain_command", metavar="[tokenizer|acquire]")
    t = inner.add_parser("tokenizer", help="train a SentencePiece model on a dataset's texts", epilog=TOKENIZER_EXAMPLE,
                         formatter_class=fmt, description="Train the multilingual SentencePiece tokenizer on every "
                         "text of the dataset (pairs texts of all kinds and both sides of parallel rows).")
    t.add_argument("--data", required=True, help="dataset directory written by m3curate build")
    t.add_argument("--out", required=True, help="output .model file")
    t.add_argument("--config", help="TOML config; its [tokenizer] table is used")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting (repeatable)")
    t.add_argument("--vocab-size", type=int, help="target vocabulary size (a soft limit on small data)")
    t.add_argument("--split", default="train", help="split whose texts are used ('' = all; default train)")
    from pretrain.acquisition.cli import add_parser  # MLA's `pretrain acquire`; imports no torch

    add_parser(inner, fmt)


def register(subparsers: Any) -> None:
    """Add ``pretrain`` (with ``pretrain tokenizer``) and ``evaluate`` to the m3curate CLI."""
    fmt = argparse.RawDescriptionHelpFormatter
    _add_pretrain(subparsers, fmt)
    e = subparsers.add_parser("evaluate", help="multilingual image-text retrieval metrics", epilog=EVALUATE_EXAMPLE,
                              formatter_class=fmt, description="R@1/5/10 image->text and text->image per language "
                              "and mean recall (UC2/CCLM itm_eval protocol), as a table and as JSON.")
    e.add_argument("--checkpoint", required=True, help="a checkpoint file or a run directory (its latest checkpoint)")
    e.add_argument("--data", required=True, help="curated dataset directory or benchmark folder")
    e.add_argument("--split", default="test", help="split of a curated dataset (default test)")
    e.add_argument("--langs", help="comma-separated languages (default: every language with captions)")
    e.add_argument("--rerank", type=int, default=0, metavar="K", help="reorder each query's top K by ITM; ranks "
                   "beyond K keep ITC order (default 0: ITC only)")
    e.add_argument("--format", choices=["table", "json", "both"], default="both", help="what to print (default both)")
    e.add_argument("--json", metavar="FILE", help="also write the JSON result to FILE (its folder is created, and "
                   "checked before the evaluation)")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda")
    e.add_argument("--verify", action="store_true", help="check a curated dataset's pairs shards against the sha256 "
                   "digests in its manifest.json first (sizes are always checked)")
    e.set_defaults(func=_evaluate)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m pretrain.cli``) until curation/cli.py wires register()."""
    parser = argparse.ArgumentParser(prog="m3curate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, [])


if __name__ == "__main__":
    sys.exit(main())
