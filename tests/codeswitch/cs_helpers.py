"""Shared builders for the code-switching tests: in-memory dictionaries and a span checker."""

from __future__ import annotations

from pathlib import Path

from codeswitch.dictionary import build_lexicon, parse_muse, write_muse_dictionaries
from codeswitch.switch import Switched, Switcher
from curation.demo import synth

DEMO_LANGS = ("de", "fr", "es")


def switcher(
    lines: dict[str, str], mode: str = "multi", sent_ratio: float = 1.0, word_ratio: float = 1.0,
    fold: bool = True, source: str = "en",
) -> Switcher:
    """A Switcher from MUSE text per target language, e.g. {"de": "red rot\\ncircle Kreis"}."""
    per_lang = {lang: parse_muse(text.encode(), f"{source}-{lang}.txt", fold=fold)[0] for lang, text in lines.items()}
    return Switcher({source: build_lexicon(source, per_lang, list(lines))}, mode, sent_ratio, word_ratio, fold)


def demo_dictionaries(root: Path) -> Path:
    """The demo's en->de/fr/es MUSE files (from curation.demo.synth's lexicon) under root/dicts."""
    write_muse_dictionaries(root / "dicts", {("en", t): synth.lexicon_pairs("en", t) for t in DEMO_LANGS})
    return root / "dicts"


def check_spans(source: str, out: Switched) -> None:
    """The spans explain the output exactly: the source with each [src_start, src_end)
    replaced by out.text[start:end] is out.text, and everything between spans is the
    source's characters, unchanged. Spans are ordered and do not overlap."""
    rebuilt, prev_src, prev_out = [], 0, 0
    for span in out.spans:
        assert prev_src <= span.src_start < span.src_end <= len(source)
        assert prev_out <= span.start < span.end <= len(out.text)
        untouched = source[prev_src : span.src_start]
        assert out.text[prev_out : span.start] == untouched
        rebuilt += [untouched, out.text[span.start : span.end]]
        prev_src, prev_out = span.src_end, span.end
    assert out.text[prev_out:] == source[prev_src:]
    assert "".join(rebuilt) + source[prev_src:] == out.text
