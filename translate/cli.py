"""``m3curate mt``: the translation stage alone, for files, plus its helpers.

``register(subparsers)`` adds ``mt`` with ``translate`` (a text file, one sentence a
line), ``eval`` (sacrebleu BLEU and chrF against references), ``convert`` (a fairseq
checkpoint directory to a CTranslate2 model) and ``train-demo`` (the tiny multilingual
demo transformer, from a TSV of pairs). Each handler takes ``(args, beam_args)`` and
returns an exit code; errors are raised for the main CLI to print on one line. Heavy
imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

FMT = argparse.RawDescriptionHelpFormatter

TRANSLATE_EXAMPLE = """example:
  m3curate mt translate --model models/m2m --src en --tgt de --input captions.en --output captions.de
  m3curate mt translate --model models/m2m-ct2 --engine ctranslate2 --src en --tgt fr --beam 1 < in.txt
  m3curate mt translate --model checkpoints/wmt-en-de --src en --tgt de --input in.bpe.en --output out.de
  m3curate mt translate --model models/nllb --src eng_Latn --tgt deu_Latn --device cuda --dtype float16 \\
      --input in.txt --output out.txt --scores out.scores"""

EVAL_EXAMPLE = """example:
  m3curate mt eval --hyp out.de --ref ref.de
  m3curate mt eval --hyp out.de --ref ref1.de --ref ref2.de"""

CONVERT_EXAMPLE = """example:
  m3curate mt convert --model models/m2m --out models/m2m-ct2
  m3curate mt convert --model models/m2m --out models/m2m-ct2-int8 --quantization int8"""

TRAIN_EXAMPLE = """example:
  m3curate mt train-demo --pairs pairs.tsv --out models/demo-mt
  m3curate mt train-demo --pairs pairs.tsv --out models/demo-mt --src en --epochs 20

pairs.tsv has one pair a line: target language, source text, target text (tab-separated)."""


def _log(message: str) -> None:
    print(f"[m3curate mt] {message}", file=sys.stderr, flush=True)


CHUNK = 1024  # lines per engine call: each call length-sorts and batches its lines itself
PROGRESS_EVERY = 5.0


def translate_with_progress(model: Any, lines: list[str], src: str, tgt: str) -> list[Any]:
    """``model.translate`` over ``lines`` in chunks of ``CHUNK``, logging lines done, rate and
    ETA at most every ``PROGRESS_EVERY`` seconds. A file of up to ``CHUNK`` lines is one call;
    on a longer one the texts are those of one call (each sentence is decoded on its own),
    and scores can differ in the last float digits, as batches are composed differently."""
    out: list[Any] = []
    started = last = time.time()
    for start in range(0, len(lines), CHUNK):
        out.extend(model.translate(lines[start:start + CHUNK], src, tgt))
        now = time.time()
        if now - last >= PROGRESS_EVERY and len(out) < len(lines):
            rate = len(out) / (now - started)
            _log(f"{len(out)}/{len(lines)} lines, {rate:.1f} lines/s, about {(len(lines) - len(out)) / rate:.0f}s left")
            last = now
    return out


def _decoding_flags(p: argparse.ArgumentParser) -> None:
    from translate.config import TranslateConfig

    d = TranslateConfig()
    p.add_argument("--beam", type=int, default=d.beam, help=f"beam size, 1 = greedy (default {d.beam})")
    p.add_argument("--lenpen", type=float, default=d.lenpen, help="length penalty (default 1.0)")
    p.add_argument("--max-len-a", type=float, default=d.max_len_a, help="max length = a * source length + b")
    p.add_argument("--max-len-b", type=int, default=d.max_len_b, help=f"(default a=0, b={d.max_len_b})")
    p.add_argument("--no-repeat-ngram-size", type=int, default=0, help="forbid repeated n-grams of this size")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens,
                   help=f"token budget per model batch (default {d.max_tokens})")
    p.add_argument("--padded-batches", action="store_true",
                   help="model batches of mixed source lengths (fuller, faster on GPU); the default batches one "
                        "source length at a time, so scores do not depend on batch-mates")


def _translate(args: argparse.Namespace, beam_args: list[str]) -> int:
    from translate.config import translate_config_from_dict
    from translate.evaluate import read_lines
    from translate.loading import load_translator

    for path in (args.output, args.scores):  # made before the model loads: a bad folder fails first
        if path and path != "-":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    cfg = translate_config_from_dict({
        "model": args.model, "engine": args.engine, "source_langs": [args.src], "targets": [args.tgt],
        "beam": args.beam, "lenpen": args.lenpen, "max_len_a": args.max_len_a, "max_len_b": args.max_len_b,
        "no_repeat_ngram_size": args.no_repeat_ngram_size, "max_tokens": args.max_tokens,
        "same_length_batches": not args.padded_batches, "device": args.device,
        "dtype": args.dtype, "compute_type": args.compute_type, "cpu_threads": args.threads,
        "checkpoint": args.checkpoint, "remove_bpe": args.remove_bpe,
    })
    lines = read_lines(args.input) if args.input != "-" else sys.stdin.read().splitlines()
    started = time.time()
    model = load_translator(cfg)
    _log(f"loaded {model.model_id} in {time.time() - started:.1f}s; "
         f"translating {len(lines)} lines {args.src}->{args.tgt}")
    started = time.time()
    hyps = translate_with_progress(model, lines, args.src, args.tgt)
    seconds = time.time() - started
    failed = [i + 1 for i, h in enumerate(hyps) if h.error]
    text = "".join(f"{h.text}\n" for h in hyps)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    if args.scores:
        Path(args.scores).write_text("".join(f"{'' if h.score is None else h.score}\n" for h in hyps), encoding="utf-8")
    _log(f"translated {len(lines)} lines in {seconds:.1f}s ({len(lines) / max(seconds, 1e-9):.1f} sentences/s)")
    if failed:
        _log(f"{len(failed)} line(s) left empty (not translatable: too long or empty), e.g. line {failed[0]}: "
             f"{hyps[failed[0] - 1].error}")
    return 0


def _eval(args: argparse.Namespace, beam_args: list[str]) -> int:
    from translate.evaluate import score_files

    result = score_files(args.hyp, args.ref)
    print(json.dumps(result, indent=1))
    return 0


def _convert(args: argparse.Namespace, beam_args: list[str]) -> int:
    from translate.ct2_engine import convert_checkpoint

    started = time.time()
    if bool(args.src) != bool(args.tgt):
        raise ValueError("give both --src and --tgt (the languages of a bilingual checkpoint that records none)")
    languages = (args.src, args.tgt) if args.src else None
    out = convert_checkpoint(args.model, args.out, args.quantization, checkpoint=args.checkpoint, force=args.force,
                             languages=languages)
    _log(f"wrote CTranslate2 model to {out} ({args.quantization or 'float32'}) in {time.time() - started:.1f}s")
    return 0


def _read_pairs(path: str) -> dict[str, list[tuple[str, str]]]:
    pairs: dict[str, list[tuple[str, str]]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{path}:{n}: expected 3 tab-separated fields (lang, source, target), got {len(parts)}")
        pairs.setdefault(parts[0], []).append((parts[1], parts[2]))
    return pairs


def _train_demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from translate.demo_model import DemoModelSpec, train_demo_model

    started = time.time()
    spec = DemoModelSpec(epochs=args.epochs, seed=args.seed)
    model = train_demo_model(args.out, _read_pairs(args.pairs), args.src, spec, log=_log,
                             both_directions=args.both_directions)
    _log(f"model in {model} ({time.time() - started:.0f}s)")
    return 0


def _add(sub: Any, name: str, help: str, example: str, description: str, func: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, epilog=example, formatter_class=FMT, description=description)
    p.set_defaults(func=func)
    return p


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``mt`` and its sub-commands to the main CLI's sub-parsers; returns the ``mt`` parser."""
    mt = subparsers.add_parser("mt", help="machine translation: translate, eval, convert, train-demo",
                               formatter_class=FMT, description="The translation stage alone, for files.",
                               epilog="example:\n  m3curate mt translate --help\n"
                                      "  m3curate mt eval --hyp out.de --ref ref.de")
    sub = mt.add_subparsers(dest="mt_command", required=True, metavar="MT_COMMAND")
    t = _add(sub, "translate", "translate a text file, one sentence a line", TRANSLATE_EXAMPLE,
             "Translate each line of --input with a fairseq checkpoint directory or a CTranslate2 model; "
             "line i of --output is the translation of line i (empty where it could not be translated).", _translate)
    t.add_argument("--model", required=True, help="model directory (fairseq checkpoint dir, or CTranslate2 dir)")
    t.add_argument("--engine", default="fairseq", choices=("fairseq", "ctranslate2"), help="default fairseq")
    t.add_argument("--src", required=True, help="source language, in the model's codes (en, eng_Latn)")
    t.add_argument("--tgt", required=True, help="target language, in the model's codes")
    t.add_argument("--input", default="-", help="input text file (default: stdin)")
    t.add_argument("--output", default="-", help="output text file (default: stdout)")
    t.add_argument("--scores", help="also write each hypothesis' score (avg log-prob per token) here")
    t.add_argument("--checkpoint", help="checkpoint file name in --model (default model.pt, checkpoint_best.pt, "
                                        "checkpoint_last.pt: the first there)")
    t.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    t.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"), help="fairseq on CUDA")
    t.add_argument("--compute-type", default="default",
                   help="CTranslate2's compute type (default: as converted; int8, float16 on CUDA, ...)")
    t.add_argument("--remove-bpe", default="auto", choices=("auto", "subword_nmt", "none"),
                   help="remove subword-nmt/fastBPE '@@ ' markers from the output, as fairseq-generate --remove-bpe "
                        "(auto: when the model's vocabulary has '@@' pieces and no SentencePiece model is used; the "
                        "input must be BPE-segmented already)")
    t.add_argument("--threads", type=int, default=0, help="CPU threads (default: the library's)")
    _decoding_flags(t)
    e = _add(sub, "eval", "BLEU and chrF of a translation against references (sacrebleu)", EVAL_EXAMPLE,
             "Score --hyp against one or more --ref files, line by line, with sacrebleu; prints JSON.", _eval)
    e.add_argument("--hyp", required=True, help="system output, one sentence a line")
    e.add_argument("--ref", required=True, action="append", help="reference file (repeat for several)")
    c = _add(sub, "convert", "convert a fairseq checkpoint directory to CTranslate2", CONVERT_EXAMPLE,
             "Convert with CTranslate2's fairseq converter (the checkpoint is loaded safely first) and copy "
             "the SentencePiece model and the language settings beside it.", _convert)
    c.add_argument("--model", required=True, help="fairseq model directory")
    c.add_argument("--out", required=True, help="output directory for the CTranslate2 model")
    c.add_argument("--checkpoint", help="checkpoint file name in --model (default model.pt, checkpoint_best.pt, ...)")
    c.add_argument("--quantization", choices=("int8", "int8_float32", "int8_float16", "float16", "bfloat16"),
                   help="store weights quantised (default float32)")
    c.add_argument("--force", action="store_true", help="replace an existing --out")
    c.add_argument("--src", help="source language of a bilingual checkpoint that records none (with --tgt)")
    c.add_argument("--tgt", help="target language of a bilingual checkpoint that records none (with --src)")
    d = _add(sub, "train-demo", "train the tiny multilingual demo transformer (fairseq, CPU)", TRAIN_EXAMPLE,
             "Train a small M2M-100-style transformer with fairseq-preprocess and fairseq-train.", _train_demo)
    d.add_argument("--pairs", required=True, help="TSV: target language, source text, target text")
    d.add_argument("--out", required=True, help="work directory; the model lands in OUT/model")
    d.add_argument("--src", default="en", help="source language (default en)")
    d.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    d.add_argument("--seed", type=int, default=1, help="fairseq-train seed (default 1)")
    d.add_argument("--both-directions", action="store_true",
                   help="also train target -> source (for back-translation)")
    return mt
