"""schemas/rows.py: the one definition of a row's parts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from schemas.arrow import REJECTS, TEXT
from schemas.rows import (
    MAX_RAW_STRING,
    Reject,
    lang_key,
    reject_row,
    remap_text_indices,
    text_entry,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("code, key", [("en", "en"), ("en-US", "en"), ("en_GB", "en"), ("zh_Hant", "zh"),
                                       ("ZH-hant", "zh"), ("nb", "no"), ("nn", "no"), (" de ", "de")])
def test_lang_key_compares_languages_not_scripts_or_regions(code, key):
    assert lang_key(code) == key


def test_text_entry_has_exactly_the_schema_fields():
    entry = text_entry("ein Kreis", "translation", "m", "de", derived_from=0, score=-0.5)
    assert list(entry) == TEXT.names
    assert (entry["kind"], entry["derived_from"], entry["anchor"], entry["spans"]) == ("translation", 0, None, None)


def test_reject_row_shrinks_bytes_and_long_strings_and_flags_it():
    row = {"id": "r1", "source": "s", "source_id": "k", "image": {"bytes": b"\x00" * 500, "sha256": "ab"}}
    record = Reject.of_row(row, "bad", "why")
    assert "bytes" not in record.raw["image"] and record.level == "record" and record.stage == ""
    text = Reject.of_row(row, "long", "why", {"text": "x" * (MAX_RAW_STRING + 10), "blob": b"y" * 100}, level="text")
    out = reject_row(text)
    assert set(out) == set(REJECTS.names) and out["raw_truncated"] is True
    raw = json.loads(out["raw"])
    assert raw["text"].endswith("…[10 more chars]") and raw["blob"]["$bytes"] == 100
    assert reject_row(Reject("s", "r", "d", "src", None, {"ok": 1}))["raw_truncated"] is False


def test_remap_text_indices_points_at_kept_texts():
    texts = [{"anchor": 2, "derived_from": None}, {"anchor": None, "derived_from": 0}]
    remap_text_indices(texts, {0: 0, 2: 1})
    assert texts == [{"anchor": 1, "derived_from": None}, {"anchor": None, "derived_from": 0}]


def test_row_constants_are_defined_once_in_the_contract():
    """UNDETERMINED, TEXT_KINDS, REJECTS_TAG and the raw limits live in schemas/rows.py only."""
    pattern = r"^(UNDETERMINED|TEXT_KINDS|REJECTS_TAG|MAX_RAW_\w+|_COMPARE_AS)\s*="
    found = subprocess.run(["git", "grep", "-lE", pattern, "--", "*.py"], cwd=ROOT, capture_output=True, text=True)
    assert found.stdout.split() == ["schemas/rows.py"]
    lang_keys = subprocess.run(["git", "grep", "-l", "^def lang_key", "--", "*.py"], cwd=ROOT, capture_output=True,
                               text=True)
    assert lang_keys.stdout.split() == ["schemas/rows.py"]
