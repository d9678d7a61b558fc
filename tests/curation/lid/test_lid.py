"""Language ID: label normalisation, the fastText wrapper, the policy, DetectLanguage in Beam,
and the train/evaluate/predict helpers. Models are trained by tests/conftest.py."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import FixedWindows

from curation.demo.writers import write_lid_training_data
from curation.lid.config import LidConfig, LidConfigError
from curation.lid.labels import declared_key, normalise_code, normalise_label
from curation.lid.model import LidModelError, check_lid_config, load_lid_model, prepare_text
from curation.lid.policy import LidPolicy, label_parallel_batch
from curation.lid.stage import DetectLanguage, LabelLanguages
from curation.lid.tools import (
    LidDataError,
    evaluate_lid,
    format_eval_table,
    predict_file,
    read_labelled,
    train_lid,
)
from schemas import lang_key, validate_rows
from schemas.rows import text_entry
from schemas.stage import account

IMAGE = {"bytes": b"jpeg", "width": 64, "height": 48, "format": "JPEG", "sha256": hashlib.sha256(b"jpeg").hexdigest()}
DE, FR, EN, ES = "ein kleiner roter Kreis links", "un petit cercle rouge à gauche", "a small red circle on the left", "un círculo rojo pequeño a la izquierda"


def pairs_row(rid: str, *texts: dict) -> dict:
    prov = {"file": "in.jsonl", "row": 0, "url": None, "member": None}
    return {"id": rid, "source": "src", "source_id": rid, "split": "train", "provenance": prov,
            "image": IMAGE, "regions": None, "texts": list(texts)}


def caption(text: str, declared: str | None = None) -> dict:
    return text_entry(text, "caption", "src", declared or "und", declared_lang=declared)


def weak(text: str, anchor: int | None, declared: str | None = None) -> dict:
    return text_entry(text, "weak", "src", declared or "und", declared_lang=declared, anchor=anchor)


def parallel_row(rid: str, src: str, tgt: str, src_lang: str = "und", tgt_lang: str = "und") -> dict:
    prov = {"file": "p.tsv", "row": 0, "url": None, "member": None}
    return {"id": rid, "source": "par", "source_id": rid, "split": "train", "provenance": prov,
            "src_text": src, "src_lang": src_lang, "src_lang_score": None, "tgt_text": tgt,
            "tgt_lang": tgt_lang, "tgt_lang_score": None, "origin": "par", "score": None, "pair_id": None}


class FakeModel:
    """A predictor with fixed answers: text -> (code, score); probability of a declared key."""

    def __init__(self, answers: dict[str, tuple[str, float]], declared_probs: dict[str, float] | None = None):
        self.answers = answers
        self.declared_probs = declared_probs or {}

    def predict(self, texts, max_chars):
        out = [self.answers.get(t, ("und", 0.0)) for t in texts]
        return [c for c, _ in out], [s for _, s in out]

    def probability(self, texts, keys, max_chars):
        return [self.declared_probs.get(t, 0.0) for t in texts]


def run_pairs(rows, model, **cfg):
    """The stage's logic on one batch, accounted by the framework as in the pipeline."""
    stats: Counter[str] = Counter()
    kept, rejects = LabelLanguages(LidConfig(model="x", **cfg)).process("pairs", rows, model, stats)
    account("lid", len(rows), kept, rejects, stats)
    return kept, rejects, stats


# --- label normalisation --------------------------------------------------------------

@pytest.mark.parametrize("label, code", [
    ("__label__en", "en"), ("__label__eng_Latn", "en"), ("__label__de", "de"), ("__label__deu_Latn", "de"),
    ("__label__cmn_Hant", "zh_Hant"), ("__label__cmn_Hans", "zh"), ("__label__zho_Hans", "zh"), ("__label__zh", "zh"),
    ("__label__srp_Cyrl", "sr"), ("__label__srp_Latn", "sr_Latn"), ("__label__rus_Cyrl", "ru"),
    ("__label__arb_Arab", "ar"), ("__label__yue_Hant", "yue"), ("__label__jpn_Jpan", "ja"), ("__label__kor_Hang", "ko"),
    ("__label__als", "gsw"), ("__label__als_Latn", "sq"), ("__label__nob_Latn", "nb"), ("__label__ceb", "ceb"),
    ("eng", "en"), ("ger", "de"), ("en-US", "en"), ("zh-Hant-TW", "zh_Hant"), ("ZH_hant", "zh_Hant"), ("DE", "de"),
])  # fmt: skip
def test_normalise_code_both_label_styles(label, code):
    assert normalise_code(label) == code


def test_codes_that_are_not_languages():
    assert normalise_code("english") is None and normalise_code("") is None
    assert normalise_label("__label__my-custom-label") == "my-custom-label"
    assert declared_key("und") is None and declared_key("mul") is None and declared_key("english") is None
    assert declared_key("deu") == "de" and declared_key("zh-Hant") == "zh"
    assert lang_key("zh_Hant") == "zh" and lang_key("nb") == lang_key("nn") == lang_key("no") == "no"


# --- the fastText wrapper -------------------------------------------------------------

def test_both_model_label_styles_give_the_same_codes(lid_model_path, lid_glot_model_path):
    for path in (lid_model_path, lid_glot_model_path):
        codes, scores = load_lid_model(path).predict([DE, FR, EN, ES], 1000)
        assert codes == ["de", "fr", "en", "es"]
        assert all(0.5 < s <= 1.0 for s in scores)


def test_numpy2_predict_bug_is_avoided(lid_model_path):
    """fasttext 0.9.3's FastText.predict(str) does np.array(probs, copy=False), which
    numpy 2 refuses; LidModel never takes that path."""
    model = load_lid_model(lid_model_path)
    if int(np.__version__.split(".")[0]) >= 2:
        try:
            model.ft.predict(DE)
        except ValueError as err:
            assert "copy" in str(err)  # the bug is present in the installed fasttext
    codes, scores = model.predict([DE], 1000)
    assert codes == ["de"] and isinstance(scores[0], float)


def test_awkward_texts_do_not_crash_fasttext(lid_model_path):
    assert prepare_text("a\nb", 10) == "a b\n"
    assert prepare_text("x" * 50, 10) == "x" * 10 + "\n"
    assert prepare_text("", 10) is None and prepare_text(" \t ", 10) is None
    model = load_lid_model(lid_model_path)
    texts = ["", "   ", f"{DE}\n{DE}", "ä" * 5000, "bad \udcff byte " + FR]
    codes, scores = model.predict(texts, 100)
    assert codes[:2] == ["und", "und"] and scores[:2] == [0.0, 0.0]
    assert codes[2] == "de" and codes[4] == "fr"
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_broken_model_files_are_refused(lid_model_path, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    with pytest.raises(LidModelError, match="junk.bin"):
        load_lid_model(str(junk))
    with pytest.raises(LidModelError, match="cannot read"):
        load_lid_model(str(tmp_path / "missing.bin"))


def test_bad_config_fails_before_the_pipeline(lid_model_path, tmp_path):
    with pytest.raises(LidConfigError, match="not language codes"):
        check_lid_config(LidConfig(model=lid_model_path, allowed=["en", "english"]))
    with pytest.raises(LidConfigError, match="no such file"):
        DetectLanguage(LidConfig(model=str(tmp_path / "nope.bin")), "lid")
    with pytest.raises(LidConfigError, match="empty"):
        check_lid_config(LidConfig())
    junk = tmp_path / "lid.176.bin"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(LidConfigError, match="not a fastText model"):
        DetectLanguage(LidConfig(model=str(junk)), "lid")


# --- the policy -------------------------------------------------------------------------

def test_global_and_per_language_thresholds():
    model = FakeModel({DE: ("de", 0.6), FR: ("fr", 0.6), EN: ("en", 0.4)})
    rows = [pairs_row("r1", caption(DE)), pairs_row("r2", caption(FR)), pairs_row("r3", caption(EN))]
    kept, rejects, stats = run_pairs(rows, model, threshold=0.5, thresholds={"deu": 0.7, "en": 0.3})
    assert [r["texts"][0]["lang"] for r in kept] == ["fr", "en"]
    assert [(r.source_id, r.reason, r.level) for r in rejects] == [("r1", "low_confidence", "record")]
    assert stats["rejected_low_confidence"] == 1 and stats["lang_fr"] == stats["lang_en"] == 1


def test_low_confidence_reject_or_und():
    model = FakeModel({DE: ("de", 0.2), FR: ("fr", 0.9)})
    row = pairs_row("r1", caption(FR), weak(DE, 0))
    kept, rejects, _ = run_pairs([row], model, low_confidence="und", allowed=["fr"])
    texts = kept[0]["texts"]
    assert [(t["lang"], t["lang_score"]) for t in texts] == [("fr", 0.9), ("und", 0.2)] and not rejects
    kept, rejects, _ = run_pairs([row], model, low_confidence="reject")
    assert [t["lang"] for t in kept[0]["texts"]] == ["fr"]
    assert rejects[0].reason == "low_confidence" and rejects[0].level == "text"


def test_empty_text_is_low_confidence_whatever_the_threshold():
    row = pairs_row("r1", caption("   "))
    kept, rejects, _ = run_pairs([row], FakeModel({}), threshold=0.0)
    assert not kept and rejects[0].reason == "low_confidence" and "empty" in rejects[0].detail
    kept, _, stats = run_pairs([row], FakeModel({}), threshold=0.0, low_confidence="und")
    assert kept[0]["texts"][0]["lang"] == "und" and kept[0]["texts"][0]["lang_score"] == 0.0
    assert stats["lang_und"] == 1


@pytest.mark.parametrize("mode, lang, score, reason", [
    ("flag", "de", 0.9, None), ("declared", "fr", 0.08, None), ("reject", None, None, "lang_mismatch"),
])  # fmt: skip
def test_declared_language_mismatch(mode, lang, score, reason):
    model = FakeModel({DE: ("de", 0.9), EN: ("en", 0.95)}, declared_probs={DE: 0.08})
    rows = [pairs_row("r1", caption(DE, declared="fra")), pairs_row("r2", caption(EN, declared="en-GB"))]
    kept, rejects, stats = run_pairs(rows, model, mismatch=mode)
    assert stats["mismatch"] == 1  # en-GB vs en is no mismatch
    got = {r["id"]: r["texts"][0] for r in kept}
    assert (got["r2"]["lang"], got["r2"]["declared_lang"]) == ("en", "en-GB")
    if reason is None:
        assert (got["r1"]["lang"], got["r1"]["lang_score"], got["r1"]["declared_lang"]) == (lang, score, "fra")
    else:
        assert "r1" not in got and rejects[0].reason == reason and "declared fr" in rejects[0].detail


def test_low_confidence_detection_is_no_mismatch_and_bad_declarations_count():
    model = FakeModel({DE: ("de", 0.3), FR: ("fr", 0.9)})
    rows = [pairs_row("r1", caption(DE, declared="fr")), pairs_row("r2", caption(FR, declared="french"))]
    kept, _, stats = run_pairs(rows, model, mismatch="reject", low_confidence="und")
    assert [r["texts"][0]["lang"] for r in kept] == ["und", "fr"]
    assert stats["mismatch"] == 0 and stats["declared_unknown"] == 1


def test_not_allowed_language():
    model = FakeModel({DE: ("de", 0.9), FR: ("fr", 0.9)})
    kept, rejects, stats = run_pairs([pairs_row("r1", caption(DE)), pairs_row("r2", caption(FR))], model, allowed=["fra"])
    assert [r["id"] for r in kept] == ["r2"] and rejects[0].reason == "not_allowed" and stats["rejected_not_allowed"] == 1


def test_dropped_text_remaps_indices():
    """texts: 0 caption (dropped), 1 caption, 2 weak anchored to 1, 3 weak anchored to 0."""
    model = FakeModel({DE: ("de", 0.9), FR: ("fr", 0.9), EN: ("en", 0.9), ES: ("es", 0.9)})
    row = pairs_row("r1", caption(ES), caption(DE), weak(FR, 1), weak(EN, 0))
    kept, rejects, _ = run_pairs([row], model, allowed=["de", "fr", "en"])
    texts = kept[0]["texts"]
    assert [(t["text"], t["anchor"]) for t in texts] == [(DE, None), (FR, 0), (EN, None)]
    (reject,) = rejects
    assert (reject.stage, reject.reason, reject.level, reject.record_id) == ("lid", "not_allowed", "text", "r1")
    assert reject.raw == {"row_id": "r1", "index": 0, "text": row["texts"][0]}
    assert row["texts"][2]["anchor"] == 1  # the input row is left as it was
    validate_rows(kept, "pairs")


def test_row_that_loses_every_text_is_a_record_reject():
    model = FakeModel({DE: ("de", 0.9), FR: ("fr", 0.2)})
    row = pairs_row("r1", caption(DE), weak(FR, 0))
    kept, rejects, stats = run_pairs([row], model, allowed=["en"])
    assert not kept
    (reject,) = rejects
    assert (reject.reason, reject.level, reject.record_id) == ("low_confidence", "record", "r1")  # its last text's reason
    assert "not_allowed" in reject.detail and "bytes" not in reject.raw["image"]
    assert (stats["rejected_low_confidence"], stats["in"], stats["kept"]) == (1, 1, 0)


def test_parallel_rows():
    model = FakeModel({DE: ("de", 0.9), EN: ("en", 0.8), FR: ("fr", 0.3)})
    rows = [parallel_row("p1", EN, DE), parallel_row("p2", EN, FR), parallel_row("p3", DE, EN, src_lang="en")]
    stats: Counter[str] = Counter()
    kept, rejects = label_parallel_batch(rows, model, LidPolicy(LidConfig(model="x", mismatch="reject")), stats)
    assert [(r["src_lang"], r["src_lang_score"], r["tgt_lang"], r["tgt_lang_score"]) for r in kept] == [("en", 0.8, "de", 0.9)]
    assert [(r.source_id, r.reason, r.level) for r in rejects] == [("p2", "low_confidence", "record"), ("p3", "lang_mismatch", "record")]
    assert rejects[0].detail.startswith("tgt:")
    validate_rows(kept, "parallel")


def test_real_model_through_the_policy(lid_glot_model_path):
    model = load_lid_model(lid_glot_model_path)
    rows = [pairs_row("r1", caption(DE, declared="deu"), weak(FR, 0)), pairs_row("r2", caption(ES))]
    kept, rejects, stats = run_pairs(rows, model, threshold=0.5)
    assert [[t["lang"] for t in r["texts"]] for r in kept] == [["de", "fr"], ["es"]] and not rejects
    assert stats["mismatch"] == 0
    kept, _, stats = run_pairs([pairs_row("r3", caption(DE, declared="fra"))], model, mismatch="declared")
    text = kept[0]["texts"][0]
    assert (text["lang"], stats["mismatch"]) == ("fr", 1)
    assert text["lang_score"] == model.probability([DE], ["fr"], 1000)[0] < 0.5  # the model's belief in "fr"


# --- DetectLanguage in Beam ---------------------------------------------------------------

def _pipeline_inputs(pipeline, window: bool):
    rows = [pairs_row("r1", caption(DE), weak(FR, 0)), pairs_row("r2", caption(EN, declared="de")),
            pairs_row("r3", caption(" ")), pairs_row("r4", caption(ES), caption(EN))]
    parallel = [parallel_row("p1", EN, DE), parallel_row("p2", FR, "  ")]
    pairs_pc = pipeline | "Pairs" >> beam.Create(rows)
    parallel_pc = pipeline | "Parallel" >> beam.Create(parallel)
    if window:
        pairs_pc = pairs_pc | "WindowPairs" >> beam.WindowInto(FixedWindows(60))
        parallel_pc = parallel_pc | "WindowParallel" >> beam.WindowInto(FixedWindows(60))
    return {"pairs": pairs_pc, "parallel": parallel_pc}


@pytest.mark.parametrize("window", [False, True], ids=["global-window", "fixed-windows"])
def test_detect_language_transform(lid_model_path, window):
    cfg = LidConfig(model=lid_model_path, threshold=0.5, allowed=["de", "fr", "en"], batch_size=2)
    pipeline = BeamTestPipeline(runner="FnApiRunner")
    tables, rejects = _pipeline_inputs(pipeline, window) | DetectLanguage(cfg, "lid")
    langs = tables["pairs"] | "Langs" >> beam.Map(lambda r: (r["id"], [(t["lang"], t["anchor"]) for t in r["texts"]]))
    assert_that(langs, equal_to([("r1", [("de", None), ("fr", 0)]), ("r2", [("en", None)]), ("r4", [("en", None)])]), label="pairs")
    sides = tables["parallel"] | "Sides" >> beam.Map(lambda r: (r["id"], r["src_lang"], r["tgt_lang"]))
    assert_that(sides, equal_to([("p1", "en", "de")]), label="parallel")
    reasons = rejects | "Reasons" >> beam.Map(lambda r: (r.source_id, r.stage, r.reason, r.level))
    expected = [("r3", "lid", "low_confidence", "record"), ("r4", "lid", "not_allowed", "text"),
                ("p2", "lid", "low_confidence", "record")]
    assert_that(reasons, equal_to(expected), label="rejects")
    result = pipeline.run()
    result.wait_until_finish()
    counters: Counter[str] = Counter()
    for c in result.metrics().query(MetricsFilter().with_namespace("lid"))["counters"]:
        counters[c.key.metric.name] += c.committed  # one entry per step: pairs and parallel
    # the framework's in/kept/rejected_<reason> (rows of both tables; one per reject), the stage's own counts
    assert counters == {"in": 6, "kept": 4, "rejected_low_confidence": 2, "rejected_not_allowed": 1,
                        "lang_de": 2, "lang_fr": 1, "lang_en": 3, "mismatch": 1}


# --- train / evaluate / predict -----------------------------------------------------------

def test_read_labelled_accepts_both_formats(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text(f"de\t{DE}\n\n__label__fr {FR}\n", encoding="utf-8")
    assert list(read_labelled(str(path))) == [("de", DE), ("fr", FR)]
    path.write_text("no tab here\n", encoding="utf-8")
    with pytest.raises(LidDataError, match="d.tsv:1"):
        list(read_labelled(str(path)))


def test_training_is_deterministic_with_one_thread(tmp_path):
    write_lid_training_data(str(tmp_path / "t.tsv"), 400, seed=5)
    digests = []
    for name in ("a.bin", "b.bin"):
        info = train_lid(str(tmp_path / "t.tsv"), str(tmp_path / name), bucket=5000, threads=1, seed=3)
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert info["examples"] == 400 and info["languages"] == {"de": 100, "en": 100, "es": 100, "fr": 100}


def test_evaluate_lid_report(lid_glot_model_path, tmp_path):
    data = tmp_path / "eval.tsv"
    write_lid_training_data(str(data), 200, seed=77)
    with open(data, "a", encoding="utf-8") as f:
        f.write(f"en\t{DE}\n")  # one deliberate error
    report = evaluate_lid(lid_glot_model_path, str(data))
    assert report["examples"] == 201 and 0.9 < report["accuracy"] < 1.0
    assert set(report["languages"]) == {"de", "en", "es", "fr"} and report["languages"]["en"]["support"] == 51
    assert {"gold": "en", "predicted": "de", "count": 1} in report["confused"]
    table = format_eval_table(report)
    assert "macro-F1" in table and "en->de" in table


def test_predict_file_tsv_and_jsonl(lid_model_path, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text(f"{DE}\n\n{FR}\r\n", encoding="utf-8")
    out = tmp_path / "out.tsv"
    assert predict_file(lid_model_path, str(src), str(out), k=2) == 3
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r[0], r[-1], len(r)) for r in rows] == [("de", DE, 5), ("und", "", 5), ("fr", FR, 5)]
    predict_file(lid_model_path, str(src), str(out), fmt="jsonl")
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["lang"], r["text"]) for r in records] == [("de", DE), ("und", ""), ("fr", FR)] and "top" not in records[0]
