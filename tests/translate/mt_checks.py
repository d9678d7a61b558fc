"""The exactness check both test models share (multilingual and bilingual)."""

from __future__ import annotations

import pytest

from translate.engine import Decoding
from translate.fairseq_engine import FairseqTranslator


def check_equals_generate(model_dir, test_pairs, generated, beam: int) -> FairseqTranslator:
    """The fairseq engine's en->de output on ``test_pairs`` equals fairseq-generate's
    (``generated.hypotheses``), text for text, scores to 1e-5; returns the engine."""
    # a different token budget from fairseq-generate's, so the batches differ too
    engine = FairseqTranslator(model_dir, Decoding(beam=beam, max_tokens=300), cpu_threads=1)
    sources = [src for src, _ in test_pairs]
    ours = engine.translate(sources, "en", "de")
    theirs = generated.hypotheses
    assert len(theirs) == len(sources)
    assert [h.text for h in ours] == [h.text for h in theirs]
    assert [h.score for h in ours] == pytest.approx([h.score for h in theirs], abs=1e-5)
    # the model is good enough that these are real translations, not noise
    refs = [tgt for _, tgt in test_pairs]
    assert sum(h.text == r for h, r in zip(ours, refs, strict=True)) >= 0.8 * len(refs)
    return engine
