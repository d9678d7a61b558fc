"""benchmarks/ablation_trainer.py: what each variant changes, the run plan, the weight chosen
on validation only, the paired statistics (by hand), the report and resuming (no training)."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FACTS = {"region_dim": 24, "labels": True, "concepts": True, "text_concepts": True}


sys.path.insert(0, str(ROOT / "benchmarks"))
import ablation_trainer  # noqa: E402


@pytest.fixture(scope="module")
def abl():
    return ablation_trainer


def test_each_variant_adds_only_its_own_inputs_and_objectives(abl):
    assert abl.variant_config("base", 0.0, FACTS, 400, 0.3) == {}
    assert abl.variant_config("cclm", 0.5, FACTS, 400, 0.3) == {"loss": {"ttm": 0.5, "cmlm": 0.5}}
    regions = {"region_dim": 24, "max_regions": 36}
    assert abl.variant_config("roi", 0.0, FACTS, 400, 0.3) == {"model": regions, "loss": {}}
    assert abl.variant_config("mrm", 2.0, FACTS, 400, 0.3) == {"model": regions, "loss": {"mrfr": 2.0, "mrc": 2.0}}
    assert abl.variant_config("mrm", 2.0, {**FACTS, "labels": False}, 400, 0.3)["loss"] == {"mrfr": 2.0}
    mvp = abl.variant_config("mvp", 1.0, FACTS, 400, 0.3)
    assert mvp == {"model": {"concepts": -1, **regions}, "loss": {"tcp": 1.0, "rca": 1.0, "icp": 1.0, "wca": 1.0}}
    no_regions = abl.variant_config("mvp", 1.0, {**FACTS, "region_dim": 0}, 400, 0.3)
    assert no_regions == {"model": {"concepts": -1}, "loss": {"tcp": 1.0, "rca": 1.0}}


def test_two_stage_variant_splits_the_same_steps_and_its_first_stage_is_a_valid_unimodal_one(abl):
    from pretrain.stages import CROSS_MODAL, parse_schedule

    over = abl.variant_config("mvp2", 0.5, FACTS, 400, 0.3)
    uni, cross = parse_schedule(over["schedule"])  # the trainer's own checks accept it
    assert (uni.steps, cross.steps, uni.unimodal, cross.unimodal) == (120, 280, True, False)
    assert not set(uni.loss) & set(CROSS_MODAL)
    assert uni.loss == {"mlm": 1.0, "tcp": 0.5, "mrfr": 0.5, "icp": 0.5}
    # the cross-modal stage keeps every objective of the base and the joint variant's grounding
    assert cross.loss == {"itc": 1.0, "weak": 1.0, "ttc": 1.0, "rca": 0.5, "wca": 0.5, "itm": 1.0, "mlm": 1.0}
    assert abl.variant_config("mvp2", 1.0, FACTS, 2, 0.3)["schedule"][0]["steps"] == 1  # at least one step
    with_ttc = abl.variant_config("mvp2t", 0.5, FACTS, 400, 0.3)["schedule"]
    assert with_ttc[0]["loss"] == {**uni.loss, "ttc": 1.0} and with_ttc[1] == over["schedule"][1]
    assert parse_schedule(with_ttc)[0].unimodal  # TTC is text-text: allowed without cross-attention


@pytest.mark.parametrize(("name", "facts", "reason"), [
    ("roi", {**FACTS, "region_dim": 0}, "no region features"),
    ("mrm", {**FACTS, "region_dim": 0}, "no region features"),
    ("mvp", {**FACTS, "concepts": False}, "no concepts.txt"),
    ("mvp2", {**FACTS, "text_concepts": False}, "no text concepts"),
])
def test_a_variant_without_its_data_is_skipped_with_the_reason(abl, name, facts, reason):
    assert reason in abl.variant_config(name, 1.0, facts, 400, 0.3)


def test_plan_runs_seed_by_seed_and_one_weight_where_nothing_is_chosen(abl):
    jobs = abl.plan(["base", "cclm", "roi"], [0.5, 1.0], [0, 1, 2])
    assert jobs[:4] == [("base", 0.0, 0), ("cclm", 0.5, 0), ("cclm", 1.0, 0), ("roi", 0.0, 0)]
    assert [s for _, _, s in jobs] == [0] * 4 + [1] * 4 + [2] * 4
    assert abl.run_id("cclm", 1.0, 2) == "cclm-w1-s2" and abl.run_id("mrm", 0.5, 0) == "mrm-w0.5-s0"


def row(variant, w, seed, val, test, langs=None):
    langs = langs or {"de": test - 1, "en": test + 1}
    return {"variant": variant, "w": w, "seed": seed, "steps": 10, "validation": val, "test": test,
            "validation_langs": {}, "test_langs": langs}


def test_the_weight_is_chosen_on_validation_never_on_test(abl):
    rows = [row("cclm", 0.5, s, val=60 + s, test=90) for s in (0, 1, 2)]    # best on test
    rows += [row("cclm", 1.0, s, val=61 + s, test=10) for s in (0, 1, 2)]   # best on validation
    rows += [row("cclm", 2.0, s, val=99, test=99) for s in (0, 1)]          # not run on every seed
    chosen = abl.choose(rows, [0, 1, 2])["cclm"]
    assert chosen["w"] == 1.0 and chosen["val"] == pytest.approx(62.0)
    assert chosen["val_by_w"] == {0.5: pytest.approx(61.0), 1.0: pytest.approx(62.0)}
    assert [chosen["runs"][s]["test"] for s in (0, 1, 2)] == [10, 10, 10]
    tie = abl.choose([row("mvp", w, s, 50, 50) for w in (1.0, 0.5) for s in (0, 1, 2)], [0, 1, 2])["mvp"]
    assert tie["w"] == 0.5  # a tie goes to the smaller weight
    assert "incomplete" in abl.choose([row("mrm", 1.0, 0, 50, 50)], [0, 1, 2])["mrm"]


def test_sign_flip_and_t_test_by_hand(abl):
    # every difference positive: only the all-plus and all-minus patterns reach |sum| = 6: 2 / 8
    assert abl.sign_flip_p([1.0, 2.0, 3.0]) == 0.25
    # [1, -2, 3]: |sum| = 2; the 8 sums are +-2, +-4, +-6 and 0 twice: |s| >= 2 for 6 of 8
    assert abl.sign_flip_p([1.0, -2.0, 3.0]) == 0.75
    # mean 2, sd 1, n 3: t = 2 sqrt(3); with 2 df the tail is 1/2 (1 - t / sqrt(t^2 + 2)), two-sided twice that
    t = 2 * math.sqrt(3)
    st = abl.paired([1.0, 2.0, 3.0])
    assert (st["mean"], st["sd"]) == (2.0, 1.0)
    assert st["t_p"] == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-9)
    assert math.isnan(abl.paired([1.0, 1.0, 1.0])["t_p"])  # no spread: no t-test


def test_report_pairs_each_variant_with_its_reference_per_seed(abl):
    rows = [row("base", 0.0, s, 50, 40 + s) for s in (0, 1, 2)]
    rows += [row("roi", 0.0, s, 70, 60 + 2 * s) for s in (0, 1, 2)]
    rows += [row("mrm", 1.0, s, 69, 59 + 2 * s) for s in (0, 1, 2)]
    rows += [{"variant": "mvp", "w": 1.0, "seed": 0, "steps": 10, "skipped": "no concepts"}]
    text = abl.report(rows, [0, 1, 2])
    assert "| roi | 0 (0: 70.00) | 70.00 | 0: 60.00, 1: 62.00, 2: 64.00 | **62.00** ± 2.00 | 61.00 / 63.00 |" in text
    assert "| roi − base | +20.00, +21.00, +22.00 | +21.00 ± 1.00 | 0.250 |" in text
    assert "| mrm − roi | -1.00, -1.00, -1.00 | -1.00 ± 0.00 | 0.250 | n/a | -1.00 / -1.00 |" in text
    assert "| mvp | skipped: no concepts |" in text
    assert "mvp − base" not in text and "cclm" not in text


def test_a_finished_run_is_not_run_again(abl, tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    for job in [("base", 0.0, 0), ("roi", 0.0, 0)]:
        (tmp_path / "results" / f"{abl.run_id(*job)}.json").write_text(json.dumps(row(*job, 1, 1)))
    (tmp_path / "results" / "base-w0-s1.json").write_text(json.dumps({**row("base", 0.0, 1, 1, 1), "steps": 99}))
    started = []
    monkeypatch.setattr(abl.subprocess, "Popen", lambda cmd, **kw: started.append(cmd[-1]) or _Done())
    args = abl.parse_args(["--data", "d", "--out", str(tmp_path), "--steps", "10", "--jobs", "2"])
    abl.orchestrate(args, abl.plan(["base", "roi"], [1.0], [0, 1]))
    assert started == ["base:0.0:1", "roi:0.0:1"]  # seed 1's base was run at other steps: it counts as missing


class _Done:
    returncode = 0

    def poll(self) -> int:
        return 0


def test_arguments_are_checked(abl, tmp_path):
    for argv, message in ((["--seeds", "0,1"], "at least 3 seeds"), (["--variants", "base,foo"], "unknown ['foo']"),
                          (["--jobs", "0"], "at least 1")):
        with pytest.raises(SystemExit, match=re.escape(message)):
            abl.main(["--data", "d", "--out", str(tmp_path), *argv])

