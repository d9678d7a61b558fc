"""Texts and detector labels to concepts: the ``concepts`` stage's model.

**Texts.** A text is split on whitespace and each word keyed as the dictionaries key
their entries (``codeswitch.dictionary.phrase_key``: lower-cased, outer punctuation
stripped). From left to right, the longest run of words that names a concept wins:

- in the vocabulary's language, a run matches a concept's name or alias, or (``plural``)
  its singular ("circles" -> circle);
- in another language, a run matches through the MUSE dictionary into the vocabulary's
  language: the first of its translations (in file order: MUSE lists the most frequent
  first) that names a concept, singular included; where the dictionary has no entry for
  the run, and ``direct`` is on, the run is matched against the vocabulary itself;
- a word with an apostrophe that matches nothing is tried without its elided head
  ("l'étoile" -> "étoile").

Inflected forms are matched where the dictionaries list them (MUSE and the demo's list
"roter", "rote", "rotes" for "red"); there is no lemmatiser. A text in a language with no
dictionary either way gets only direct matches (counted ``no_dictionary_<lang>``). The
concepts of a text are unique, in order of first occurrence. A code-switched text
(with ``spans``) is matched span by span: each switched span in its own language, the
rest in the text's.

**Labels.** A detector label maps through ``label_map`` first, then through the
vocabulary (name, alias, singular); None where neither has it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from codeswitch.dictionary import list_dictionaries, load_lexicons, pair_of, phrase_key, read_bytes
from curation.concepts.config import ConceptsConfig
from curation.concepts.vocab import Vocabulary, read_vocabulary
from schemas.rows import lang_key


def dictionary_files(cfg: ConceptsConfig) -> dict[tuple[str, str], str]:
    """(src, tgt) -> file of the dictionaries that touch the vocabulary's language."""
    if not cfg.dictionaries:
        return {}
    if isinstance(cfg.dictionaries, str):
        found = list_dictionaries(cfg.dictionaries)
    else:
        found = {pair: path for key, path in cfg.dictionaries.items() if (pair := pair_of(key))}
    return {pair: path for pair, path in found.items() if cfg.language in pair}


def into_vocabulary_language(cfg: ConceptsConfig) -> dict[str, dict[str, list[str]]]:
    """lang -> (its phrase key -> phrases in the vocabulary's language, file order): the
    ``{lang}-{language}`` files, then the ``{language}-{lang}`` files read backwards."""
    files = dictionary_files(cfg)
    if not files:
        return {}
    others = sorted({src if tgt == cfg.language else tgt for src, tgt in files})
    lexicons, _ = load_lexicons(files, [cfg.language, *others], fold=True, on_malformed=cfg.on_malformed)
    maps: dict[str, dict[str, list[str]]] = {}
    for src, lex in sorted(lexicons.items()):
        for key, options in lex.entries.items():
            for lang, targets in options:
                if src != cfg.language and lang == cfg.language:  # forward: key in src
                    maps.setdefault(src, {}).setdefault(key, []).extend(targets)
    for key, options in (lexicons[cfg.language].entries.items() if cfg.language in lexicons else ()):
        for lang, targets in options:  # backward: a translation in lang of key
            table = maps.setdefault(lang, {})
            for target in targets:
                table.setdefault(phrase_key(target, True), []).append(key)
    return maps


def read_label_map(label_map: str | Mapping[str, str]) -> dict[str, str]:
    """label key -> concept name, from a table or a file of ``label<TAB>concept`` lines."""
    if isinstance(label_map, Mapping):
        return {phrase_key(k, True): v.strip() for k, v in label_map.items()}
    if not label_map:
        return {}
    out = {}
    for n, line in enumerate(read_bytes(label_map).decode("utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"{label_map}:{n}: expected 'label<TAB>concept', got {line[:80]!r}")
        out[phrase_key(parts[0], True)] = parts[1].strip()
    return out


class ConceptMapper:
    """Vocabulary, dictionaries and label map, loaded once per process (module docstring)."""

    def __init__(self, cfg: ConceptsConfig, vocabulary: Vocabulary | None = None):
        self.cfg = cfg
        self.vocabulary = vocabulary or read_vocabulary(cfg.vocabulary, cfg.alias_separator)
        self.language = lang_key(cfg.language)
        self.dictionaries = {lang_key(k): v for k, v in into_vocabulary_language(cfg).items()}
        self.dict_words = {lang: max((len(k.split(" ")) for k in table), default=1)
                           for lang, table in self.dictionaries.items()}
        self.labels = read_label_map(cfg.label_map)
        unknown = sorted({c for c in self.labels.values() if c not in set(self.vocabulary.names)})
        if unknown:
            raise ValueError(f"concepts.label_map: {unknown} are not concepts of {cfg.vocabulary}")

    def _match(self, key: str, table: Mapping[str, Sequence[str]] | None) -> str | None:
        vocab, plural = self.vocabulary, self.cfg.plural
        if table is None:
            return vocab.lookup(key, plural)
        translations = table.get(key)
        if translations is not None:
            for phrase in translations:
                found = vocab.lookup(phrase, plural)
                if found is not None:
                    return found
            return None
        return vocab.lookup(key, False) if self.cfg.direct else None

    def has_dictionary(self, lang: str) -> bool:
        return lang_key(lang) == self.language or lang_key(lang) in self.dictionaries

    def text_concepts(self, text: str, lang: str) -> list[str]:
        """The concepts of ``text`` in ``lang`` (module docstring)."""
        lang = lang_key(lang)
        table = None if lang == self.language else self.dictionaries.get(lang, {})
        keys = [phrase_key(word, True) for word in text.split()]
        longest = max(self.vocabulary.max_words, self.dict_words.get(lang, 1))
        found: dict[str, None] = {}
        i = 0
        while i < len(keys):
            for n in range(min(longest, len(keys) - i), 0, -1):
                if not all(keys[i:i + n]):
                    continue
                concept = self._match(" ".join(keys[i:i + n]), table)
                if concept is None and n == 1 and "'" in keys[i]:
                    concept = self._match(keys[i].rsplit("'", 1)[1], table)
                if concept is not None:
                    found.setdefault(concept)
                    i += n
                    break
            else:
                i += 1
        return list(found)

    def switched_concepts(self, text: str, lang: str, spans: Sequence[dict[str, Any]]) -> list[str]:
        """The concepts of a code-switched text: each switched span (``start``/``end`` in
        this text) in its own language, the rest in ``lang``; in order, unique."""
        pieces, pos = [], 0
        for span in sorted(spans, key=lambda s: s["start"]):
            pieces += [(text[pos:span["start"]], lang), (text[span["start"]:span["end"]], span["lang"])]
            pos = span["end"]
        pieces.append((text[pos:], lang))
        found: dict[str, None] = {}
        for piece, piece_lang in pieces:
            found.update(dict.fromkeys(self.text_concepts(piece, piece_lang)))
        return list(found)

    def label_concept(self, label: str | None) -> str | None:
        """The concept of a detector label, or None."""
        if label is None:
            return None
        key = phrase_key(label.replace("_", " "), True)
        return self.labels.get(key) or self.vocabulary.lookup(key, self.cfg.plural)
