"""Each mode's statistics match its configuration over many texts.

Every text has U = 5 covered words (each with two translations in each of de/fr/es) among
10 tokens. Observed counts must lie within Z = 4 standard deviations of their expectation,
the standard deviations computed from the binomial (or binomial-mixture) model of the
mode: a correct implementation fails such a check with probability about 6e-5, and the
draws are seeded, so the outcome is fixed.
"""

from __future__ import annotations

import math
from collections import Counter

from cs_helpers import switcher

from codeswitch.switch import Switched, draw_key

N, U, Z = 3000, 5, 4.0
LANGS = ("de", "fr", "es")
WORDS = [f"w{i}" for i in range(U)]
LINES = {lang: "".join(f"{w} {w}{lang}1\n{w} {w}{lang}2\n" for w in WORDS) for lang in LANGS}
TEXT = " ".join(f"{w} x{i}" for i, w in enumerate(WORDS))  # "w0 x0 w1 x1 ..."


def run(mode: str, sent: float, word: float = 1.0) -> list[Switched | None]:
    sw = switcher(LINES, mode, sent, word)
    analysis = sw.analyse(TEXT, "en")
    assert len(analysis.units) == U
    return [sw.switch(analysis, draw_key(11, f"rec{i}", 0, 0)) for i in range(N)]


def within(observed: float, mean: float, var: float) -> bool:
    return abs(observed - mean) <= Z * math.sqrt(var)


def binomial_ok(k: int, n: int, p: float) -> bool:
    return within(k, n * p, n * p * (1 - p))


def test_single_word_mode_switches_one_random_word_into_one_random_language():
    sent = 0.6
    outs = [o for o in run("single", sent) if o is not None]
    assert binomial_ok(len(outs), N, sent)
    assert all(len(o.spans) == 1 and o.words == [1] for o in outs)
    spans = [o.spans[0] for o in outs]
    langs = Counter(s.lang for s in spans)
    assert all(binomial_ok(langs[lang], len(spans), 1 / 3) for lang in LANGS)
    first_word = sum(s.src_start == 0 for s in spans)
    assert binomial_ok(first_word, len(spans), 1 / U)
    first_translation = sum(o.text[s.start : s.end].endswith("1") for o, s in zip(outs, spans, strict=True))
    assert binomial_ok(first_translation, len(spans), 1 / 2)


def switched_units_ok(outs: list[Switched | None], sent: float, word: float) -> bool:
    """Units switched per text: Bernoulli(sent) times Binomial(U, word)."""
    per_text = [len(o.spans) if o else 0 for o in outs]
    mean = sent * U * word
    var = sent * (U * word * (1 - word) + (U * word) ** 2) - mean**2
    return within(sum(per_text), N * mean, N * var)


def test_multi_word_mode_rates_and_languages_per_word():
    sent, word = 0.8, 0.5
    outs = run("multi", sent, word)
    assert switched_units_ok(outs, sent, word)
    spans = [s for o in outs if o for s in o.spans]
    langs = Counter(s.lang for s in spans)
    assert all(binomial_ok(langs[lang], len(spans), 1 / 3) for lang in LANGS)
    assert sum(len({s.lang for s in o.spans}) > 1 for o in outs if o) > N / 4  # texts mix languages


def test_sentence_mode_uses_one_language_per_text():
    sent, word = 0.8, 0.5
    outs = run("sentence", sent, word)
    assert switched_units_ok(outs, sent, word)
    switched = [o for o in outs if o]
    assert all(len({s.lang for s in o.spans}) == 1 for o in switched)
    langs = Counter(o.spans[0].lang for o in switched)
    assert all(binomial_ok(langs[lang], len(switched), 1 / 3) for lang in LANGS)


def test_ratio_extremes():
    assert all(o is not None and len(o.spans) == U for o in run("multi", 1.0, 1.0)[:200])
    assert all(o is None for o in run("multi", 1.0, 0.0)[:200])


def test_languages_are_drawn_among_those_that_cover_the_word():
    sw = switcher({"de": "red rot\n", "fr": "blue bleu\n"}, "sentence", 1.0, 1.0)
    analysis = sw.analyse("a red thing", "en")
    assert {sw.switch(analysis, draw_key(0, str(i), 0, 0)).spans[0].lang for i in range(100)} == {"de"}
