"""The synthetic world (curation.demo.synth) and the demo corpus written from it (curation.demo.corpus).

Later stages train language ID, MT and dictionaries on this text and check the build's
rejects against the planted bad inputs, so the tests pin: reproducible bytes, grammatical
captions, a lexicon that agrees with the captions, disjoint splits, and input files that
parse and that the config loader accepts.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image, UnidentifiedImageError

from curation.config import load_config
from curation.demo import synth
from curation.demo.corpus import write_corpus
from curation.demo.synth import Scene, Shape

N = 200


def _scene(*shapes: tuple[str, str, str, str]) -> Scene:
    return Scene(tuple(Shape(*s) for s in shapes))


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,:]+", text) if w]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    write_corpus(out, n=N, seed=3)
    return out


@pytest.fixture(scope="module")
def expected(corpus: Path) -> dict:
    return json.loads((corpus / "inputs" / "expected.json").read_text(encoding="utf-8"))


# --- synth --------------------------------------------------------------------------

def test_generate_is_deterministic_per_seed() -> None:
    a, b, c = synth.generate(12, seed=5), synth.generate(12, seed=5), synth.generate(12, seed=6)
    assert [(s.id, s.image, s.captions, s.scene) for s in a] == [(s.id, s.image, s.captions, s.scene) for s in b]
    assert [s.image for s in a] != [s.image for s in c]
    assert [s.id for s in a] == [f"s{i:06d}" for i in range(12)]
    assert synth.generate(5, seed=5)[4].image == a[4].image  # sample i depends on (seed, i) only


def test_scenes_are_well_formed() -> None:
    rng = random.Random(0)
    counts = set()
    for _ in range(300):
        scene = synth.sample_scene(rng)
        counts.add(len(scene.shapes))
        positions = [s.position for s in scene.shapes]
        assert len(set(positions)) == len(positions)
        for s in scene.shapes:
            assert s.kind in synth.SHAPES and s.colour in synth.COLOURS and s.size in synth.SIZES
    assert counts == {1, 2, 3}


def test_render_paints_colour_at_position() -> None:
    scene = Scene((Shape("circle", "red", "large", "left"), Shape("square", "blue", "small", "right")),
                  background=(240, 240, 240))
    img = synth.render(scene, 96)
    assert img.size == (96, 96)
    assert img.getpixel((17, 48)) == pytest.approx((214, 39, 40), abs=12)
    assert img.getpixel((79, 48)) == pytest.approx((31, 90, 200), abs=12)
    assert img.getpixel((48, 48)) == pytest.approx((240, 240, 240), abs=3)
    assert synth.render(scene, 96).tobytes() == img.tobytes()


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "a small red circle on the left and a large blue square at the top"),
        ("de", "ein kleiner roter Kreis links und ein großes blaues Quadrat oben"),
        ("fr", "un petit cercle rouge à gauche et un grand carré bleu en haut"),
        ("es", "un círculo rojo pequeño a la izquierda y un cuadrado azul grande arriba"),
    ],
)
def test_caption_grammar_masculine_neuter(lang: str, text: str) -> None:
    scene = _scene(("circle", "red", "small", "left"), ("square", "blue", "large", "top"))
    assert synth.caption(scene, lang) == text


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "a large yellow star at the bottom, a small green diamond in the center and a small black triangle on the right"),
        ("de", "ein großer gelber Stern unten, eine kleine grüne Raute in der Mitte und ein kleines schwarzes Dreieck rechts"),
        ("fr", "une grande étoile jaune en bas, un petit losange vert au centre et un petit triangle noir à droite"),
        ("es", "una estrella amarilla grande abajo, un rombo verde pequeño en el centro y un triángulo negro pequeño a la derecha"),
    ],
)
def test_caption_grammar_feminine_and_three_shapes(lang: str, text: str) -> None:
    scene = _scene(("star", "yellow", "large", "bottom"), ("diamond", "green", "small", "center"),
                   ("triangle", "black", "small", "right"))
    assert synth.caption(scene, lang) == text


def test_agreement_without_size() -> None:
    star = Shape("star", "purple", "small", "top")
    assert synth.shape_phrase(star, "fr", with_size=False, with_position=False) == "une étoile violette"
    assert synth.shape_phrase(star, "es", with_size=False) == "una estrella morada arriba"
    assert synth.shape_phrase(Shape("square", "brown", "large", "left"), "de", with_size=False) == "ein braunes Quadrat links"


def test_lexicon_pairs_include_inflections() -> None:
    de = synth.lexicon_pairs("en", "de")
    assert {("red", "rot"), ("red", "roter"), ("red", "rote"), ("red", "rotes"), ("circle", "Kreis")} <= set(de)
    assert {("small", "petit"), ("small", "petite"), ("star", "étoile")} <= set(synth.lexicon_pairs("en", "fr"))
    assert ("rote", "roja") in synth.lexicon_pairs("de", "es")
    assert ("circle", "kreis") in synth.lexicon_pairs("en", "de", lower=True)
    assert de == sorted(set(de))


@pytest.mark.parametrize("lang", ["de", "fr", "es"])
def test_lexicon_agrees_with_captions(lang: str) -> None:
    """Every caption word the lexicon knows maps back to a word of the English caption."""
    pairs = synth.lexicon_pairs("en", lang)
    vocab = {t for _, t in pairs}
    known = 0
    for sample in synth.generate(40, seed=1):
        en_words = set(_words(sample.captions["en"]))
        for word in _words(sample.captions[lang]):
            if word in vocab:
                known += 1
                assert any((e, word) in pairs for e in en_words), (word, sample.captions)
    assert known > 200


def test_weak_text_relevance() -> None:
    scene = _scene(("circle", "red", "small", "left"), ("square", "blue", "large", "top"))
    de_words = set(_words(synth.caption(scene, "de"))) | {w for p in synth.PREFIXES["de"] for w in _words(p)}
    for i in range(50):
        text, label = synth.weak_text(scene, "de", random.Random(i), "high")
        assert label == "high" and set(_words(text)) <= de_words | {"ein", "eine", "roter", "blaues"}
        low, _ = synth.weak_text(scene, "de", random.Random(i), "low")
        assert "roter Kreis" not in low and "blaues Quadrat" not in low
        none, _ = synth.weak_text(scene, "fr", random.Random(i), "none")
        assert none in synth.BOILERPLATE["fr"] or re.fullmatch(r"[\w-]+\.(jpg|JPG|png|jpeg)", none)
    assert synth.weak_text(scene, "es", random.Random(9)) == synth.weak_text(scene, "es", random.Random(9))
    with pytest.raises(ValueError, match="relevance"):
        synth.weak_text(scene, "en", random.Random(0), "medium")


def test_split_is_disjoint_and_deterministic() -> None:
    samples = synth.generate(50, seed=2, langs=("en",))
    train, held = synth.split(samples, 0.2, seed=2)
    assert len(held) == 10 and len(train) == 40
    assert not {s.id for s in train} & {s.id for s in held}
    assert [s.id for s in synth.split(samples, 0.2, seed=2)[1]] == [s.id for s in held]
    assert synth.split(samples, 0.0, seed=2)[1] == []
    with pytest.raises(ValueError):
        synth.split(samples, 1.0, seed=2)


def test_text_streams_for_later_stages() -> None:
    lid = synth.lid_texts(40, seed=0)
    assert [lang for lang, _ in lid[:4]] == list(synth.LANGUAGES) and all(text for _, text in lid)
    assert lid == synth.lid_texts(40, seed=0)
    pairs = synth.parallel_captions(60, seed=0, src="en", tgt="fr")
    assert len(pairs) == len(set(pairs)) > 30
    with pytest.raises(ValueError, match="grammar"):
        synth.generate(1, seed=0, langs=("en", "xx"))


# --- demo corpus --------------------------------------------------------------------

def test_corpus_is_byte_identical_per_seed(corpus: Path, tmp_path: Path) -> None:
    write_corpus(tmp_path / "again", n=N, seed=3)
    assert _tree(tmp_path / "again") == _tree(corpus)
    write_corpus(tmp_path / "other", n=N, seed=4)
    other = _tree(tmp_path / "other")
    assert other["inputs/captions.jsonl"] != _tree(corpus)["inputs/captions.jsonl"]


def test_build_toml_loads(corpus: Path, expected: dict) -> None:
    cfg = load_config(corpus / "build.toml")
    assert [s.name for s in cfg.sources] == list(expected["input_records"])
    tsv = next(s for s in cfg.sources if s.name == "captions_tsv")
    assert tsv.column("caption") == "alt" and tsv.column("image") == "file"
    for src in cfg.sources:
        for pattern in src.paths + src.tgt_paths:
            assert list(Path(pattern).parent.glob(Path(pattern).name)), pattern
    assert next(s for s in cfg.sources if s.name == "heldout").split == "test"


def test_table_sources_parse(corpus: Path, expected: dict) -> None:
    inputs, counts = corpus / "inputs", expected["input_records"]
    rows = [json.loads(line) for line in (inputs / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == counts["captions_jsonl"]
    assert all((inputs / r["image"]).is_file() for r in rows)
    with open(inputs / "captions.tsv", encoding="utf-8", newline="") as f:
        tsv = list(csv.DictReader(f, delimiter="\t"))
    assert len(tsv) == counts["captions_tsv"] and set(tsv[0]) == {"id", "alt", "file"}
    with open(inputs / "captions.csv", encoding="utf-8", newline="") as f:
        assert len(list(csv.DictReader(f))) == counts["captions_csv"]
    table = pq.read_table(inputs / "img2dataset" / "00000.parquet").to_pylist()
    assert len(table) == counts["img2dataset_parquet"]
    failed = [r for r in table if r["status"] != "success"]
    assert len(failed) == 2 and all(r["error_message"] and r["jpg"] is None for r in failed)
    assert Image.open(io.BytesIO(table[0]["jpg"])).size == (table[0]["width"], table[0]["height"])


def test_webdataset_shard(corpus: Path, expected: dict) -> None:
    with tarfile.open(corpus / "inputs" / "webdataset" / "00000.tar") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert len(names) == 3 * expected["input_records"]["webdataset"]
        key = names[0].rsplit(".", 1)[0]
        assert names[:3] == [f"{key}.jpg", f"{key}.txt", f"{key}.json"]
        meta = json.loads(tar.extractfile(f"{key}.json").read())
        assert meta["key"] == key and meta["caption"] == tar.extractfile(f"{key}.txt").read().decode()
        assert all(m.mtime == 0 and m.isfile() for m in members)


def test_weak_and_parallel_sources(corpus: Path, expected: dict) -> None:
    inputs = corpus / "inputs"
    weak = [json.loads(line) for line in (inputs / "weak.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(weak) == expected["input_records"]["weak"]
    assert {r["relevance_label"] for r in weak} == {"high", "low", "none"}
    assert {r["lang"] for r in weak} == {"de", "fr", "es"}
    assert 0 < sum("anchor" not in r for r in weak) < len(weak) // 5
    en = (inputs / "parallel_en.txt").read_text(encoding="utf-8").splitlines()
    de = (inputs / "parallel_de.txt").read_text(encoding="utf-8").splitlines()
    assert len(en) == len(de) == expected["input_records"]["parallel_files"] > 0
    with open(inputs / "parallel.tsv", encoding="utf-8", newline="") as f:
        tsv = list(csv.DictReader(f, delimiter="\t"))
    assert {r["tgt_lang"] for r in tsv} == {"de", "fr", "es"}
    keys = [(r["src"], r["tgt"]) for r in tsv] + list(zip(en, de, strict=True))
    assert len(keys) == len(set(keys))  # no pair twice, so dedup rejects only what was planted


def test_heldout_is_disjoint(corpus: Path, expected: dict) -> None:
    inputs = corpus / "inputs"
    held = [json.loads(line) for line in (inputs / "heldout/captions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(held) == expected["samples"]["heldout"] == N // 10
    assert all({"caption_de", "caption_fr", "caption_es"} <= set(r) for r in held)
    assert all((inputs / "heldout" / r["image"]).is_file() for r in held)
    train_keys = {json.loads(line)["key"] for line in (inputs / "captions.jsonl").read_text().splitlines()}
    with tarfile.open(inputs / "webdataset" / "00000.tar") as tar:
        train_keys |= {m.name.rsplit(".", 1)[0] for m in tar.getmembers()}
    train_keys |= {r["key"] for r in pq.read_table(inputs / "img2dataset" / "00000.parquet").to_pylist()}
    assert not {r["key"] for r in held} & train_keys


def test_planted_bad_inputs(corpus: Path, expected: dict) -> None:
    images = corpus / "inputs" / "images"
    assert expected["rejects"] == {"dedup/duplicate": 1, "image/not_an_image": 1, "image/truncated": 1,
                                   "read/download_failed": 2, "text/empty": 1}
    with pytest.raises(OSError, match="truncated"):
        Image.open(images / "bad_truncated.jpg").load()
    with pytest.raises(UnidentifiedImageError):
        Image.open(images / "bad_not_image.jpg")
    rows = {r["key"]: r for r in map(json.loads, (corpus / "inputs/captions.jsonl").read_text().splitlines())}
    assert rows["bad_empty_caption"]["caption"] == ""
    dup = next(p["key"] for p in expected["planted"] if p["reject"] == "dedup/duplicate")
    original = rows[dup.removesuffix("_dup")]
    assert rows[dup]["caption"] == original["caption"]
    assert (images.parent / rows[dup]["image"]).read_bytes() == (images.parent / original["image"]).read_bytes()


def test_demo_heldout_captions_are_never_seen_in_training():
    """Short scenes recur: 6 of the 600-sample demo's 60 held-out captions were also training
    captions; the corpus now leaves those training samples out."""
    from curation.demo.corpus import IMAGE_SIZE, without_heldout_captions

    train, heldout = synth.split(synth.generate(600, 0, synth.LANGUAGES, IMAGE_SIZE), 0.1, 0)
    held = {t for s in heldout for t in s.captions.values()}
    assert any(not held.isdisjoint(s.captions.values()) for s in train)  # the generator does repeat them
    kept = without_heldout_captions(train, heldout)
    assert all(held.isdisjoint(s.captions.values()) for s in kept) and len(kept) == len(train) - 6
