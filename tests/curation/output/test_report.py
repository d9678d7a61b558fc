"""The report reads stage order from the registry."""

from __future__ import annotations

import re

from curation.output.report import in_stage_order


def test_rejects_are_listed_in_the_order_records_pass_the_stages():
    counts = {"relevance/no_anchor": 1, "dedup/duplicate": 2, "read/malformed_row": 3, "lid/low_confidence": 4,
              "image/truncated": 5, "custom/x": 6, "image/not_an_image": 7}
    assert list(in_stage_order(counts)) == ["read/malformed_row", "image/not_an_image", "image/truncated",
                                            "dedup/duplicate", "lid/low_confidence", "relevance/no_anchor",
                                            "custom/x"]


def test_summary_counts_pairs_texts_and_parallel_sides_apart():
    from curation.output.summary import format_summary

    counts = {"reconciled": True, "input_records": 3, "output_records": 3, "rejected_records": 0, "pairs_rows": 1,
              "parallel_rows": 2, "rejected_texts": 0, "stages": [], "rejected_by_reason": {},
              "rejected_texts_by_reason": {}}
    manifest = {"schema_version": "1.1", "counts": counts, "languages": {"de": 3, "en": 3},
                "languages_by_kind": {"caption": {"en": 1}, "translation": {"de": 1}, "parallel": {"de": 2, "en": 2}}}
    text = format_summary(manifest, "out")
    assert "texts by language (pairs texts / parallel sides):" in text
    assert re.search(r"^  de +1 / 2$", text, re.M) and re.search(r"^  en +1 / 2$", text, re.M)
