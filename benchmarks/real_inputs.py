"""Real inputs for the relevance benchmark: FreeDict dictd files -> MUSE, gettext .po -> pairs.

Pure functions (no network, no subprocess), so that ``tests/curation/
test_relevance_real_inputs.py`` checks the parsing on tiny hand-written inputs.
``benchmarks/relevance_real.py`` fetches the real files and uses these.

- A dictd dictionary is ``NAME.index`` (``headword<TAB>offset<TAB>length``, offset and
  length in dictd's base64 digits) and ``NAME.dict.dz`` (gzip, dictzip-compatible). A
  FreeDict entry is a headline (``headword /ipa/ <pos>``) followed by translation lines
  at column 0 (``1. bond, tie``; tags ``<pl>``, ``[cook.]``, notes in parentheses) and
  indented lines (synonyms, ``see:``, notes, examples) that are not translations.
- A .po catalogue pairs an English ``msgid`` with its human translation ``msgstr``;
  ``sentence_pairs`` keeps the sentence-like ones, placeholders and markup removed.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_POS = re.compile(r"<[^>]*>")  # a part-of-speech tag ends a translation: "Adresse <fem>Adr."
_NOTES = re.compile(r"\[[^\]]*\]|\{[^}]*\}|\([^)]*\)|(?:^|\s)/[^/]+/")  # domains, notes, IPA
# Placeholder words of dictionary entries ("type in sth.", "jdm. helfen") and the English
# infinitive marker: not words a sentence contains in their place.
_FILLERS = frozenset({"sth.", "sb.", "sb's", "etw.", "jdm.", "jdn.", "jds.", "jd.", "qn", "qch", "qc"})
_NUMBERING = re.compile(r"^\s*\d+\.\s+")
# Placeholders of Python, C and brace formats, HTML tags and entities: not words of either language.
_PLACEHOLDER = re.compile(r"%\([^)]*\)[#0 +-]*\d*(?:\.\d+)?[a-zA-Z]|%[#0 +-]*\d*(?:\.\d+)?[sdifrxXu]"
                          r"|\{[^{}]*\}|<[^>]*>|&[a-zA-Z]+;|&#\d+;")
_EMPTY_QUOTES = re.compile(r"\(\s*\)|\[\s*\]|“\s*”|«\s*»|„\s*“|‘\s*’|\"\s*\"")  # left by a removed placeholder
_ESCAPES = {"n": " ", "t": " ", '"': '"', "\\": "\\", "r": " "}


def b64_number(digits: str) -> int:
    """A dictd index number (offset or length), written in base64 digits."""
    n = 0
    for c in digits:
        n = n * 64 + B64.index(c)
    return n


def dictd_entries(index_text: str, data: bytes) -> Iterator[tuple[str, str]]:
    """(headword, definition text) per index line, dictd's ``00database*`` metadata skipped."""
    for line in index_text.splitlines():
        fields = line.split("\t")
        if len(fields) != 3 or fields[0].startswith("00database") or fields[0].startswith("00-database"):
            continue
        start, length = b64_number(fields[1]), b64_number(fields[2])
        yield fields[0].strip(), data[start:start + length].decode("utf-8", errors="replace")


def definition_translations(definition: str) -> list[str]:
    """The translations in a FreeDict definition: column-0 lines after the headline, split on
    commas, semicolons and part-of-speech tags; numbering, notes, IPA, placeholder words
    (sth., etw.) and a leading infinitive "to" removed."""
    out: list[str] = []
    for line in definition.splitlines()[1:]:
        if not line.strip() or line[0].isspace():
            continue  # synonyms, "see:", notes and examples are indented
        for part in re.split(r"[,;]", _POS.sub(",", _NOTES.sub(" ", _NUMBERING.sub("", line)))):
            words = [w for w in part.replace("\u2010", "-").split() if w not in _FILLERS]
            text = " ".join(words[1:] if len(words) > 1 and words[0] == "to" else words)
            if text and text not in out:
                out.append(text)
    return out


def muse_pairs(entries: Iterable[tuple[str, str]], max_words: int = 1) -> list[tuple[str, str]]:
    """(source, target) pairs of a MUSE file from dictd entries, first-seen order, deduplicated.

    max_words: keep only sides of at most this many words (1: MUSE's word-to-word
    dictionaries; the lexical scorer looks up single tokens, and multi-word targets would
    add every word of "come into conflict with sb." as a translation of "geraten").
    """
    seen: set[tuple[str, str]] = set()
    pairs: list[tuple[str, str]] = []
    for headword, definition in entries:
        source = " ".join(headword.split())
        if not source or len(source.split()) > max_words:
            continue
        for target in definition_translations(definition):
            if len(target.split()) <= max_words and (source, target) not in seen:
                seen.add((source, target))
                pairs.append((source, target))
    return pairs


def read_dictd(index: str | Path, dict_dz: str | Path) -> Iterator[tuple[str, str]]:
    """The entries of an installed dictd dictionary (``.index`` + gzip ``.dict.dz``)."""
    data = gzip.decompress(Path(dict_dz).read_bytes())
    return dictd_entries(Path(index).read_text(encoding="utf-8"), data)


class PoEntry(NamedTuple):
    msgid: str
    msgstr: str
    context: str
    fuzzy: bool
    plural: bool


def _unquote(s: str) -> str:
    body = s.strip()[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _flush(cur: dict[str, str], flags: str) -> PoEntry | None:
    if "msgid" not in cur:
        return None
    msgstr = cur.get("msgstr", cur.get("msgstr[0]", ""))
    return PoEntry(cur["msgid"], msgstr, cur.get("msgctxt", ""), "fuzzy" in flags, "msgid_plural" in cur)


def parse_po(text: str) -> list[PoEntry]:
    """The entries of a gettext catalogue (obsolete ``#~`` entries dropped; a plural entry
    keeps its singular msgid and msgstr[0]). Escapes \\n and \\t become spaces."""
    entries: list[PoEntry] = []
    cur: dict[str, str] = {}
    flags, field = "", ""
    for raw in [*text.splitlines(), ""]:
        line = raw.strip()
        starts_entry = line.startswith(("#", "msgctxt", "msgid ")) or not line
        if starts_entry and any(k.startswith("msgstr") for k in cur) and (done := _flush(cur, flags)):
            entries.append(done)
            cur, flags = {}, ""
        if line.startswith("#,"):
            flags += line
        elif line.startswith("msg") and " " in line:
            field, value = line.split(" ", 1)
            cur[field] = _unquote(value)
        elif line.startswith('"') and field:
            cur[field] += _unquote(line)
    return entries


def clean_message(text: str) -> str:
    """A message without placeholders and markup, whitespace collapsed."""
    text = _EMPTY_QUOTES.sub(" ", _PLACEHOLDER.sub(" ", text).replace("%%", "%"))
    return " ".join(text.split())


def sentence_like(text: str, min_words: int) -> bool:
    """At least ``min_words`` words with letters, mostly letters, no format or code leftovers (%, {, _)."""
    words = [w for w in text.split() if any(c.isalpha() for c in w)]
    letters = sum(c.isalpha() for c in text)
    return len(words) >= min_words and letters >= 0.7 * len(text.replace(" ", "")) and not re.search(r"[%{}\\|=_]", text)


def sentence_pairs(entries: Iterable[PoEntry], min_words: int = 4) -> list[tuple[str, str]]:
    """(English, translation) of the translated, non-fuzzy entries that read as sentences
    (both sides cleaned, each ``min_words``+ words), deduplicated on the English side."""
    out: dict[str, str] = {}
    for e in entries:
        if not e.msgid or not e.msgstr.strip() or e.fuzzy:
            continue
        en, xx = clean_message(e.msgid), clean_message(e.msgstr)
        if en != xx and en not in out and sentence_like(en, min_words) and sentence_like(xx, min_words - 1):
            out[en] = xx
    return list(out.items())
