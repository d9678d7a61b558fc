"""The relevance stage: anchor resolution, scores written into weak texts, threshold and
no-anchor rejects with index remapping, determinism, ScoreRelevance in Beam with its
counters, the manifest histogram, the [relevance] config, and the CLI on files."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import FixedWindows, TimestampedValue

from codeswitch.dictionary import write_muse_dictionaries
from curation.demo.synth import LANGUAGES, lexicon_pairs
from curation.output.manifest import relevance_histogram
from curation.relevance.build import check_relevance
from curation.relevance.cli import register
from curation.relevance.config import (
    RelevanceConfig,
    RelevanceConfigError,
    relevance_config_from_dict,
    resolve_relevance,
)
from curation.relevance.scorers import Pair
from curation.relevance.stage import (
    ScoreRelevance,
    resolve_anchor,
    score_rows,
)
from schemas import validate_rows
from schemas.rows import text_entry
from schemas.stage import account

CAPTION = "a small red circle on the left"


class LengthScorer:
    """A fake scorer: the weak text's length / 40, capped at 1; None for language "xx"."""

    id = "fake"

    def score(self, pairs: list[Pair]) -> list[float | None]:
        return [None if p.lang == "xx" else min(1.0, len(p.text) / 40) for p in pairs]


def fake_loader(cfg: RelevanceConfig) -> LengthScorer:
    return LengthScorer()


def row(rid: str, *weak: tuple[str, str, int | None], caption: bool = True, extra: bool = False) -> dict:
    texts = [text_entry(CAPTION, "caption", "src", "en")] if caption else []
    if extra:
        texts.append(text_entry("ein kleiner roter Kreis links", "translation", "mt", "de", derived_from=0))
    texts += [text_entry(t, "weak", "src", lang, anchor=a) for t, lang, a in weak]
    return {"id": rid, "source": "src", "source_id": rid, "split": "train",
            "provenance": {"file": "f", "row": 0, "url": None, "member": None},
            "image": {"bytes": b"\xff\xd8", "width": 1, "height": 1, "format": "JPEG", "sha256": "0" * 64},
            "regions": None, "texts": texts}


@pytest.fixture(scope="module")
def dicts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dicts")
    write_muse_dictionaries(out, {("en", t): lexicon_pairs("en", t) for t in LANGUAGES if t != "en"})
    return out


def test_resolve_anchor() -> None:
    texts = row("r", ("x", "de", 0), ("y", "de", None), ("z", "de", 1))["texts"]
    assert resolve_anchor(texts, 1, RelevanceConfig()) == (CAPTION, "en", False)
    assert resolve_anchor(texts, 2, RelevanceConfig()) is None
    assert resolve_anchor(texts, 3, RelevanceConfig()) is None  # a weak text is no anchor
    fallback = RelevanceConfig(no_anchor="fallback", fallback_anchor="an image", fallback_anchor_lang="en")
    assert resolve_anchor(texts, 2, fallback) == ("an image", "en", True)


def test_scores_threshold_and_no_anchor_rejects() -> None:
    cfg = RelevanceConfig(enabled=True, threshold=0.5)
    rows = [row("a", ("short", "de", 0), ("a long enough weak text here", "de", 0), ("z" * 30, "xx", 0),
                ("no anchor text", "de", None), extra=True),
            row("b", ("orphan weak text", "de", None), caption=False),
            row("c")]
    stats: Counter[str] = Counter()
    kept, rejects = score_rows(rows, LengthScorer(), cfg, stats)
    account("relevance", len(rows), kept, rejects, stats)  # what the stage framework adds
    assert [r["id"] for r in kept] == ["a", "c"]
    texts = kept[0]["texts"]
    assert [t["kind"] for t in texts] == ["caption", "translation", "weak", "weak"]
    assert texts[2]["relevance"] == pytest.approx(28 / 40) and texts[2]["relevance_scorer"] == "fake"
    assert texts[3]["relevance"] is None and texts[3]["relevance_scorer"] is None  # unscored, kept
    assert texts[2]["anchor"] == 0 and texts[1]["derived_from"] == 0
    by = {(r.reason, r.level) for r in rejects}
    assert by == {("below_threshold", "text"), ("no_anchor", "text"), ("no_anchor", "record")}
    low = next(r for r in rejects if r.reason == "below_threshold")
    assert low.stage == "relevance" and "0.1250 < threshold 0.5" in low.detail
    assert low.raw["text"]["relevance"] == pytest.approx(5 / 40)
    record = next(r for r in rejects if r.level == "record")
    assert record.record_id == "b" and "bytes" not in record.raw["image"]
    assert stats == Counter({"in": 3, "kept": 2, "rejected_below_threshold": 1, "rejected_no_anchor": 2,
                             "scored_lexical_de": 1, "unscored_lexical_xx": 1, "unscored_why_declined_xx": 1})
    validate_rows(kept, "pairs")


class RecordingScorer(LengthScorer):
    def __init__(self) -> None:
        self.seen: list[Pair] = []

    def score(self, pairs: list[Pair]) -> list[float | None]:
        self.seen += pairs
        return super().score(pairs)


@pytest.mark.parametrize(("cfg", "scorer_id", "reuse"), [
    ({"scorer": "translate"}, "translate:mt", True),          # the mt stage used the scorer's model
    ({"scorer": "translate"}, "translate:other", False),      # another model: translate again
    ({"scorer": "embedding", "back_translate": True}, "embedding:e", True),
    ({"scorer": "embedding"}, "embedding:e", False),          # a multilingual encoder does not translate
    ({"scorer": "lexical"}, "lexical", False),
])
def test_back_translation_of_the_mt_stage_is_reused(cfg: dict, scorer_id: str, reuse: bool) -> None:
    r = row("a", ("ein roter Kreis", "de", 0), ("un cercle", "fr", 0))
    r["texts"].append(text_entry("a red circle", "translation", "mt", "en", derived_from=1))
    stats: Counter[str] = Counter()
    fake = RecordingScorer()
    kept, _ = score_rows([r], fake, RelevanceConfig(enabled=True, **cfg), stats, scorer_id)
    first = Pair("a red circle", "en", CAPTION, "en") if reuse else Pair("ein roter Kreis", "de", CAPTION, "en")
    assert fake.seen == [first, Pair("un cercle", "fr", CAPTION, "en")]  # fr has no back-translation
    assert stats["reused_back_translation"] == (1 if reuse else 0)
    assert kept[0]["texts"][1]["relevance"] == pytest.approx(len(first.text) / 40)


def test_dropped_weak_text_takes_its_back_translation_along() -> None:
    r = row("a", ("kurz", "de", 0))
    r["texts"].append(text_entry("short", "translation", "mt", "en", derived_from=1))
    stats: Counter[str] = Counter()
    kept, rejects = score_rows([r], LengthScorer(), RelevanceConfig(enabled=True, threshold=0.5), stats)
    account("relevance", 1, kept, rejects, stats)
    assert [t["kind"] for t in kept[0]["texts"]] == ["caption"]
    assert sorted((x.reason, x.raw["index"]) for x in rejects) == [("below_threshold", 1), ("below_threshold", 2)]
    assert "back-translation of text 1" in next(x.detail for x in rejects if x.raw["index"] == 2)
    assert stats["rejected_below_threshold"] == 2
    validate_rows(kept, "pairs")

def test_fallback_anchor_and_determinism() -> None:
    cfg = RelevanceConfig(no_anchor="fallback", fallback_anchor="an image", fallback_anchor_lang="en")
    rows = [row("b", ("orphan weak text", "de", None), caption=False)]
    first = score_rows(rows, LengthScorer(), cfg, Counter())
    assert first[0][0]["texts"][0]["relevance_scorer"] == "fake@fallback" and not first[1]
    assert score_rows(rows, LengthScorer(), cfg, Counter()) == first
    assert rows[0]["texts"][0]["relevance"] is None  # input rows are not modified


def _summary(r: dict) -> tuple:
    return r["id"], tuple((t["kind"], None if t["relevance"] is None else round(t["relevance"], 6)) for t in r["texts"])


def test_score_relevance_in_beam_with_real_lexical(dicts: Path) -> None:
    cfg = RelevanceConfig(enabled=True, dictionaries=str(dicts), threshold=0.3, batch_size=2)
    rows = [row("a", ("ein kleiner roter Kreis links", "de", 0)), row("b", ("Jetzt kaufen", "fr", 0)),
            row("c"), row("d", ("un cercle", "fr", None), caption=False)]
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    tables = {"pairs": p | "P" >> beam.Create(rows), "parallel": p | "Q" >> beam.Create([])}
    out, rejects = tables | "Relevance" >> ScoreRelevance(cfg, "relevance")
    f1 = round(2 * (5 / 7) / (1 + 5 / 7), 6)
    expected = [("a", (("caption", None), ("weak", f1))), ("b", (("caption", None),)), ("c", (("caption", None),))]
    assert_that(out["pairs"] | beam.Map(_summary), equal_to(expected), label="Rows")
    assert_that(rejects | beam.Map(lambda r: (r.reason, r.level)),
                equal_to([("below_threshold", "text"), ("no_anchor", "record")]), label="Rejects")
    result = p.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_namespace("relevance"))["counters"]
    counters = {c.key.metric.name: c.committed for c in found}
    # rows c (no weak text) and a pass, b loses its weak text, d is rejected whole
    assert counters == {"in": 4, "kept": 3, "scored_lexical_de": 1, "rejected_below_threshold": 1,
                        "rejected_no_anchor": 1}


def test_score_relevance_with_fake_loader_is_deterministic() -> None:
    rows = [row(f"r{i}", ("w" * (i % 40 + 1), "de", 0)) for i in range(50)]
    cfg = RelevanceConfig(enabled=True, batch_size=7)
    expected = [_summary(r) for r in score_rows(rows, LengthScorer(), cfg, Counter())[0]]
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    tables = {"pairs": p | "P" >> beam.Create(rows), "parallel": p | "Q" >> beam.Create([])}
    out, _ = tables | "Relevance" >> ScoreRelevance(cfg, "relevance", loader=fake_loader)
    assert_that(out["pairs"] | beam.Map(_summary), equal_to(expected))
    p.run().wait_until_finish()


def test_score_relevance_windowed_input_uses_run_inference() -> None:
    """Windowed input (streaming) goes through RunInference; the results are the same."""
    rows = [row(f"r{i}", ("w" * (i % 40 + 1), "de", 0 if i % 5 else None)) for i in range(30)]
    cfg = RelevanceConfig(enabled=True, batch_size=4)
    kept, rejects = score_rows(rows, LengthScorer(), cfg, Counter())
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    stamped = p | beam.Create(rows) | beam.Map(lambda r: TimestampedValue(r, 0)) | beam.WindowInto(FixedWindows(60))
    out, rej = {"pairs": stamped, "parallel": p | "Q" >> beam.Create([])} | "Relevance" >> ScoreRelevance(
        cfg, "relevance", loader=fake_loader)
    assert_that(out["pairs"] | beam.Map(_summary), equal_to([_summary(r) for r in kept]), label="Rows")
    assert_that(rej | beam.Map(lambda r: (r.record_id, r.reason)),
                equal_to([(r.record_id, r.reason) for r in rejects]), label="Rejects")
    p.run().wait_until_finish()


def test_score_relevance_shared_model_copies(dicts: Path) -> None:
    """With model_copies (one encoder per GPU machine), RunInference shares the scorer
    across processes through a proxy: the recorded scorer id comes from the config."""
    cfg = RelevanceConfig(enabled=True, dictionaries=str(dicts), model_copies=1)
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    tables = {"pairs": p | "P" >> beam.Create([row("a", ("ein kleiner roter Kreis links", "de", 0))]),
              "parallel": p | "Q" >> beam.Create([])}
    out, _ = tables | "Relevance" >> ScoreRelevance(cfg, "relevance")
    scorers = out["pairs"] | beam.FlatMap(lambda r: [t["relevance_scorer"] for t in r["texts"] if t["kind"] == "weak"])
    assert_that(scorers, equal_to(["lexical"]))
    p.run().wait_until_finish()


def test_check_relevance_fails_early(tmp_path: Path, dicts: Path) -> None:
    assert check_relevance(RelevanceConfig(dictionaries=str(dicts))) == "lexical"
    with pytest.raises(RelevanceConfigError, match="no \\{src\\}-\\{tgt\\}.txt dictionary"):
        check_relevance(RelevanceConfig(dictionaries=str(tmp_path)))
    with pytest.raises(ValueError, match="not a directory"):
        check_relevance(RelevanceConfig(dictionaries=str(tmp_path / "missing")))
    assert resolve_relevance(RelevanceConfig(enabled=True), str(dicts)).dictionaries == str(dicts)
    assert resolve_relevance(RelevanceConfig(dictionaries="x"), str(dicts)).dictionaries == "x"
    with pytest.raises(RelevanceConfigError, match="needs MUSE dictionaries"):
        resolve_relevance(RelevanceConfig(enabled=True), "")


def test_config_validation(tmp_path: Path) -> None:
    assert not relevance_config_from_dict(None).enabled
    cfg = relevance_config_from_dict({"dictionaries": "d", "threshold": 0.2}, str(tmp_path))
    assert cfg.enabled and cfg.dictionaries == str(tmp_path / "d")
    for bad, match in (({"scorer": "bleu"}, "relevance.scorer"), ({"threshold": 2}, "relevance.threshold"),
                       ({"no_anchor": "fallback"}, "relevance.fallback_anchor"),
                       ({"scorer": "embedding"}, "relevance.encoder"), ({"cos_low": 0.9, "cos_high": 0.1}, "cos_low"),
                       ({"batch_size": 0}, "relevance.batch_size"), ({"colour": 1}, "unknown setting")):
        with pytest.raises(RelevanceConfigError, match=match):
            relevance_config_from_dict(bad, str(tmp_path))


def test_histogram() -> None:
    rows = [{"texts": [text_entry("c", "caption", "s", "en"),
                       text_entry("w", "weak", "s", "de", relevance=0.05, relevance_scorer="lexical"),
                       text_entry("w", "weak", "s", "de", relevance=1.0, relevance_scorer="lexical"),
                       text_entry("w", "weak", "s", "fr")]}]
    hist = relevance_histogram(rows)
    assert hist["bins"][0] == 0.0 and hist["bins"][-1] == 1.0
    de = hist["by_lang"]["de"]["lexical"]
    assert de["counts"][0] == 1 and de["counts"][-1] == 1 and de["mean"] == pytest.approx(0.525)
    assert hist["by_lang"]["fr"]["none"] == {"n": 1, "null": 1, "counts": [0] * 10, "mean": None}
    json.dumps(hist)


def cli(argv: list[str]) -> int:
    """``m3curate relevance ...`` through its own parser (curation/cli.py wires the same register)."""
    parser = argparse.ArgumentParser(prog="m3curate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, [])


def test_cli_score_and_eval(tmp_path: Path, dicts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.tsv"
    en = ["a small red circle", "a large blue square on the left", "a green star at the top"]
    de = ["ein kleiner roter Kreis", "ein großes blaues Quadrat links", "ein grüner Stern oben"]
    pairs.write_text("".join(f"{d}\tde\t{e}\ten\n" for d, e in zip(de, en, strict=True)), encoding="utf-8")
    graded = tmp_path / "graded.tsv"
    graded.write_text("".join(f"{d}\tde\t{en[0]}\ten\t{g}\n" for d, g in zip(de, (1.0, 0.0, 0.0), strict=True)))
    out = tmp_path / "scored.tsv"
    assert cli(["relevance", "score", "--in", str(pairs), "--out", str(out), "--dictionaries", str(dicts)]) == 0
    capsys.readouterr()
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith("relevance\tscorer") and len(lines) == 4 and lines[1].endswith("\tlexical")
    assert cli(["relevance", "eval", "--pairs", str(pairs), "--graded", str(graded), "--dictionaries",
                     str(dicts), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[0]
    assert report["aligned_vs_shuffled"]["auc"] == 1.0 and report["graded"]["spearman"] > 0.5
