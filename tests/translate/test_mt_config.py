"""[mt] config errors name the setting and say what to change; paths resolve; defaults."""

from __future__ import annotations

import pytest

from translate.config import TranslateConfig, TranslateConfigError, translate_config_from_dict

OK = {"model": "models/m2m", "targets": ["de", "fr"]}


def err(data: dict) -> str:
    with pytest.raises(TranslateConfigError) as info:
        translate_config_from_dict(data, "/base")
    return str(info.value)


def test_messages_name_the_setting():
    assert "mt: unknown setting(s) ['beams']" in err({**OK, "beams": 4})
    assert "mt.targets = []: list at least one" in err({**OK, "targets": []})
    assert "mt.targets" in err({**OK, "targets": ["de", "de"]})
    assert "mt.engine = 'marian'" in err({**OK, "engine": "marian"})
    assert "mt.dtype = 'float16': float16/bfloat16 need device" in err({**OK, "dtype": "float16"})
    assert "beam = 0" in err({**OK, "beam": 0})
    assert "mt.beam = '4': expected an integer" in err({**OK, "beam": "4"})
    assert "mt.bucket_boundaries" in err({**OK, "bucket_boundaries": [64, 32]})
    assert "mt.source_kinds" in err({**OK, "source_kinds": ["alt"]})


def test_defaults_paths_and_derived_settings():
    cfg = translate_config_from_dict(OK, "/base")
    assert cfg.model == "/base/models/m2m" and cfg.enabled and cfg.beam == 4 and cfg.source_kinds == ["caption"]
    assert cfg.resolved_model_id() == "fairseq:m2m" and cfg.copies() is None
    gpu = translate_config_from_dict({**OK, "device": "cuda", "dtype": "float16", "lang_codes": {"de": "deu_Latn"}})
    assert gpu.copies() == 1 and gpu.model_code("de") == "deu_Latn" and gpu.model_code("fr") == "fr"
    assert gpu.resource_hint() == "type:nvidia-l4;count:1;install-nvidia-driver" and cfg.resource_hint() is None
    assert translate_config_from_dict({**OK, "device": "cuda", "accelerator": "none"}).resource_hint() is None
    assert not translate_config_from_dict({}).enabled and TranslateConfig().decoding().beam == 4
