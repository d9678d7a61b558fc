"""The CodeSwitch stage: variants appended to pairs rows (indices kept, schema-valid),
counters, the same output on one or two workers, and dictionary errors before running."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from cs_helpers import check_spans, demo_dictionaries

from codeswitch.beam import CodeSwitch, switch_row
from codeswitch.config import codeswitch_config_from_dict, load_switcher
from codeswitch.dictionary import DictionaryError, write_muse_dictionaries
from codeswitch.switch import Span, Switched
from curation.demo import synth
from schemas import validate_rows
from schemas.arrow import TEXT


def text(value: str, kind: str, lang: str, **fields) -> dict:
    entry = dict.fromkeys(TEXT.names)
    entry.update(text=value, kind=kind, lang=lang, origin="test", **fields)
    return entry


def pair_row(i: int, texts: list[dict]) -> dict:
    image = b"\xff\xd8fake"
    return {
        "id": f"id{i:04d}", "source": "t", "source_id": str(i), "split": "train",
        "provenance": {"file": "f.jsonl", "row": i, "url": None, "member": None},
        "image": {"bytes": image, "width": 8, "height": 8, "format": "JPEG", "sha256": hashlib.sha256(image).hexdigest()},
        "regions": None, "texts": texts,
    }


@pytest.fixture(scope="module")
def dicts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cs")
    demo_dictionaries(root)
    write_muse_dictionaries(root / "dicts", {("de", "en"): synth.lexicon_pairs("de", "en")})
    return root / "dicts"


def rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        scene = synth.sample_scene(random.Random(i))
        texts = [text(synth.caption(scene, "en").capitalize() + ".", "caption", "en"),
                 text(synth.caption(scene, "de"), "translation", "de", derived_from=0),
                 text("red things, maybe", "weak", "en", anchor=0)]
        out.append(pair_row(i, texts))
    out.append(pair_row(n, [text("Zzz qqq!", "caption", "en"), text("赤い丸", "caption", "ja")]))
    return out


def test_variants_are_appended_and_point_at_their_source(dicts: Path):
    cfg = codeswitch_config_from_dict({"dictionaries": str(dicts), "mode": "multi", "word_ratio": 0.5,
                                       "variants": 3, "from_kinds": ["caption", "translation"], "langs": ["de", "fr", "en"]})
    switcher, _ = load_switcher(cfg)
    counts: Counter = Counter()
    out = [switch_row(r, switcher, cfg, 5, counts) for r in rows(20)]
    added = [t for r in out for t in r["texts"][3:]]
    for before, after in zip(rows(20), out, strict=True):
        assert after["texts"][: len(before["texts"])] == before["texts"]  # nothing reordered or changed
        for t in after["texts"][len(before["texts"]):]:
            source = after["texts"][t["derived_from"]]
            assert t["kind"] == "codeswitch" and t["origin"] == "muse:dicts" and t["lang"] == source["lang"]
            assert source["kind"] in ("caption", "translation") and t["text"] != source["text"]
            check_spans(source["text"], Switched(t["text"], [Span(**s) for s in t["spans"]], []))
        variants = [t["text"] for t in after["texts"] if t["kind"] == "codeswitch"]
        assert len(variants) == len(set(variants))
    assert {t["lang"] for t in added} == {"en", "de"}
    assert counts["variants"] == len(added) > 60
    assert counts["no_coverage"] == 1 and counts["no_dictionary"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("switched_")) >= len(added)
    validate_rows(out, "pairs")


def run_stage(cfg, data: list[dict], expected: list[dict], workers: int) -> dict[str, int]:
    options = PipelineOptions(runner="FnApiRunner", direct_num_workers=workers, direct_running_mode="multi_threading")
    p = beam.Pipeline(options=options)
    tables = {"pairs": p | "Pairs" >> beam.Create(data), "parallel": p | "Parallel" >> beam.Create([{"id": "par"}])}
    out, rejects = tables | "CodeSwitch" >> CodeSwitch(cfg, seed=5, stage="codeswitch")
    assert_that(out["pairs"], equal_to(expected), label="Pairs")
    assert_that(out["parallel"], equal_to([{"id": "par"}]), label="ParallelUnchanged")
    assert_that(rejects, equal_to([]), label="NoRejects")
    result = p.run()
    result.wait_until_finish()
    return {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter().with_namespace("codeswitch"))["counters"]}


def test_same_output_and_counters_on_one_or_two_workers(dicts: Path):
    cfg = codeswitch_config_from_dict({"dictionaries": str(dicts), "langs": ["de", "fr", "es"], "variants": 2})
    data = rows(30)
    switcher, _ = load_switcher(cfg)
    counts: Counter = Counter()
    expected = [switch_row(r, switcher, cfg, 5, counts) for r in data]
    framework = {"in": len(data), "kept": len(data)}  # the stage framework's counters beside switch_row's
    assert run_stage(cfg, data, expected, 1) == {**counts, **framework}
    assert run_stage(cfg, data, expected, 2) == {**counts, **framework}
    assert counts["variants"] > 40 and counts["tokens"] > counts["covered_tokens"] > 0
    assert set(counts) >= {"switched_de", "switched_fr", "switched_es", "no_coverage", "source_texts"}


def test_malformed_dictionary_fails_when_the_stage_is_built(tmp_path: Path):
    (tmp_path / "en-de.txt").write_text("red rot\nthis line has four fields\n")
    cfg = codeswitch_config_from_dict({"dictionaries": str(tmp_path)})
    with pytest.raises(DictionaryError, match=r"en-de\.txt:2"):
        CodeSwitch(cfg, seed=0, stage="codeswitch")
    skip = codeswitch_config_from_dict({"dictionaries": str(tmp_path), "on_malformed": "skip"})
    assert CodeSwitch(skip, seed=0, stage="codeswitch").load_stats["en-de"].malformed == 1


def test_disabled_stage_passes_rows_through():
    data = rows(2)
    cfg = codeswitch_config_from_dict({})
    with beam.Pipeline(options=PipelineOptions(runner="FnApiRunner")) as p:
        tables = {"pairs": p | "Pairs" >> beam.Create(data), "parallel": p | "Parallel" >> beam.Create([])}
        out, rejects = tables | CodeSwitch(cfg, seed=0, stage="codeswitch")
        assert_that(out["pairs"], equal_to(data), label="Pairs")
        assert_that(rejects, equal_to([]), label="NoRejects")
