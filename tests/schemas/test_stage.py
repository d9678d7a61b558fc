"""The row-stage framework (schemas/stage.py): batching, counters, reject tagging and model
loading, the same on the buffered fast path and on RunInference."""

from __future__ import annotations

from collections import Counter

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import FixedWindows, TimestampedValue

from schemas.rows import Reject
from schemas.stage import ApplyRowStage, RowStage, account

LOADS: Counter[str] = Counter()  # FnApiRunner runs in this process: load() calls are seen here
BATCHES: list[int] = []


class Model:
    """A stage's model: Beam keeps models by weak reference, so no str or None."""


class Upper(RowStage):
    """Upper-cases ``text``; drops "bad" rows whole and their "meh" texts alone."""

    tables = ("pairs", "parallel")
    batch_size = 3

    def __init__(self, key: str):
        self.key = key

    def load(self) -> Model:
        LOADS[self.key] += 1
        return Model()

    def process(self, table, rows, model, stats):
        assert isinstance(model, Model)
        BATCHES.append(len(rows))
        kept, rejects = [], []
        for row in rows:
            if row["text"] == "bad":
                rejects.append(Reject.of_row(row, "bad", "a bad row"))
                continue
            if row.get("extra") == "meh":
                rejects.append(Reject.of_row(row, "meh", "a dropped text", {"text": "meh"}, level="text"))
            kept.append({**row, "text": row["text"].upper(), "table": table})
            stats[f"seen_{table}"] += 1
        return kept, rejects


def row(i: int, text: str, extra: str | None = None) -> dict:
    return {"id": f"r{i}", "source": "s", "source_id": str(i), "text": text, "extra": extra}


ROWS = [row(0, "a"), row(1, "bad"), row(2, "c", "meh"), row(3, "d"), row(4, "bad"), row(5, "f")]


def run(logic: RowStage, windowed: bool) -> tuple[dict[str, int], list]:
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    pairs = p | "P" >> beam.Create(ROWS)
    parallel = p | "Q" >> beam.Create([row(9, "x")])
    if windowed:
        pairs = pairs | "TP" >> beam.Map(lambda r: TimestampedValue(r, 0)) | "WP" >> beam.WindowInto(FixedWindows(60))
        parallel = parallel | "TQ" >> beam.Map(lambda r: TimestampedValue(r, 0)) | "WQ" >> beam.WindowInto(
            FixedWindows(60))
    tables, rejects = {"pairs": pairs, "parallel": parallel} | "upper" >> ApplyRowStage("upper", logic)
    expected = [("r0", "A"), ("r2", "C"), ("r3", "D"), ("r5", "F")]
    if logic.wants is not None:  # rows the stage does not want pass untouched
        expected = [(i, t if logic.wants({"text": t}) else t.lower()) for i, t in expected]
    assert_that(tables["pairs"] | "Texts" >> beam.Map(lambda r: (r["id"], r["text"])), equal_to(expected),
                label="pairs")
    par = "X" if "parallel" in logic.tables else "x"
    assert_that(tables["parallel"] | "Par" >> beam.Map(lambda r: r["text"]), equal_to([par]), label="parallel")
    assert_that(rejects | "Rej" >> beam.Map(lambda r: (r.record_id, r.stage, r.reason, r.level)),
                equal_to([("r1", "upper", "bad", "record"), ("r4", "upper", "bad", "record")]
                         + ([("r2", "upper", "meh", "text")] if logic.wants is None else [])), label="rejects")
    result = p.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_namespace("upper"))["counters"]
    counters: Counter[str] = Counter()
    for c in found:
        counters[c.key.metric.name] += c.committed
    return dict(counters), result


@pytest.mark.parametrize("windowed", [False, True], ids=["buffered", "run-inference"])
def test_counters_tags_and_batches_are_the_framework_s(windowed: bool):
    BATCHES.clear()
    counters, _ = run(Upper(f"w{windowed}"), windowed)
    # one naming scheme: in = kept + record-level rejects; rejected_<reason> counts every reject
    assert counters == {"in": 7, "kept": 5, "rejected_bad": 2, "rejected_meh": 1, "seen_pairs": 4, "seen_parallel": 1}
    assert max(BATCHES) <= Upper.batch_size and sum(BATCHES) == 7


def test_model_loads_once_per_process_for_every_table_of_a_stage():
    LOADS.clear()
    run(Upper("once"), windowed=False)
    assert LOADS["once"] == 1


class OnlyLong(Upper):
    """Needs only rows whose text is longer than one character."""

    wants = staticmethod(lambda r: len(r["text"]) > 1)
    tables = ("pairs",)


@pytest.mark.parametrize("windowed", [False, True], ids=["buffered", "run-inference"])
def test_rows_the_stage_does_not_want_go_around_it_counted(windowed: bool):
    BATCHES.clear()
    counters, _ = run(OnlyLong(f"long{windowed}"), windowed)
    assert sum(BATCHES) == 2  # only the two "bad" rows reach process(); parallel is not its table
    assert counters == {"in": 6, "kept": 4, "rejected_bad": 2}


def test_account_tags_only_untagged_rejects():
    mine = Reject.of_row(row(1, "bad"), "bad", "d")
    theirs = Reject("other", "x", "d", "s", "1", {})
    stats: Counter[str] = Counter()
    account("upper", 3, [row(0, "a")], [mine, theirs], stats)
    assert (mine.stage, theirs.stage) == ("upper", "other")
    assert stats == {"in": 3, "kept": 1, "rejected_bad": 1, "rejected_x": 1}


def test_a_stage_needs_its_registry_name():
    with pytest.raises(ValueError, match="registry name"):
        ApplyRowStage("", Upper("x"))


def test_the_stage_framework_does_not_import_torch() -> None:
    """A build whose stages all take the fast path never loads torch (Beam's inference module
    imports it: ~200 MB and seconds of start-up), checked in a fresh interpreter."""
    import subprocess
    import sys

    code = ("import sys; import curation.pipeline, curation.lid.stage, curation.relevance.stage, "
            "curation.regions.stage, curation.concepts.stage, codeswitch.beam; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
