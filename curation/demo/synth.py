"""The synthetic world of the embedded demo: scenes of shapes, their images, their captions.

Everything the demo needs that a real deployment would download (caption corpora, weak
web alt-texts, parallel text for MT, language-ID training text, MUSE dictionaries) is
derived from this module and its word tables (``curation.demo.lexicon``), so that all of
it agrees: a dictionary pair drawn from ``LEXICON`` is exactly the word the caption grammar
uses, a weak text labelled "high" really describes its image, and a model can learn
colour, shape and position from pixels. Languages: ``LANGUAGES`` (en, de, fr, es) by
default; Italian (``it``) when asked for in ``langs``.

Determinism: every random choice comes from ``sample_rng(seed, ...)``, a
``random.Random`` seeded from a string (SHA-512 based, independent of PYTHONHASHSEED and
of global state), and JPEG encoding uses a fixed quality, so the same arguments give the
same bytes on every run.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from curation.demo.lexicon import (
    BOILERPLATE,
    COLOURS,
    FILENAME_PATTERNS,
    GRAMMAR,
    LANGUAGES,
    LEXICON,
    POSITIONS,
    PREFIXES,
    SHAPES,
    SIZES,
    word_form,
)
from curation.demo.lexicon import (
    lexicon_pairs as lexicon_pairs,  # re-exported: callers use synth.lexicon_pairs
)

RELEVANCE_LEVELS = ("high", "low", "none")
JPEG_QUALITY = 90

RGB = {"red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 90, 200), "yellow": (240, 200, 20),
       "purple": (140, 60, 180), "black": (30, 30, 30), "brown": (140, 86, 40)}
# Shape centres as fractions of the side, and radii: chosen so that, with the jitter
# below, two shapes of one scene never overlap and none leaves the canvas.
CENTRES = {"left": (0.18, 0.5), "right": (0.82, 0.5), "top": (0.5, 0.18),
           "bottom": (0.5, 0.82), "center": (0.5, 0.5)}
RADII = {"small": 0.075, "large": 0.13}
JITTER = 0.02


@dataclass(frozen=True)
class Shape:
    """One shape; ``dx``/``dy`` are a small jitter (fraction of the side) so pixels vary."""

    kind: str
    colour: str
    size: str
    position: str
    dx: float = 0.0
    dy: float = 0.0


@dataclass(frozen=True)
class Scene:
    """1-3 shapes at distinct positions on a plain light background."""

    shapes: tuple[Shape, ...]
    background: tuple[int, int, int] = (240, 240, 240)


@dataclass(frozen=True)
class Sample:
    """One generated image-text sample: the scene, its JPEG bytes and a caption per language."""

    id: str
    index: int
    scene: Scene
    image: bytes
    captions: dict[str, str]
    image_size: int


# --- captions (the words and grammar tables are curation.demo.lexicon's) ------------

def shape_phrase(shape: Shape, lang: str, with_size: bool = True, with_position: bool = True) -> str:
    """One noun phrase, e.g. de "ein kleiner roter Kreis links"; size/position optional."""
    grammar = GRAMMAR[lang]
    gender = grammar.genders[shape.kind]
    concept = {"size": shape.size, "colour": shape.colour, "shape": shape.kind}
    slots = [s for s in grammar.order if with_size or s != "size"]
    words = ["" if s == "art" else word_form(lang, concept[s], gender) for s in slots]
    if "art" in slots:
        at = slots.index("art")
        words[at] = word_form(lang, "a", gender, words[at + 1] if at + 1 < len(words) else "")
    if with_position:
        words.append(grammar.positions[shape.position])
    return " ".join(words)


def join_phrases(phrases: Sequence[str], lang: str) -> str:
    """"a, b and c" in ``lang``: commas between all but the last two, then "and"."""
    conj = LEXICON[lang]["and"]["lemma"]
    if len(phrases) <= 1:
        return "".join(phrases)
    return f"{', '.join(phrases[:-1])} {conj} {phrases[-1]}"


def caption(scene: Scene, lang: str) -> str:
    """The strict caption: every shape with size, colour and position, in scene order."""
    return join_phrases([shape_phrase(s, lang) for s in scene.shapes], lang)


# --- scenes and images ------------------------------------------------------------

def sample_rng(seed: int, *parts: object) -> random.Random:
    """A private RNG for (seed, parts...): string seeding is stable across runs and hosts."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def sample_scene(rng: random.Random) -> Scene:
    """Draw 1-3 shapes at distinct positions and a slightly tinted light background."""
    count = rng.choices((1, 2, 3), weights=(3, 4, 3))[0]
    positions = rng.sample(POSITIONS, count)
    shapes = tuple(
        Shape(rng.choice(SHAPES), rng.choice(COLOURS), rng.choice(SIZES), pos,
              round(rng.uniform(-JITTER, JITTER), 3), round(rng.uniform(-JITTER, JITTER), 3))
        for pos in positions
    )
    base = rng.randint(230, 248)
    background = tuple(min(255, base + rng.randint(-6, 6)) for _ in range(3))
    return Scene(shapes, background)  # type: ignore[arg-type]


def _outline(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Polygon vertices of a shape (None for the circle, drawn as an ellipse)."""
    if kind == "square":
        h = r * 0.85
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if kind == "triangle":
        cy += r * 0.15
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.65), (cx - r * 0.95, cy + r * 0.65)]
    if kind == "diamond":
        return [(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)]
    if kind == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            ang = -math.pi / 2 + i * math.pi / 5
            pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
        return pts
    return None


def render(scene: Scene, size: int = 96) -> Image.Image:
    """Draw the scene (deterministically), at 2x then downsampled so edges are smooth."""
    big = size * 2
    img = Image.new("RGB", (big, big), scene.background)
    draw = ImageDraw.Draw(img)
    for shape in scene.shapes:
        fx, fy = CENTRES[shape.position]
        cx, cy, r = (fx + shape.dx) * big, (fy + shape.dy) * big, RADII[shape.size] * big
        fill = RGB[shape.colour]
        edge = tuple(int(c * 0.6) for c in fill)
        points = _outline(shape.kind, cx, cy, r)
        if points is None:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=edge, width=2)
        else:
            draw.polygon(points, fill=fill, outline=edge, width=2)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def encode_jpeg(img: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes with fixed settings (no metadata, no optimisation pass): reproducible."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def generate(n: int, seed: int, langs: Sequence[str] = LANGUAGES, image_size: int = 96) -> list[Sample]:
    """``n`` samples; sample i depends only on (seed, i), so prefixes of runs agree."""
    unknown = [lang for lang in langs if lang not in GRAMMAR]
    if unknown:
        raise ValueError(f"no grammar for language(s) {unknown}; known: {sorted(GRAMMAR)}")
    samples = []
    for i in range(n):
        scene = sample_scene(sample_rng(seed, i))
        image = encode_jpeg(render(scene, image_size))
        caps = {lang: caption(scene, lang) for lang in langs}
        samples.append(Sample(f"s{i:06d}", i, scene, image, caps, image_size))
    return samples


def held_out_count(total: int, share: int | float, name: str = "held_out") -> int:
    """How many of ``total`` samples ``share`` sets apart: an int is a count (below
    ``total``), a float a fraction in [0, 1), rounded and at least 1 when it is > 0 and
    there are 2+ samples (never all of them)."""
    if isinstance(share, bool) or not isinstance(share, int | float):
        raise TypeError(f"{name} = {share!r}: give a count (int) or a fraction (float)")
    if isinstance(share, int):
        if not 0 <= share < total:
            raise ValueError(f"{name} = {share}: a count must be in [0, {total}) for {total} samples "
                             "(some must stay for training)")
        return share
    if not 0 <= share < 1:
        raise ValueError(f"{name} = {share}: use a fraction in [0, 1) or a count (an int)")
    k = round(total * share)
    if share > 0 and total > 1:
        k = min(max(k, 1), total - 1)
    return k


def split(samples: Sequence[Sample], held_out: int | float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, held_out) with disjoint samples: ``held_out`` is a count or a fraction
    (``held_out_count``). Both keep the input order."""
    k = held_out_count(len(samples), held_out)
    chosen = set(random.Random(f"split:{seed}").sample(range(len(samples)), k))
    train = [s for i, s in enumerate(samples) if i not in chosen]
    return train, [s for i, s in enumerate(samples) if i in chosen]


def split_validation(rest: Sequence[Sample], test: Sequence[Sample], validation: int | float,
                     seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, validation) from ``rest``, the samples ``split`` did not hold out for ``test``.

    ``validation`` is a count or a fraction of all samples (rest + test). Only samples with
    no caption (any language) equal to a test caption qualify, so the two held-out sets
    share neither images nor captions; they are drawn in an order of their own, so the
    test set does not depend on ``validation``. Both keep the input order.
    """
    k = held_out_count(len(rest) + len(test), validation, "validation")
    if k >= len(rest):
        raise ValueError(f"validation = {validation}: {k} validation samples leave none of the "
                         f"{len(rest)} non-test samples for training")
    held = {text for s in test for text in s.captions.values()}
    chosen: set[int] = set()
    for i in random.Random(f"validation:{seed}").sample(range(len(rest)), len(rest)):
        if len(chosen) == k:
            break
        if held.isdisjoint(rest[i].captions.values()):
            chosen.add(i)
    if len(chosen) < k:
        raise ValueError(f"validation = {validation}: only {len(chosen)} non-test samples have no test "
                         f"caption, {k} asked for; generate more samples")
    return ([s for i, s in enumerate(rest) if i not in chosen],
            [s for i, s in enumerate(rest) if i in chosen])


# --- weak texts and other text streams ------------------------------------------

def boilerplate(lang: str, rng: random.Random, filenames: bool = True) -> str:
    """Web noise that describes no image: a boilerplate phrase or (optionally) a filename."""
    if filenames and rng.random() < 0.3:
        return rng.choice(FILENAME_PATTERNS).format(rng.randint(0, 9999))
    return rng.choice(BOILERPLATE[lang])


def _describe_loosely(scene: Scene, lang: str, rng: random.Random) -> str:
    """A partial paraphrase: a subset of the shapes, maybe without size/position, maybe a prefix."""
    shapes = rng.sample(scene.shapes, rng.randint(1, len(scene.shapes)))
    with_size, with_pos = rng.random() < 0.7, rng.random() < 0.6
    phrases = dict.fromkeys(shape_phrase(s, lang, with_size, with_pos) for s in shapes)
    text = join_phrases(list(phrases), lang)
    if rng.random() < 0.6:
        text = f"{rng.choice(PREFIXES[lang])} {text}"
    return text


def _other_scene(scene: Scene, rng: random.Random) -> Scene:
    """A random scene sharing no (shape, colour) with ``scene``, so it is truly unrelated."""
    seen = {(s.kind, s.colour) for s in scene.shapes}
    while True:
        other = sample_scene(rng)
        if not seen & {(s.kind, s.colour) for s in other.shapes}:
            return other


def weak_text(scene: Scene, lang: str, rng: random.Random, relevance: str | None = None) -> tuple[str, str]:
    """A weakly-aligned alt-text for the scene's image and its relevance label.

    "high": partial paraphrase of this scene; "low": the same style about an unrelated
    scene; "none": boilerplate or a filename. ``relevance=None`` draws 50/25/25.
    """
    if relevance is None:
        relevance = rng.choices(RELEVANCE_LEVELS, weights=(2, 1, 1))[0]
    if relevance == "high":
        return _describe_loosely(scene, lang, rng), relevance
    if relevance == "low":
        return _describe_loosely(_other_scene(scene, rng), lang, rng), relevance
    if relevance == "none":
        return boilerplate(lang, rng), relevance
    raise ValueError(f"relevance = {relevance!r}: use one of {RELEVANCE_LEVELS}")


def lid_texts(n: int, seed: int, langs: Sequence[str] = LANGUAGES) -> list[tuple[str, str]]:
    """(lang, text) examples for training a language-ID model, languages round-robin:
    captions, loose descriptions and boilerplate phrases (never language-less filenames)."""
    out = []
    for i in range(n):
        rng, lang = sample_rng(seed, "lid", i), langs[i % len(langs)]
        scene, roll = sample_scene(rng), rng.random()
        if roll < 0.5:
            text = caption(scene, lang)
        elif roll < 0.85:
            text = _describe_loosely(scene, lang, rng)
        else:
            text = boilerplate(lang, rng, filenames=False)
        out.append((lang, text))
    return out


def parallel_captions(n: int, seed: int, src: str, tgt: str) -> list[tuple[str, str]]:
    """Up to ``n`` unique (src, tgt) caption pairs from fresh scenes (MT training text),
    drawn from a stream separate from ``generate``'s."""
    seen: dict[tuple[str, str], None] = {}
    for i in range(n):
        scene = sample_scene(sample_rng(seed, "mt", i))
        seen.setdefault((caption(scene, src), caption(scene, tgt)), None)
    return list(seen)
