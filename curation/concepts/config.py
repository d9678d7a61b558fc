"""The ``[concepts]`` settings: a dataclass, validated once, before any work starts.

``concepts_config_from_dict`` raises ``ConceptsConfigError`` naming the setting and what
to change; ``resolve_concepts`` defaults the dictionaries to the ``[codeswitch]`` ones (as
``[relevance]`` does). Paths resolve against the config file's folder and must exist; the
vocabulary is read and checked when ``MapConcepts`` is built, still before the pipeline runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.settings import check_known, resolve_path

MALFORMED = ("error", "skip")


class ConceptsConfigError(ValueError):
    """A ``[concepts]`` setting is wrong (curation.config re-raises it as ConfigError)."""


@dataclass
class ConceptsConfig:
    """Concept ids of every text and region (the ``concepts`` stage); off while
    ``vocabulary`` is empty.

    vocabulary: the concept vocabulary: a UTF-8 file, one concept a line (its name: the id
        written to the rows and the line of the dataset's ``concepts.txt``), optionally
        followed by tab-separated aliases that also match it (``person<TAB>man<TAB>woman``).
        Names may be phrases ("tennis racket"): texts match longest first. E.g. Visual
        Genome's object and attribute names (objects_vocab.txt, attributes_vocab.txt: a
        line ``man,men`` lists aliases with commas: set ``alias_separator = ","``).
    alias_separator: what separates a line's name from its aliases ("\\t" by default).
    language: the vocabulary's language; texts in another one reach it through the MUSE
        dictionaries.
    dictionaries: MUSE ``{src}-{tgt}.txt`` directory or table: ``{lang}-{language}.txt``
        maps a text's words into the vocabulary's language, and ``{language}-{lang}.txt`` is
        read backwards where that is all there is (the demo and M3P ship en-X only). Empty:
        the ``[codeswitch]`` dictionaries. Read with codeswitch's loader (case folded).
    direct: also match a word of another language against the vocabulary itself where the
        dictionary has no entry for it (shared words such as fr "triangle": MUSE files drop
        identical pairs).
    plural: in the vocabulary's language, also match a word by dropping a plural ending
        ("-s", "-es", "-ies" -> "-y"; English-style), and the same for translations.
    kinds: the kinds of text that get concepts (others keep ``concepts`` null).
    label_map: detector label -> concept, a table {label = "concept"} or a file of
        ``label<TAB>concept`` lines, for labels that are not a concept's name or alias.
        Labels map through it first, then through the vocabulary itself.
    on_malformed: a malformed dictionary line is an "error" (naming file:line) or "skip"ped.
    name: what the manifest records as the vocabulary's source (default: the file's name).
    """

    vocabulary: str = ""
    alias_separator: str = "\t"
    language: str = "en"
    dictionaries: str | dict[str, str] = ""
    direct: bool = True
    plural: bool = True
    kinds: list[str] = field(default_factory=lambda: ["caption", "translation", "codeswitch", "weak"])
    label_map: str | dict[str, str] = ""
    on_malformed: str = "error"
    name: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.vocabulary)

    @property
    def source_name(self) -> str:
        return self.name or os.path.basename(self.vocabulary)


def _fail(name: str, value: Any, fix: str) -> ConceptsConfigError:
    return ConceptsConfigError(f"concepts.{name} = {value!r}: {fix}")


def _exists(path: str) -> bool:
    return "://" in path or os.path.exists(path)


def _check(cfg: ConceptsConfig) -> None:
    from schemas.rows import TEXT_KINDS  # here, not at import: ``m3curate --help`` loads no pyarrow

    if not _exists(cfg.vocabulary):
        raise _fail("vocabulary", cfg.vocabulary, "no such file")
    for name in ("direct", "plural"):
        if not isinstance(getattr(cfg, name), bool):
            raise _fail(name, getattr(cfg, name), "use true or false")
    if not isinstance(cfg.alias_separator, str) or not cfg.alias_separator:
        raise _fail("alias_separator", cfg.alias_separator, "a non-empty string such as \"\\t\" or \",\"")
    if not isinstance(cfg.language, str) or not cfg.language:
        raise _fail("language", cfg.language, "the vocabulary's language code, e.g. \"en\"")
    if not isinstance(cfg.kinds, list) or not cfg.kinds or not set(cfg.kinds) <= set(TEXT_KINDS):
        raise _fail("kinds", cfg.kinds, f"a non-empty list of {TEXT_KINDS}")
    if cfg.on_malformed not in MALFORMED:
        raise _fail("on_malformed", cfg.on_malformed, f"use one of {MALFORMED}")
    if isinstance(cfg.label_map, str):
        if cfg.label_map and not _exists(cfg.label_map):
            raise _fail("label_map", cfg.label_map, "no such file")
    elif not isinstance(cfg.label_map, dict) or not all(isinstance(v, str) for v in cfg.label_map.values()):
        raise _fail("label_map", cfg.label_map, "a file of label<TAB>concept lines or a table {label = \"concept\"}")
    if isinstance(cfg.dictionaries, dict):
        for pair, path in cfg.dictionaries.items():
            if not isinstance(path, str) or not _exists(path):
                raise _fail(f"dictionaries.{pair}", path, "no such file")
    elif not isinstance(cfg.dictionaries, str):
        raise _fail("dictionaries", cfg.dictionaries, "a directory or a table {\"de-en\" = \"file.txt\"}")
    elif cfg.dictionaries and not _exists(cfg.dictionaries):
        raise _fail("dictionaries", cfg.dictionaries, "no such directory")


def concepts_config_from_dict(data: dict[str, Any] | None, base_dir: str = ".") -> ConceptsConfig:
    """A validated ConceptsConfig from the parsed ``[concepts]`` table (None or no
    ``vocabulary``: the stage is off)."""
    data = dict(data or {})
    check_known("concepts", data, ConceptsConfig, ConceptsConfigError)
    try:
        cfg = ConceptsConfig(**data)
    except TypeError as err:
        raise ConceptsConfigError(f"concepts: {err}") from err
    if not cfg.enabled:
        return cfg
    cfg.vocabulary = resolve_path(cfg.vocabulary, base_dir)
    if isinstance(cfg.label_map, str):
        cfg.label_map = resolve_path(cfg.label_map, base_dir)
    if isinstance(cfg.dictionaries, str):
        cfg.dictionaries = resolve_path(cfg.dictionaries, base_dir)
    elif isinstance(cfg.dictionaries, dict):
        cfg.dictionaries = {k: resolve_path(v, base_dir) if isinstance(v, str) else v for k, v in cfg.dictionaries.items()}
    _check(cfg)
    return cfg


def resolve_concepts(cfg: ConceptsConfig, codeswitch_dictionaries: str | dict[str, str]) -> ConceptsConfig:
    """``cfg`` with empty ``dictionaries`` defaulted to the ``[codeswitch]`` ones, so the
    manifest's resolved config shows which files were read."""
    if cfg.enabled and not cfg.dictionaries and codeswitch_dictionaries:
        return replace(cfg, dictionaries=codeswitch_dictionaries)
    return cfg
