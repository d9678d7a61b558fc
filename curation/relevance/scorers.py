"""Relevance scorers: how close a weak text is to its anchor, as a number in [0, 1].

Every scorer has one method, ``score(pairs) -> list[float | None]``: a batch of ``Pair``
(weak text, its language, anchor text, its language) in, one score per pair out, None
where this scorer cannot judge the pair (no dictionary or translation direction between
the two languages, a failed translation). ``id`` is what the stage records as
``texts.relevance_scorer``. Scorers are pure given their model: same input, same output.

- ``LexicalScorer`` (``lexical``): both texts are tokenised as the code-switching
  dictionaries key their entries (``codeswitch.dictionary.phrase_key`` on each
  whitespace token: lower-cased, outer punctuation stripped), and a weak token *matches*
  an anchor token when they are equal or a dictionary lists one as a translation of the
  other, in either direction: ``{weak}-{anchor}.txt`` maps weak words into the anchor
  language, ``{anchor}-{weak}.txt`` maps anchor words into the weak language (the demo and
  M3P ship en-X only), and both are used when both exist. Score: F1 of the token sets
  (precision: weak tokens with a match; recall: anchor tokens with a match). No stop-word
  list: function words with a dictionary entry ("a"/"ein", "and"/"und") count like any
  other, and those without one lower every text's recall alike. Multi-word entries match
  word by word. Texts in scripts written without spaces (zh, ja, th) are one token: use
  ``translate`` or ``embedding`` for them.
- ``TranslateScorer`` (``translate:<model>``): chrF (sacrebleu; beta 1 by default, see
  ``RelevanceConfig.chrf_beta``) / 100 of
  a machine translation of the weak text into the anchor's language against the anchor;
  when the model only has the other direction, the anchor is translated into the weak
  text's language and compared with the weak text instead. Same language: chrF directly.
- ``EmbeddingScorer`` (``embedding:<encoder>``): cosine similarity of a sentence encoder
  (``curation.relevance.encoders``), calibrated into [0, 1] by ``calibrate``. A
  monolingual encoder needs both texts in one language: the weak text is translated
  first (``back_translate``), else a cross-language pair is not scored. When the
  encoder declares its language(s) (all-MiniLM-L6-v2: English), that one language must
  be one of them: an English-only encoder leaves a de/de pair unscored, and with only an
  en->de model the anchor is not translated into German for it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from codeswitch.dictionary import PUNCT, Lexicon, phrase_key
from schemas.rows import UNDETERMINED, lang_key


class Pair(NamedTuple):
    """One weak text and the anchor it is scored against."""

    text: str
    lang: str
    anchor: str
    anchor_lang: str


class Scorer(Protocol):
    """What the stage needs of a scorer (see the module docstring)."""

    id: str

    def score(self, pairs: Sequence[Pair]) -> list[float | None]: ...


class Hyp(Protocol):
    """A translation result: ``translate.engine.Hypothesis`` has these fields."""

    text: str
    error: str | None


class TranslatorLike(Protocol):
    """The part of ``translate.engine.Translator`` the scorers use."""

    model_id: str

    def translate(self, sentences: Sequence[str], src_lang: str, tgt_lang: str) -> Sequence[Hyp]: ...

    def supports(self, src_lang: str, tgt_lang: str) -> bool: ...


# --- calibration -------------------------------------------------------------------

def calibrate(cos: np.ndarray | Sequence[float], method: str, low: float, high: float) -> np.ndarray:
    """Cosine similarities mapped monotonically into [0, 1].

    linear: clip((cos - low) / (high - low), 0, 1): ``low`` is the cosine of an
        unrelated pair (score 0), ``high`` that of a faithful one (score 1).
    logistic: 1 / (1 + exp(-8 (cos - mid) / (high - low))), mid = (low + high) / 2: a
        smooth version that reaches about 0.02 at ``low`` and 0.98 at ``high``.
    Pick low/high from ``m3curate relevance eval``'s raw cosines of shuffled and aligned
    pairs. NaN (an empty text's zero vector) maps to 0.
    """
    x = np.nan_to_num(np.asarray(cos, dtype=np.float64), nan=low)
    if method == "linear":
        out = (x - low) / (high - low)
    elif method == "logistic":
        out = 1.0 / (1.0 + np.exp(-8.0 * (x - (low + high) / 2) / (high - low)))
    else:
        raise ValueError(f"calibration {method!r}: use linear or logistic")
    return np.clip(out, 0.0, 1.0)


# --- lexical -----------------------------------------------------------------------

# French, Italian and Catalan elided articles, pronouns and prepositions: in those languages
# "l'option" is looked up as "option" (dictionaries list the bare word). Other languages
# keep their apostrophes ("it's", "don't", "o'clock").
ELIDING_LANGS = frozenset({"fr", "it", "ca"})
ELIDED = frozenset({"l", "d", "n", "s", "j", "c", "m", "t", "qu", "jusqu", "lorsqu", "puisqu",
                    "un", "all", "dall", "dell", "nell", "sull"})


def _word_key(word: str, lang: str | None) -> str:
    key = phrase_key(word.replace("\u2019", "'"), True)
    if lang not in ELIDING_LANGS:
        return key
    head, sep, rest = key.partition("'")
    rest = rest.strip(PUNCT)
    return rest if sep and head in ELIDED and rest else key


def tokens(text: str, lang: str | None = None) -> frozenset[str]:
    """The text's words as dictionary keys (``phrase_key`` per whitespace token; in
    ``ELIDING_LANGS``, elisions split off: ``ELIDED``)."""
    return frozenset(k for w in text.split() if (k := _word_key(w, lang)))


def f1(matched: int, n_weak: int, covered: int, n_anchor: int) -> float:
    """F1 of precision matched/n_weak and recall covered/n_anchor (0 when either side is empty)."""
    if not n_weak or not n_anchor or not (matched or covered):
        return 0.0
    p, r = matched / n_weak, covered / n_anchor
    return 2 * p * r / (p + r) if p + r else 0.0


class LexicalScorer:
    """Dictionary token-overlap F1 (module docstring). lexicons: source language -> Lexicon,
    as ``codeswitch.load_lexicons`` returns them (loaded with fold=True)."""

    id = "lexical"

    def __init__(self, lexicons: Mapping[str, Lexicon]):
        self.lexicons = dict(lexicons)
        self._maps: dict[tuple[str, str], dict[str, frozenset[str]] | None] = {}

    def word_map(self, src: str, tgt: str) -> dict[str, frozenset[str]] | None:
        """src word -> the tgt words of its translations (None: no src->tgt dictionary)."""
        if (src, tgt) not in self._maps:
            lex = self.lexicons.get(src)
            table: dict[str, set[str]] = {}
            for key, options in (lex.entries.items() if lex and tgt in lex.langs else ()):
                for lang, targets in options:
                    if lang == tgt:
                        word = _word_key(key, src) if " " not in key else key  # as tokens() keys the text
                        table.setdefault(word, set()).update(tokens(" ".join(targets), tgt))
            self._maps[(src, tgt)] = {k: frozenset(v) for k, v in table.items()} if table else None
        return self._maps[(src, tgt)]

    def score_one(self, pair: Pair) -> float | None:
        weak, anchor = tokens(pair.text, pair.lang), tokens(pair.anchor, pair.anchor_lang)
        fwd = rev = None
        if pair.lang != pair.anchor_lang:
            fwd, rev = self.word_map(pair.lang, pair.anchor_lang), self.word_map(pair.anchor_lang, pair.lang)
            if fwd is None and rev is None:
                return None
        empty: frozenset[str] = frozenset()
        fwd_image = set().union(*(fwd.get(w, empty) for w in weak)) if fwd else set()
        rev_image = set().union(*(rev.get(a, empty) for a in anchor)) if rev else set()
        matched = sum(1 for w in weak if w in anchor or w in rev_image or (fwd and not fwd.get(w, empty).isdisjoint(anchor)))
        covered = sum(1 for a in anchor if a in weak or a in fwd_image or (rev and not rev.get(a, empty).isdisjoint(weak)))
        return f1(matched, len(weak), covered, len(anchor))

    def score(self, pairs: Sequence[Pair]) -> list[float | None]:
        return [self.score_one(p) for p in pairs]

    def why(self, pair: Pair) -> str:
        """Why ``pair`` got no score: no dictionary between its languages, either way."""
        return "no_dictionary"


# --- translation -------------------------------------------------------------------

def translate_for_scoring(
    translator: TranslatorLike, pairs: Sequence[Pair], code: Callable[[str], str] = str,
    into: Callable[[str], bool] | None = None,
) -> list[tuple[str, str] | None]:
    """(hypothesis, reference) in one language for each pair, or None when the model has
    neither direction or the translation failed. Each direction is one engine call, and a
    sentence repeated in a batch (a shared anchor) is translated once. into: the
    languages the pair may end in (a monolingual encoder's; None: any)."""
    jobs: dict[tuple[str, str], dict[str, list[int]]] = {}
    out: list[tuple[str, str] | None] = [None] * len(pairs)
    plan: list[tuple[str, str, str, str] | None] = []
    ok = into or (lambda _: True)
    for i, p in enumerate(pairs):
        if p.lang == p.anchor_lang:
            out[i] = (p.text, p.anchor) if ok(p.lang) else None
            plan.append(None)
        elif ok(p.anchor_lang) and translator.supports(code(p.lang), code(p.anchor_lang)):
            plan.append((p.text, p.lang, p.anchor_lang, p.anchor))
        elif ok(p.lang) and translator.supports(code(p.anchor_lang), code(p.lang)):
            plan.append((p.anchor, p.anchor_lang, p.lang, p.text))
        else:
            plan.append(None)
            continue
        if plan[-1] is not None:
            src_text, src, tgt, _ = plan[-1]
            jobs.setdefault((src, tgt), {}).setdefault(src_text, []).append(i)
    for (src, tgt), by_text in jobs.items():
        texts = list(by_text)
        hyps = translator.translate(texts, code(src), code(tgt))
        for text, hyp in zip(texts, hyps, strict=True):
            for i in by_text[text]:
                ref = plan[i][3]  # type: ignore[index]
                out[i] = None if hyp.error else (hyp.text, ref)
    return out


class TranslateScorer:
    """chrF / 100 of the translated weak text against the anchor (module docstring).

    translator: a loaded ``translate.engine.Translator`` (or anything with its
    ``translate``/``supports``). code: pipeline language code -> the model's code.
    beta: chrF's recall weight (1: chrF1).
    """

    def __init__(self, translator: TranslatorLike, code: Callable[[str], str] = str, beta: float = 1.0):
        from sacrebleu.metrics import CHRF

        self.translator = translator
        self.code = code
        self.chrf = CHRF(beta=beta)
        self.id = f"translate:{translator.model_id or 'model'}"

    def score(self, pairs: Sequence[Pair]) -> list[float | None]:
        found = translate_for_scoring(self.translator, pairs, self.code)
        return [None if f is None else min(1.0, self.chrf.sentence_score(f[0], [f[1]]).score / 100.0) for f in found]

    def why(self, pair: Pair) -> str:
        """Why ``pair`` got no score: the model lacks both directions, or translating failed."""
        return _translation_why(self.translator, self.code, pair)


# --- embedding ---------------------------------------------------------------------

class Encoder(Protocol):
    """A sentence encoder (``curation.relevance.encoders``): L2-normalised rows. It may
    also have ``languages``: the primary language codes a monolingual encoder handles
    (None or absent: any)."""

    name: str
    multilingual: bool

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingScorer:
    """Calibrated cosine of a sentence encoder (module docstring).

    encoder: the loaded encoder. calibration/low/high: see ``calibrate``. translator:
    used to bring a cross-language pair into one language when the encoder is
    monolingual (None: such pairs are not scored).
    """

    def __init__(self, encoder: Encoder, calibration: str = "linear", low: float = 0.0, high: float = 1.0,
                 translator: TranslatorLike | None = None, code: Callable[[str], str] = str):
        self.encoder = encoder
        self.calibration, self.low, self.high = calibration, low, high
        self.translator, self.code = translator, code
        self.id = f"embedding:{encoder.name}"
        langs = None if encoder.multilingual else getattr(encoder, "languages", None)
        self.languages: frozenset[str] | None = frozenset(langs) if langs else None
        if not encoder.multilingual and translator is None:
            logging.getLogger(__name__).warning(
                "relevance encoder %s is monolingual (%s): a weak text in another language than its anchor "
                "stays unscored; set relevance.back_translate = true (with a translation model) to translate it",
                encoder.name, ", ".join(sorted(langs)) if langs else "languages not declared")

    def why(self, pair: Pair) -> str:
        """Why ``pair`` got no score (``UNSCORED`` names the reasons)."""
        if self.translator is not None:
            return _translation_why(self.translator, self.code, pair, None if self.encoder.multilingual else self.knows)
        return "encoder_language" if not (self.knows(pair.lang) and self.knows(pair.anchor_lang)) else "cross_language"

    def knows(self, lang: str) -> bool:
        """Whether the encoder handles texts in ``lang`` (a monolingual one: its languages)."""
        return self.languages is None or lang_key(lang) in self.languages

    def cosines(self, pairs: Sequence[Pair]) -> list[float | None]:
        """Raw cosine similarities (None where the pair cannot be put in one space the
        encoder handles: module docstring)."""
        if self.encoder.multilingual:
            texts: list[tuple[str, str] | None] = [(p.text, p.anchor) for p in pairs]
        elif self.translator is not None:
            texts = translate_for_scoring(self.translator, pairs, self.code, self.knows)
        else:
            texts = [(p.text, p.anchor) if p.lang == p.anchor_lang and self.knows(p.lang) else None for p in pairs]
        todo = [t for t in texts if t is not None]
        if not todo:
            return [None] * len(pairs)
        index: dict[str, int] = {}
        for t in todo:
            index.setdefault(t[0], len(index))
            index.setdefault(t[1], len(index))
        vectors = self.encoder.encode(list(index))
        a = np.fromiter((index[t[0]] for t in todo), np.intp, len(todo))
        b = np.fromiter((index[t[1]] for t in todo), np.intp, len(todo))
        cos = iter(np.einsum("ij,ij->i", vectors[a], vectors[b]).tolist())  # one dot product per pair
        return [None if t is None else next(cos) for t in texts]

    def score(self, pairs: Sequence[Pair]) -> list[float | None]:
        cos = self.cosines(pairs)
        known = [c for c in cos if c is not None]
        cal = iter(calibrate(known, self.calibration, self.low, self.high).tolist()) if known else iter(())
        return [None if c is None else next(cal) for c in cos]


# Why a scorer leaves a pair unscored, and what to do about it (counters, warnings).
UNSCORED = {
    "unknown_language": "its language or its anchor's is 'und' (LID was unsure, or no language was declared)",
    "no_dictionary": "no MUSE dictionary between its language and its anchor's, either way",
    "no_direction": "the translation model has no direction between its language and its anchor's (ending, "
                    "for a monolingual encoder, in a language the encoder covers)",
    "translation_failed": "the translation model failed on it",
    "encoder_language": "the encoder does not cover its language or its anchor's; use a multilingual encoder, "
                        "or back_translate with a translation model",
    "cross_language": "the encoder is monolingual and the pair crosses languages; set back_translate with a "
                      "translation model that has a direction between them",
    "declined": "the scorer gave no score",
}


def why_unscored(scorer: Any, pair: Pair) -> str:
    """The ``UNSCORED`` reason a scorer left ``pair`` without a score (asked only of the
    pairs it did not score)."""
    if UNDETERMINED in (pair.lang, pair.anchor_lang):
        return "unknown_language"
    explain = getattr(scorer, "why", None)
    return explain(pair) if explain is not None else "declined"


def _translation_why(translator: TranslatorLike, code: Callable[[str], str], pair: Pair,
                     into: Callable[[str], bool] | None = None) -> str:
    """The reason ``translate_for_scoring`` found nothing for ``pair`` (``into`` as there)."""
    ok = into or (lambda _: True)
    if pair.lang == pair.anchor_lang:
        return "translation_failed" if ok(pair.lang) else "encoder_language"
    src, tgt = code(pair.lang), code(pair.anchor_lang)
    if (ok(pair.anchor_lang) and translator.supports(src, tgt)) or (ok(pair.lang) and translator.supports(tgt, src)):
        return "translation_failed"
    return "no_direction"


def finite(values: Sequence[Any]) -> list[float]:
    """The numbers of ``values`` that are finite (scores, without the Nones)."""
    return [float(v) for v in values if v is not None and math.isfinite(v)]
