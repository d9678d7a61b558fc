"""Text normalisation, its reject reasons, and the pairs/parallel rows built from records."""

from __future__ import annotations

import hashlib

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from curation.clean.texts import (
    NormaliseTexts,
    NormaliseTextsFn,
    TextRejected,
    declared_lang,
    normalise_text,
    pair_row,
    parallel_row,
)
from curation.config import TextConfig
from curation.read.records import RawRecord
from schemas import validate_rows
from schemas.rows import REJECTS_TAG, reject_row

CFG = TextConfig()
IMAGE = {"bytes": b"jpeg", "width": 64, "height": 48, "format": "JPEG", "sha256": hashlib.sha256(b"jpeg").hexdigest()}


def norm(text, **kw) -> str:
    return normalise_text(text, TextConfig(**kw))


def rejected(text, **kw) -> TextRejected:
    with pytest.raises(TextRejected) as info:
        norm(text, **kw)
    return info.value


def record(kind: str, source_id: str = "k1", **fields) -> RawRecord:
    image_info = None if kind == "parallel" else IMAGE
    prov = {"file": "/data/in.jsonl", "row": 3}
    return RawRecord("web", kind, source_id, "train", fields, prov, raw={"row": "as read"}, image_info=image_info)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Cafe\u0301 au lait", "Caf\u00e9 au lait"),  # NFC composes the accent
        ("a <b>bold</b> move", "a bold move"),
        ("un<i>believ</i>able", "unbelievable"),  # inline tags leave no space
        ("line<br/>break<p>para</p>", "line break para"),  # block tags leave one
        ('<a href="x?a=1&b=2">link</a> <!-- note -->text', "link text"),
        ("Fish &amp; chips &eacute;t&#233;", "Fish & chips été"),
        ("&lt;b&gt;escaped&lt;/b&gt; tags", "escaped tags"),
        ("a < b and c > d", "a < b and c > d"),  # bare comparison signs are not markup
        ("3<4", "3<4"),
        ("family \U0001f468\u200d\U0001f469 \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "family \U0001f468\u200d\U0001f469 \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),
        ("\ufeffBOM and zero\u200bwidth \u200eLTR", "BOM and zerowidth LTR"),
        ("tab\there\r\nnul\x00bell\x07 \x85next", "tab here nulbell next"),  # spacing controls -> space
        ("non\u00a0breaking\u2003em\u3000ideographic  \n spaces", "non breaking em ideographic spaces"),
        ("  padded  ", "padded"),
    ],
)
def test_normalise(raw, expected):
    assert norm(raw) == expected


def test_markup_is_kept_when_not_stripping():
    assert norm("a <b>bold</b> move", strip_markup=False) == "a <b>bold</b> move"


@pytest.mark.parametrize(
    ("raw", "kw", "reason", "detail"),
    [
        ("x" * 10_000, {}, "too_long", "10000 characters, max 1000"),
        ("", {}, "empty", "no text left after normalisation"),
        (" \t\u00a0\n ", {}, "empty", "no text left after normalisation"),
        ("<b></b><br/>", {}, "empty", "no text left after normalisation"),
        ("a", {}, "too_short", "1 characters, min 2"),
        ("two words", {"min_words": 3}, "too_few_words", "2 words, min 3"),
        ("w " * 201, {}, "too_many_words", "201 words, max 200"),
        ("caf\udce9", {}, "invalid_utf8", "undecodable byte 0xe9 at character 3"),
        (b"caf\xe9", {}, "invalid_utf8", "undecodable byte 0xe9 at character 3"),
        ("\ud83d alone", {}, "invalid_utf8", "lone surrogate U+D83D at character 0"),
        (42, {}, "not_text", "expected a string, got int"),
    ],
)
def test_rejects(raw, kw, reason, detail):
    err = rejected(raw, **kw)
    assert (err.reason, err.detail) == (reason, detail)


def test_huge_text_is_refused_before_normalising():
    err = rejected("<b>" * 200_000)
    assert err.reason == "too_long" and "before normalisation" in err.detail


def test_declared_lang():
    assert declared_lang(" EN ") == "en"
    assert declared_lang("zh-Hant") == "zh-hant"
    assert declared_lang("  ") is None and declared_lang(None) is None and declared_lang(1.5) is None


def test_pair_row_is_a_valid_pairs_row():
    rec = record("pair", caption=" A <b>red</b>  car ", lang=" EN ")
    row, rejects = pair_row(rec, CFG)
    assert rejects == []
    assert (row["id"], row["image"], row["regions"]) == (rec.id, IMAGE, None)
    assert row["provenance"] == {"file": "/data/in.jsonl", "row": 3, "url": None, "member": None}
    (text,) = row["texts"]
    assert (text["text"], text["kind"], text["lang"], text["declared_lang"], text["origin"]) == ("A red car", "caption", "en", "en", "web")
    validate_rows([row], "pairs")
    row, _ = pair_row(record("pair", caption="no language given"), CFG)
    assert row["texts"][0]["lang"] == "und" and row["texts"][0]["declared_lang"] is None


def test_pair_row_rejects_a_bad_caption():
    with pytest.raises(TextRejected) as info:
        pair_row(record("pair", caption="x" * 5000), CFG)
    assert (info.value.reason, info.value.detail) == ("too_long", "caption: 5000 characters, max 1000")
    with pytest.raises(TextRejected) as info:
        pair_row(record("pair"), CFG)
    assert (info.value.reason, info.value.detail) == ("empty", "caption: missing")


def test_weak_row_with_anchor():
    row, rejects = pair_row(record("weak", text="ein rotes Auto", lang="de", anchor="a red car"), CFG)
    assert rejects == []
    anchor, weak = row["texts"]
    assert (anchor["text"], anchor["kind"], anchor["lang"], anchor["anchor"]) == ("a red car", "caption", "und", None)
    assert (weak["text"], weak["kind"], weak["lang"], weak["declared_lang"], weak["anchor"]) == ("ein rotes Auto", "weak", "de", "de", 0)
    validate_rows([row], "pairs")


def test_weak_row_with_bad_or_no_anchor():
    rec = record("weak", text="ein rotes Auto", anchor="x" * 2000)
    row, rejects = pair_row(rec, CFG)
    (weak,) = row["texts"]
    assert (weak["kind"], weak["anchor"], weak["lang"]) == ("weak", None, "und")
    (reject,) = rejects
    assert (reject.stage, reject.reason, reject.level, reject.record_id) == ("text", "too_long", "text", rec.id)
    assert reject.detail == "anchor: 2000 characters, max 1000"
    validate_rows([row], "pairs")
    validate_rows([reject_row(reject)], "rejects")
    for anchor in (None, ""):
        row, rejects = pair_row(record("weak", text="ein Auto", anchor=anchor), CFG)
        assert rejects == [] and [t["kind"] for t in row["texts"]] == ["weak"]


def test_pair_row_needs_validated_image():
    rec = record("pair", caption="a car")
    rec.image_info = None
    with pytest.raises(ValueError, match="ValidateImages"):
        pair_row(rec, CFG)


def test_parallel_row_is_a_valid_parallel_row():
    rec = record("parallel", src="Hello &amp; welcome", tgt="Bonjour et bienvenue", src_lang="EN", tgt_lang=" fr")
    row = parallel_row(rec, CFG)
    assert (row["src_text"], row["src_lang"], row["tgt_text"], row["tgt_lang"]) == ("Hello & welcome", "en", "Bonjour et bienvenue", "fr")
    assert (row["origin"], row["pair_id"], row["score"]) == ("web", None, None)
    validate_rows([row], "parallel")
    assert parallel_row(record("parallel", src="ab", tgt="cd"), CFG)["src_lang"] == "und"
    with pytest.raises(TextRejected) as info:
        parallel_row(record("parallel", src="fine text", tgt="   "), CFG)
    assert (info.value.reason, info.value.detail) == ("empty", "tgt: no text left after normalisation")


def test_dofn_routes_rows_and_rejects():
    fn = NormaliseTextsFn(CFG)
    (row,) = fn.process(record("pair", caption="a car"))
    assert row["texts"][0]["text"] == "a car"
    (tagged,) = fn.process(record("parallel", src="ab", tgt="cd"))
    assert tagged.tag == "parallel" and tagged.value["tgt_text"] == "cd"
    (tagged,) = fn.process(record("pair", caption="\udcff"))
    assert (tagged.tag, tagged.value.stage, tagged.value.reason, tagged.value.level) == (REJECTS_TAG, "text", "invalid_utf8", "record")
    assert tagged.value.raw["row"] == {"row": "as read"}


def test_normalise_texts_transform():
    records = [
        record("pair", "p1", caption="a <i>cat</i>"),
        record("pair", "p2", caption=""),
        record("weak", "w1", text="un chat", anchor="y" * 1001),
        record("parallel", "x1", src="one", tgt="un"),
        record("parallel", "x2", src="one", tgt="u" * 1001),
    ]
    pipeline = BeamTestPipeline(runner="FnApiRunner")
    pairs, parallel, rejects = pipeline | beam.Create(records) | NormaliseTexts(CFG)
    texts = pairs | "Texts" >> beam.Map(lambda r: (r["source_id"], [t["text"] for t in r["texts"]]))
    assert_that(texts, equal_to([("p1", ["a cat"]), ("w1", ["un chat"])]), label="pairs")
    assert_that(parallel | "Tgt" >> beam.Map(lambda r: (r["source_id"], r["tgt_text"])), equal_to([("x1", "un")]), label="parallel")
    reasons = rejects | "Reasons" >> beam.Map(lambda r: (r.source_id, r.reason, r.level))
    expected = [("p2", "empty", "record"), ("w1", "too_long", "text"), ("x2", "too_long", "record")]
    assert_that(reasons, equal_to(expected), label="rejects")
    result = pipeline.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter().with_namespace("text"))["counters"]}
    # rejected_<reason> counts rejects of both levels (one record, one anchor text too long)
    assert counters == {"in": 5, "kept": 3, "pairs": 2, "parallel": 1, "rejected_empty": 1, "rejected_too_long": 2}
