"""MUSE dictionaries: both separators, several translations, multi-word entries, case,
frequency cut-off, and malformed files reported with file:line or skipped and counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeswitch.dictionary import (
    DictionaryError,
    build_lexicon,
    list_dictionaries,
    load_lexicons,
    parse_muse,
    write_muse_dictionaries,
)
from curation.demo import synth


def parse(text: str | bytes, **kw):
    data = text.encode() if isinstance(text, str) else text
    return parse_muse(data, "en-de.txt", fold=kw.pop("fold", True), **kw)


def test_space_and_tab_lines_several_translations_and_phrases():
    pairs, stats = parse("red rot\nred roter\nCircle Kreis\non the left\tlinks\nleft\tauf der linken Seite\n")
    assert pairs == [("red", "rot"), ("red", "roter"), ("circle", "Kreis"), ("on the left", "links"),
                     ("left", "auf der linken Seite")]
    assert (stats.lines, stats.entries, stats.malformed) == (5, 5, 0)


def test_exact_case_keeps_source_case_and_punctuation_is_stripped_from_keys():
    pairs, _ = parse("Circle Kreis\n(red) rot\n", fold=False)
    assert pairs == [("Circle", "Kreis"), ("red", "rot")]


def test_malformed_line_fails_with_file_and_line():
    with pytest.raises(DictionaryError, match=r"en-de\.txt:3: expected 'source<TAB>target'.*on the left links"):
        parse("red rot\n\non the left links\n")
    with pytest.raises(DictionaryError, match=r"en-de\.txt:2: invalid UTF-8"):
        parse(b"red rot\nbad \xff\xfe\n")


def test_malformed_lines_skipped_and_counted_on_request():
    pairs, stats = parse(b"red rot\njustoneword\nbad \xff x\na\tb\tc\nblue blau\n", on_malformed="skip")
    assert pairs == [("red", "rot"), ("blue", "blau")]
    assert stats.malformed == 3
    assert stats.examples[0].startswith("en-de.txt:2: ")
    assert stats.examples[1].startswith("en-de.txt:3: invalid UTF-8")


def test_drops_are_counted_not_silent():
    text = "\ufeffred rot\r\n\r\nred rot\ntriangle Triangle\n... ...\n, Komma\nblue blau\n"
    pairs, stats = parse(text)
    assert pairs == [("red", "rot"), ("blue", "blau")]
    assert (stats.blank, stats.duplicate, stats.identical, stats.unmatchable) == (1, 1, 1, 2)


def test_max_rank_keeps_all_translations_of_the_most_frequent_sources():
    pairs, stats = parse("the der\nthe die\nred rot\nthe das\nblue blau\nred roter\n", max_rank=2)
    assert pairs == [("the", "der"), ("the", "die"), ("red", "rot"), ("the", "das"), ("red", "roter")]
    assert stats.beyond_rank == 1


def test_directory_layout_and_language_selection(tmp_path: Path):
    (tmp_path / "en-de.txt").write_text("red rot\ncircle Kreis\n")
    (tmp_path / "en-fr.txt").write_text("red rouge\n")
    (tmp_path / "de-en.txt").write_text("rot red\n")
    (tmp_path / "en-de.0-5000.txt").write_text("ignored ignoriert\n")  # MUSE's split files
    (tmp_path / "README.txt").write_text("not a dictionary\n")
    files = list_dictionaries(str(tmp_path))
    assert sorted(files) == [("de", "en"), ("en", "de"), ("en", "fr")]
    lexicons, stats = load_lexicons(files, ["fr", "de"], fold=True)
    assert sorted(lexicons) == ["en"]  # no de->fr/de dictionary
    assert lexicons["en"].entries["red"] == (("fr", ("rouge",)), ("de", ("rot",)))
    assert sorted(stats) == ["en-de", "en-fr"]


def test_missing_directory_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DictionaryError, match="is not a directory"):
        list_dictionaries(str(tmp_path / "nope"))


def test_multi_word_index_points_at_first_two_words():
    pairs, _ = parse("new york\tNew York\nnew york city\tNYC\nice-cream Eis\n")
    lex = build_lexicon("en", {"de": pairs}, ["de"])
    assert lex.starts == {"new": {"york": 3}}  # "ice-cream" is one word: no phrase


def test_written_demo_dictionaries_read_back_exactly(tmp_path: Path):
    pairs = {("en", t): synth.lexicon_pairs("en", t) for t in ("de", "fr")}
    pairs[("en", "es")] = [("on the left", "a la izquierda"), ("red", "rojo")]
    paths = write_muse_dictionaries(tmp_path, pairs)
    assert [p.name for p in paths] == ["en-de.txt", "en-es.txt", "en-fr.txt"]
    assert "on the left\ta la izquierda\n" in (tmp_path / "en-es.txt").read_text()
    for (src, tgt), expected in pairs.items():
        got, stats = parse_muse((tmp_path / f"{src}-{tgt}.txt").read_bytes(), "x", fold=False)
        kept = [(s, t) for s, t in expected if s.lower() != t.lower()]
        assert got == kept and stats.identical == len(expected) - len(kept)
