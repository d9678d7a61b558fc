"""The pure row functions: which texts are translated, and how results go back into the row."""

from __future__ import annotations

import json
from collections import Counter

from mt_rows import row, text

from schemas.arrow import PARALLEL, REJECTS, TEXT
from schemas.rows import reject_row
from translate.rows import Outcome, Plan, merge_row, parallel_id, plan_requests, request_length

PLAN = Plan(targets=("de", "fr"), source_kinds=frozenset({"caption"}), source_langs=frozenset(), back_translate=True,
            codes=(), pairs=frozenset({("en", "de"), ("en", "fr"), ("de", "en")}), model_id="fairseq:tiny")


def test_fan_out_skips_what_cannot_or_need_not_be_translated():
    r = row([text("a red circle", "en"), text("ein Kreis", "de", "weak", anchor=0), text("x", "und"),
             text("un cercle", "fr"), text("ein roter Kreis", "de", "translation", derived_from=0)])
    stats: Counter[str] = Counter()
    requests = plan_requests(r, PLAN, stats)
    assert requests == [(("r1", 0, "fr"), ("a red circle", "en", "fr")),  # de exists already
                        (("r1", 1, "en"), ("ein Kreis", "de", "en"))]  # back-translation to the anchor's lang
    assert stats == {"skipped_already_translated": 1, "skipped_unknown_lang": 2, "skipped_unsupported_pair": 1}
    assert request_length(requests[1]) == len("ein Kreis") == request_length(requests[1][1])


def test_merge_appends_in_fixed_order_with_parallel_rows_and_rejects():
    r = row([text("a red circle", "en"), text("a blue square", "en")])
    outcomes = [Outcome(1, "fr", "un carré bleu", -0.2), Outcome(0, "fr", "", -0.5),
                Outcome(1, "de", "ein blaues Quadrat", -0.1), Outcome(0, "de", reason="batch_failed", detail="boom")]
    stats: Counter[str] = Counter()
    merged, parallel, rejects = merge_row(r, outcomes[::-1], PLAN, stats)
    added = merged["texts"][2:]
    assert [(t["derived_from"], t["lang"], t["text"]) for t in added] == [(1, "de", "ein blaues Quadrat"),
                                                                       (1, "fr", "un carré bleu")]
    assert all(t["kind"] == "translation" and t["origin"] == "fairseq:tiny" for t in added)
    assert added[0]["score"] == -0.1
    assert [(p["src_text"], p["tgt_lang"], p["pair_id"], p["origin"]) for p in parallel] == [
        ("a blue square", "de", "r1", "fairseq:tiny"), ("a blue square", "fr", "r1", "fairseq:tiny")]
    assert parallel[0]["id"] == parallel_id("r1", 1, "de", "fairseq:tiny") != parallel[1]["id"]
    assert parallel[0]["provenance"] == r["provenance"] and parallel[0]["src_lang_score"] == 0.9
    # the stage framework names the stage and counts rejected_<reason> (tests/translate/test_mt_beam.py)
    assert [(j.reason, j.level, j.stage, j.record_id) for j in rejects] == [
        ("batch_failed", "text", "", "r1"), ("empty_output", "text", "", "r1")]
    assert json.loads(reject_row(rejects[0])["raw"])["target"] == "de"
    assert stats == {"translated_de": 1, "translated_fr": 1}
    assert r["texts"] is not merged["texts"] and len(r["texts"]) == 2, "the input row is not mutated"
    assert set(parallel[0]) == set(PARALLEL.names) and set(reject_row(rejects[0])) == set(REJECTS.names)
    assert all(set(t) == {f.name for f in TEXT} for t in added)


def test_back_translations_are_texts_without_parallel_rows():
    r = row([text("a red circle", "en"), text("ein Kreis", "de", "weak", anchor=0)])
    merged, parallel, _ = merge_row(r, [Outcome(1, "en", "a circle", -0.3)], PLAN, stats := Counter())
    assert merged["texts"][2]["derived_from"] == 1 and merged["texts"][2]["lang"] == "en"
    assert parallel == [] and stats == {"back_translated_en": 1}
