"""Weak alt-texts with a known, graded relevance to their scene, for RC3's relevance stage.

Each graded weak text is one of four constructions, whose grade is fixed by what it says
about the image (not by how a scorer sees it), so that a relevance scorer can be judged
by how well it ranks them (Spearman correlation, ``m3curate relevance eval --graded``):

| kind         | text                                                        | grade | label |
|--------------|-------------------------------------------------------------|-------|-------|
| whole        | every shape of the scene (size/position sometimes left out)  | 1.0   | high  |
| part         | one shape of a scene of 2-3; of a 1-shape scene, its noun    | 0.6   | high  |
| wrong_colour | every shape, each in a colour the scene does not give it     | 0.3   | low   |
| unrelated    | another scene sharing no (shape, colour), or web boilerplate | 0.0   | none  |

Why these numbers: a text that is true of the image but incomplete ("part") is more
useful to pull towards it than one that names the right objects wrongly ("wrong colour"),
which is still closer than a text about something else. The ``label`` keeps the three
values of the older ``relevance_label`` column (high/low/none), which the RC3 ablation
script maps to numbers; label and grade always agree in order.
"""

from __future__ import annotations

import random
from dataclasses import replace

from curation.demo.lexicon import COLOURS, GRAMMAR, PREFIXES, word_form
from curation.demo.synth import Scene, Shape, _other_scene, boilerplate, join_phrases, shape_phrase

GRADES = {"whole": 1.0, "part": 0.6, "wrong_colour": 0.3, "unrelated": 0.0}
LABELS = {"whole": "high", "part": "high", "wrong_colour": "low", "unrelated": "none"}
GRADED_KINDS = tuple(GRADES)


def _with_prefix(text: str, lang: str, rng: random.Random) -> str:
    """Alt-texts often start with "Foto:", "image of": half of them get one."""
    return f"{rng.choice(PREFIXES[lang])} {text}" if rng.random() < 0.5 else text


def _describe(scene: Scene, lang: str, rng: random.Random) -> str:
    """Every shape of ``scene``; size and position each kept with probability 0.7."""
    with_size, with_pos = rng.random() < 0.7, rng.random() < 0.7
    return join_phrases([shape_phrase(s, lang, with_size, with_pos) for s in scene.shapes], lang)


def _part(scene: Scene, lang: str, rng: random.Random) -> str:
    """One shape of several; of a single shape, the bare noun phrase without colour or size."""
    if len(scene.shapes) > 1:
        shape = rng.choice(scene.shapes)
        return shape_phrase(shape, lang, with_size=rng.random() < 0.5, with_position=rng.random() < 0.5)
    return _noun_only(scene.shapes[0], lang)


def _noun_only(shape: Shape, lang: str) -> str:
    """The article and noun of a shape ("a circle", "ein Kreis"): the colour slot dropped."""
    grammar = GRAMMAR[lang]
    gender = grammar.genders[shape.kind]
    noun = word_form(lang, shape.kind, gender)
    return f"{word_form(lang, 'a', gender, noun)} {noun}"


def _recoloured(scene: Scene, rng: random.Random) -> Scene:
    """``scene`` with every shape in a colour it does not have there (and no colour of the scene)."""
    used = {s.colour for s in scene.shapes}
    spare = [c for c in COLOURS if c not in used]
    return replace(scene, shapes=tuple(replace(s, colour=rng.choice(spare)) for s in scene.shapes))


def graded_weak_text(scene: Scene, lang: str, rng: random.Random, kind: str) -> tuple[str, float, str]:
    """(text, grade, label) of a weak alt-text of ``kind`` (see the module docstring)."""
    if kind == "whole":
        text = _describe(scene, lang, rng)
    elif kind == "part":
        text = _part(scene, lang, rng)
    elif kind == "wrong_colour":
        text = _describe(_recoloured(scene, rng), lang, rng)
    elif kind == "unrelated":
        if rng.random() < 0.5:
            return boilerplate(lang, rng), GRADES[kind], LABELS[kind]
        text = _describe(_other_scene(scene, rng), lang, rng)
    else:
        raise ValueError(f"kind = {kind!r}: use one of {GRADED_KINDS}")
    return _with_prefix(text, lang, rng), GRADES[kind], LABELS[kind]
