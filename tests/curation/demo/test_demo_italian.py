"""Italian, the demo's opt-in fifth language (issue 15.3): grammatical captions, a MUSE
dictionary that covers them, LID text, and a corpus and build that carry it.

Italian is never in a default output (``LANGUAGES``); it comes only when ``langs`` asks
for it (``ALL_LANGUAGES``), so a base model trained on the default corpus has never seen it.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.demo import synth
from curation.demo.corpus import write_corpus
from curation.demo.lexicon import ALL_LANGUAGES, LANGUAGES, LEXICON, word_form
from curation.demo.synth import Scene, Shape
from curation.demo.weak import GRADED_KINDS, graded_weak_text
from curation.demo.writers import write_demo_dictionaries, write_lid_training_data

PREPOSITIONS = {"a", "al", "in"}  # of the position phrases: a sinistra, in alto, al centro


def _scene(*shapes: tuple[str, str, str, str]) -> Scene:
    return Scene(tuple(Shape(*s) for s in shapes))


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,:]+", text) if w]


@pytest.mark.parametrize(
    ("shapes", "text"),
    [
        ((("circle", "red", "small", "left"), ("square", "blue", "large", "top")),
         "un piccolo cerchio rosso a sinistra e un grande quadrato blu in alto"),
        ((("star", "yellow", "large", "bottom"), ("diamond", "green", "small", "center"),
          ("triangle", "black", "small", "right")),
         "una grande stella gialla in basso, un piccolo rombo verde al centro e un piccolo triangolo nero a destra"),
        ((("star", "black", "small", "top"), ("circle", "purple", "large", "center")),
         "una piccola stella nera in alto e un grande cerchio viola al centro"),
        ((("star", "brown", "large", "left"),), "una grande stella marrone a sinistra"),
    ],
)
def test_italian_captions_are_grammatical(shapes: tuple, text: str) -> None:
    """Hand-checked: article and colour agree with the noun's gender (stella is feminine),
    piccolo/grande precede the noun, the colour follows it, invariable blu/verde/viola/marrone."""
    assert synth.caption(_scene(*shapes), "it") == text


def test_italian_phrases_without_size_or_position_and_the_article_rule() -> None:
    star = Shape("star", "red", "small", "right")
    assert synth.shape_phrase(star, "it", with_size=False, with_position=False) == "una stella rossa"
    assert synth.shape_phrase(star, "it", with_size=False) == "una stella rossa a destra"
    assert synth.shape_phrase(Shape("square", "yellow", "large", "bottom"), "it", with_size=False) == \
        "un quadrato giallo in basso"
    # "uno" before s + consonant / z (no word of the lexicon needs it yet), never for feminine
    assert word_form("it", "a", "m", "zaffiro") == "uno" and word_form("it", "a", "m", "scuro") == "uno"
    assert word_form("it", "a", "m", "piccolo") == "un" and word_form("it", "a", "f", "stella") == "una"
    assert word_form("it", "a", "m", "sopra") == "un"  # s + vowel is not "impure"


def test_no_feminine_word_after_the_article_begins_with_a_vowel() -> None:
    """"un'" (elided) would be needed before one; the grammar does not produce it."""
    genders = synth.GRAMMAR["it"].genders
    after_article = [LEXICON["it"][c]["f"] for c in synth.SIZES if "f" in LEXICON["it"][c]]
    after_article += [LEXICON["it"][shape]["lemma"] for shape, g in genders.items() if g == "f"]
    assert after_article and not [w for w in after_article if w[0] in "aeiou"]


def test_the_dictionary_covers_every_italian_caption_word(tmp_path: Path) -> None:
    en_it = synth.lexicon_pairs("en", "it")
    vocab = {t for _, t in en_it}
    samples = synth.generate(300, seed=4, langs=ALL_LANGUAGES)
    words = {w for s in samples for w in _words(s.captions["it"])}
    assert words <= vocab, words - vocab
    assert words == vocab - {"uno"}  # and every entry but "uno" is used (no word needs it yet)
    for s in samples[:60]:  # and each content word translates back to a word of the English caption
        en_words = set(_words(s.captions["en"]))
        for word in set(_words(s.captions["it"])) - PREPOSITIONS:
            assert any((e, word) in en_it for e in en_words), (word, s.captions)
    paths = write_demo_dictionaries(tmp_path, ("en", "de", "it"), both_ways=True)
    assert sorted(p.name for p in paths) == ["de-en.txt", "en-de.txt", "en-it.txt", "it-en.txt"]
    it_en = {tuple(line.split(" ")) for line in (tmp_path / "it-en.txt").read_text(encoding="utf-8").splitlines()}
    assert it_en == {(t, s) for s, t in en_it} and ("stella", "star") in it_en


def test_italian_weak_texts_and_lid_texts() -> None:
    scene = _scene(("circle", "red", "small", "left"), ("star", "blue", "large", "top"))
    vocab = {t for _, t in synth.lexicon_pairs("en", "it")} | {w for p in synth.PREFIXES["it"] for w in _words(p)}
    for i, kind in enumerate(GRADED_KINDS * 10):
        text, _, _ = graded_weak_text(scene, "it", random.Random(i), kind)
        noise = text in synth.BOILERPLATE["it"] or re.fullmatch(r"[\w-]+\.(jpg|JPG|png|jpeg)", text)
        assert noise or set(_words(text)) <= vocab, text
    lid = synth.lid_texts(50, seed=0, langs=ALL_LANGUAGES)
    assert [lang for lang, _ in lid[:5]] == ["en", "de", "fr", "es", "it"]
    assert sum(lang == "it" for lang, _ in lid) == 10
    assert all(lang != "it" for lang, _ in synth.lid_texts(50, seed=0))  # not in the default set
    assert "it" not in LANGUAGES


def test_a_lid_model_trained_with_italian_tells_it_from_spanish(tmp_path: Path) -> None:
    from curation.lid.tools import evaluate_lid, train_lid

    write_lid_training_data(str(tmp_path / "train.tsv"), 4000, seed=101, langs=ALL_LANGUAGES)
    write_lid_training_data(str(tmp_path / "heldout.tsv"), 1000, seed=202, langs=ALL_LANGUAGES)
    train_lid(str(tmp_path / "train.tsv"), str(tmp_path / "lid.bin"), bucket=20_000, threads=1, seed=0)
    report = evaluate_lid(str(tmp_path / "lid.bin"), str(tmp_path / "heldout.tsv"))
    assert report["languages"]["it"]["support"] == 200
    assert report["languages"]["it"]["f1"] > 0.95, report["confused"]


@pytest.fixture(scope="module")
def italian_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-it")
    write_corpus(out, n=120, seed=2, langs=ALL_LANGUAGES)
    return out


def test_the_corpus_carries_italian(italian_corpus: Path) -> None:
    inputs = italian_corpus / "inputs"
    held = [json.loads(line) for line in (inputs / "heldout/captions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert held and all({"caption_de", "caption_fr", "caption_es", "caption_it"} <= set(r) for r in held)
    weak = [json.loads(line) for line in (inputs / "weak.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["lang"] for r in weak} == {"de", "fr", "es", "it"}
    # four languages and four kinds: the round-robin shifts, so each language gets every kind
    assert {(r["lang"], r["relevance_kind"]) for r in weak} == {(lang, k) for lang in ALL_LANGUAGES[1:] for k in GRADED_KINDS}
    with open(inputs / "parallel.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    it_rows = [r for r in rows if r["tgt_lang"] == "it"]
    assert it_rows and all(r["src_lang"] == "en" for r in it_rows)
    assert {"parallel_en.txt", "parallel_de.txt"} <= {p.name for p in inputs.iterdir()}
    assert json.loads((inputs / "expected.json").read_text())["langs"] == list(ALL_LANGUAGES)


@pytest.mark.slow
def test_a_dataset_builds_with_italian(tmp_path: Path) -> None:
    """LID trained on all five languages, en-it among the code-switching dictionaries,
    lexical relevance; Italian weak texts keep their language and parallel rows reach the
    dataset (MT is left out here, as in the golden test: it trains a model)."""
    from curation.config import load_config
    from curation.demo.run import add_codeswitch, add_lid, add_relevance
    from curation.output.manifest import shard_files
    from curation.pipeline import run_build

    toml = write_corpus(tmp_path, n=120, seed=2, langs=ALL_LANGUAGES)
    stages = add_lid(tmp_path, 2, ALL_LANGUAGES) + add_codeswitch(tmp_path, ALL_LANGUAGES)
    with toml.open("a", encoding="utf-8") as handle:
        handle.write(stages + add_relevance(tmp_path))
    assert (tmp_path / "inputs/dicts/en-it.txt").is_file()
    manifest = run_build(load_config(toml), str(tmp_path / "dataset"))
    assert manifest["languages"]["it"] > 100  # parallel en-it rows and weak texts
    weak_it = [json.loads(line) for line in (tmp_path / "inputs/weak.jsonl").read_text().splitlines()]
    weak_it = [r for r in weak_it if r["lang"] == "it" and "anchor" in r and r["relevance_label"] != "none"]
    texts = [t for path in shard_files(str(tmp_path / "dataset"), "pairs")
             for row in pq.read_table(path, columns=["texts"]).to_pylist() for t in row["texts"]]
    kept = [t for t in texts if t["kind"] == "weak" and t["lang"] == "it"]
    assert len(kept) >= len(weak_it) > 0  # LID keeps them Italian (none rejected, none relabelled)
