"""Relevance scorers on tiny real dictionaries and a tiny real fastText encoder built here,
calibration bounds, and the evaluation metrics on cases with known answers.

The translate scorer is tested with ``StubDictionaryTranslator``: a deterministic
word-by-word dictionary "translator", NOT a machine-translation model (training the tiny
fairseq model takes about a minute, beyond this suite's budget); it implements the
``translate.engine.Translator`` calls the scorer makes (translate, supports, model_id).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from codeswitch.dictionary import write_muse_dictionaries
from curation.demo.synth import (
    LANGUAGES,
    caption,
    generate,
    lexicon_pairs,
    sample_rng,
    sample_scene,
)
from curation.demo.weak import GRADED_KINDS, graded_weak_text
from curation.relevance.build import lexical_scorer
from curation.relevance.config import RelevanceConfig
from curation.relevance.encoders import (
    EncoderError,
    encoder_kind,
    load_encoder,
    train_fasttext_encoder,
)
from curation.relevance.eval import (
    evaluate_graded,
    ranks,
    roc_auc,
    shuffled,
    spearman,
)
from curation.relevance.scorers import (
    EmbeddingScorer,
    LexicalScorer,
    Pair,
    TranslateScorer,
    calibrate,
    tokens,
)


@pytest.fixture(scope="module")
def dicts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """en->{de, fr, es} MUSE dictionaries of the demo vocabulary (the direction M3P ships)."""
    out = tmp_path_factory.mktemp("dicts")
    write_muse_dictionaries(out, {("en", t): lexicon_pairs("en", t) for t in LANGUAGES if t != "en"})
    return out


@pytest.fixture(scope="module")
def lexical(dicts: Path) -> LexicalScorer:
    return lexical_scorer(RelevanceConfig(dictionaries=str(dicts)))


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A monolingual English 16-dim fastText skip-gram encoder trained on 3,000 generated
    captions (5 epochs, one thread: about 0.3 s)."""
    lines = [caption(sample_scene(sample_rng(5, "enc", i)), "en") for i in range(3000)]
    return train_fasttext_encoder(lines, tmp_path_factory.mktemp("enc") / "ft-en", dim=16, epochs=5)


@dataclass(frozen=True)
class _Hyp:
    text: str
    score: float | None = None
    error: str | None = None


class StubDictionaryTranslator:
    """Word-by-word lookup in the demo lexicon; a stand-in for a Translator, not MT."""

    model_id = "stub-dictionary"

    def __init__(self, directions: Sequence[tuple[str, str]]):
        self.tables = {(s, t): dict(lexicon_pairs(s, t, lower=True)) for s, t in directions}

    def supports(self, src_lang: str, tgt_lang: str) -> bool:
        return (src_lang, tgt_lang) in self.tables

    def translate(self, sentences: Sequence[str], src_lang: str, tgt_lang: str) -> list[_Hyp]:
        table = self.tables[(src_lang, tgt_lang)]
        return [_Hyp(" ".join(table.get(w.lower(), w) for w in s.split())) if s else _Hyp("", None, "empty")
                for s in sentences]


def _graded(n: int = 120, langs: Sequence[str] = ("de", "fr", "es")) -> tuple[list[Pair], list[float]]:
    """Weak texts of the four demo constructions (curation.demo.weak) with their grades."""
    pairs, grades = [], []
    for s in generate(n, 3, image_size=32):
        kind = GRADED_KINDS[s.index % 4]
        lang = langs[s.index % len(langs)]
        text, grade, _ = graded_weak_text(s.scene, lang, sample_rng(3, "w", s.index), kind)
        pairs.append(Pair(text, lang, s.captions["en"], "en"))
        grades.append(grade)
    return pairs, grades


def test_calibration_bounds_and_monotone() -> None:
    cos = np.linspace(-1, 1, 201)
    for method in ("linear", "logistic"):
        for low, high in ((0.0, 1.0), (0.2, 0.6), (-0.5, 0.9)):
            out = calibrate(cos, method, low, high)
            assert out.min() >= 0.0 and out.max() <= 1.0
            assert np.all(np.diff(out) >= 0)
    assert calibrate([0.2, 0.4, 0.6], "linear", 0.2, 0.6).tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert calibrate([float("nan")], "logistic", 0.2, 0.6)[0] < 0.05
    with pytest.raises(ValueError, match="calibration"):
        calibrate([0.1], "sigmoid", 0, 1)


def test_lexical_known_scores_and_directions(lexical: LexicalScorer) -> None:
    en = "a small red circle on the left"
    # Reverse direction: only en->de exists, so anchor words are mapped into German.
    same = lexical.score_one(Pair("ein kleiner roter Kreis links", "de", en, "en"))
    # weak: 5/5 matched; anchor: a, small, red, circle, left covered (on, the not) -> R 5/7
    assert same == pytest.approx(2 * 1 * (5 / 7) / (1 + 5 / 7))
    part = lexical.score_one(Pair("Foto: ein Kreis", "de", en, "en"))
    other = lexical.score_one(Pair("Jetzt kaufen", "de", en, "en"))
    assert same > part > other == 0.0
    assert lexical.score_one(Pair("a red circle", "en", en, "en")) == pytest.approx(2 * 1 * (3 / 7) / (1 + 3 / 7))
    assert lexical.score_one(Pair("ein Kreis", "de", "un cercle", "fr")) is None  # no de<->fr dictionary
    assert lexical.score([Pair("", "de", en, "en")]) == [0.0]


def test_tokens_split_elisions_in_eliding_languages_only(tmp_path: Path) -> None:
    assert tokens("L'option n’est pas d'un qu'il d'\"accord\"", "fr") == {"option", "est", "pas", "un", "il",
                                                                          "accord"}
    assert tokens("it's o'clock, don't c'mon", "en") == {"it's", "o'clock", "don't", "c'mon"}
    assert tokens("c'mon", None) == {"c'mon"}
    write_muse_dictionaries(tmp_path, {("en", "fr"): [("option", "option"), ("file", "fichier")],
                                       ("fr", "en"): [("l'eau", "water"), ("chien", "dog")]})
    scorer = lexical_scorer(RelevanceConfig(dictionaries=str(tmp_path)))
    assert scorer.score_one(Pair("l'option", "fr", "option", "en")) == 1.0
    assert scorer.score_one(Pair("l'eau chien", "fr", "water dog", "en")) == 1.0  # an elided dictionary key


def test_lexical_tracks_demo_grades(lexical: LexicalScorer) -> None:
    pairs, grades = _graded()
    report = evaluate_graded(lexical, pairs, grades)
    assert report["unscored"] == 0
    assert report["spearman"] >= 0.6, report


def test_translate_scorer_both_directions() -> None:
    en = "a small red circle on the left"
    forward = TranslateScorer(StubDictionaryTranslator([("de", "en")]))
    backward = TranslateScorer(StubDictionaryTranslator([("en", "de")]))
    good, bad = Pair("ein kleiner roter Kreis links", "de", en, "en"), Pair("Jetzt kaufen", "de", en, "en")
    for scorer in (forward, backward):
        hi, lo = scorer.score([good, bad])
        assert 0.0 <= lo < 0.3 < hi <= 1.0
    assert forward.id == "translate:stub-dictionary"
    assert forward.score([Pair("ein Kreis", "de", "un cercle", "fr")]) == [None]
    assert forward.score([Pair("a red circle", "en", en, "en")])[0] > 0.3  # same language: chrF directly
    assert forward.score([Pair("", "de", en, "en")]) == [None]  # a failed translation is not a score


def test_embedding_fasttext_encoder(encoder_dir: Path) -> None:
    assert encoder_kind(str(encoder_dir)) == "fasttext"
    enc = load_encoder(str(encoder_dir))
    assert load_encoder(str(encoder_dir)) is enc  # once per process
    vectors = enc.encode(["a red circle", "click here"])
    assert vectors.shape == (2, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    pairs, grades = _graded(160, langs=("en",))
    # Distributional vectors of this tiny vocabulary put most cosines near 1: the
    # calibration window is chosen for it (what `relevance eval` shows users).
    scorer = EmbeddingScorer(enc, "linear", 0.95, 1.0)
    scores = scorer.score(pairs)
    assert all(s is not None and 0.0 <= s <= 1.0 for s in scores)
    assert scorer.score(pairs) == scores
    whole = [s for s, g in zip(scores, grades, strict=True) if g == 1.0]
    unrelated = [s for s, g in zip(scores, grades, strict=True) if g == 0.0]
    assert roc_auc(whole, unrelated) >= 0.75  # type: ignore[arg-type]


def test_embedding_languages(encoder_dir: Path, tmp_path: Path) -> None:
    """A monolingual encoder scores cross-language pairs only after translation; one
    declared multilingual scores them directly."""
    enc = load_encoder(str(encoder_dir))
    pair = Pair("ein roter Kreis", "de", "a red circle", "en")
    assert EmbeddingScorer(enc).score([pair]) == [None]
    back = EmbeddingScorer(enc, translator=StubDictionaryTranslator([("de", "en")]))
    assert back.score([pair])[0] == pytest.approx(1.0, abs=1e-3)  # the stub translates it exactly
    meta = json.loads((encoder_dir / "m3curate-encoder.json").read_text())
    multi = tmp_path / "multi"
    multi.mkdir()
    (multi / "model.bin").symlink_to(encoder_dir / "model.bin")
    (multi / "m3curate-encoder.json").write_text(json.dumps({**meta, "multilingual": True, "name": "m"}))
    scored = EmbeddingScorer(load_encoder(str(multi))).score([pair])[0]
    assert scored is not None and 0.0 <= scored <= 1.0


def test_encoder_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="not an encoder directory"):
        encoder_kind(str(tmp_path))
    (tmp_path / "modules.json").write_text("[]")
    assert encoder_kind(str(tmp_path)) == "sentence-transformers"
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(EncoderError, match="pip install sentence-transformers"):
            load_encoder(str(tmp_path))


def test_eval_metrics_known_cases() -> None:
    assert ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert roc_auc([0.9, 0.8], [0.1, 0.85]) == 0.75
    assert roc_auc([0.5], [0.5]) == 0.5
    assert roc_auc([1, 2], [0, 0]) == 1.0
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    a, b = [0.1, 0.4, 0.4, 0.9, 0.3, 0.7], [0, 0.3, 0.6, 1, 0, 0.6]
    scipy_stats = pytest.importorskip("scipy.stats")
    assert spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic)
    pairs = [Pair(f"t{i}", "en", f"a{i}", "en") for i in range(7)]
    mixed = shuffled(pairs, 0)
    assert all(m.anchor != p.anchor for m, p in zip(mixed, pairs, strict=True))
    assert sorted(m.anchor for m in mixed) == sorted(p.anchor for p in pairs)
    assert shuffled(pairs, 0) == mixed
