"""The demo world's words: per language, the lexicon, the noun-phrase grammar, alt-text
prefixes and web boilerplate, and the MUSE-style dictionaries derived from the lexicon.

``curation.demo.synth`` realises captions from these tables, so a dictionary pair drawn
from ``LEXICON`` is exactly the word a caption uses. ``LANGUAGES`` is the default set (every
default output is made from it); ``EXTRA_LANGUAGES`` (Italian) is opt-in: pass it in
``langs`` (``ALL_LANGUAGES``), e.g. for a language a base model has never seen (issue 15).
"""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGES = ("en", "de", "fr", "es")
EXTRA_LANGUAGES = ("it",)
ALL_LANGUAGES = LANGUAGES + EXTRA_LANGUAGES
SHAPES = ("circle", "square", "triangle", "star", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "purple", "black", "brown")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "center")


def _w(lemma: str, **forms: str) -> dict[str, str]:
    """A word's forms: ``lemma`` plus agreement forms keyed by gender (m/f/n), "v" (before
    a vowel) or "m_impure" (masculine before s + consonant, z, gn, ps, x, y: Italian "uno")."""
    return {"lemma": lemma, **forms}


def _de_adj(stem: str) -> dict[str, str]:
    """German adjective after the indefinite article, nominative: -er (m), -e (f), -es (n)."""
    return _w(stem, m=stem + "er", f=stem + "e", n=stem + "es")


def _gendered(m: str, f: str) -> dict[str, str]:
    """A French/Spanish/Italian word with masculine and feminine forms (masculine is the lemma)."""
    return _w(m, m=m, f=f)


# LEXICON[lang][concept] -> forms. Concepts are the English lemma of SHAPES, COLOURS,
# SIZES, POSITIONS plus the function words "a" and "and"; lexicon_pairs() derives the
# word-level (MUSE-style) dictionaries from it and caption() uses exactly these forms.
# Italian also lists the prepositions of its position phrases ("at": a/al, "in"), with
# their English entries, so that the en-it dictionary covers every word of an Italian
# caption; de/fr/es do not (their dictionaries are unchanged: a concept only one side
# lists gives no pair).
LEXICON: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        **{c: _w(c) for c in SHAPES + COLOURS + SIZES + POSITIONS},
        "a": _w("a", v="an"), "and": _w("and"), "at": _w("at"), "in": _w("in"),
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
    # Italian: colours follow the noun and agree with it (rosso/rossa; verde, blu, viola,
    # marrone and grande are invariable); "piccolo"/"grande" precede it, as usual in speech.
    # "un"/"una", and "uno" before a masculine word that begins with s + consonant, z, gn,
    # ps, x or y (none of this lexicon does; "un'" before a feminine vowel would need
    # elision, and no feminine word here begins with a vowel).
    "it": {
        "circle": _w("cerchio"), "square": _w("quadrato"), "triangle": _w("triangolo"),
        "star": _w("stella"), "diamond": _w("rombo"),
        "red": _gendered("rosso", "rossa"), "green": _w("verde"), "blue": _w("blu"),
        "yellow": _gendered("giallo", "gialla"), "purple": _w("viola"),
        "black": _gendered("nero", "nera"), "brown": _w("marrone"),
        "small": _gendered("piccolo", "piccola"), "large": _w("grande"),
        "left": _w("sinistra"), "right": _w("destra"), "top": _w("alto"), "bottom": _w("basso"),
        "center": _w("centro"), "a": _w("un", m="un", f="una", m_impure="uno"), "and": _w("e"),
        "at": _w("a", contracted="al"), "in": _w("in"),
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


ROMANCE_GENDERS = {"circle": "m", "square": "m", "triangle": "m", "star": "f", "diamond": "m"}
GRAMMAR: dict[str, Grammar] = {
    "en": Grammar(("art", "size", "colour", "shape"), {s: "n" for s in SHAPES},
                  {"left": "on the left", "right": "on the right", "top": "at the top",
                   "bottom": "at the bottom", "center": "in the center"}),
    "de": Grammar(("art", "size", "colour", "shape"),
                  {"circle": "m", "square": "n", "triangle": "n", "star": "m", "diamond": "f"},
                  {"left": "links", "right": "rechts", "top": "oben", "bottom": "unten",
                   "center": "in der Mitte"}),
    "fr": Grammar(("art", "size", "shape", "colour"), ROMANCE_GENDERS,
                  {"left": "à gauche", "right": "à droite", "top": "en haut", "bottom": "en bas",
                   "center": "au centre"}),
    "es": Grammar(("art", "shape", "colour", "size"), ROMANCE_GENDERS,
                  {"left": "a la izquierda", "right": "a la derecha", "top": "arriba",
                   "bottom": "abajo", "center": "en el centro"}),
    "it": Grammar(("art", "size", "shape", "colour"), ROMANCE_GENDERS,
                  {"left": "a sinistra", "right": "a destra", "top": "in alto", "bottom": "in basso",
                   "center": "al centro"}),
}

# Weak-text material: prefixes of alt-texts that still describe the image, and web
# boilerplate that describes nothing (relevance "none").
PREFIXES = {
    "en": ("image of", "photo:", "picture showing", "stock photo:"),
    "de": ("Foto:", "Bild von", "Abbildung:", "Bild:"),
    "fr": ("photo :", "image de", "illustration :", "image :"),
    "es": ("foto:", "imagen de", "ilustración:", "imagen:"),
    "it": ("foto:", "immagine di", "illustrazione:", "immagine:"),
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
    "it": ("clicca qui", "scarica l'immagine", "tutti i diritti riservati", "scopri di più",
           "acquista ora", "spedizione gratuita"),
}
FILENAME_PATTERNS = ("IMG_{:04d}.jpg", "DSC{:05d}.JPG", "image-{}.png", "photo_{}.jpeg")
IMPURE_ONSETS = ("gn", "ps", "x", "y", "z", *(f"s{c}" for c in "bcdfghjklmnpqrstvwxz"))


def word_form(lang: str, concept: str, gender: str, next_word: str = "") -> str:
    """The form of ``concept`` agreeing with ``gender`` (and, for en "a" and it "un", the next word)."""
    forms = LEXICON[lang][concept]
    if "v" in forms and next_word[:1].lower() in tuple("aeiou"):
        return forms["v"]
    if gender == "m" and "m_impure" in forms and next_word.lower().startswith(IMPURE_ONSETS):
        return forms["m_impure"]
    return forms.get(gender, forms["lemma"])


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
