"""benchmarks/ablation_rc3.py: the run plan, what each run changes, the form chosen on
validation only, and the paired statistics (no training here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


sys.path.insert(0, str(ROOT / "benchmarks"))
import ablation_rc3  # noqa: E402


@pytest.fixture(scope="module")
def abl():
    return ablation_rc3


def test_plan_runs_both_forms_before_the_default_ones(abl):
    jobs = abl.plan("cdabeg", [0, 1, 2])
    assert jobs[:6] == [("c", f, s) for s in (0, 1, 2) for f in abl.FORMS]  # c and d: one job per form and seed
    assert [j for j in jobs if j[0] == "d"] == []
    assert {j[1] for j in jobs if j[0] in "eg"} == {"default"}
    assert {j[1] for j in jobs if j[0] in "ab"} == {None}
    assert len(jobs) == 6 + 4 * 3


@pytest.mark.parametrize(("form", "other"), [("soft_target", "regularizer"), ("regularizer", "soft_target")])
def test_run_ids_follow_the_chosen_form(abl, form, other):
    assert abl.run_id("c", form) == f"built-{form}"
    assert abl.run_id("d", form) == f"built-{other}"
    assert abl.run_id("e", form) == f"half-{form}"
    assert abl.run_id("g", form) == f"grades-{form}"
    assert abl.run_id("h", form) == f"calibrated-{form}"
    assert abl.run_id("p", form) == "ones-soft_target"  # b' is CLIP's loss on weak pairs, whatever the default
    assert abl.run_id("b", form) == "built-strict"
    assert abl.run_id("a", form) == "strict_only"


def test_b_prime_differs_from_c_only_in_relevance(abl):
    """(b') and (c) under soft_target train with the same config; only the dataset's r differs
    (every weak r = 1), so weak texts stay out of MLM and ITM positives in both."""
    c = abl.overrides("c", "soft_target", 120, 1, False)
    p = abl.overrides("p", "soft_target", 120, 1, False)
    assert c == p and abl.ROLES["p"][1] == "ones" and abl.ROLES["c"][1] == "built"
    b = abl.overrides("b", "soft_target", 120, 1, False)
    assert b["loss"]["weak_form"] == "strict"
    a = abl.overrides("a", "soft_target", 120, 1, True)
    assert a["data"]["kind_weights"] == {"weak": 0.0, "codeswitch": 0.0} and a["loss"]["ttc"] == 0.0
    assert c["train"] == {**c["train"], "steps": 120, "seed": 1, "warmup_steps": 12}


def _res(val: float, test: float) -> dict:
    return {"validation": {"mean_r_mean": val}, "test": {"mean_r_mean": test}}


def test_form_is_chosen_on_validation_never_on_test(abl):
    results = {("built-soft_target", s): _res(10.0, 90.0) for s in (0, 1, 2)}
    results |= {("built-regularizer", s): _res(11.0, 5.0) for s in (0, 1, 2)}
    form, means = abl.choose_form(results, [0, 1, 2])
    assert form == "regularizer" and means == {"soft_target": 10.0, "regularizer": 11.0}
    del results[("built-regularizer", 2)]
    assert abl.choose_form(results, [0, 1, 2])[0] is None  # not before every seed of both forms


def test_paired_statistics(abl):
    st = abl.paired([1.0, 2.0, 3.0])
    assert st["mean"] == 2.0 and st["sd"] == 1.0
    assert st["sign_flip_p"] == 0.25  # 3 seeds: the smallest two-sided p a sign flip can give
    assert st["t_p"] == pytest.approx(0.0742, abs=1e-3)  # t = 2 / (1 / sqrt 3), 2 df
    assert abl.paired([1.0, -1.0, 0.5])["sign_flip_p"] == 1.0


def test_report_pairs_by_seed_and_marks_missing_runs(abl):
    results = {("built-soft_target", s): {**_res(1, 50.0 + s), "seed": s, "weak_cos": {}} for s in (0, 1, 2)}
    results |= {("strict_only", s): {**_res(1, 52.0 + 2 * s), "seed": s, "weak_cos": {}} for s in (0, 1, 2)}
    for r in results.values():
        r["test"]["languages"] = {"en": {"r_mean": r["test"]["mean_r_mean"]}}
        r["validation"]["mean_r_mean"] = 1.0
    text = abl.report(results, [0, 1, 2], "soft_target", "cag")
    row_a = next(line for line in text.splitlines() if line.startswith("| (a)"))
    assert "+2.00, +3.00, +4.00" in row_a and "+3.00 ± 1.00" in row_a and "0.250" in row_a
    assert "| (g)" in text and "missing" in text.splitlines()[-1]


def test_warmup_run_is_the_regularizer_after_a_soft_target_warmup_as_long_as_the_lr_warmup(abl):
    assert abl.run_id("w", "soft_target") == abl.run_id("w", "regularizer") == "built-warmup_regularizer"
    w = abl.overrides("w", "soft_target", 400, 2, False)
    assert w["loss"] == {"weak_form": "regularizer", "weak_warmup": 40} and w["train"]["warmup_steps"] == 40
    from pretrain.config import load_config

    cfg = load_config(None, w)  # a valid trainer config, in two stages
    assert [(s.name, s.steps) for s in cfg.schedule] == [("weak_warmup", 40), ("rc3", 1)]
    assert [j for j in abl.plan("w", [0, 1]) if j[0] == "w"] == [("w", None, 0), ("w", None, 1)]


def test_candidates_table_picks_on_validation_among_complete_forms(abl):
    results = {(f"built-{f}", s): _res(v, 100.0 - v) for f, v in (("soft_target", 10.0), ("regularizer", 11.0)) for s in (0, 1, 2)}
    results |= {("built-warmup_regularizer", s): _res(12.0, 0.0) for s in (0, 1)}
    text = abl.candidates_table(results, [0, 1, 2])
    assert text.endswith("validation picks regularizer among the forms with every seed (soft_target, regularizer)")
    results[("built-warmup_regularizer", 2)] = _res(12.0, 0.0)
    assert "validation picks warmup_regularizer" in abl.candidates_table(results, [0, 1, 2])
    assert "| warmup_regularizer | 0: 12.00 / 1: 12.00 / 2: 12.00 | 12.00 |" in abl.candidates_table(results, [0, 1, 2])


def test_plan_with_a_given_form_runs_c_and_d_in_their_letters_place(abl):
    jobs = abl.plan("cabd", [0, 1], "regularizer")
    assert jobs == [("c", "regularizer", 0), ("c", "regularizer", 1), ("a", None, 0), ("a", None, 1),
                    ("b", None, 0), ("b", None, 1), ("d", "regularizer", 0), ("d", "regularizer", 1)]
    assert [abl.run_id(letter, f) for letter, f, _ in jobs[::2]] == ["built-regularizer", "strict_only", "built-strict",
                                                                     "built-soft_target"]


def test_report_on_a_subset_of_languages_pairs_their_mean(abl):
    def res(seed: float, de: float, en: float) -> dict:
        langs = {"de": {"r_mean": de}, "en": {"r_mean": en}}
        return {"seed": seed, "weak_cos": {}, "test": {"mean_r_mean": (de + en) / 2, "languages": langs},
                "validation": {"mean_r_mean": 1.0, "languages": langs}}

    results = {("built-regularizer", s): res(s, 1.0 + s, 40.0) for s in (0, 1)}
    results |= {("strict_only", s): res(s, 0.5, 50.0) for s in (0, 1)}
    row_a = next(x for x in abl.report(results, [0, 1], "regularizer", "ca", ["de"]).splitlines() if x.startswith("| (a)"))
    assert "0: 0.50, 1: 0.50" in row_a and "-0.50, -1.50" in row_a  # de only: a below c
    row_a = next(x for x in abl.report(results, [0, 1], "regularizer", "ca").splitlines() if x.startswith("| (a)"))
    assert "+4.75, +4.25" in row_a  # all languages: a above c
