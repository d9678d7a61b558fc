"""``Decoding.same_length``: with the fairseq engine a sentence's translation and score do
not depend on the sentences it is batched with, bit for bit. CTranslate2's do, in the last
float bits, even without padding (its kernels depend on the batch size): tested as such.

This is what makes a build with ``[mt]`` byte-reproducible whatever the runner's batches
(``[mt] same_length_batches``, on by default). The model is the session's tiny fairseq
transformer: its next-token distributions are flat, so a score that depended on padding
would show here (the padded default differs in the last float bits, measured in
translate/README.md, Batching).
"""

from __future__ import annotations

import random

import pytest

from translate.engine import Decoding


def _sentences(tiny_mt) -> list[str]:
    return [src for src, _ in tiny_mt.test["de"]][:64]


def _groupings(sentences: list[str]) -> list[list[list[str]]]:
    """Three ways of sending the same sentences: all at once, shuffled in fours, one by one."""
    shuffled = random.Random(7).sample(sentences, len(sentences))
    return [[sentences], [shuffled[i:i + 4] for i in range(0, len(shuffled), 4)], [[s] for s in sentences]]


def _translate_grouped(engine, sentences: list[str]) -> list[dict[str, tuple[str, float]]]:
    out = []
    for grouping in _groupings(sentences):
        got = {}
        for group in grouping:
            for src, hyp in zip(group, engine.translate(group, "en", "de"), strict=True):
                got[src] = (hyp.text, hyp.score)
        out.append(got)
    return out


@pytest.fixture(scope="module")
def engines(tiny_mt, tiny_ct2):
    from translate.ct2_engine import CT2Translator
    from translate.fairseq_engine import FairseqTranslator

    def make(same_length: bool):
        dec = Decoding(beam=4, max_tokens=4096, same_length=same_length)
        return {"fairseq": FairseqTranslator(tiny_mt.model_dir, dec, cpu_threads=1),
                "ct2": CT2Translator(tiny_ct2, dec, cpu_threads=1)}
    return make


def test_same_length_batches_give_the_same_bits_in_any_grouping(tiny_mt, engines):
    sentences = _sentences(tiny_mt)
    whole, fours, alone = _translate_grouped(engines(True)["fairseq"], sentences)
    assert whole == fours == alone, "a score or text depends on the batch-mates"


def test_ctranslate2_scores_still_depend_on_the_batch_in_the_last_bits(tiny_mt, engines):
    """What translate/README.md says of CTranslate2: same texts in any grouping, scores
    within 1e-6 (on this machine's CPU 50 of 64 differ, by up to 2.6e-7)."""
    sentences = _sentences(tiny_mt)
    whole, _, alone = _translate_grouped(engines(True)["ct2"], sentences)
    assert {s: t for s, (t, _) in whole.items()} == {s: t for s, (t, _) in alone.items()}
    assert max(abs(whole[s][1] - alone[s][1]) for s in sentences) < 1e-6


def test_padded_batches_change_some_scores(tiny_mt, engines):
    """The control: with padding, grouping changes some fairseq scores (not the texts): the
    test above can fail."""
    sentences = _sentences(tiny_mt)
    whole, _, alone = _translate_grouped(engines(False)["fairseq"], sentences)
    assert {s: t for s, (t, _) in whole.items()} == {s: t for s, (t, _) in alone.items()}
    assert any(whole[s][1] != alone[s][1] for s in sentences)
