"""Bilingual checkpoints (fairseq's ``translation`` task), as a WMT-style model is trained.

``tiny_bilingual_mt`` (conftest) has what M2M-100-shaped models lack: no language tokens,
one direction, and separate source and target dictionaries (``dict.en.txt`` and
``dict.de.txt`` differ; encoder and decoder embeddings are not shared). Mirrors
``test_mt_exactness.py``: the fairseq engine equals ``fairseq-generate``, CTranslate2
agrees at beam 1, and a direction the model lacks is refused with its name.
"""

from __future__ import annotations

import pytest
from mt_checks import check_equals_generate

from translate.checkpoint import ModelDirError, model_info, safe_load, task_config
from translate.engine import Decoding
from translate.fairseq_engine import FairseqTranslator


def test_model_info_reads_the_bilingual_checkpoint(tiny_bilingual_mt):
    info = model_info(safe_load(tiny_bilingual_mt.checkpoint))
    assert info.task == "translation" and not info.multilingual
    assert info.pairs == (("en", "de"),) and info.langs == ("en", "de")
    assert info.encoder_langtok is None and not info.decoder_langtok
    src = (tiny_bilingual_mt.model_dir / "dict.en.txt").read_text(encoding="utf-8")
    tgt = (tiny_bilingual_mt.model_dir / "dict.de.txt").read_text(encoding="utf-8")
    assert src != tgt and "__en__" not in src + tgt and "__de__" not in src + tgt


def test_a_checkpoint_without_its_languages_takes_them_from_the_caller(tiny_bilingual_mt):
    # what fairseq-train writes when it infers the pair from the data directory
    # (test_mt_recipe.py trains such a checkpoint; this is the same state, edited)
    state = safe_load(tiny_bilingual_mt.checkpoint)
    task_config(state)["source_lang"] = None
    with pytest.raises(ModelDirError, match="does not record its languages.*--src/--tgt"):
        model_info(state)
    assert model_info(state, ("en", "de")).pairs == (("en", "de"),)
    task_config(state)["source_lang"] = "en"
    assert model_info(state, ("xx", "yy")).pairs == (("en", "de"),), "recorded languages win"


@pytest.mark.parametrize("beam", [1, 4])
def test_engine_equals_fairseq_generate(tiny_bilingual_mt, bilingual_generate_runs, beam):
    engine = check_equals_generate(tiny_bilingual_mt.model_dir, tiny_bilingual_mt.test["de"],
                                   bilingual_generate_runs[beam], beam)
    assert engine.src_dict is not engine.tgt_dict and len(engine.src_dict) != len(engine.tgt_dict)


def test_ctranslate2_agrees_with_fairseq_at_beam_1(tiny_bilingual_mt, tiny_bilingual_ct2):
    from curation.demo.synth import parallel_captions
    from translate.ct2_engine import CT2Translator

    fs = FairseqTranslator(tiny_bilingual_mt.model_dir, Decoding(beam=1), cpu_threads=1)
    ct = CT2Translator(tiny_bilingual_ct2, Decoding(beam=1), cpu_threads=1)
    sources = [src for src, _ in parallel_captions(300, 777, "en", "de")]
    a, b = fs.translate(sources, "en", "de"), ct.translate(sources, "en", "de")
    same = sum(x.text == y.text for x, y in zip(a, b, strict=True))
    assert same >= 0.99 * len(sources), f"CTranslate2 agrees on {same}/{len(sources)} sentences"
    agreeing = [(x.score, y.score) for x, y in zip(a, b, strict=True) if x.text == y.text]
    assert [x for x, _ in agreeing] == pytest.approx([y for _, y in agreeing], abs=1e-3)


def test_a_direction_the_model_lacks_is_refused_by_name(tiny_bilingual_mt, tiny_bilingual_ct2):
    from translate.config import TranslateConfig, TranslateConfigError
    from translate.ct2_engine import CT2Translator
    from translate.loading import check_model

    engines = [FairseqTranslator(tiny_bilingual_mt.model_dir, Decoding(beam=1), cpu_threads=1),
               CT2Translator(tiny_bilingual_ct2, Decoding(beam=1), cpu_threads=1)]
    for engine in engines:
        assert engine.supports("en", "de") and not engine.supports("de", "en")
        for src, tgt in (("de", "en"), ("en", "fr")):
            with pytest.raises(ValueError, match=f"does not translate {src}-{tgt}"):
                engine.translate(["a red circle"], src, tgt)
    with pytest.raises(TranslateConfigError, match=r"cannot translate into \['fr'\].*translates into \['de'\]"):
        check_model(TranslateConfig(model=str(tiny_bilingual_mt.model_dir), targets=["fr"]))
