"""TranslateCaptions in a real FnApiRunner pipeline: texts, parallel rows, rejects, counters."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from mt_rows import COLLECTED, collect, row, text

from schemas.rows import reject_row
from translate.beam import TranslateCaptions
from translate.checkpoint import ModelInfo
from translate.config import TranslateConfig
from translate.engine import Hypothesis, Translator


def run_stage(stage: beam.PTransform, rows: list[dict], parallel: Sequence[dict] = ()) -> tuple[dict, dict]:
    """Run ``stage`` on FnApiRunner; returns ({"pairs", "parallel", "rejects"} lists, mt counters)."""
    run = uuid.uuid4().hex
    p = beam.Pipeline(options=PipelineOptions([], runner="FnApiRunner"))
    tables = {"pairs": p | "Pairs" >> beam.Create(rows), "parallel": p | "Parallel" >> beam.Create(list(parallel))}
    result_tables, rejects = tables | "mt" >> stage
    rejects = rejects | "RejectRows" >> beam.Map(reject_row)  # as the writer stores them
    for name, pcoll in {**result_tables, "rejects": rejects}.items():
        pcoll | f"Collect[{name}]" >> beam.Map(collect, run, name)  # FnApiRunner runs in this process
    result = p.run()
    result.wait_until_finish()
    out = {name: COLLECTED.pop((run, name), []) for name in ("pairs", "parallel", "rejects")}
    counters = {c.key.metric.name: c.committed for c in
                result.metrics().query(MetricsFilter().with_namespace("mt"))["counters"]}
    return out, counters


def test_captions_are_translated_into_every_target_in_order(tiny_mt, generate_runs):
    captions = [src for src, _ in tiny_mt.test["de"]][:12]
    rows = [row([text(c, "en")], rid=f"r{i:02d}") for i, c in enumerate(captions)]
    rows.append(row([text("ein roter Kreis", "de", "weak", anchor=None)], rid="weak"))
    given = [{"id": "p0", "src_text": "x", "tgt_text": "y"}]
    cfg = TranslateConfig(model=str(tiny_mt.model_dir), targets=["de", "fr", "es"], beam=4, max_tokens=1024,
                          cpu_threads=1)
    out, counters = run_stage(TranslateCaptions(cfg, "mt"), rows, given)

    by_id = {r["id"]: r for r in out["pairs"]}
    assert sorted(by_id) == sorted(r["id"] for r in rows) and out["rejects"] == []
    assert by_id["weak"]["texts"] == rows[-1]["texts"], "weak texts are not captions: left alone"
    model_id = f"fairseq:{tiny_mt.model_dir.name}"
    reference = generate_runs[4].hypotheses  # fairseq-generate, beam 4, same test sentences in the same order
    for i in range(len(captions)):
        texts = by_id[f"r{i:02d}"]["texts"]
        assert [(t["kind"], t["lang"], t["derived_from"], t["origin"]) for t in texts[1:]] == [
            ("translation", lang, 0, model_id) for lang in ("de", "fr", "es")]
        assert texts[1]["text"] == reference[i].text, "the pipeline gives fairseq-generate's translation"
        assert texts[1]["score"] == pytest.approx(reference[i].score, abs=1e-5)
    made = [p for p in out["parallel"] if p["id"] != "p0"]
    assert len(made) == 3 * len(captions) and any(p["id"] == "p0" for p in out["parallel"])
    expected = {(f"r{i:02d}", t) for i in range(12) for t in ("de", "fr", "es")}
    assert {(p["pair_id"], p["tgt_lang"]) for p in made} == expected
    assert all(p["src_lang"] == "en" and p["origin"] == model_id and p["source"] == "cc" for p in made)
    assert counters["translated_de"] == counters["translated_fr"] == counters["translated_es"] == 12
    assert counters["requests"] == 36


class FakeTranslator(Translator):
    """Upper-cases text; fails the whole call on "BOOM", returns nothing for "EMPTY"."""

    model_id = "fake:1"

    def supports(self, src_lang: str, tgt_lang: str) -> bool:
        return True

    def translate(self, sentences: Sequence[str], src_lang: str, tgt_lang: str) -> list[Hypothesis]:
        if any("BOOM" in s for s in sentences):
            raise RuntimeError("CUDA out of memory (simulated)")
        return [Hypothesis("" if s == "EMPTY" else f"{tgt_lang}:{s.upper()}", -0.5) for s in sentences]


FAKE_INFO = ModelInfo("translation_multi_simple_epoch", (("en", "de"), ("en", "fr")), ("en", "de", "fr"))


def fake_loader(cfg: TranslateConfig) -> Translator:
    return FakeTranslator()


def test_a_failing_batch_becomes_rejects_not_a_crash():
    boom = "BOOM " + "x" * 600  # its own length bucket, so only its batch fails
    rows = [row([text("a red circle", "en")], "ok1"), row([text(boom, "en")], "bad"),
            row([text("EMPTY", "en")], "empty"), row([text("a blue square", "en")], "ok2")]
    cfg = TranslateConfig(model="unused", targets=["de", "fr"],
                          accelerator="type:nvidia-l4;count:1;install-nvidia-driver")
    out, counters = run_stage(TranslateCaptions(cfg, "mt", loader=fake_loader, info=FAKE_INFO), rows)

    by_id = {r["id"]: r for r in out["pairs"]}
    assert sorted(by_id) == ["bad", "empty", "ok1", "ok2"], "every row survives"
    assert [t["text"] for t in by_id["ok1"]["texts"]] == ["a red circle", "de:A RED CIRCLE", "fr:A RED CIRCLE"]
    assert len(by_id["bad"]["texts"]) == 1 and len(by_id["empty"]["texts"]) == 1
    reasons = sorted((r["record_id"], r["reason"], r["stage"], r["level"]) for r in out["rejects"])
    assert reasons == [("bad", "batch_failed", "mt", "text")] * 2 + [("empty", "empty_output", "mt", "text")] * 2
    assert "out of memory" in next(r["detail"] for r in out["rejects"] if r["record_id"] == "bad")
    assert counters["rejected_batch_failed"] == 2 and counters["rejected_empty_output"] == 2
    assert counters["in"] == counters["kept"] == 4
    assert counters["translated_de"] == 2 and len(out["parallel"]) == 4


def test_stage_checks_the_model_up_front(tmp_path):
    with pytest.raises(ValueError, match="mt.model"):
        TranslateCaptions(TranslateConfig(), "mt")
    with pytest.raises(ValueError, match="mt.model"):
        TranslateCaptions(TranslateConfig(model=str(tmp_path / "missing"), targets=["de"]), "mt")


def test_model_check_names_a_missing_direction(tiny_mt):
    with pytest.raises(ValueError, match=r"mt.targets: the model cannot translate into \['ja'\]"):
        TranslateCaptions(TranslateConfig(model=str(tiny_mt.model_dir), targets=["de", "ja"]), "mt")


def test_gpu_hint_and_one_shared_model_copy_work_on_fnapirunner():
    cfg = TranslateConfig(model="unused", targets=["de"], model_copies=1,
                          accelerator="type:nvidia-l4;count:1;install-nvidia-driver")
    rows = [row([text(f"circle {i}", "en")], f"r{i}") for i in range(20)]
    out, counters = run_stage(TranslateCaptions(cfg, "mt", loader=fake_loader, info=FAKE_INFO), rows)
    assert counters["translated_de"] == 20 and len(out["parallel"]) == 20
    p = beam.Pipeline(options=PipelineOptions([], runner="FnApiRunner"))
    tables = {"pairs": p | beam.Create(rows), "parallel": p | "P" >> beam.Create([])}
    _ = tables | TranslateCaptions(cfg, "mt", loader=fake_loader, info=FAKE_INFO)
    proto = p.to_runner_api()
    hinted = {t.unique_name for t in proto.components.transforms.values()
              if t.environment_id and "beam:resources:accelerator:v1" in
              proto.components.environments[t.environment_id].resource_hints}
    assert hinted and all("RunInference" in name for name in hinted), "only the model step asks for a GPU"
