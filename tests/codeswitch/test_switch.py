"""Switching one text: longest match, case and punctuation kept, spans that explain the
output exactly, any source language, and draws that depend only on the key."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from cs_helpers import check_spans, demo_dictionaries, switcher

from codeswitch.config import codeswitch_config_from_dict, load_switcher
from codeswitch.switch import Span, draw_key
from curation.demo import synth

PHRASES = {"de": "on ein\nthe der\nleft links\non the left\tauf der linken Seite\nnew york\tNeuyork\n"
                 "new york city\tNYC\nyork city\tYorkstadt\ntimes Zeiten\n"}


def switch_all(lines: dict[str, str], text: str, **kw) -> str:
    """Every covered unit switched (multi mode, ratios 1): deterministic when each has one translation."""
    sw = switcher(lines, **kw)
    out = sw.switch(sw.analyse(text, kw.get("source", "en")), b"key")
    if out is None:
        return text
    check_spans(text, out)
    return out.text


def test_longest_match_wins_over_its_parts():
    sw = switcher(PHRASES)
    out = sw.switch(sw.analyse("a circle on the left", "en"), b"k")
    assert out.text == "a circle auf der linken Seite"
    assert out.spans == [Span(9, 20, 9, 29, "de")] and out.words == [3]
    assert switch_all(PHRASES, "New York City!") == "NYC!"
    assert switch_all(PHRASES, "new york times") == "Neuyork Zeiten"
    assert switch_all(PHRASES, "the left, on the") == "der links, ein der"  # punctuation breaks a phrase


def test_case_is_carried_over_where_the_script_has_case():
    de = {"de": "red rot\ncircle Kreis\nbig groß\n"}
    assert switch_all(de, "Red circle") == "Rot Kreis"
    assert switch_all(de, "RED CIRCLE") == "ROT KREIS"
    assert switch_all(de, "a red circle") == "a rot Kreis"  # lower-case source: the dictionary's own case
    assert switch_all(de, "BIG") == "GROSS"  # longer than the source; spans still exact
    assert switch_all({"zh": "red 红\n"}, "Red") == "红"
    assert switch_all(de, "Red circle", fold=False) == "Red Kreis"  # exact matching


def test_punctuation_and_spacing_are_byte_identical():
    de = {"de": "red rot\ncircle Kreis\n"}
    text = '"Red," she said:  red circle... (circle)\tred'
    assert switch_all(de, text) == '"Rot," she said:  rot Kreis... (Kreis)\trot'


def test_offsets_survive_lower_casing_that_changes_length():
    text = "İSTANBUL: red circle"  # "İ".lower() is two characters
    assert switch_all({"de": "red rot\ncircle Kreis\n"}, text) == "İSTANBUL: rot Kreis"


def test_any_source_language_with_a_dictionary():
    assert switch_all({"en": "roter red\nkreis circle\n"}, "Ein roter Kreis.", source="de") == "Ein red Circle."
    sw = switcher({"de": "red rot\n"})
    assert sw.analyse("rouge", "fr") is None  # no fr-* dictionary


def test_no_coverage_or_sentence_ratio_zero_gives_no_variant():
    sw = switcher({"de": "red rot\n"})
    assert sw.switch(sw.analyse("a blue square", "en"), b"k") is None
    never = switcher({"de": "red rot\n"}, mode="single", sent_ratio=0.0)
    assert all(never.switch(never.analyse("red", "en"), str(i).encode()) is None for i in range(200))


def decorate(text: str, rng: random.Random) -> str:
    """Captions as the web writes them: capitals, punctuation, doubled spaces."""
    words = text.split(" ")
    for i in range(len(words)):
        r = rng.random()
        if r < 0.1:
            words[i] = words[i].upper()
        elif r < 0.25:
            words[i] = words[i].capitalize()
        elif r < 0.35:
            words[i] = f"({words[i]}),"
        elif r < 0.4:
            words[i] += " "
    return " ".join(words) + rng.choice([".", "!", "", "..."])


def test_spans_explain_every_output(tmp_path: Path):
    dicts = demo_dictionaries(tmp_path)
    rng = random.Random(7)
    texts = [decorate(synth.caption(synth.sample_scene(rng), "en"), rng) for _ in range(300)]
    switched = 0
    for mode in ("single", "multi", "sentence"):
        sw, _ = load_switcher(codeswitch_config_from_dict({"dictionaries": str(dicts), "mode": mode}))
        entries = sw.lexicons["en"].entries
        for i, text in enumerate(texts):
            out = sw.switch(sw.analyse(text, "en"), draw_key(1, str(i), 0, 0))
            if out is None:
                continue
            switched += 1
            check_spans(text, out)
            for span in out.spans:
                targets = dict(entries[text[span.src_start : span.src_end].lower()])[span.lang]
                cased = {form for t in targets for form in (t, t.upper(), t[:1].upper() + t[1:])}
                assert out.text[span.start : span.end] in cased
            if mode == "single":
                assert len(out.spans) == 1
    assert switched > 600


def test_draws_depend_only_on_the_key(tmp_path: Path):
    dicts = demo_dictionaries(tmp_path)
    cfg = codeswitch_config_from_dict({"dictionaries": str(dicts), "mode": "multi", "word_ratio": 0.5})
    texts = [synth.caption(synth.sample_scene(random.Random(i)), "en") for i in range(50)]

    def run() -> list[str | None]:
        sw, _ = load_switcher(cfg)
        return [(o.text if (o := sw.switch(sw.analyse(t, "en"), draw_key(3, f"r{i}", 0, 0))) else None)
                for i, t in enumerate(texts)]

    first = run()
    assert run() == first
    sw, _ = load_switcher(cfg)
    other = [sw.switch(sw.analyse(t, "en"), draw_key(3, f"r{i}", 0, 1)) for i, t in enumerate(texts)]
    assert sum((o.text if o else None) != f for o, f in zip(other, first, strict=True)) > 25  # variants differ
    script = (
        "import sys; from codeswitch.config import *; from codeswitch.switch import draw_key\n"
        f"sw, _ = load_switcher(codeswitch_config_from_dict({{'dictionaries': {str(dicts)!r}, 'mode': 'multi', "
        "'word_ratio': 0.5}))\n"
        f"texts = {texts!r}\n"
        "for i, t in enumerate(texts):\n"
        "    o = sw.switch(sw.analyse(t, 'en'), draw_key(3, f'r{i}', 0, 0)); print(repr(o.text if o else None))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    printed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parents[2]).stdout
    assert printed.splitlines() == [repr(f) for f in first]  # another process, another hash seed
