"""Relevance calibration (curation/relevance/calibrate.py): raw scores mapped to the
probability that a pair is aligned, fitted on aligned vs shuffled pairs (issue 14, point 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codeswitch.dictionary import write_muse_dictionaries
from curation.cli import main as cli
from curation.demo.synth import generate, lexicon_pairs
from curation.relevance.build import build_scorer, check_relevance
from curation.relevance.calibrate import (
    CalibratedScorer,
    Calibration,
    CalibrationError,
    fit,
    isotonic,
    logistic,
)
from curation.relevance.config import RelevanceConfig, RelevanceConfigError
from curation.relevance.scorers import Pair


def test_isotonic_pools_adjacent_violators_by_hand():
    assert isotonic([0.4, 0.1, 0.3, 0.2], [1, 0, 0, 1]) == ([0.1, 0.25, 0.4], [0.0, 0.5, 1.0])
    x, y = isotonic(np.random.default_rng(0).random(200).tolist(), np.random.default_rng(1).integers(0, 2, 200).tolist())
    assert all(a <= b for a, b in zip(y, y[1:], strict=False)) and all(a < b for a, b in zip(x, x[1:], strict=False))


def test_logistic_is_increasing_and_fits_the_boundary():
    s = np.linspace(0, 1, 101)
    a, b = logistic(s.tolist(), (s > 0.3).astype(int).tolist())
    assert a > 5 and abs(-b / a - 0.3) < 0.05  # p = 0.5 where the labels switch


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[RelevanceConfig, list[Pair]]:
    root = tmp_path_factory.mktemp("cal")
    # a partial dictionary: most German words are missing, so raw scores of true pairs are low
    entries = lexicon_pairs("en", "de")
    write_muse_dictionaries(root / "dicts", {("en", "de"): entries[: len(entries) // 4]})
    pairs = [Pair(s.captions["de"], "de", s.captions["en"], "en") for s in generate(300, 3, ("en", "de"), 32)]
    return RelevanceConfig(enabled=True, scorer="lexical", dictionaries=str(root / "dicts")), pairs


def test_calibration_lifts_true_pairs_and_keeps_the_order(setup, tmp_path: Path):
    cfg, pairs = setup
    scorer = build_scorer(cfg)
    calibration = fit(scorer, pairs[:200], "isotonic")
    assert calibration["aligned_mean"]["raw"] < 0.5  # the raw scores hold true pairs far from their images
    assert calibration["aligned_mean"]["calibrated"] > calibration["aligned_mean"]["raw"]
    assert calibration["shuffled_mean"]["calibrated"] < calibration["aligned_mean"]["calibrated"]
    cal = Calibration(calibration)
    calibrated = CalibratedScorer(scorer, cal)
    raw, mapped = scorer.score(pairs[200:]), calibrated.score(pairs[200:])
    both = [(r, m) for r, m in zip(raw, mapped, strict=True) if r is not None]
    assert all((r1 <= r2) <= (m1 <= m2) for r1, m1 in both for r2, m2 in both)  # monotone
    assert calibrated.id == f"lexical|{cal.id}" and cal.id.startswith("isotonic:")
    assert Calibration(fit(scorer, pairs[:200], "logistic")).id.startswith("logistic:")


def test_the_stage_records_and_checks_the_calibration(setup, tmp_path: Path):
    cfg, pairs = setup
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(fit(build_scorer(cfg), pairs[:200])))
    calibrated = RelevanceConfig(**{**cfg.__dict__, "calibration_map": str(path)})
    sid = check_relevance(calibrated)
    assert sid.startswith("lexical|isotonic:") and build_scorer(calibrated).id == sid
    path.write_text(json.dumps({**json.loads(path.read_text()), "scorer": "embedding:x"}))
    with pytest.raises(RelevanceConfigError, match="fitted for 'embedding:x'"):
        check_relevance(calibrated)
    with pytest.raises(CalibrationError, match="not for 'lexical'"):
        build_scorer(calibrated)


def test_cli_calibrate_then_eval_with_it(setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cfg, pairs = setup
    tsv = tmp_path / "aligned.tsv"
    tsv.write_text("".join(f"{p.text}\t{p.lang}\t{p.anchor}\t{p.anchor_lang}\n" for p in pairs[:200]))
    out = tmp_path / "new" / "cal.json"
    assert cli(["relevance", "calibrate", "--pairs", str(tsv), "--dictionaries", cfg.dictionaries,
                "--out", str(out)]) == 0
    assert "aligned mean" in capsys.readouterr().out and json.loads(out.read_text())["method"] == "isotonic"
    assert cli(["relevance", "eval", "--pairs", str(tsv), "--dictionaries", cfg.dictionaries, "--calibration-map",
                str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[0]["aligned_vs_shuffled"]
    assert report["scorer"].startswith("lexical|isotonic:") and report["aligned"]["mean"] > 0.5
