"""The tiny fairseq transformer the translation tests run on, trained once per session.

``tiny_mt``: a multilingual en→{de, fr, es} transformer shaped like M2M-100 (shared
SentencePiece vocabulary, ``translation_multi_simple_epoch``, source language token,
forced target language token), trained by ``translate.demo_model.train_demo_model`` with
``fairseq-preprocess`` and ``fairseq-train`` on generated captions (``curation.synth``),
2 layers, d=64, fixed seed, CPU, one thread; about a minute on 2 cores. Its test split
(held-out captions, a separate seed) is binarised for ``fairseq-generate``.
``tiny_ct2``: the same model converted to CTranslate2 (float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

TARGETS = ("de", "fr", "es")
TRAIN_PAIRS, TRAIN_SEED = 800, 0
TEST_PAIRS, TEST_SEED = 120, 4242


@dataclass(frozen=True)
class TinyMT:
    work: Path
    model_dir: Path
    bin_dir: Path
    spm: Path
    test: dict[str, list[tuple[str, str]]]
    targets: tuple[str, ...] = TARGETS

    @property
    def checkpoint(self) -> Path:
        return self.model_dir / "model.pt"


@pytest.fixture(scope="session")
def tiny_mt(tmp_path_factory: pytest.TempPathFactory) -> TinyMT:
    from curation.synth import parallel_captions
    from translate.demo_model import binarize, train_demo_model

    work = tmp_path_factory.mktemp("tiny_mt")
    train = {t: parallel_captions(TRAIN_PAIRS, TRAIN_SEED, "en", t) for t in TARGETS}
    model_dir = train_demo_model(work, train)
    seen = {src for pairs in train.values() for src, _ in pairs}
    test = {"de": [p for p in parallel_captions(TEST_PAIRS, TEST_SEED, "en", "de") if p[0] not in seen]}
    binarize({("en", "de"): test["de"]}, "test", work / "spm.model", work / "dict.txt", work / "raw", work / "bin")
    return TinyMT(work, model_dir, work / "bin", work / "spm.model", test)


@pytest.fixture(scope="session")
def tiny_ct2(tiny_mt: TinyMT) -> Path:
    from translate.ct2_engine import convert_checkpoint

    return convert_checkpoint(tiny_mt.model_dir, tiny_mt.work / "ct2")


@pytest.fixture(scope="session")
def generate_runs(tiny_mt: TinyMT) -> dict:
    """fairseq-generate's en->de output on the test split at beam 1 and beam 4 (the two
    subprocesses run concurrently)."""
    from concurrent.futures import ThreadPoolExecutor

    from translate.baseline import run_generate
    from translate.checkpoint import model_info, safe_load
    from translate.engine import Decoding

    info = model_info(safe_load(tiny_mt.checkpoint))

    def run(beam: int):
        return run_generate(tiny_mt.bin_dir, tiny_mt.checkpoint, info, "en", "de",
                            Decoding(beam=beam, max_tokens=1024), spm_model=tiny_mt.spm)

    with ThreadPoolExecutor(2) as pool:
        return dict(zip((1, 4), pool.map(run, (1, 4)), strict=True))
