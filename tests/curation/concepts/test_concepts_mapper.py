"""Texts and labels to concepts: vocabulary, phrases, plurals, dictionaries both ways."""

from __future__ import annotations

from collections import Counter

import pytest

from codeswitch.dictionary import write_muse_dictionaries
from curation.concepts.config import (
    ConceptsConfigError,
    concepts_config_from_dict,
    resolve_concepts,
)
from curation.concepts.mapper import ConceptMapper
from curation.concepts.stage import map_rows
from curation.concepts.vocab import (
    Vocabulary,
    VocabularyError,
    demo_vocabulary,
    plural_stems,
    read_vocabulary,
)
from curation.demo import synth

VOCAB = "man\tmen\twoman\nred\ntennis racket\nracket\ndog\nberry\nbox\ntree\n"


@pytest.fixture()
def root(tmp_path):
    (tmp_path / "vocab.txt").write_text(VOCAB)
    write_muse_dictionaries(tmp_path / "dicts", {
        ("en", "de"): [("red", "rot"), ("red", "roter"), ("dog", "Hund"), ("dog", "Hunde"), ("tree", "Baum"),
                       ("tennis racket", "Tennisschläger")],
        ("fr", "en"): [("chien", "dog"), ("chiens", "dogs"), ("raquette de tennis", "tennis racket"),
                       ("arbre", "wood"), ("arbre", "tree")],
    })
    return tmp_path


def _mapper(root, **kw) -> ConceptMapper:
    return ConceptMapper(concepts_config_from_dict({"vocabulary": "vocab.txt", "dictionaries": "dicts", **kw}, str(root)))


def test_english_longest_phrase_first_case_punctuation_plurals_aliases(root):
    m = _mapper(root)
    assert m.text_concepts("A Tennis Racket, a racket and two Dogs.", "en") == ["tennis racket", "racket", "dog"]
    assert m.text_concepts("Men with boxes of berries; the MAN!", "en") == ["man", "box", "berry"]
    assert m.text_concepts("nothing here", "en") == []
    assert _mapper(root, plural=False).text_concepts("dogs and a dog", "en") == ["dog"]


def test_other_languages_through_the_dictionaries_both_ways(root):
    m = _mapper(root)
    # de: only en-de exists: read backwards, inflected forms included
    assert m.text_concepts("Ein roter Hund unter dem Baum, zwei Hunde", "de-DE") == ["red", "dog", "tree"]
    assert m.text_concepts("Tennisschläger", "de") == ["tennis racket"]
    # fr: fr-en forward, multi-word entries longest first, the first translation that is a concept
    assert m.text_concepts("deux chiens, une raquette de tennis, un arbre", "fr") == ["dog", "tennis racket", "tree"]
    assert m.text_concepts("l'arbre", "fr") == ["tree"]  # elided article
    # direct match where the dictionary has no entry (and not with direct = false)
    assert m.text_concepts("un dog", "fr") == ["dog"]
    assert _mapper(root, direct=False).text_concepts("un dog", "fr") == []
    assert m.has_dictionary("de") and m.has_dictionary("en") and not m.has_dictionary("ja")


def test_code_switched_spans_in_their_own_language(root):
    m = _mapper(root)
    text = "a Hund under the tree"
    spans = [{"src_start": 2, "src_end": 5, "start": 2, "end": 6, "lang": "de"}]
    assert m.switched_concepts(text, "en", spans) == ["dog", "tree"]
    assert m.text_concepts(text, "en") == ["tree"]


def test_labels_through_label_map_then_vocabulary(root):
    m = _mapper(root, label_map={"person": "man", "Racquet": "racket"})
    assert [m.label_concept(x) for x in ("person", "racquet", "dogs", "tennis_racket", "car", None)] == [
        "man", "racket", "dog", "tennis racket", None, None]
    with pytest.raises(ValueError, match="not concepts"):
        _mapper(root, label_map={"x": "unicorn"})
    (root / "labels.tsv").write_text("# label\tconcept\nhuman\tman\n")
    assert _mapper(root, label_map="labels.tsv").label_concept("Human") == "man"


def test_rows_get_concepts_by_kind_and_regions_by_label(root):
    m = _mapper(root, kinds=["caption", "translation"])
    texts = [{"text": "a red dog", "lang": "en", "kind": "caption", "spans": None},
             {"text": "ein roter Hund", "lang": "de", "kind": "translation", "spans": None},
             {"text": "click here", "lang": "en", "kind": "weak", "spans": None},
             {"text": "nichts", "lang": "de", "kind": "translation", "spans": None}]
    regions = {"boxes": [[0, 0, 1, 1]] * 3, "features": [[0.0]] * 3, "extractor": "x",
               "labels": ["dog", "unicorn", None], "label_scores": [1.0, 1.0, 1.0], "concepts": None}
    rows = [{"id": "a", "texts": texts, "regions": regions}, {"id": "b", "texts": texts[:1], "regions": None}]
    stats: Counter[str] = Counter()
    out, rejects = map_rows(rows, m, m.cfg, stats)
    assert rejects == []
    assert [t.get("concepts") for t in out[0]["texts"]] == [["red", "dog"], ["red", "dog"], None, []]
    assert out[0]["regions"]["concepts"] == ["dog", None, None] and out[1]["regions"] is None
    assert stats["texts"] == 4 and stats["texts_with_concepts"] == 3 and stats["texts_without_concepts"] == 1
    assert stats["boxes_mapped"] == 1 and stats["boxes_unmapped"] == 1 and stats["concepts"] == 6
    assert rows[0]["texts"][0].get("concepts") is None  # input rows are not changed


def test_vocabulary_file_checks_and_aliases(tmp_path):
    with pytest.raises(VocabularyError, match="already line 1"):
        Vocabulary([["dog"], ["dog"]], "v.txt")
    (tmp_path / "vg.txt").write_text("# Visual Genome objects\nman,men\n\nshirt\n")
    vocab = read_vocabulary(str(tmp_path / "vg.txt"), ",")
    assert vocab.names == ["man", "shirt"] and vocab.lookup("men", False) == "man"
    assert plural_stems("boxes") == ["box", "boxe"] and plural_stems("glass") == []


def test_demo_vocabulary_comes_from_the_generator():
    names = demo_vocabulary(synth)
    assert names == [*synth.SHAPES, *synth.COLOURS, *synth.SIZES, *synth.POSITIONS]
    assert len(set(names)) == len(names)


def test_config_errors_and_codeswitch_default(tmp_path):
    (tmp_path / "v.txt").write_text("dog\n")
    for data, match in (({"vocabulary": "none.txt"}, "concepts.vocabulary"),
                        ({"vocabulary": "v.txt", "kinds": ["alt"]}, "concepts.kinds"),
                        ({"vocabulary": "v.txt", "plural": "yes"}, "concepts.plural"),
                        ({"vocabulary": "v.txt", "dictionaries": "nodir"}, "concepts.dictionaries"),
                        ({"vocabulary": "v.txt", "label_map": 3}, "concepts.label_map"),
                        ({"vocabulary": "v.txt", "lemmas": True}, "unknown setting")):
        with pytest.raises(ConceptsConfigError, match=match):
            concepts_config_from_dict(data, str(tmp_path))
    cfg = concepts_config_from_dict({"vocabulary": "v.txt"}, str(tmp_path))
    assert resolve_concepts(cfg, "/d").dictionaries == "/d" and not concepts_config_from_dict(None).enabled
