"""The parsing behind benchmarks/relevance_real.py (FreeDict dictd -> MUSE, gettext .po ->
aligned pairs), on tiny hand-written inputs: no network, no installed dictionaries."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

from codeswitch.dictionary import load_lexicons, write_muse_dictionaries
from curation.relevance.scorers import LexicalScorer, Pair

_PATH = Path(__file__).resolve().parents[3] / "benchmarks" / "real_inputs.py"
_spec = importlib.util.spec_from_file_location("real_inputs", _PATH)
real_inputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(real_inputs)

ENTRIES = [
    ("Haus", "Haus /haʊ̯s/ <neut, n, sg>\nhouse <n>, home\n   Synonym: {Gebäude}\n see: {Häuser}\n"),
    ("eingeben", "eingeben /ˈaɪnɡˌeːbən/ <v, trans>\ntype in sth. <v>, key in sth. <v> [Am.]\n"
                 "      \"eine Adresse eingeben\"  - key an address into the computer\n"),
    ("Adresse", "Adresse <fem>\naddress <n>Adr., /ˈadə/ , location\n"),
    ("cinta", "cinta /θˈinta/\n1. bond, tie\n2. ribbon (of silk)\n"),
    ("mit jdm in Konflikt geraten", "mit jdm. in Konflikt geraten <v>\ncome into conflict with sb. <v>\n"),
    ("manquer", "manquer /mɑ̃ke/ <v>\nto miss; to lack\n"),
]


def _dictd(entries: list[tuple[str, str]]) -> tuple[str, bytes]:
    """A dictd index and data for ``entries`` (metadata entry first, as dictfmt writes)."""
    data, lines = b"", []
    for head, body in [("00databaseinfo", "FreeDict test\n"), *entries]:
        raw = body.encode("utf-8")
        lines.append(f"{head.lower()}\t{_b64(len(data))}\t{_b64(len(raw))}")
        data += raw
    return "\n".join(lines) + "\n", data


def _b64(n: int) -> str:
    digits = ""
    while n:
        n, r = divmod(n, 64)
        digits = real_inputs.B64[r] + digits
    return digits or real_inputs.B64[0]


def test_b64_numbers_are_dictd_offsets():
    assert real_inputs.b64_number("A") == 0
    assert real_inputs.b64_number("BA") == 64
    assert real_inputs.b64_number(_b64(123456)) == 123456


def test_definition_translations_keep_column_zero_lines_only():
    translations = real_inputs.definition_translations
    assert translations(ENTRIES[0][1]) == ["house", "home"]  # synonyms and see-also are indented
    assert translations(ENTRIES[1][1]) == ["type in", "key in"]  # example lines and sth. dropped
    assert translations(ENTRIES[2][1]) == ["address", "Adr.", "location"]  # IPA and tags split/removed
    assert translations(ENTRIES[3][1]) == ["bond", "tie", "ribbon"]  # numbering and notes removed
    assert translations(ENTRIES[5][1]) == ["miss", "lack"]  # infinitive "to" removed


def test_dictd_to_muse_is_word_to_word_and_skips_metadata(tmp_path):
    index, data = _dictd(ENTRIES)
    (tmp_path / "x.index").write_text(index, encoding="utf-8")
    (tmp_path / "x.dict.dz").write_bytes(gzip.compress(data))
    entries = list(real_inputs.read_dictd(tmp_path / "x.index", tmp_path / "x.dict.dz"))
    assert [h for h, _ in entries] == [h.lower() for h, _ in ENTRIES]
    pairs = real_inputs.muse_pairs(entries)
    assert ("haus", "house") in pairs and ("cinta", "ribbon") in pairs
    assert not [p for p in pairs if " " in p[0] + p[1]]  # "type in", "mit jdm in ..." need max_words > 1
    assert ("eingeben", "type in") in real_inputs.muse_pairs(entries, max_words=2)


def test_converted_dictionary_loads_and_scores(tmp_path):
    index, data = _dictd(ENTRIES[:1])
    pairs = real_inputs.muse_pairs(real_inputs.dictd_entries(index, data))
    [path] = write_muse_dictionaries(tmp_path, {("de", "en"): pairs})
    files = {("de", "en"): str(path)}
    lexicons, _ = load_lexicons(files, ["en"], fold=True)
    scorer = LexicalScorer(lexicons)
    assert scorer.score([Pair("Haus", "de", "house", "en"), Pair("Haus", "de", "tree", "en")]) == [1.0, 0.0]


PO = r'''# header comment
msgid ""
msgstr ""
"Language: de\n"

#: views.py:1
#, python-format
msgid "Enter a valid %(field)s value for this form."
msgstr "Bitte einen gültigen Wert für %(field)s dieses Formular eingeben."

msgctxt "button"
msgid ""
"Save the <b>selected</b> "
"objects now"
msgstr ""
"Die <b>ausgewählten</b> Objekte "
"jetzt speichern"

#, fuzzy
msgid "This translation is not reviewed yet"
msgstr "Diese Übersetzung ist ungeprüft"

msgid "Untranslated message with four words"
msgstr ""

msgid "Delete"
msgstr "Löschen"

msgid "One object was deleted from the list"
msgid_plural "%(n)d objects were deleted from the list"
msgstr[0] "Ein Objekt wurde aus der Liste gelöscht"
msgstr[1] "%(n)d Objekte wurden aus der Liste gelöscht"

msgid "Use the {name} field_name = value"
msgstr "Das Feld {name} field_name = value verwenden"

#~ msgid "An obsolete message that was removed"
#~ msgstr "Eine veraltete Meldung, die entfernt wurde"
'''


def test_parse_po_reads_continuations_context_flags_and_plurals():
    entries = {e.msgid: e for e in real_inputs.parse_po(PO)}
    assert entries["Save the <b>selected</b> objects now"].msgstr == "Die <b>ausgewählten</b> Objekte jetzt speichern"
    assert entries["Save the <b>selected</b> objects now"].context == "button"
    assert entries["This translation is not reviewed yet"].fuzzy
    assert entries["One object was deleted from the list"].plural
    assert entries["One object was deleted from the list"].msgstr == "Ein Objekt wurde aus der Liste gelöscht"
    assert "An obsolete message that was removed" not in entries
    assert entries[""].msgstr == "Language: de "  # the header; \n becomes a space


def test_sentence_pairs_clean_placeholders_and_keep_sentences():
    pairs = dict(real_inputs.sentence_pairs(real_inputs.parse_po(PO), min_words=4))
    assert pairs == {
        "Enter a valid value for this form.": "Bitte einen gültigen Wert für dieses Formular eingeben.",
        "Save the selected objects now": "Die ausgewählten Objekte jetzt speichern",
        "One object was deleted from the list": "Ein Objekt wurde aus der Liste gelöscht",
    }  # fuzzy, untranslated, single words, code-like text and obsolete entries are left out
