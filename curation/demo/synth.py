"""The synthetic world of the embedded demo: scenes of shapes, their images, their captions.

Everything the demo needs that a real deployment would download (caption corpora, weak
web alt-texts, parallel text for MT, language-ID training text, MUSE dictionaries) is
derived from this one module, so that all of it agrees: a dictionary pair drawn from
``LEXICON`` is exactly the word the caption grammar uses, a weak text labelled "high"
really describes its image, and a model can learn colour, shape and position from pixels.

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

LANGUAGES = ("en", "de", "fr", "es")
SHAPES = ("circle", "square", "triangle", "star", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "purple", "black", "brown")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "center")
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


# --- lexicon and grammar ----------------------------------------------------------

def _w(lemma: str, **forms: str) -> dict[str, str]:
    """A word's forms: ``lemma`` plus agreement forms keyed by gender (m/f/n) or "v"."""
    return {"lemma": lemma, **forms}


def _de_adj(stem: str) -> dict[str, str]:
    """German adjective after the indefinite article, nominative: -er (m), -e (f), -es (n)."""
    return _w(stem, m=stem + "er", f=stem + "e", n=stem + "es")


def _gendered(m: str, f: str) -> dict[str, str]:
    """A French/Spanish word with masculine and feminine forms (masculine is the lemma)."""
    return _w(m, m=m, f=f)


# LEXICON[lang][concept] -> forms. Concepts are the English lemma of SHAPES, COLOURS,
# SIZES, POSITIONS plus the function words "a" and "and". lexicon_pairs() derives the
# word-level (MUSE-style) dictionaries from it; caption() uses exactly these forms.
LEXICON: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        **{c: _w(c) for c in SHAPES + COLOURS + SIZES + POSITIONS},
        "a": _w("a", v="an"), "and": _w("and"),
    },
    "de": {
        "circle": _w("Kreis"), "square": _w("Quadrat"), "triangle": _w("Dreieck"),
        "star": _w("Stern"), "diamond": _w("Raute"),
        "red": _de_adj("rot"), "green": _de_adj("grün"), "blue": _de_adj("blau"),
        "yellow": _de_adj("gelb"), "purple": _de_adj("violett"), "black": _de_adj("schwarz"),
        "brown": _de_adj("braun"), "small": _de_adj("klein"), "large": _de_adj("groß"),
        "left": _w("links"), "right": _w("rechts"), "top": _w("oben"), "bottom": _w("unten"),
        "center": _w("Mitte"), "a": _w("ein", m="ein", f="eine", n="ein"), "and": _w("und"),
    },
    "fr": {
        "circle": _w("cercle"), "square": _w("carré"), "triangle": _w("triangle"),
        "star": _w("étoile"), "diamond": _w("losange"),
        "red": _w("rouge"), "green": _gendered("vert", "verte"), "blue": _gendered("bleu", "bleue"),
        "yellow": _w("jaune"), "purple": _gendered("violet", "violette"),
        "black": _gendered("noir", "noire"), "brown": _w("marron"),
        "small": _gendered("petit", "petite"), "large": _gendered("grand", "grande"),
        "left": _w("gauche"), "right": _w("droite"), "top": _w("haut"), "bottom": _w("bas"),
        "center": _w("centre"), "a": _gendered("un", "une"), "and": _w("et"),
    },
    "es": {
        "circle": _w("círculo"), "square": _w("cuadrado"), "triangle": _w("triángulo"),
        "star": _w("estrella"), "diamond": _w("rombo"),
        "red": _gendered("rojo", "roja"), "green": _w("verde"), "blue": _w("azul"),
        "yellow": _gendered("amarillo", "amarilla"), "purple": _gendered("morado", "morada"),
        "black": _gendered("negro", "negra"), "brown": _w("marrón"),
        "small": _gendered("pequeño", "pequeña"), "large": _w("grande"),
        "left": _w("izquierda"), "right": _w("derecha"), "top": _w("arriba"),
        "bottom": _w("abajo"), "center": _w("centro"), "a": _gendered("un", "una"), "and": _w("y"),
    },
}


@dataclass(frozen=True)
class Grammar:
    """How one language realises "a small red circle on the left".

    order: slots of a shape phrase ("art", "size", "colour", "shape") in surface order.
    genders: grammatical gender of each shape noun (selects article/adjective forms).
    positions: the position phrase, containing the LEXICON word of that position.
    """

    order: tuple[str, ...]
    genders: dict[str, str]
    positions: dict[str, str]


GRAMMAR: dict[str, Grammar] = {
    "en": Grammar(("art", "size", "colour", "shape"), {s: "n" for s in SHAPES},
                  {"left": "on the left", "right": "on the right", "top": "at the top",
                   "bottom": "at the bottom", "center": "in the center"}),
    "de": Grammar(("art", "size", "colour", "shape"),
                  {"circle": "m", "square": "n", "triangle": "n", "star": "m", "diamond": "f"},
                  {"left": "links", "right": "rechts", "top": "oben", "bottom": "unten",
                   "center": "in der Mitte"}),
    "fr": Grammar(("art", "size", "shape", "colour"),
                  {"circle": "m", "square": "m", "triangle": "m", "star": "f", "diamond": "m"},
                  {"left": "à gauche", "right": "à droite", "top": "en haut", "bottom": "en bas",
                   "center": "au centre"}),
    "es": Grammar(("art", "shape", "colour", "size"),
                  {"circle": "m", "square": "m", "triangle": "m", "star": "f", "diamond": "m"},
                  {"left": "a la izquierda", "right": "a la derecha", "top": "arriba",
                   "bottom": "abajo", "center": "en el centro"}),
}

# Weak-text material: prefixes of alt-texts that still describe the image, and web
# boilerplate that describes nothing (relevance "none").
PREFIXES = {
    "en": ("image of", "photo:", "picture showing", "stock photo:"),
    "de": ("Foto:", "Bild von", "Abbildung:", "Bild:"),
    "fr": ("photo :", "image de", "illustration :", "image :"),
    "es": ("foto:", "imagen de", "ilustración:", "imagen:"),
}
BOILERPLATE = {
    "en": ("click here", "download image", "all rights reserved", "read more",
           "share this picture", "free shipping on all orders"),
    "de": ("Klicken Sie hier", "Bild herunterladen", "Alle Rechte vorbehalten",
           "Mehr erfahren", "Jetzt kaufen", "Kostenloser Versand"),
    "fr": ("cliquez ici", "télécharger l'image", "tous droits réservés", "en savoir plus",
           "acheter maintenant", "livraison gratuite"),
    "es": ("haga clic aquí", "descargar imagen", "todos los derechos reservados",
           "más información", "comprar ahora", "envío gratis"),
}
FILENAME_PATTERNS = ("IMG_{:04d}.jpg", "DSC{:05d}.JPG", "image-{}.png", "photo_{}.jpeg")


def _form(lang: str, concept: str, gender: str, next_word: str = "") -> str:
    """The form of ``concept`` agreeing with ``gender`` (and, for en "a", the next word)."""
    forms = LEXICON[lang][concept]
    if "v" in forms and next_word[:1].lower() in tuple("aeiou"):
        return forms["v"]
    return forms.get(gender, forms["lemma"])


def shape_phrase(shape: Shape, lang: str, with_size: bool = True, with_position: bool = True) -> str:
    """One noun phrase, e.g. de "ein kleiner roter Kreis links"; size/position optional."""
    grammar = GRAMMAR[lang]
    gender = grammar.genders[shape.kind]
    concept = {"size": shape.size, "colour": shape.colour, "shape": shape.kind}
    slots = [s for s in grammar.order if with_size or s != "size"]
    words = ["" if s == "art" else _form(lang, concept[s], gender) for s in slots]
    if "art" in slots:
        at = slots.index("art")
        words[at] = _form(lang, "a", gender, words[at + 1] if at + 1 < len(words) else "")
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


def lexicon_pairs(src: str, tgt: str, lower: bool = False) -> list[tuple[str, str]]:
    """Word translations src -> tgt (MUSE dictionary lines), every inflected form included.

    Each form of a concept in ``src`` is paired with each form of it in ``tgt`` (e.g.
    ("red", "rot"), ("red", "roter"), ("red", "rote"), ("red", "rotes")). Sorted, unique.
    """
    pairs = set()
    for concept, forms in LEXICON[src].items():
        if concept not in LEXICON[tgt]:
            continue
        for s in set(forms.values()):
            for t in set(LEXICON[tgt][concept].values()):
                pairs.add((s.lower(), t.lower()) if lower else (s, t))
    return sorted(pairs)


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


def split(samples: Sequence[Sample], held_out: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, held_out) with disjoint samples; round(len * held_out) held out, at least 1
    when held_out > 0 and there are 2+ samples. Both keep the input order."""
    if not 0 <= held_out < 1:
        raise ValueError(f"held_out = {held_out}: use a fraction in [0, 1)")
    k = round(len(samples) * held_out)
    if held_out > 0 and len(samples) > 1:
        k = min(max(k, 1), len(samples) - 1)
    chosen = set(random.Random(f"split:{seed}").sample(range(len(samples)), k))
    train = [s for i, s in enumerate(samples) if i not in chosen]
    return train, [s for i, s in enumerate(samples) if i in chosen]


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
