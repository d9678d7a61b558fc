"""The fairseq engine gives exactly fairseq-generate's translations; CTranslate2 nearly always.

Same checkpoint, same binarised test sentences, same decoding settings. fairseq-generate
runs as a subprocess (``translate.baseline``); the engine translates the raw sentences
(SentencePiece + dictionary, as fairseq-preprocess did) with its own batching.
"""

from __future__ import annotations

import pytest
from mt_checks import check_equals_generate

from translate.engine import Decoding
from translate.fairseq_engine import FairseqTranslator


@pytest.mark.parametrize("beam", [1, 4])
def test_engine_equals_fairseq_generate(tiny_mt, generate_runs, beam):
    check_equals_generate(tiny_mt.model_dir, tiny_mt.test["de"], generate_runs[beam], beam)


def test_ctranslate2_agrees_with_fairseq_at_beam_1(tiny_mt, tiny_ct2):
    from curation.demo.synth import parallel_captions
    from translate.ct2_engine import CT2Translator

    fs = FairseqTranslator(tiny_mt.model_dir, Decoding(beam=1), cpu_threads=1)
    ct = CT2Translator(tiny_ct2, Decoding(beam=1), cpu_threads=1)
    same = total = 0
    for tgt in tiny_mt.targets:
        sources = [src for src, _ in parallel_captions(150, 777, "en", tgt)]
        a, b = fs.translate(sources, "en", tgt), ct.translate(sources, "en", tgt)
        same += sum(x.text == y.text for x, y in zip(a, b, strict=True))
        total += len(sources)
        agreeing = [(x.score, y.score) for x, y in zip(a, b, strict=True) if x.text == y.text]
        assert [x for x, _ in agreeing] == pytest.approx([y for _, y in agreeing], abs=1e-3)
    assert same >= 0.99 * total, f"CTranslate2 agrees on {same}/{total} sentences"


def test_sentences_the_model_cannot_take_get_an_error_not_an_exception(tiny_mt):
    engine = FairseqTranslator(tiny_mt.model_dir, Decoding(beam=1), cpu_threads=1)
    hyps = engine.translate(["a red circle", "", "a " * 2000, "a blue square"], "en", "fr")
    assert hyps[0].text and hyps[3].text and hyps[0].error is None
    assert hyps[1].reason == "empty_source" and hyps[2].reason == "too_long"
    with pytest.raises(ValueError, match="does not translate de-en"):
        engine.translate(["ein Kreis"], "de", "en")
