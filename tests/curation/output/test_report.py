"""The report reads stage order from the registry."""

from __future__ import annotations

from curation.output.report import in_stage_order


def test_rejects_are_listed_in_the_order_records_pass_the_stages():
    counts = {"relevance/no_anchor": 1, "dedup/duplicate": 2, "read/malformed_row": 3, "lid/low_confidence": 4,
              "image/truncated": 5, "custom/x": 6, "image/not_an_image": 7}
    assert list(in_stage_order(counts)) == ["read/malformed_row", "image/not_an_image", "image/truncated",
                                            "dedup/duplicate", "lid/low_confidence", "relevance/no_anchor",
                                            "custom/x"]
