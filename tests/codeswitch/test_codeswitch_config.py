"""``[codeswitch]`` settings: M3P defaults per mode, paths resolved, and every mistake
reported with the setting's name and what to change, before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeswitch.config import SWITCHABLE, CodeSwitchConfig, codeswitch_config_from_dict
from schemas.rows import TEXT_KINDS


@pytest.fixture()
def dicts(tmp_path: Path) -> Path:
    d = tmp_path / "muse"
    d.mkdir()
    (d / "en-de.txt").write_text("red rot\n")
    (d / "en-fr.txt").write_text("red rouge\n")
    return d


def err(data: dict, base: str = "/") -> str:
    with pytest.raises(ValueError) as info:
        codeswitch_config_from_dict(data, base)
    return str(info.value)


def test_defaults_follow_m3p_per_mode(dicts: Path):
    single = codeswitch_config_from_dict({"dictionaries": "muse"}, str(dicts.parent))
    assert single.dictionaries == str(dicts)
    assert (single.mode, single.sent_ratio, single.word_ratio, single.variants) == ("single", 1.0, 0.8, 1)
    assert single.from_kinds == ["caption"] and single.origin == "muse:muse"
    multi = codeswitch_config_from_dict({"dictionaries": str(dicts), "mode": "multi"})
    assert (multi.sent_ratio, multi.word_ratio) == (0.8, 0.8)
    assert multi.target_langs() == ["de", "fr"]


def test_switchable_kinds_are_schema_kinds():
    assert set(SWITCHABLE) <= set(TEXT_KINDS) and "codeswitch" not in SWITCHABLE


def test_disabled_without_dictionaries():
    cfg = codeswitch_config_from_dict({})
    assert not cfg.enabled and cfg == CodeSwitchConfig(sent_ratio=1.0, word_ratio=0.8)


def test_explicit_files_per_pair(dicts: Path):
    cfg = codeswitch_config_from_dict({"dictionaries": {"en-de": "muse/en-de.txt"}, "name": "my-dict"}, str(dicts.parent))
    assert cfg.dictionary_files() == {("en", "de"): str(dicts / "en-de.txt")}
    assert cfg.origin == "my-dict"


def test_messages_name_the_setting(dicts: Path):
    d = str(dicts)
    assert err({"dictionaries": d, "word_ratio": 1.5}) == "codeswitch.word_ratio = 1.5: must be in [0, 1]"
    assert "codeswitch.sent_ratio = -0.1: must be in [0, 1]" in err({"dictionaries": d, "sent_ratio": -0.1})
    assert "codeswitch.mode = 'clag': use one of ('single', 'multi', 'sentence')" in err({"dictionaries": d, "mode": "clag"})
    assert "codeswitch.variants = 0: must be an integer >= 1" in err({"dictionaries": d, "variants": 0})
    assert "codeswitch.from_kinds = ['weak']" in err({"dictionaries": d, "from_kinds": ["weak"]})
    assert "codeswitch.langs = 'de'" in err({"dictionaries": d, "langs": "de"})
    assert "codeswitch.case" in err({"dictionaries": d, "case": "lower"})
    assert "codeswitch.on_malformed" in err({"dictionaries": d, "on_malformed": "ignore"})
    assert "unknown setting(s) ['ratio']" in err({"dictionaries": d, "ratio": 0.5})
    assert "no dictionary into ['ja']; found ['en-de', 'en-fr']" in err({"dictionaries": d, "langs": ["de", "ja"]})
    assert "is not a directory" in err({"dictionaries": "nowhere"}, str(dicts))
    assert "no such file" in err({"dictionaries": {"en-de": "missing.txt"}})
    assert "like \"en-de\"" in err({"dictionaries": {"en_de": d}})
    assert "no {src}-{tgt}.txt dictionary" in err({"dictionaries": d, "source_langs": ["zh"]})
