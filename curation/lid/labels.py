"""Language codes: one scheme for lid.176 labels, GlotLID/OpenLID labels and declared codes.

Different LID models speak different dialects of "language code": lid.176 says
``__label__en`` (ISO 639-1, or a Wikipedia code where none exists), GlotLID and OpenLID
say ``__label__eng_Latn`` (ISO 639-3 + ISO 15924 script), and input files declare
whatever their authors liked (``en``, ``eng``, ``en-US``, ``zh-Hant``, ``ger``). To
compare a detection with a declaration, filter on an allow-list, and count languages
in the manifest, all of them are normalised to one scheme (``normalise_code``):

* the language is ISO 639-1 where one exists, else ISO 639-3 (``eng`` -> ``en``,
  ``ger`` -> ``de``, ``yue`` stays ``yue``). Region subtags are dropped (``en-US`` -> ``en``).
* the standard member of a macrolanguage maps to the macrolanguage's 639-1 code, so
  that GlotLID/OpenLID and lid.176 agree: ``cmn``/``zho`` -> ``zh``, ``arb`` -> ``ar``,
  ``zsm`` -> ``ms``, ``pes`` -> ``fa``... (``STANDARD_MEMBERS``). Other members keep their
  own code (``yue``, ``arz``, ``prs``).
* a script is kept, as ``_Script``, only when it is NOT the language's usual script:
  ``eng_Latn`` -> ``en``, ``cmn_Hans`` -> ``zh``, ``cmn_Hant`` -> ``zh_Hant``,
  ``srp_Cyrl`` -> ``sr``, ``srp_Latn`` -> ``sr_Latn``, ``uzn_Cyrl`` -> ``uz_Cyrl``. The
  usual script is taken from ``DEFAULT_SCRIPTS`` (CLDR's likely script, for the languages
  not normally written in Latin), and is Latin for every other language.
* lid.176's few Wikipedia codes that clash with ISO are fixed (``als``, Alemannic in
  lid.176, is ``gsw``; in ISO it is Tosk Albanian, which GlotLID means by ``als_Latn``).

Languages are *compared* (declared vs detected, allow-lists) on ``lang_key``: the code
without its script, with Norwegian's written standards folded into ``no`` (lid.176 only
knows ``no`` and ``nn``, GlotLID ``nob`` and ``nno``).
"""

from __future__ import annotations

import re

from schemas.rows import UNDETERMINED, lang_key

LABEL_PREFIX = "__label__"

# ISO 639-1 -> ISO 639-3 (the 639-3 code of the language or macrolanguage), all 183
# current 639-1 codes. Inverted below; 639-2/B codes (``ger``, ``fre``) are added after.
_ISO1_TO_3 = """
aa aar ab abk ae ave af afr ak aka am amh an arg ar ara as asm av ava ay aym az aze
ba bak be bel bg bul bi bis bm bam bn ben bo bod br bre bs bos ca cat ce che ch cha
co cos cr cre cs ces cu chu cv chv cy cym da dan de deu dv div dz dzo ee ewe el ell
en eng eo epo es spa et est eu eus fa fas ff ful fi fin fj fij fo fao fr fra fy fry
ga gle gd gla gl glg gn grn gu guj gv glv ha hau he heb hi hin ho hmo hr hrv ht hat
hu hun hy hye hz her ia ina id ind ie ile ig ibo ii iii ik ipk io ido is isl it ita
iu iku ja jpn jv jav ka kat kg kon ki kik kj kua kk kaz kl kal km khm kn kan ko kor
kr kau ks kas ku kur kv kom kw cor ky kir la lat lb ltz lg lug li lim ln lin lo lao
lt lit lu lub lv lav mg mlg mh mah mi mri mk mkd ml mal mn mon mr mar ms msa mt mlt
my mya na nau nb nob nd nde ne nep ng ndo nl nld nn nno no nor nr nbl nv nav ny nya
oc oci oj oji om orm or ori os oss pa pan pi pli pl pol ps pus pt por qu que rm roh
rn run ro ron ru rus rw kin sa san sc srd sd snd se sme sg sag si sin sk slk sl slv
sm smo sn sna so som sq sqi sr srp ss ssw st sot su sun sv swe sw swa ta tam te tel
tg tgk th tha ti tir tk tuk tl tgl tn tsn to ton tr tur ts tso tt tat tw twi ty tah
ug uig uk ukr ur urd uz uzb ve ven vi vie vo vol wa wln wo wol xh xho yi yid yo yor
za zha zh zho zu zul
"""


def _pairs(text: str) -> dict[str, str]:
    words = text.split()
    return dict(zip(words[::2], words[1::2], strict=True))


ISO1_TO_3: dict[str, str] = _pairs(_ISO1_TO_3)
ISO3_TO_1: dict[str, str] = {three: one for one, three in ISO1_TO_3.items()}

# ISO 639-2/B (bibliographic) codes that differ from the 639-3 ones.
ISO2B_TO_1 = {
    "alb": "sq", "arm": "hy", "baq": "eu", "bur": "my", "chi": "zh", "cze": "cs",
    "dut": "nl", "fre": "fr", "geo": "ka", "ger": "de", "gre": "el", "ice": "is",
    "mac": "mk", "mao": "mi", "may": "ms", "per": "fa", "rum": "ro", "slo": "sk",
    "tib": "bo", "wel": "cy",
}  # fmt: skip

# The standard individual language of a macrolanguage, as GlotLID/OpenLID (NLLB codes)
# label it, -> the macrolanguage's 639-1 code, which lid.176 and most inputs use.
STANDARD_MEMBERS = {
    "arb": "ar", "azj": "az", "cmn": "zh", "ekk": "et", "gaz": "om", "khk": "mn",
    "kmr": "ku", "lvs": "lv", "npi": "ne", "ory": "or", "pbt": "ps", "pes": "fa",
    "plt": "mg", "quy": "qu", "swh": "sw", "uzn": "uz", "ydd": "yi", "zsm": "ms",
    "als": "sq",
}  # fmt: skip

# lid.176 labels that are Wikipedia codes rather than ISO ones (only for labels without
# a script: a GlotLID ``als_Latn`` is Tosk Albanian, a lid.176 ``als`` is Alemannic).
LID176_FIXES = {"als": "gsw"}

# A language's usual script, where it is not Latin (CLDR likely subtags). A model's
# script suffix equal to one of these is dropped; any other script is kept.
_DEFAULT_SCRIPTS = {
    "Arab": "ar fa ur ps sd ug ks ckb azb pnb arz ary ars acm apc ajp aeb acq mzn glk lrc prs skr bal",
    "Cyrl": "ru uk be bg mk sr kk ky tg mn tt ba cv ce os av kv sah tyv udm myv mhr mrj krc lez xal bxr rue kbd ady",
    "Deva": "hi mr ne sa mai bho new gom hne mag awa dty anp",
    "Beng": "bn as bpy mni",
    "Hebr": "he yi",
    "Ethi": "am ti",
    "Tibt": "bo dz",
    "Geor": "ka xmf",
    "Hans": "zh wuu",
    "Hant": "yue",
    "Hang": "ko",
    "Jpan": "ja",
}
DEFAULT_SCRIPTS: dict[str, frozenset[str]] = {}
for _script, _langs in _DEFAULT_SCRIPTS.items():
    for _lang in _langs.split():
        DEFAULT_SCRIPTS[_lang] = frozenset({_script})
DEFAULT_SCRIPTS.update({
    "zh": frozenset({"Hans", "Hani"}), "ko": frozenset({"Hang", "Kore"}),
    "ja": frozenset({"Jpan", "Hira", "Kana", "Hrkt"}),
    "gu": frozenset({"Gujr"}), "pa": frozenset({"Guru"}), "or": frozenset({"Orya"}),
    "ta": frozenset({"Taml"}), "te": frozenset({"Telu"}), "kn": frozenset({"Knda"}),
    "ml": frozenset({"Mlym"}), "si": frozenset({"Sinh"}), "th": frozenset({"Thai"}),
    "lo": frozenset({"Laoo"}), "km": frozenset({"Khmr"}), "my": frozenset({"Mymr"}),
    "hy": frozenset({"Armn"}), "el": frozenset({"Grek"}), "dv": frozenset({"Thaa"}),
    "iu": frozenset({"Cans"}), "sat": frozenset({"Olck"}), "chr": frozenset({"Cher"}),
    "ii": frozenset({"Yiii"}),
})  # fmt: skip
LATIN = frozenset({"Latn"})

# Codes that are not one language: a declaration of these declares nothing.
NOT_A_LANGUAGE = frozenset({UNDETERMINED, "mul", "zxx", "mis"})

# Comparison folds: written standards of one language (see the module docstring).
_CODE = re.compile(r"^(?P<lang>[A-Za-z]{2,3})(?:[_-](?P<script>[A-Za-z]{4}))?(?:[_-](?:[A-Za-z]{2}|\d{3}))?$")


def _language(lang: str, from_lid176: bool) -> str:
    """ISO 639-1 where one exists, else the (639-3) code itself."""
    lang = lang.lower()
    if from_lid176 and lang in LID176_FIXES:
        return LID176_FIXES[lang]
    if len(lang) == 2:
        return lang
    return ISO3_TO_1.get(lang) or ISO2B_TO_1.get(lang) or STANDARD_MEMBERS.get(lang) or lang


def normalise_code(code: str) -> str | None:
    """The canonical code of a label or declared code, or None when it is not a code.

    Accepts ``__label__en``, ``__label__eng_Latn``, ``en``, ``eng``, ``ger``, ``en-US``,
    ``zh-Hant``, ``zh_hant`` (any case): ``normalise_code("__label__cmn_Hant") == "zh_Hant"``.
    """
    if not isinstance(code, str):
        return None
    code = code.strip()
    from_label = code.startswith(LABEL_PREFIX)
    if from_label:
        code = code[len(LABEL_PREFIX):]
    match = _CODE.match(code)
    if match is None:
        return None
    script = match.group("script")
    lang = _language(match.group("lang"), from_lid176=from_label and script is None)
    if script is None or lang in NOT_A_LANGUAGE:
        return lang
    script = script.title()
    if script in DEFAULT_SCRIPTS.get(lang, LATIN):
        return lang
    return f"{lang}_{script}"


def normalise_label(label: str) -> str:
    """A model label's canonical code; a label that is no code is kept as written (minus
    the ``__label__`` prefix), so a custom model's labels still come through."""
    code = normalise_code(label)
    if code is not None:
        return code
    bare = label[len(LABEL_PREFIX):] if label.startswith(LABEL_PREFIX) else label
    return bare or UNDETERMINED


def declared_key(value: str | None) -> str | None:
    """The comparison key of a declared language, or None when nothing usable is declared
    (absent, ``und``/``mul``/``zxx``, or not a language code)."""
    if not value:
        return None
    code = normalise_code(value)
    if code is None or code in NOT_A_LANGUAGE:
        return None
    return lang_key(code)
