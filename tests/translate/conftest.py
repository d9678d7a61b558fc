"""The tiny fairseq transformer the translation tests run on, trained once per session.

``tiny_mt``: a multilingual en→{de, fr, es} transformer shaped like M2M-100 (shared
SentencePiece vocabulary, ``translation_multi_simple_epoch``, source language token,
forced target language token), trained by ``translate.demo_model.train_demo_model`` with
``fairseq-preprocess`` and ``fairseq-train`` on generated captions (``curation.demo.synth``),
2 layers, d=64, fixed seed, CPU, one thread; about a minute on 2 cores. Its test split
(held-out captions, a separate seed) is binarised for ``fairseq-generate``.
``tiny_ct2``: the same model converted to CTranslate2 (float32).
``tiny_bilingual_mt``: a bilingual en→de transformer shaped like a WMT model (fairseq's
``translation`` task, no language tokens, separate source and target dictionaries, one
SentencePiece model), 1 layer, d=64; about 20 s; its test split is built like ``tiny_mt``'s.
``tiny_bilingual_ct2``: that model converted to CTranslate2 (float32).
``recipe_mt``: en→de trained exactly by fairseq's canonical recipe (``fairseq_recipe``):
subword-nmt BPE (``@@ ``), ``fairseq-preprocess --source-lang en --target-lang de``, then
``fairseq-train data-bin`` without language flags, so the checkpoint records none; the
model directory holds ``checkpoint_best.pt`` and the two dictionaries only. 2 layers, d=64,
400 pairs, 10 epochs; 15-45 s on 2 cores (by their load), fairseq-generate 10-25 s more. ``recipe_joined_mt``: the same data preprocessed with
``--joined-dictionary`` and trained with ``--share-all-embeddings`` (1 layer, 4 epochs).
``recipe_generate_runs``/``joined_generate_runs``: ``fairseq-generate --remove-bpe`` on
their test splits, as the recipe runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

TARGETS = ("de", "fr", "es")
TRAIN_PAIRS, TRAIN_SEED = 800, 0
TEST_PAIRS, TEST_SEED = 120, 4242
BILINGUAL_PAIRS = 500
RECIPE_PAIRS, RECIPE_MERGES = 400, 120


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
    from curation.demo.synth import parallel_captions
    from translate.demo_model import binarize, train_demo_model

    work = tmp_path_factory.mktemp("tiny_mt")
    train = {t: parallel_captions(TRAIN_PAIRS, TRAIN_SEED, "en", t) for t in TARGETS}
    model_dir = train_demo_model(work, train)
    seen = {src for pairs in train.values() for src, _ in pairs}
    test = {"de": [p for p in parallel_captions(TEST_PAIRS, TEST_SEED, "en", "de") if p[0] not in seen]}
    binarize({("en", "de"): test["de"]}, "test", work / "spm.model", work / "dict.txt", work / "raw", work / "bin")
    return TinyMT(work, model_dir, work / "bin", work / "spm.model", test)


@pytest.fixture(scope="session")
def tiny_bilingual_mt(tmp_path_factory: pytest.TempPathFactory) -> TinyMT:
    from curation.demo.synth import parallel_captions
    from translate.demo_model import DemoModelSpec, binarize, train_demo_model

    work = tmp_path_factory.mktemp("tiny_bilingual_mt")
    train = parallel_captions(BILINGUAL_PAIRS, TRAIN_SEED, "en", "de")
    # small batches, many updates: 1 layer learns the task in ~450 updates (~10 s of training)
    spec = DemoModelSpec(layers=1, epochs=20, max_tokens=400, warmup=50, vocab_size=200)
    model_dir = train_demo_model(work, {"de": train}, spec=spec, bilingual=True)
    seen = {src for src, _ in train}
    test = [p for p in parallel_captions(TEST_PAIRS, TEST_SEED, "en", "de") if p[0] not in seen]
    dicts = {lang: work / f"dict.{lang}.txt" for lang in ("en", "de")}
    binarize({("en", "de"): test}, "test", work / "spm.model", dicts, work / "raw", work / "bin")
    return TinyMT(work, model_dir, work / "bin", work / "spm.model", {"de": test}, ("de",))


@pytest.fixture(scope="session")
def tiny_ct2(tiny_mt: TinyMT) -> Path:
    from translate.ct2_engine import convert_checkpoint

    return convert_checkpoint(tiny_mt.model_dir, tiny_mt.work / "ct2")


@pytest.fixture(scope="session")
def tiny_bilingual_ct2(tiny_bilingual_mt: TinyMT) -> Path:
    from translate.ct2_engine import convert_checkpoint

    return convert_checkpoint(tiny_bilingual_mt.model_dir, tiny_bilingual_mt.work / "ct2")


def _generate_beams(mt: TinyMT) -> dict:
    """fairseq-generate's en->de output on ``mt``'s test split at beam 1 and beam 4 (the two
    subprocesses run concurrently)."""
    from concurrent.futures import ThreadPoolExecutor

    from translate.baseline import run_generate
    from translate.checkpoint import model_info, safe_load
    from translate.engine import Decoding

    info = model_info(safe_load(mt.checkpoint))

    def run(beam: int):
        return run_generate(mt.bin_dir, mt.checkpoint, info, "en", "de", Decoding(beam=beam, max_tokens=1024),
                            spm_model=mt.spm)

    with ThreadPoolExecutor(2) as pool:
        return dict(zip((1, 4), pool.map(run, (1, 4)), strict=True))


@pytest.fixture(scope="session")
def generate_runs(tiny_mt: TinyMT) -> dict:
    return _generate_beams(tiny_mt)


@pytest.fixture(scope="session")
def bilingual_generate_runs(tiny_bilingual_mt: TinyMT) -> dict:
    return _generate_beams(tiny_bilingual_mt)


def _recipe_splits() -> dict[str, list[tuple[str, str]]]:
    from curation.demo.synth import parallel_captions

    train = parallel_captions(RECIPE_PAIRS, TRAIN_SEED, "en", "de")
    seen = {src for src, _ in train}
    valid = [p for p in parallel_captions(60, 7, "en", "de") if p[0] not in seen][:40]
    test = [p for p in parallel_captions(80, TEST_SEED, "en", "de") if p[0] not in seen][:60]
    return {"train": train, "valid": valid, "test": test}


@pytest.fixture(scope="session")
def recipe_bpe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fairseq_recipe import write_bpe_splits

    return write_bpe_splits(tmp_path_factory.mktemp("recipe"), _recipe_splits(), RECIPE_MERGES)


@pytest.fixture(scope="session")
def recipe_mt(recipe_bpe: Path):
    from fairseq_recipe import train_recipe

    return train_recipe(recipe_bpe.parent / "separate", recipe_bpe, joined=False, layers=2, epochs=10)


@pytest.fixture(scope="session")
def recipe_joined_mt(recipe_bpe: Path):
    from fairseq_recipe import train_recipe

    return train_recipe(recipe_bpe.parent / "joined", recipe_bpe, joined=True, layers=1, epochs=4)


def _recipe_generate(model) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from fairseq_recipe import generate

    with ThreadPoolExecutor(2) as pool:
        return dict(zip((1, 4), pool.map(lambda beam: generate(model, beam), (1, 4)), strict=True))


@pytest.fixture(scope="session")
def recipe_generate_runs(recipe_mt) -> dict:
    return _recipe_generate(recipe_mt)


@pytest.fixture(scope="session")
def joined_generate_runs(recipe_joined_mt) -> dict:
    return _recipe_generate(recipe_joined_mt)


@pytest.fixture(scope="session")
def recipe_ct2(recipe_mt) -> Path:
    from translate.ct2_engine import convert_checkpoint

    return convert_checkpoint(recipe_mt.model_dir, recipe_mt.work / "ct2", languages=("en", "de"))
