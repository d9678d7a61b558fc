"""Texts a scorer cannot score: counted and warned per language with the reason (issue 19
points 5 and 6), valid JSON from ``relevance eval``, and errors in the CLI's own words."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from codeswitch.dictionary import write_muse_dictionaries
from curation.cli import main as cli
from curation.demo.synth import lexicon_pairs
from curation.relevance.config import RelevanceConfig
from curation.relevance.eval import evaluate_aligned, evaluate_graded, unscored_counts
from curation.relevance.scorers import EmbeddingScorer, Pair, why_unscored
from curation.relevance.stage import score_rows
from schemas.rows import text_entry

CAPTION = "a small red circle on the left"


def row(rid: str, weak: str, lang: str, anchor_lang: str = "en") -> dict:
    texts = [text_entry(CAPTION, "caption", "src", anchor_lang), text_entry(weak, "weak", "src", lang, anchor=0)]
    return {"id": rid, "source": "src", "source_id": rid, "split": "train",
            "provenance": {"file": "f", "row": 0, "url": None, "member": None},
            "image": {"bytes": b"x", "width": 1, "height": 1, "format": "JPEG", "sha256": "0"}, "regions": None,
            "texts": texts}


class OneWay:
    """A translator that knows only en -> de (the demo's MT model, in miniature)."""

    model_id = "oneway"

    def supports(self, src: str, tgt: str) -> bool:
        return (src, tgt) == ("en", "de")

    def translate(self, sentences, src, tgt):
        raise AssertionError("not reached in these tests")


class EnglishOnly:
    name, multilingual, languages = "en-encoder", False, frozenset({"en"})

    def encode(self, texts):
        raise AssertionError("not reached in these tests")


@pytest.fixture(scope="module")
def dicts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dicts")
    write_muse_dictionaries(out, {("en", "de"): lexicon_pairs("en", "de")})
    return out


def test_reasons_name_what_is_missing():
    scorer = EmbeddingScorer(EnglishOnly(), translator=OneWay())
    # de weak text, en anchor, English-only encoder: only de -> en would help, the model has en -> de
    assert why_unscored(scorer, Pair("ein Kreis", "de", CAPTION, "en")) == "no_direction"
    assert why_unscored(scorer, Pair("ein Kreis", "und", CAPTION, "en")) == "unknown_language"
    assert why_unscored(EmbeddingScorer(EnglishOnly()), Pair("un cercle", "fr", CAPTION, "en")) == "encoder_language"


def test_unscored_weak_texts_are_counted_per_language_and_warned(dicts: Path, caplog: pytest.LogCaptureFixture):
    from curation.relevance.build import build_scorer

    cfg = RelevanceConfig(enabled=True, scorer="lexical", dictionaries=str(dicts))
    scorer = build_scorer(cfg)
    rows = [row("a", "ein kleiner roter Kreis", "de"), row("b", "un petit cercle", "fr"),
            row("c", "un cercle", "fr"), row("d", "ein Kreis", "de", anchor_lang="und")]
    stats: Counter[str] = Counter()
    with caplog.at_level(logging.WARNING):
        kept, _ = score_rows(rows, scorer, cfg, stats)
    assert stats["unscored_why_no_dictionary_fr"] == 2 and stats["unscored_why_unknown_language_de"] == 1
    assert stats["scored_lexical_de"] == 1 and stats["unscored_lexical_fr"] == 2
    warned = [r.getMessage() for r in caplog.records if "stay unscored" in r.getMessage()]
    assert any("in fr" in m and "no MUSE dictionary" in m for m in warned)
    assert any("in de" in m and "'und'" in m for m in warned)
    assert len(kept) == 4  # unscored is not irrelevant: the texts stay, relevance null


def test_eval_json_is_valid_and_counts_each_side(dicts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{t}\t{lang}\t{CAPTION}\ten\n" for t, lang in
                             [("ein Kreis", "de"), ("un cercle", "fr"), ("un carré", "fr")]), encoding="utf-8")
    graded = tmp_path / "graded.tsv"
    graded.write_text(f"un cercle\tfr\t{CAPTION}\ten\t1\nun carré\tfr\t{CAPTION}\ten\t0\n", encoding="utf-8")
    assert cli(["relevance", "eval", "--pairs", str(pairs), "--graded", str(graded), "--dictionaries", str(dicts),
                "--scorer", "lexical", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)[0]  # strict JSON: no NaN
    assert report["graded"]["spearman"] is None  # nothing scored: no correlation, not NaN
    aligned = report["aligned_vs_shuffled"]
    assert (aligned["pairs"], aligned["unscored"]) == (3, 2)  # of the 3 aligned pairs, not of 6 scorings
    assert aligned["unscored_by"] == {"fr -> en: no_dictionary": 2}
    assert "2 of 3 pairs unscored (fr -> en)" in captured.err


def test_unscored_counts_match_evaluate(dicts: Path):
    from curation.relevance.build import build_scorer

    scorer = build_scorer(RelevanceConfig(enabled=True, scorer="lexical", dictionaries=str(dicts)))
    pairs = [Pair("ein Kreis", "de", CAPTION, "en"), Pair("x", "fr", CAPTION, "en")]
    assert unscored_counts(scorer, pairs, scorer.score(pairs)) == {"fr -> en: no_dictionary": 1}
    assert evaluate_graded(scorer, pairs, [1.0, 0.0])["spearman"] is None  # one scored pair
    assert evaluate_aligned(scorer, pairs)["unscored"] == 1


def test_cli_errors_name_the_flags_and_out_folders_are_made(tmp_path: Path, dicts: Path,
                                                           capsys: pytest.CaptureFixture[str]):
    pairs = tmp_path / "p.tsv"
    pairs.write_text(f"ein Kreis\tde\t{CAPTION}\ten\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    assert cli(["relevance", "score", "--in", str(pairs), "--dictionaries", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "--dictionaries" in err and "relevance.dictionaries" not in err
    out = tmp_path / "new" / "dir" / "scored.tsv"
    assert cli(["relevance", "score", "--in", str(pairs), "--out", str(out), "--dictionaries", str(dicts)]) == 0
    assert out.exists()


def test_long_scoring_logs_progress(monkeypatch: pytest.MonkeyPatch):
    """relevance eval/score print pairs done, rate and ETA on long files (issue 17, point 4)."""
    import time

    import curation.relevance.eval as ev

    class Slow:
        id = "slow"

        def score(self, pairs):
            time.sleep(0.05)
            return [0.5] * len(pairs)

    monkeypatch.setattr(ev, "PROGRESS_EVERY", 0.08)
    said: list[str] = []
    assert ev.score_all(Slow(), [Pair("a", "de", CAPTION, "en")] * 10, batch_size=2, log=said.append) == [0.5] * 10
    assert said and all(m.startswith("slow: ") and "pairs/s" in m and "left" in m for m in said)
    assert ev.score_all(Slow(), [Pair("a", "de", CAPTION, "en")] * 4, batch_size=2) == [0.5] * 4  # no log: silent
