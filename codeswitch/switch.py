"""Code-switching one text: find dictionary-covered words, draw replacements, record spans.

The three modes (see README.md): ``single`` is M3P's ``dclag`` (exactly one covered word or
phrase, into one random language), ``multi`` is M3P's ``clag`` (each covered unit switched
with probability ``word_ratio``, each into its own random language), ``sentence`` picks
one language per text and switches its covered units with probability ``word_ratio``.
In every mode the whole text is switched only with probability ``sent_ratio``.

Tokenisation is M3P's split on spaces, refined so that punctuation at a token's edges does
not hide the word ("circle," looks up "circle" and keeps the comma), and so that any
whitespace character separates tokens. Only the characters of switched words change: the
output is assembled from untouched slices of the source, so everything else (punctuation,
spacing, casing) is byte-identical, and each span gives both the source and the output
character offsets.

Hot path, because this runs on every caption: lower-casing, splitting and the dictionary
lookups are single C-level calls over the whole text (``str.lower``, ``str.split``, ``map``,
``itertools.compress``); Python-level work is per token that missed (to strip its
punctuation and look again) and per *switched* unit. Longest matching runs only where a
text holds the first two words of some multi-word entry.

Randomness: each (text, variant) has a key; draws are 64-bit words of BLAKE2b(key, salt=
block number), so a result depends on nothing but the key, on any host, process or order.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Mapping
from hashlib import blake2b
from itertools import compress
from operator import not_
from typing import NamedTuple

from codeswitch.dictionary import PUNCT, Lexicon, Options

MODES = ("single", "multi", "sentence")
_BLOCK = struct.Struct("<8Q").unpack  # one BLAKE2b-512 digest = 8 draws
_COIN_BITS = 53
_SPACE = re.compile(r"\s")


class Span(NamedTuple):
    """One switched span: [src_start, src_end) of the source, [start, end) of the output."""

    src_start: int
    src_end: int
    start: int
    end: int
    lang: str


class Analysis(NamedTuple):
    """A text as the switcher sees it; computed once and shared by all its variants.

    parts: the text split at whitespace, one part per separator; their lengths give
    character offsets (lower-cased when folding case kept every length, as it nearly
    always does). keys: the lookup key of each part (lower-cased, punctuation stripped; ""
    for parts without a word). units: part index of each covered unit, in text order.
    phrases: part index -> (parts, key) for units that are multi-word entries, or None.
    tokens: parts holding a word. covered: tokens inside covered units.
    """

    text: str
    lexicon: Lexicon
    parts: list[str]
    keys: list[str]
    units: list[int]
    phrases: dict[int, tuple[int, str]] | None
    tokens: int
    covered: int


class Switched(NamedTuple):
    """A code-switched text, its spans, and how many source words each span replaced."""

    text: str
    spans: list[Span]
    words: list[int]


Pick = tuple[int, int, str, str]  # (first part, parts, lang, translation)


def draws(key: bytes, n: int) -> Iterator[int]:
    """``n`` (or a few more) uniform 64-bit integers determined by ``key`` alone."""
    values = _BLOCK(blake2b(key, digest_size=64).digest())
    for block in range(1, (n + 7) // 8):
        values += _BLOCK(blake2b(key, digest_size=64, salt=block.to_bytes(16, "little")).digest())
    return iter(values)


def draw_key(seed: int, record_id: str, text_index: int, variant: int) -> bytes:
    """The randomness key of one variant of one text of one record."""
    return f"{seed}\x00{record_id}\x00{text_index}\x00{variant}".encode()


def _below(x: int, n: int) -> int:
    """A uniform index in [0, n) from a 64-bit draw (multiply-shift; bias < n / 2**64)."""
    return (x * n) >> 64


def _threshold(ratio: float) -> int:
    """Coin threshold: a draw x is heads when x >> 11 < threshold, i.e. with P = ratio."""
    return round(ratio * (1 << _COIN_BITS))


def _with_phrases(
    lex: Lexicon, lparts: list[str], keys: list[str], singles: list[int]
) -> tuple[list[int], dict[int, tuple[int, str]] | None]:
    """Units with multi-word entries matched leftmost-longest; words inside a phrase are not units."""
    phrases: dict[int, tuple[int, str]] = {}
    taken = 0
    for k in compress(range(len(keys) - 1), map(lex.starts.__contains__, keys)):
        if k < taken:
            continue
        for n in range(min(lex.starts[keys[k]].get(keys[k + 1], 0), len(keys) - k), 1, -1):
            key = " ".join(lparts[k : k + n]).strip(PUNCT)
            if key in lex.entries:
                phrases[k] = (n, key)
                taken = k + n
                break
    if not phrases:
        return singles, None
    inside = {i for k, (n, _) in phrases.items() for i in range(k + 1, k + n)}
    return sorted((set(singles) - inside) | phrases.keys()), phrases


def _unit(a: Analysis, k: int) -> tuple[int, Options]:
    """(parts, translation options) of the unit starting at part ``k``."""
    n, key = a.phrases[k] if a.phrases and k in a.phrases else (1, a.keys[k])
    return n, a.lexicon.entries[key]


def cased(target: str, surface: str) -> str:
    """``target`` with the case pattern of the source word: ALL CAPS, Capitalised, or as listed.

    A lower-case source keeps the dictionary's own casing (German nouns stay capitalised);
    scripts without case are left unchanged by ``str.upper``.
    """
    if not surface[:1].isupper():
        return target
    if len(surface) > 1 and surface.isupper():
        return target.upper()
    return target[:1].upper() + target[1:]


def _strip_misses(lex: Lexicon, parts: list[str], found: list[bool]) -> tuple[list[str], list[int], int]:
    """Keys of the parts a plain lookup missed, punctuation stripped; which of them hit; empties.

    Only misses are stripped (most parts hit as they are), which keeps the per-token work
    in C. Returns the keys (a copy of ``parts`` when anything changed), the indices of
    parts that hit after stripping, and the number of parts with no word at all.
    """
    keys = parts
    hits: list[int] = []
    empty = 0
    for i in compress(range(len(parts)), map(not_, found)):
        key = parts[i].strip(PUNCT)
        if not key:
            empty += 1
        if key is not parts[i]:
            if keys is parts:
                keys = parts.copy()
            keys[i] = key
            if key in lex.entries:
                hits.append(i)
    return keys, hits, empty


class Switcher:
    """Code-switches texts of any source language that has a Lexicon.

    lexicons: source language -> Lexicon. mode: single | multi | sentence. sent_ratio:
    probability that a text is switched at all. word_ratio: per-unit probability in multi
    and sentence modes. fold: match case-insensitively and carry the source's case over.
    """

    def __init__(self, lexicons: Mapping[str, Lexicon], mode: str, sent_ratio: float, word_ratio: float, fold: bool):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {MODES}")
        self.lexicons = dict(lexicons)
        self.mode = mode
        self.fold = fold
        self._sent = _threshold(sent_ratio)
        self._word = _threshold(word_ratio)
        self._choose = {"single": self._single, "multi": self._multi, "sentence": self._sentence}[mode]

    def analyse(self, text: str, lang: str) -> Analysis | None:
        """Covered units of ``text``; None when no dictionary has ``lang`` as its source."""
        lex = self.lexicons.get(lang)
        if lex is None:
            return None
        low = text.lower() if self.fold else text
        if not low.isprintable():  # tabs, newlines, no-break spaces: each becomes one plain space
            low = _SPACE.sub(" ", low)
        parts = low.split(" ")
        found = list(map(lex.entries.__contains__, parts))
        units = list(compress(range(len(parts)), found))
        keys, empty = parts, 0
        if len(units) < len(parts):
            keys, more, empty = _strip_misses(lex, parts, found)
            units = sorted(units + more) if more else units
        phrases = None
        if lex.starts and not lex.starts.keys().isdisjoint(keys):
            units, phrases = _with_phrases(lex, parts, keys, units)
        covered = len(units) + (sum(n - 1 for n, _ in phrases.values()) if phrases else 0)
        if len(low) != len(text):  # lower-casing changed a length ("İ"): offsets need the original
            parts = _SPACE.sub(" ", text).split(" ")
        return Analysis(text, lex, parts, keys, units, phrases, len(parts) - empty, covered)

    def switch(self, a: Analysis, key: bytes) -> Switched | None:
        """One code-switched variant of an analysed text, or None when it would equal the source."""
        if not a.units:
            return None
        xs = draws(key, 4 if self.mode == "single" else 2 + 3 * len(a.units))
        if next(xs) >> 11 >= self._sent:
            return None
        picks = self._choose(a, xs)
        return self._apply(a, picks) if picks else None

    # --- the modes: which units (in text order), which language, which translation -------

    def _single(self, a: Analysis, xs: Iterator[int]) -> list[Pick]:
        k = a.units[_below(next(xs), len(a.units))]
        n, options = _unit(a, k)
        lang, targets = options[_below(next(xs), len(options))]
        return [(k, n, lang, targets[_below(next(xs), len(targets))])]

    def _multi(self, a: Analysis, xs: Iterator[int]) -> list[Pick]:
        word = self._word
        picks = []
        for k in [k for k in a.units if next(xs) >> 11 < word]:
            n, options = _unit(a, k)
            lang, targets = options[_below(next(xs), len(options))]
            picks.append((k, n, lang, targets[_below(next(xs), len(targets))]))
        return picks

    def _sentence(self, a: Analysis, xs: Iterator[int]) -> list[Pick]:
        units = [(k, *_unit(a, k)) for k in a.units]
        present = {lang for _, _, options in units for lang, _ in options}
        avail = [lang for lang in a.lexicon.langs if lang in present]
        lang = avail[_below(next(xs), len(avail))]
        word = self._word
        picks = []
        for k, n, options in units:
            for option_lang, targets in options:
                if option_lang == lang and next(xs) >> 11 < word:
                    picks.append((k, n, lang, targets[_below(next(xs), len(targets))]))
        return picks

    # --- the output ----------------------------------------------------------------------

    def _apply(self, a: Analysis, picks: list[Pick]) -> Switched | None:
        """Assemble the output from untouched source slices and the (cased) translations."""
        text = a.text
        parts = a.parts
        out: list[str] = []
        spans: list[Span] = []
        pos = at = prev = size = 0  # pos: offset of part ``at``; prev: end of the last copied slice
        for k, n, lang, target in picks:
            pos += sum(map(len, parts[at:k])) + k - at
            at = k
            if n == 1 and a.keys[k] is parts[k]:  # nothing stripped: the part is the word
                start, core = pos, text[pos : pos + len(parts[k])]
            else:
                seg = text[pos : pos + sum(map(len, parts[k : k + n])) + n - 1]
                core = seg.strip(PUNCT)
                start = pos + seg.find(core)
            new = cased(target, core) if self.fold else target
            out.append(text[prev:start])
            size += start - prev
            spans.append(Span(start, start + len(core), size, size + len(new), lang))
            out.append(new)
            size += len(new)
            prev = start + len(core)
        out.append(text[prev:])
        result = "".join(out)
        return None if result == text else Switched(result, spans, [p[1] for p in picks])


def coverage_by_lang(a: Analysis) -> dict[str, int]:
    """Source words of ``a`` covered by each target language's dictionary."""
    covered: dict[str, int] = {}
    for k in a.units:
        n, options = _unit(a, k)
        for lang, _ in options:
            covered[lang] = covered.get(lang, 0) + n
    return covered
