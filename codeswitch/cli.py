"""``m3curate codeswitch``: code-switch a text file, or report its dictionary coverage.

The command builds the same ``CodeSwitchConfig`` as the ``[codeswitch]`` section of a build
config, so a setting means the same thing in both places and fails with the same message.
One input line is one text; its record id is its 1-based line number, so the same file,
dictionaries and seed give the same output wherever it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any

from codeswitch.config import CodeSwitchConfig, codeswitch_config_from_dict, load_switcher
from codeswitch.switch import MODES, Switcher, coverage_by_lang, draw_key

EXAMPLE = """example:
  m3curate codeswitch --dict dicts/ --langs de,fr captions.txt
  m3curate codeswitch --dict dicts/ --mode multi --ratio 0.5 --seed 3 --out cs.jsonl captions.txt
  m3curate codeswitch --dict en-de=muse/en-de.txt --dict en-fr=muse/en-fr.txt --variants 3 captions.txt
  m3curate codeswitch stats --dict dicts/ --langs de,fr,es captions.txt

Each output line is JSON: {"line", "variant", "lang", "source", "text", "spans"}; spans are
[{"src_start", "src_end", "start", "end", "lang"}] in characters of "source" and "text".
A line nothing was switched in comes out with "text" equal to "source" and no spans.
"stats" prints the share of the file's words each target dictionary covers."""

PROGRESS_EVERY = 100_000


def _config(args: argparse.Namespace) -> CodeSwitchConfig:
    """The CLI flags as a validated CodeSwitchConfig (same checks as the build's section)."""
    mapped = [d for d in args.dict if "=" in d]
    if mapped and len(mapped) != len(args.dict) or not mapped and len(args.dict) != 1:
        raise ValueError("--dict: give one directory, or one or more PAIR=FILE (e.g. en-de=en-de.txt)")
    dictionaries: str | dict[str, str] = dict(d.split("=", 1) for d in mapped) if mapped else args.dict[0]
    data: dict[str, Any] = {
        "dictionaries": dictionaries,
        "langs": [x for x in (args.langs or "").split(",") if x],
        "source_langs": [args.source_lang],
        "mode": args.mode,
        "variants": args.variants,
        "case": args.case,
        "max_rank": args.max_rank,
        "on_malformed": args.on_malformed,
    }
    if args.sent_ratio is not None:
        data["sent_ratio"] = args.sent_ratio
    if args.ratio is not None:
        data["word_ratio"] = args.ratio
    return codeswitch_config_from_dict(data, ".")


def _lines(path: str) -> Iterator[str]:
    with nullcontext(sys.stdin) if path == "-" else open(path, encoding="utf-8") as f:
        for line in f:
            yield line.rstrip("\r\n")


def _log(message: str) -> None:
    print(f"[m3curate codeswitch] {message}", file=sys.stderr, flush=True)


def switch_file(path: str, switcher: Switcher, cfg: CodeSwitchConfig, lang: str, seed: int, out: IO[str]) -> dict[str, int]:
    """Write one JSON line per (input line, variant); returns line and switch counts."""
    counts = {"lines": 0, "switched": 0}
    for lineno, text in enumerate(_lines(path), 1):
        analysis = switcher.analyse(text, lang)
        for variant in range(cfg.variants):
            result = switcher.switch(analysis, draw_key(seed, str(lineno), 0, variant)) if analysis else None
            spans = [s._asdict() for s in result.spans] if result else []
            counts["switched"] += bool(result)
            record = {"line": lineno, "variant": variant, "lang": lang, "source": text,
                      "text": result.text if result else text, "spans": spans}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        counts["lines"] = lineno
        if lineno % PROGRESS_EVERY == 0:
            _log(f"{lineno} lines")
    return counts


def coverage_stats(path: str, switcher: Switcher, lang: str) -> dict[str, Any]:
    """Texts, words, and per target language the words covered and texts with no coverage."""
    texts = tokens = covered = no_coverage = 0
    by_lang: dict[str, int] = {}
    texts_with: dict[str, int] = {}
    for text in _lines(path):
        analysis = switcher.analyse(text, lang)
        if analysis is None:
            raise ValueError(f"no dictionary from {lang!r}")
        texts += 1
        tokens += analysis.tokens
        covered += analysis.covered
        no_coverage += not analysis.units
        for target, n in coverage_by_lang(analysis).items():
            by_lang[target] = by_lang.get(target, 0) + n
            texts_with[target] = texts_with.get(target, 0) + 1
    langs = {
        target: {"covered_words": by_lang.get(target, 0), "coverage": round(by_lang.get(target, 0) / max(tokens, 1), 4),
                 "texts_without_coverage": texts - texts_with.get(target, 0)}
        for target in switcher.lexicons[lang].langs
    }
    return {"texts": texts, "words": tokens, "covered_words": covered, "coverage": round(covered / max(tokens, 1), 4),
            "texts_without_coverage": no_coverage, "langs": langs}


def _print_table(report: dict[str, Any]) -> None:
    print(f"{report['texts']} texts, {report['words']} words; any dictionary covers {report['covered_words']} "
          f"words ({report['coverage']:.1%}); {report['texts_without_coverage']} texts have no covered word")
    print(f"{'lang':<8}{'covered words':>15}{'coverage':>10}{'texts without':>15}")
    for lang, row in report["langs"].items():
        print(f"{lang:<8}{row['covered_words']:>15}{row['coverage']:>10.1%}{row['texts_without_coverage']:>15}")
    for pair, stats in report["dictionaries"].items():
        dropped = ", ".join(f"{k} {v}" for k, v in stats.items() if k not in ("lines", "entries", "examples") and v)
        print(f"{pair}: {stats['entries']} entries from {stats['lines']} lines" + (f" (dropped: {dropped})" if dropped else ""))


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    words = list(args.words)
    stats = words[0] == "stats"
    if len(words) != 1 + stats:
        raise ValueError("expected FILE, or: stats FILE (a file named 'stats' is ./stats)")
    cfg = _config(args)
    switcher, load_stats = load_switcher(cfg)  # the config check made sure source_lang has dictionaries
    if stats:
        report = coverage_stats(words[1], switcher, args.source_lang)
        report["dictionaries"] = {pair: vars(s) for pair, s in load_stats.items()}
        if args.json:
            print(json.dumps(report, indent=1, ensure_ascii=False))
        else:
            _print_table(report)
        return 0
    if args.out not in (None, "-"):
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with nullcontext(sys.stdout) if args.out in (None, "-") else open(args.out, "w", encoding="utf-8") as out:
        counts = switch_file(words[0], switcher, cfg, args.source_lang, args.seed, out)
    _log(f"{counts['lines']} lines, {counts['switched']} switched variants")
    return 0


STATS_HELP = """usage: m3curate codeswitch stats FILE --dict DIR|PAIR=FILE [--langs L,L] [--source-lang L]
                                 [--case fold|exact] [--max-rank N] [--on-malformed error|skip] [--json]

How much of FILE (one text per line, '-': stdin) each target dictionary covers: per
target language the covered words, their share of all words, and the texts with no
covered word; then what was read of each dictionary file (entries, dropped lines).

options:
  --dict DIR|PAIR=FILE  a directory of {src}-{tgt}.txt MUSE files, or PAIR=FILE (repeatable)
  --langs L,L           target languages (default: all with a dictionary)
  --source-lang L       language of FILE (default en)
  --case fold|exact     fold: case-insensitive match (default)
  --max-rank N          use the first N source words of each dictionary (0: all)
  --on-malformed M      error | skip malformed dictionary lines
  --json                print JSON instead of a table

example:
  m3curate codeswitch stats --dict dicts/ --langs de,fr,es captions.txt
"""


class _IntermixedParser(argparse.ArgumentParser):
    """Lets options sit between the positionals (``stats --dict d FILE``).

    Plain argparse stops filling ``[stats] FILE`` at the first option; its intermixed mode
    does not, but the parent parser calls ``parse_known_args``, so that is routed here.
    """

    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        words = [a for a in (args or []) if not a.startswith("-")]
        if words[:1] == ["stats"] and {"-h", "--help"} & set(args or []):
            self._print_message(STATS_HELP, sys.stdout)
            self.exit(0)
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``codeswitch`` command to the ``m3curate`` parser; returns its parser."""
    p = subparsers.add_parser(
        "codeswitch", help="code-switch a text file with MUSE dictionaries (M3P)", epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replace words of each line of FILE ('-': stdin) by dictionary translations and write JSONL "
        "with the switched spans; or, with 'stats', report how much of FILE the dictionaries cover.",
    )
    p.add_argument("words", nargs="+", metavar="[stats] FILE", help="the text file, one text per line")
    p.add_argument("--dict", action="append", required=True, metavar="DIR|PAIR=FILE",
                   help="a directory of {src}-{tgt}.txt MUSE files, or PAIR=FILE (repeatable)")
    p.add_argument("--langs", help="comma-separated target languages (default: all with a dictionary)")
    p.add_argument("--source-lang", default="en", help="language of FILE (default en)")
    p.add_argument("--mode", choices=MODES, default="single",
                   help="single: one word per line (M3P pre-training); multi: each word with --ratio, each into "
                   "its own language; sentence: one language per line (default single)")
    p.add_argument("--ratio", type=float, help="word_ratio: per-word probability in multi/sentence (default 0.8)")
    p.add_argument("--sent-ratio", type=float, help="probability a line is switched at all (default 1 for single, else 0.8)")
    p.add_argument("--seed", type=int, default=0, help="seed; with the line number it fixes every draw (default 0)")
    p.add_argument("--variants", type=int, default=1, help="variants per line (default 1)")
    p.add_argument("--case", choices=("fold", "exact"), default="fold", help="fold: case-insensitive match (default)")
    p.add_argument("--max-rank", type=int, default=0, help="use the first N source words of each dictionary (0: all)")
    p.add_argument("--on-malformed", choices=("error", "skip"), default="error", help="malformed dictionary lines")
    p.add_argument("--out", help="JSONL output file (default stdout)")
    p.add_argument("--json", action="store_true", help="stats: print JSON instead of a table")
    p.set_defaults(func=_run)
    p.__class__ = _IntermixedParser  # add_parser builds the parent's class; only the parsing differs
    return p
