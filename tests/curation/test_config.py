"""Config errors name the setting and say what to change; the example config is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.config import ConfigError, config_from_dict, load_config

SRC = {"name": "a", "format": "jsonl", "paths": ["x.jsonl"]}


def err(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, "/base")
    return str(info.value)


def test_messages_name_the_setting_and_the_fix():
    assert "use one of" in err({"sources": [{**SRC, "format": "xml"}]})
    assert "sources[0]: unknown setting(s) ['colums']" in err({"sources": [{**SRC, "colums": {}}]})
    assert "not roles of kind 'pair'" in err({"sources": [{**SRC, "columns": {"text": "t"}}]})
    assert "names must be unique" in err({"sources": [SRC, SRC]})
    assert "add at least one input" in err({})
    assert "image.max_side (16) is below image.min_side (32)" in err({"sources": [SRC], "image": {"max_side": 16}})
    assert "dedup.key" in err({"sources": [SRC], "dedup": {"key": "url"}})
    assert "lid.low_confidence" in err({"sources": [SRC], "lid": {"low_confidence": "drop"}})
    assert "unknown top-level" in err({"sources": [SRC], "imgae": {}})
    assert "tgt_paths" in err({"sources": [{**SRC, "format": "parallel_files", "kind": "parallel"}]})


def test_paths_resolve_against_the_config_file():
    cfg = config_from_dict({"sources": [{**SRC, "paths": ["d/x.jsonl", "/abs.jsonl", "gs://b/y.jsonl"]}]}, "/base")
    assert cfg.sources[0].paths == ["/base/d/x.jsonl", "/abs.jsonl", "gs://b/y.jsonl"]


def test_example_config_is_valid():
    cfg = load_config(Path(__file__).parents[2] / "curation" / "example_build.toml")
    assert [s.kind for s in cfg.sources] == ["pair", "pair", "pair", "weak", "parallel"]


def test_bad_toml_names_the_file(tmp_path):
    bad = tmp_path / "b.toml"
    bad.write_text("[[sources]\n")
    with pytest.raises(ConfigError, match="b.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_example_config_shows_every_setting():
    """curation/example_build.toml is the complete annotated config: every setting of every
    section appears in its section, set or (when its default has no TOML value) commented."""
    import dataclasses
    import re

    from codeswitch.config import CodeSwitchConfig
    from curation.config import DedupConfig, ImageConfig, OutputConfig, SourceConfig, TextConfig
    from curation.lid.config import LidConfig
    from curation.relevance.config import RelevanceConfig
    from translate.config import TranslateConfig

    text = (Path(__file__).parents[2] / "curation" / "example_build.toml").read_text()
    sections = {"[[sources]]": SourceConfig, "[image]": ImageConfig, "[text]": TextConfig, "[dedup]": DedupConfig,
                "[output]": OutputConfig, "[lid]": LidConfig, "[mt]": TranslateConfig,
                "[codeswitch]": CodeSwitchConfig, "[relevance]": RelevanceConfig}
    parts = re.split(r"^(\[\[sources\]\]|\[\w+\])", text, flags=re.M)
    body: dict[str, str] = {}
    for head, part in zip(parts[1::2], parts[2::2], strict=True):
        body[head] = body.get(head, "") + part
    missing = [f"{head} {f.name}" for head, cls in sections.items() for f in dataclasses.fields(cls)
               if not re.search(rf"^#?\s*{f.name}\s*=|#.*\b{f.name}\b", body.get(head, ""), re.M)]
    assert missing == []
