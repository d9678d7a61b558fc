"""MUSE-format bilingual dictionaries: reading, normalising, and the lookup table switching uses.

A MUSE file (the format of facebookresearch/MUSE and of M3P's ``dictionary/{src}-{tgt}.txt``)
holds one ``source<space or tab>target`` pair per line, most frequent source words first, a
source word repeated once per translation. Either side may be several words; then the
two sides must be separated by a tab, since a space would be ambiguous.

Every source entry is reduced to the *key* that the switcher computes for a stretch of text
(``phrase_key``): lower-cased when matching folds case, words joined by single spaces, outer
punctuation stripped. Using one function on both sides is what guarantees that an entry
matches exactly the text spans it should. The result is a ``Lexicon`` per source language:
key -> the translations per target language, plus an index of the first words of multi-word
entries, so that the hot path tries longest matches only where one can start.
"""

from __future__ import annotations

import gc
import logging
import os
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Characters stripped from both ends of a token before lookup ("circle," -> "circle").
# Inner punctuation stays ("don't", "ice-cream", "u.s").
PUNCT = string.punctuation + "«»‹›„“”‟‘’‚‛「」『』（）［］【】〔〕《》〈〉…–—―¡¿、。，．：；！？·•"

MALFORMED = ("error", "skip")
Options = tuple[tuple[str, tuple[str, ...]], ...]  # ((lang, translations), ...) in config order
MAX_EXAMPLES = 3


class DictionaryError(ValueError):
    """A dictionary file is missing or malformed; the message names the file and line."""


def phrase_key(text: str, fold: bool) -> str:
    """The lookup key of a source phrase: what the switcher computes for the same text span."""
    words = (text.lower() if fold else text).split()
    return " ".join(words).strip(PUNCT)


@dataclass
class LoadStats:
    """What reading one dictionary file kept and dropped, for ``m3curate codeswitch stats``.

    entries: (key, translation) pairs kept. blank: empty lines. malformed: lines that are
    not two fields (only non-zero with on_malformed = "skip"; ``examples`` shows the first
    few). unmatchable: source sides that are only punctuation. identical: translations equal
    to their source (switching them would change nothing). beyond_rank: pairs whose source
    word ranks past ``max_rank``. duplicate: repeated pairs.
    """

    lines: int = 0
    entries: int = 0
    blank: int = 0
    malformed: int = 0
    unmatchable: int = 0
    identical: int = 0
    beyond_rank: int = 0
    duplicate: int = 0
    examples: list[str] = field(default_factory=list)


def split_line(line: str) -> tuple[str, str] | None:
    """(source, target) of one MUSE line, or None when it is not exactly two fields."""
    fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
    if len(fields) != 2 or not fields[0] or not fields[1]:
        return None
    return fields[0], fields[1]


def _malformed(stats: LoadStats, where: str, reason: str, on_malformed: str) -> None:
    if on_malformed == "error":
        raise DictionaryError(f"{where}: {reason} (set codeswitch.on_malformed = \"skip\" to skip such lines)")
    stats.malformed += 1
    if len(stats.examples) < MAX_EXAMPLES:
        stats.examples.append(f"{where}: {reason}")


def parse_muse(
    data: bytes, name: str, *, fold: bool, max_rank: int = 0, on_malformed: str = "error"
) -> tuple[list[tuple[str, str]], LoadStats]:
    """The (key, translation) pairs of one MUSE file's bytes, in file order, and what was dropped.

    ``max_rank`` > 0 keeps the pairs of the first ``max_rank`` distinct source keys (MUSE
    lists sources by frequency, so this is a frequency cut-off). Raises DictionaryError
    naming ``name:line`` on the first malformed line unless on_malformed is "skip".
    """
    stats = LoadStats()
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    ranks: dict[str, int] = {}
    for lineno, raw in enumerate(data.splitlines(), 1):
        stats.lines += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            _malformed(stats, f"{name}:{lineno}", f"invalid UTF-8 ({err.reason} at byte {err.start})", on_malformed)
            continue
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            stats.blank += 1
            continue
        fields = split_line(line)
        if fields is None:
            reason = f"expected 'source<TAB>target' or 'source target', got {line.strip()[:80]!r}"
            _malformed(stats, f"{name}:{lineno}", reason, on_malformed)
            continue
        key, target = phrase_key(fields[0], fold), " ".join(fields[1].split())
        if not key:
            stats.unmatchable += 1
        elif max_rank and ranks.setdefault(key, len(ranks)) >= max_rank:
            stats.beyond_rank += 1
        elif phrase_key(target, fold) == key:
            stats.identical += 1
        elif (key, target) in seen:
            stats.duplicate += 1
        else:
            seen.add((key, target))
            pairs.append((key, target))
    stats.entries = len(pairs)
    return pairs, stats


@dataclass
class Lexicon:
    """Everything one source language can be switched into.

    entries: key -> ((lang, translations), ...), languages in the configured order,
        translations in file order. starts: first word -> second word -> the most words of
        a multi-word key starting with those two, so longest matching is tried only where
        a multi-word entry can start (words punctuation-stripped, as the text's keys are).
    """

    source: str
    langs: tuple[str, ...]
    entries: dict[str, Options]
    starts: dict[str, dict[str, int]]


def build_lexicon(source: str, per_lang: Mapping[str, Iterable[tuple[str, str]]], langs: Iterable[str]) -> Lexicon:
    """Merge the (key, translation) pairs of each target language into one lookup table."""
    options: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    order = [lang for lang in langs if lang in per_lang]
    for lang in order:  # in order, so that each entry's options follow the configured languages
        grouped: dict[str, list[str]] = {}
        for key, target in per_lang[lang]:
            grouped.setdefault(key, []).append(target)
        for key, targets in grouped.items():
            options.setdefault(key, []).append((lang, tuple(dict.fromkeys(targets))))
    entries = {key: tuple(opts) for key, opts in options.items()}
    starts: dict[str, dict[str, int]] = {}
    for key in entries:
        if " " in key:
            words = [w.strip(PUNCT) for w in key.split(" ")]
            follow = starts.setdefault(words[0], {})
            follow[words[1]] = max(follow.get(words[1], 0), len(words))
    return Lexicon(source, tuple(order), entries, starts)


# --- files -------------------------------------------------------------------------

def read_bytes(path: str) -> bytes:
    """A local file's bytes, or any Beam filesystem's (gs://...) for dictionaries on workers."""
    if "://" not in path:
        return Path(path).read_bytes()
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        return f.read()


def pair_of(name: str) -> tuple[str, str] | None:
    """("en", "de") for "en-de" or "en-de.txt"; None for anything else (MUSE's "en-de.0-5000.txt")."""
    stem = name.removesuffix(".txt")
    if "." in stem or stem.count("-") != 1:
        return None
    src, tgt = stem.split("-")
    return (src, tgt) if src and tgt and src != tgt else None


def list_dictionaries(directory: str) -> dict[tuple[str, str], str]:
    """The ``{src}-{tgt}.txt`` files of a directory (M3P's layout), by language pair."""
    if "://" in directory:
        from apache_beam.io.filesystems import FileSystems

        found = [m.path for r in FileSystems.match([directory.rstrip("/") + "/*.txt"]) for m in r.metadata_list]
    elif os.path.isdir(directory):
        found = [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n.endswith(".txt")]
    else:
        raise DictionaryError(f"{directory} is not a directory of {{src}}-{{tgt}}.txt dictionaries")
    files = {}
    for path in sorted(found):
        pair = pair_of(os.path.basename(path))
        if pair is not None:
            files[pair] = path
    return files


def load_lexicons(
    files: Mapping[tuple[str, str], str],
    langs: Iterable[str],
    *,
    fold: bool,
    max_rank: int = 0,
    on_malformed: str = "error",
) -> tuple[dict[str, Lexicon], dict[str, LoadStats]]:
    """Read every (src, tgt) file whose tgt is in ``langs``: a Lexicon per source language.

    Returns the lexicons and the LoadStats of each file, keyed "src-tgt". The cyclic
    garbage collector is paused meanwhile: loading makes millions of small objects and no
    cycles, and its repeated scans of them cost about 40% of the load time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_lexicons(files, list(langs), fold=fold, max_rank=max_rank, on_malformed=on_malformed)
    finally:
        if was_enabled:
            gc.enable()


def _load_lexicons(
    files: Mapping[tuple[str, str], str], langs: list[str], *, fold: bool, max_rank: int, on_malformed: str
) -> tuple[dict[str, Lexicon], dict[str, LoadStats]]:
    per_source: dict[str, dict[str, list[tuple[str, str]]]] = {}
    all_stats: dict[str, LoadStats] = {}
    for (src, tgt), path in sorted(files.items()):
        if tgt not in langs:
            continue
        try:
            data = read_bytes(path)
        except OSError as err:
            raise DictionaryError(f"{path}: cannot read dictionary: {err}") from err
        pairs, stats = parse_muse(data, path, fold=fold, max_rank=max_rank, on_malformed=on_malformed)
        all_stats[f"{src}-{tgt}"] = stats
        if stats.malformed:
            logging.getLogger(__name__).warning("%s: skipped %d malformed lines, e.g. %s", path, stats.malformed, stats.examples[0])
        per_source.setdefault(src, {})[tgt] = pairs
    return {src: build_lexicon(src, per_lang, langs) for src, per_lang in per_source.items()}, all_stats


def write_muse_dictionaries(out_dir: str | Path, pairs: Mapping[tuple[str, str], Iterable[tuple[str, str]]]) -> list[Path]:
    """Write ``{src}-{tgt}.txt`` MUSE files, one per language pair; returns their paths.

    A line is ``source target`` when both sides are single words (as MUSE writes them), and
    ``source<TAB>target`` when either has a space, so that reading it back is unambiguous.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for (src, tgt), entries in sorted(pairs.items()):
        lines = []
        for s, t in entries:
            sep = "\t" if any(c.isspace() for c in s + t) else " "
            lines.append(f"{s}{sep}{t}\n")
        path = out / f"{src}-{tgt}.txt"
        path.write_text("".join(lines), encoding="utf-8")
        written.append(path)
    return written
