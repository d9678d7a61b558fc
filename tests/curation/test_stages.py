"""The stage registry (curation/stages.py): every stage name written once, read by the
pipeline, the manifest and the report."""

from __future__ import annotations

import subprocess
from pathlib import Path

from curation.config import config_from_dict
from curation.stages import ORDER, SPINE, active_stages, stages_run

ROOT = Path(__file__).resolve().parents[2]


def _cfg(**sections):
    src = {"name": "s", "format": "jsonl", "paths": ["x.jsonl"]}
    return config_from_dict({"sources": [src], **sections})


def test_order_is_spine_then_row_stages():
    assert SPINE == ("read", "image", "text", "dedup", "split")
    assert (*SPINE, "regions", "lid", "mt", "codeswitch", "relevance", "concepts") == ORDER
    assert len(set(ORDER)) == len(ORDER)


def test_only_configured_row_stages_run(tmp_path: Path):
    cfg = _cfg()
    assert active_stages(cfg) == [] and stages_run(cfg) == SPINE
    model = tmp_path / "lid.bin"
    model.write_bytes(b"")
    cfg = _cfg(lid={"model": str(model)}, relevance={"scorer": "lexical", "dictionaries": str(tmp_path)})
    assert [s.name for s in active_stages(cfg)] == ["lid", "relevance"]
    assert stages_run(cfg) == (*SPINE, "lid", "relevance")


def test_stage_names_are_written_once():
    """No module but the registry names a stage: no STAGE constants, no lists of stage
    names, no counter namespace or reject stage spelled as a literal."""
    pattern = r"^\s*(STAGE|NAMESPACE|STAGES|COUNTER_NAMESPACE)\s*=|Metrics\.counter\(\"|StageCounters\(\"|Reject\(\""
    found = subprocess.run(["git", "grep", "-nE", pattern, "--", "curation", "translate", "codeswitch", "schemas"],
                           cwd=ROOT, capture_output=True, text=True)
    assert found.stdout.splitlines() == []
