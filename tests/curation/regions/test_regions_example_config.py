"""curation/example_build.toml shows every [regions] and [concepts] setting, and is valid."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from curation.concepts.config import ConceptsConfig
from curation.config import load_config
from curation.regions.config import RegionsConfig

EXAMPLE = Path(__file__).parents[3] / "curation" / "example_build.toml"


def _section(text: str, head: str) -> str:
    parts = re.split(r"^(\[\[sources\]\]|\[\w+\])", text, flags=re.M)
    return "".join(part for h, part in zip(parts[1::2], parts[2::2], strict=True) if h == head)


def test_every_regions_and_concepts_setting_appears_in_its_section():
    text = EXAMPLE.read_text()
    missing = [f"{head} {f.name}" for head, cls in (("[regions]", RegionsConfig), ("[concepts]", ConceptsConfig))
               for f in dataclasses.fields(cls) if not re.search(rf"^#?\s*{f.name}\s*=", _section(text, head), re.M)]
    assert missing == []


def test_the_example_leaves_both_stages_off():
    cfg = load_config(EXAMPLE)
    assert not cfg.regions.enabled and not cfg.concepts.enabled
    assert cfg.regions.tsv_columns == RegionsConfig().tsv_columns and cfg.concepts.alias_separator == "\t"
