"""Test and validation splits of the demo corpus (issue 14.2): inputs/heldout (split "test")
and inputs/validation (split "validation"), disjoint from each other and from training in
images and in captions (every language), of the requested sizes (counts or fractions,
1,000 test images and more), and the default corpus byte-identical to before they existed.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.config import load_config
from curation.demo import synth
from curation.demo.corpus import corpus_splits, main, write_corpus
from curation.demo.lexicon import ALL_LANGUAGES, LANGUAGES
from pretrain.evalsets import load_benchmark

# sha256 of the whole tree write_corpus(n, seed) wrote before validation splits and Italian
# existed (commit 2ce8383), file by file (see _tree_sha256): the default corpus must not move.
DEFAULT_CORPUS_SHA256 = {
    (48, 11): "bd8b6acbb1d2c2c62de2942dffeb583923aded94083027ee45111624e0ec40d5",
    (120, 3): "5a86106f2007383a2084787d3c54dd0caa3cdc4b4795d98da49533ac9a20056e",
}


def _tree_sha256(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _held(inputs: Path, folder: str) -> tuple[set[str], set[str], set[str]]:
    """(keys, image sha256s, captions in every language) of inputs/<folder>."""
    rows = _jsonl(inputs / folder / "captions.jsonl")
    images = {hashlib.sha256((inputs / folder / r["image"]).read_bytes()).hexdigest() for r in rows}
    texts = {v for r in rows for k, v in r.items() if k == "caption" or k.startswith("caption_")}
    return {r["key"] for r in rows}, images, texts


def _train(inputs: Path) -> tuple[set[str], set[str], set[str]]:
    """(keys, image sha256s, captions in every language) of every training source."""
    rows = [r for r in _jsonl(inputs / "captions.jsonl") if r["caption"]]
    keys, texts = {r["key"] for r in rows}, {r["caption"] for r in rows}
    images = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (inputs / "images").iterdir()}
    for r in pq.read_table(inputs / "img2dataset" / "00000.parquet").to_pylist():
        keys.add(r["key"])
        texts.add(r["caption"])
        if r["jpg"]:
            images.add(hashlib.sha256(r["jpg"]).hexdigest())
    with tarfile.open(inputs / "webdataset" / "00000.tar") as tar:
        for m in tar.getmembers():
            data = tar.extractfile(m).read()
            keys.add(m.name.rsplit(".", 1)[0])
            if m.name.endswith(".jpg"):
                images.add(hashlib.sha256(data).hexdigest())
            elif m.name.endswith(".txt"):
                texts.add(data.decode())
    with open(inputs / "parallel.tsv", encoding="utf-8", newline="") as f:
        texts |= {t for r in csv.DictReader(f, delimiter="\t") for t in (r["src"], r["tgt"])}
    for path in inputs.glob("parallel_*.txt"):
        texts |= set(path.read_text(encoding="utf-8").splitlines())
    return keys, images, texts


@pytest.mark.parametrize(("n", "seed"), sorted(DEFAULT_CORPUS_SHA256))
def test_the_default_corpus_is_unchanged(tmp_path: Path, n: int, seed: int) -> None:
    write_corpus(tmp_path, n=n, seed=seed)
    assert _tree_sha256(tmp_path) == DEFAULT_CORPUS_SHA256[(n, seed)]
    assert not (tmp_path / "inputs" / "validation").exists()
    assert "validation" not in (tmp_path / "build.toml").read_text()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("splits")
    write_corpus(out, n=400, seed=7, langs=ALL_LANGUAGES, held_out=50, validation=40)
    return out


def test_counts_as_requested(corpus: Path) -> None:
    inputs = corpus / "inputs"
    expected = json.loads((inputs / "expected.json").read_text())
    assert len(_jsonl(inputs / "heldout/captions.jsonl")) == expected["samples"]["heldout"] == 50
    assert len(_jsonl(inputs / "validation/captions.jsonl")) == expected["samples"]["validation"] == 40
    assert expected["input_records"]["validation"] == 40 and expected["validation"] == 40
    assert len(list((inputs / "validation" / "images").iterdir())) == 40


def test_splits_are_disjoint_in_images_and_captions(corpus: Path) -> None:
    inputs = corpus / "inputs"
    (test_keys, test_images, test_texts), (val_keys, val_images, val_texts) = _held(inputs, "heldout"), _held(inputs, "validation")
    train_keys, train_images, train_texts = _train(inputs)
    assert len(test_texts) > 100 and len(val_texts) > 100 and len(train_texts) > 1000
    for a, b in ((test_keys, val_keys), (test_keys, train_keys), (val_keys, train_keys)):
        assert not a & b
    for a, b in ((test_images, val_images), (test_images, train_images), (val_images, train_images)):
        assert not a & b
    for a, b in ((test_texts, val_texts), (test_texts, train_texts), (val_texts, train_texts)):
        assert not a & b


def test_gold_captions_in_every_language(corpus: Path) -> None:
    for folder in ("heldout", "validation"):
        for row in _jsonl(corpus / "inputs" / folder / "captions.jsonl"):
            assert {f"caption_{lang}" for lang in ALL_LANGUAGES[1:]} <= set(row) and row["caption"]
        with open(corpus / "inputs" / folder / "parallel.tsv", encoding="utf-8", newline="") as f:
            assert {r["tgt_lang"] for r in csv.DictReader(f, delimiter="\t")} == set(ALL_LANGUAGES[1:])


def test_the_validation_set_loads_like_the_test_set(corpus: Path) -> None:
    """pretrain.evalsets reads inputs/validation as it reads inputs/heldout (a benchmark folder)."""
    for folder, count in (("heldout", 50), ("validation", 40)):
        evalset = load_benchmark(corpus / "inputs" / folder)
        assert len(evalset.images) == count and set(evalset.captions) == set(ALL_LANGUAGES)
        assert all(len(caps) == count for caps in evalset.captions.values())
    cfg = load_config(corpus / "build.toml")
    assert [(s.name, s.split) for s in cfg.sources][-2:] == [("heldout", "test"), ("validation", "validation")]


def test_the_test_set_does_not_depend_on_validation(corpus: Path, tmp_path: Path) -> None:
    write_corpus(tmp_path, n=400, seed=7, langs=ALL_LANGUAGES, held_out=50)
    assert _jsonl(tmp_path / "inputs/heldout/captions.jsonl") == _jsonl(corpus / "inputs/heldout/captions.jsonl")
    assert not (tmp_path / "inputs/validation").exists()


def test_fractions_and_the_cli(tmp_path: Path) -> None:
    assert main([str(tmp_path), "--n", "200", "--held-out", "0.1", "--validation", "0.05", "--langs", "en,de"]) == 0
    expected = json.loads((tmp_path / "inputs/expected.json").read_text())
    assert expected["samples"]["heldout"] == 20 and expected["samples"]["validation"] == 10
    assert expected["held_out"] == 0.1 and expected["validation"] == 0.05
    assert main([str(tmp_path), "--n", "200", "--held-out", "30"]) == 0
    samples = json.loads((tmp_path / "inputs/expected.json").read_text())["samples"]
    assert samples["heldout"] == 30 and set(samples) == {"train", "heldout"}
    assert not (tmp_path / "inputs/validation").exists()  # the second corpus replaced the first


def test_a_thousand_test_images() -> None:
    train, valid, test = corpus_splits(2400, 0, LANGUAGES, held_out=1000, validation=300)
    assert (len(test), len(valid)) == (1000, 300) and len(train) > 500
    ids = [{s.id for s in part} for part in (train, valid, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    held = {t for s in test for t in s.captions.values()}
    assert held.isdisjoint(t for s in valid for t in s.captions.values())
    assert held.isdisjoint(t for s in train for t in s.captions.values())
    val = {t for s in valid for t in s.captions.values()}
    assert val.isdisjoint(t for s in train for t in s.captions.values())


def test_bad_sizes_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = synth.generate(20, seed=1, langs=("en",))
    with pytest.raises(ValueError, match="held_out = 20"):
        synth.split(samples, 20, seed=1)
    with pytest.raises(ValueError, match="fraction"):
        synth.split(samples, 1.0, seed=1)
    with pytest.raises(TypeError, match="count"):
        synth.split(samples, True, seed=1)
    train, test = synth.split(samples, 5, seed=1)
    with pytest.raises(ValueError, match="validation = 15"):
        synth.split_validation(train, test, 15, seed=1)
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--n", "10", "--held-out", "10"])
    # one caption for every image: nothing may be trained on or validated without leaking
    same = [dataclasses.replace(s, captions={"en": "a red circle"}) for s in samples]
    monkeypatch.setattr("curation.demo.corpus.generate", lambda *args: same)
    with pytest.raises(ValueError, match="no training sample"):
        corpus_splits(20, 1, ("en",), held_out=5)
    with pytest.raises(ValueError, match="only 0 non-test samples have no test caption"):
        corpus_splits(20, 1, ("en",), held_out=5, validation=3)


@pytest.mark.slow
def test_a_build_keeps_the_validation_split(corpus: Path, tmp_path: Path) -> None:
    """The pipeline carries the validation source's rows as split "validation" (held out,
    so no caption of theirs moves), and pretrain.evalsets reads them from the dataset."""
    from curation.pipeline import run_build
    from pretrain.evalsets import load_curated

    manifest = run_build(load_config(corpus / "build.toml"), str(tmp_path / "dataset"))
    assert manifest["counts"]["by_source"]["validation"]["output"] == 40
    assert len(load_curated(str(tmp_path / "dataset"), "validation").images) == 40
    assert len(load_curated(str(tmp_path / "dataset"), "test").images) == 50
