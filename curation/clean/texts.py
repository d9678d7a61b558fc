"""Text normalisation and the rows it completes: RawRecord -> ``pairs`` or ``parallel`` row.

``normalise_text`` is the pure function. It rejects (``TextRejected``) with one of:

  not_text        the field holds a number, list... instead of a string (bytes are
                  decoded as UTF-8)
  invalid_utf8    the text holds lone surrogates (undecodable bytes kept by surrogateescape)
  empty           nothing is left after normalisation
  too_short       fewer than ``min_chars`` characters
  too_long        more than ``max_chars`` characters
  too_few_words   fewer than ``min_words`` whitespace-separated words
  too_many_words  more than ``max_words`` words

Normalisation, in order: HTML entities are unescaped; markup is stripped (when
``strip_markup``): tags such as ``<b>``, ``</a>``, ``<br/>``, ``<img src=...>``,
comments, doctype/CDATA declarations, but not a bare ``<`` as in ``a < b``. Block-level
tags become a space, inline tags vanish (``un<b>able</b>`` -> ``unable``). Text inside
``<script>`` or ``<style>`` is kept, and so is BBCode (``[url=...]``). A ``<`` directly
followed by a letter and later closed by ``>`` is taken for a tag (``x<y and z>w`` loses
``<y and z>``): the price of not parsing HTML. Then control characters (Unicode Cc) become
a space where they separate words (tab, newlines...) and are dropped otherwise; format
characters (Cf: zero-width space, bidi marks, soft hyphen, BOM...) are dropped except
ZWNJ and ZWJ, which change meaning in Persian and Indic scripts and in emoji. Then NFC,
then every whitespace run (NBSP and other Unicode spaces included) becomes one space,
and the ends are stripped.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from curation.config import TextConfig
from curation.read.records import RawRecord
from curation.stages import TEXT
from schemas.rows import REJECTS_TAG, UNDETERMINED, Reject, text_entry
from schemas.stage import StageCounters

PAIRS_TAG = "pairs"
PARALLEL_TAG = "parallel"

# Texts this many times longer than max_chars are refused before normalising them, so
# that a multi-megabyte "caption" costs no more than reading its length.
RAW_LENGTH_FACTOR = 100
RAW_LENGTH_MIN = 100_000

_KEEP_FORMAT = frozenset("\u200c\u200d")  # ZWNJ, ZWJ
_SPACE_CONTROLS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85")
_MARKUP = re.compile(
    r"<!--.*?-->"  # comment
    r"|<!\[CDATA\[(?P<cdata>.*?)\]\]>"  # CDATA section: its content stays
    r"|<![A-Za-z][^<>]*>"  # doctype and other declarations
    r"|</?(?P<tag>[A-Za-z][A-Za-z0-9:-]*)(?:\s[^<>]*)?/?>",  # start, end and empty tags
    re.DOTALL,
)
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
        "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot",
        "th", "thead", "title", "tr", "ul",
    }
)  # fmt: skip


class TextRejected(Exception):
    """A text failed normalisation; ``reason`` is the reject reason, ``detail`` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def normalise_text(text: str, cfg: TextConfig) -> str:
    """The normalised text, or ``TextRejected`` when it is unusable or out of bounds."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")  # bad bytes surface as invalid_utf8
    if not isinstance(text, str):
        raise TextRejected("not_text", f"expected a string, got {type(text).__name__}")
    limit = max(RAW_LENGTH_MIN, RAW_LENGTH_FACTOR * cfg.max_chars)
    if len(text) > limit:
        raise TextRejected("too_long", f"{len(text)} characters before normalisation, max {cfg.max_chars}")
    _check_surrogates(text)
    text = html.unescape(text)
    if cfg.strip_markup:
        text = strip_markup(text)
    text = _drop_invisible(text)
    text = " ".join(unicodedata.normalize("NFC", text).split())
    _check_bounds(text, cfg)
    return text


def _check_surrogates(text: str) -> None:
    """Lone surrogates are what ``surrogateescape`` leaves of bytes that were not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(text[err.start])
        what = f"undecodable byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
        raise TextRejected("invalid_utf8", f"{what} at character {err.start}") from None


def strip_markup(text: str) -> str:
    """Remove HTML/XML tags, comments and declarations; block-level tags leave a space."""
    return _MARKUP.sub(_markup_replacement, text) if "<" in text else text


def _markup_replacement(match: re.Match[str]) -> str:
    if match.group("cdata") is not None:
        return match.group("cdata")
    name = match.group("tag")
    return " " if name is not None and name.lower() in _BLOCK_TAGS else ""


def _drop_invisible(text: str) -> str:
    """Control characters -> space or nothing; format characters dropped but ZWNJ/ZWJ."""
    if text.isprintable():  # fast path: no Cc, Cf (or other non-printables) at all
        return text
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc":
            if ch in _SPACE_CONTROLS:
                out.append(" ")
        elif category != "Cf" or ch in _KEEP_FORMAT:
            out.append(ch)
    return "".join(out)


def _check_bounds(text: str, cfg: TextConfig) -> None:
    if not text:
        raise TextRejected("empty", "no text left after normalisation")
    chars, words = len(text), len(text.split())
    if chars < cfg.min_chars:
        raise TextRejected("too_short", f"{chars} characters, min {cfg.min_chars}")
    if chars > cfg.max_chars:
        raise TextRejected("too_long", f"{chars} characters, max {cfg.max_chars}")
    if words < cfg.min_words:
        raise TextRejected("too_few_words", f"{words} words, min {cfg.min_words}")
    if words > cfg.max_words:
        raise TextRejected("too_many_words", f"{words} words, max {cfg.max_words}")


def declared_lang(value: Any) -> str | None:
    """A declared language as given, stripped and lower-cased; None where absent or blank."""
    if not isinstance(value, str):
        return None
    return value.strip().lower() or None


def _field_text(record: RawRecord, role: str, cfg: TextConfig) -> str:
    """The normalised text of ``fields[role]``; a failure names the role in its detail."""
    value = record.fields.get(role)
    if value is None:
        raise TextRejected("empty", f"{role}: missing")
    try:
        return normalise_text(value, cfg)
    except TextRejected as err:
        raise TextRejected(err.reason, f"{role}: {err.detail}") from None


def _provenance(record: RawRecord) -> dict[str, Any]:
    prov = record.provenance or {}
    row = prov.get("row")
    return {
        "file": prov.get("file"),
        "row": int(row) if row is not None else None,
        "url": prov.get("url"),
        "member": prov.get("member"),
    }


def _row_base(record: RawRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "source": record.source,
        "source_id": record.source_id,
        "split": record.split,
        "provenance": _provenance(record),
    }


def pair_row(record: RawRecord, cfg: TextConfig) -> tuple[dict[str, Any], list[Reject]]:
    """The ``pairs`` row of a "pair" or "weak" record, and text-level rejects (a bad anchor).

    Raises ``TextRejected`` when the main text (caption, or weak text) fails, and
    ``ValueError`` when the record has not been through ``ValidateImages``.
    """
    if record.image_info is None:
        raise ValueError(f"record {record.source}/{record.source_id} has no image_info; run ValidateImages first")
    lang = declared_lang(record.fields.get("lang"))
    rejects: list[Reject] = []
    if record.kind == "pair":
        caption = _field_text(record, "caption", cfg)
        texts = [text_entry(caption, "caption", record.source, lang or UNDETERMINED, declared_lang=lang)]
    elif record.kind == "weak":
        weak = _field_text(record, "text", cfg)
        anchor = _anchor(record, cfg, rejects)
        anchor_lang = declared_lang(record.fields.get("anchor_lang"))
        texts = [] if anchor is None else [
            text_entry(anchor, "caption", record.source, anchor_lang or UNDETERMINED, declared_lang=anchor_lang)
        ]
        texts.append(
            text_entry(
                weak, "weak", record.source, lang or UNDETERMINED, declared_lang=lang, anchor=None if anchor is None else 0
            )
        )
    else:
        raise ValueError(f"pair_row: record kind {record.kind!r} is not 'pair' or 'weak'")
    row = {**_row_base(record), "image": record.image_info, "regions": None, "texts": texts}
    return row, rejects


def _anchor(record: RawRecord, cfg: TextConfig, rejects: list[Reject]) -> str | None:
    """The weak record's normalised anchor caption; a bad one becomes a text-level reject."""
    value = record.fields.get("anchor")
    if value is None or value == "":
        return None
    try:
        return _field_text(record, "anchor", cfg)
    except TextRejected as err:
        rejects.append(Reject.of(record, TEXT, err.reason, err.detail, level="text"))
        return None


def parallel_row(record: RawRecord, cfg: TextConfig) -> dict[str, Any]:
    """The ``parallel`` row of a "parallel" record; ``TextRejected`` names the failing side."""
    if record.kind != "parallel":
        raise ValueError(f"parallel_row: record kind {record.kind!r} is not 'parallel'")
    src = _field_text(record, "src", cfg)
    tgt = _field_text(record, "tgt", cfg)
    return {
        **_row_base(record),
        "src_text": src,
        "src_lang": declared_lang(record.fields.get("src_lang")) or UNDETERMINED,
        "src_lang_score": None,
        "tgt_text": tgt,
        "tgt_lang": declared_lang(record.fields.get("tgt_lang")) or UNDETERMINED,
        "tgt_lang_score": None,
        "src_declared_lang": declared_lang(record.fields.get("src_lang")),
        "tgt_declared_lang": declared_lang(record.fields.get("tgt_lang")),
        "origin": record.source,
        "score": None,
        "pair_id": None,
    }


class NormaliseTextsFn(beam.DoFn):
    """RawRecord -> a ``pairs`` row (main output), a ``parallel`` row, or Rejects.

    cfg: the ``[text]`` settings. A record whose main text fails is rejected whole
    (stage "text", level "record"); a weak record's bad anchor is rejected alone
    (level "text") and the record kept without it. Counters (namespace ``text``): ``in``,
    ``kept`` (rows made), ``rejected_<reason>`` (records and anchors alike, as the
    manifest counts rejects), ``pairs`` and ``parallel`` (rows made of each table).
    """

    def __init__(self, cfg: TextConfig):
        self.cfg = cfg
        self.counters = StageCounters(TEXT)

    def process(self, record: RawRecord) -> Iterator[Any]:
        counters = self.counters
        counters.inc("in")
        try:
            if record.kind == "parallel":
                row = parallel_row(record, self.cfg)
                counters.inc("kept")
                counters.inc("parallel")
                yield beam.pvalue.TaggedOutput(PARALLEL_TAG, row)
                return
            row, rejects = pair_row(record, self.cfg)
        except TextRejected as err:
            counters.inc(f"rejected_{err.reason}")
            yield beam.pvalue.TaggedOutput(REJECTS_TAG, Reject.of(record, TEXT, err.reason, err.detail))
            return
        for reject in rejects:
            counters.inc(f"rejected_{reject.reason}")
            yield beam.pvalue.TaggedOutput(REJECTS_TAG, reject)
        counters.inc("kept")
        counters.inc("pairs")
        yield row


class NormaliseTexts(beam.PTransform):
    """Normalises texts and builds output rows; returns ``(pairs, parallel, rejects)``.

    cfg: the ``[text]`` settings (see ``NormaliseTextsFn``).
    """

    def __init__(self, cfg: TextConfig, label: str | None = None):
        super().__init__(label)
        self.cfg = cfg

    def expand(self, records: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection, beam.PCollection]:
        out = records | "Normalise" >> beam.ParDo(NormaliseTextsFn(self.cfg)).with_outputs(
            PARALLEL_TAG, REJECTS_TAG, main=PAIRS_TAG
        )
        return out[PAIRS_TAG], out[PARALLEL_TAG], out[REJECTS_TAG]
