"""The concept vocabulary: reading it, looking phrases up in it, deriving the demo's, and
the dataset's ``concepts.txt`` with its manifest entries.

A concept's id is its name, as the vocabulary file writes it (trimmed); its line in
``concepts.txt`` (0-based) is its integer id for a trainer. Phrases are looked up by their
``codeswitch.dictionary.phrase_key`` (lower-cased, whitespace collapsed, outer
punctuation stripped), the key the dictionaries use too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from codeswitch.dictionary import phrase_key, read_bytes

VOCABULARY_FILE = "concepts.txt"


class VocabularyError(ValueError):
    """The vocabulary file is malformed; the message names the file and line."""


def plural_stems(key: str) -> list[str]:
    """Singular candidates of an English-style plural key (on its last word), in the order
    they are tried: "boxes" -> ["box", "boxe"], "berries" -> ["berry", "berri", "berrie"]."""
    out = []
    if key.endswith("ies") and len(key) > 4:
        out.append(key[:-3] + "y")
    if key.endswith("es") and len(key) > 3:
        out.append(key[:-2])
    if key.endswith("s") and not key.endswith("ss") and len(key) > 2:
        out.append(key[:-1])
    return out


class Vocabulary:
    """Concept names in order, and key -> name for their names and aliases."""

    def __init__(self, entries: Iterable[Sequence[str]], where: str = "vocabulary"):
        self.names: list[str] = []
        self.index: dict[str, str] = {}
        lines: dict[str, int] = {}
        for n, entry in enumerate(entries, 1):
            name = entry[0].strip()
            if not name:
                raise VocabularyError(f"{where}:{n}: empty concept name")
            if name in lines:
                raise VocabularyError(f"{where}:{n}: concept {name!r} is already line {lines[name]}; "
                                      "each concept once (its line is its id)")
            lines[name] = n
            self.names.append(name)
            for alias in entry:
                key = phrase_key(alias, True)
                if key:
                    self.index.setdefault(key, name)
        if not self.names:
            raise VocabularyError(f"{where}: no concepts")
        self.max_words = max(len(k.split(" ")) for k in self.index)

    def lookup(self, key: str, plural: bool) -> str | None:
        """The concept a phrase key names (with ``plural``: or its singular), or None."""
        found = self.index.get(key)
        if found is None and plural:
            for stem in plural_stems(key):
                if stem in self.index:
                    return self.index[stem]
        return found

    def text(self) -> str:
        """``concepts.txt``: one name a line."""
        return "".join(f"{name}\n" for name in self.names)


def read_vocabulary(path: str, separator: str = "\t") -> Vocabulary:
    """The vocabulary of a file: a concept a line, aliases after ``separator``; blank lines
    and lines starting with ``#`` are skipped."""
    try:
        data = read_bytes(path).decode("utf-8").removeprefix("\ufeff")
    except (OSError, UnicodeDecodeError) as err:
        raise VocabularyError(f"{path}: cannot read the concept vocabulary: {err}") from err
    entries = [line.split(separator) for line in data.splitlines() if line.strip() and not line.startswith("#")]
    return Vocabulary(entries, path)


def demo_vocabulary(generator: Any) -> list[str]:
    """The demo's concept vocabulary, from its generator's word tables: ``SHAPES``,
    ``COLOURS``, ``SIZES`` then ``POSITIONS`` (pass ``curation.demo.synth``; this package
    does not import the demo). Example: ``write_vocabulary("concepts.txt",
    demo_vocabulary(synth))``."""
    names = [*generator.SHAPES, *generator.COLOURS, *generator.SIZES, *generator.POSITIONS]
    if len(set(names)) != len(names):
        raise VocabularyError(f"the generator's words repeat: {sorted(n for n in names if names.count(n) > 1)}")
    return names


def write_vocabulary(path: str, names: Sequence[str]) -> None:
    """A vocabulary file of ``names``, one a line (no aliases)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(Vocabulary([[n] for n in names], path).text())


def dataset_files(cfg: Any, manifest: dict[str, Any]) -> dict[str, bytes]:
    """The dataset's ``concepts.txt`` (name -> bytes) when the concepts stage ran (``cfg``:
    the ``[concepts]`` settings), else nothing; lists it in the manifest: ``files.concepts``
    with its size and sha256 like a shard, and ``concepts``, where the vocabulary came from."""
    if not cfg.enabled:
        return {}
    vocabulary = read_vocabulary(cfg.vocabulary, cfg.alias_separator)
    data = vocabulary.text().encode("utf-8")
    manifest["files"]["concepts"] = [{"path": VOCABULARY_FILE, "rows": len(vocabulary.names), "size": len(data),
                                      "sha256": hashlib.sha256(data).hexdigest()}]
    original = read_bytes(cfg.vocabulary)
    manifest["concepts"] = {"source": cfg.source_name, "size": len(original),
                            "sha256": hashlib.sha256(original).hexdigest(), "concepts": len(vocabulary.names)}
    return {VOCABULARY_FILE: data}
