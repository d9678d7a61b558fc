"""Concept ids of every text and region: the ``concepts`` stage (``MapConcepts``).

MVP aligns both modalities through language-independent concepts. This stage writes, on
every ``pairs`` row:

- ``texts[].concepts``: for each text of a configured ``kind``, its concepts by
  ``curation.concepts.mapper`` (vocabulary names, unique, in order of first occurrence;
  ``[]`` when none matched); texts of other kinds keep null;
- ``regions.concepts``: where the ``regions`` stage left labels, the concept of each
  box's label (null item where none).

The vocabulary is the user's file (``[concepts] vocabulary``); the build writes it to the
dataset as ``concepts.txt`` and lists it in the manifest (``schemas/README.md``). Nothing is
rejected: a text without concepts is data, not an error (the stage's real errors, a
malformed vocabulary, dictionary or label map, stop the build before it runs). ``parallel``
rows pass through.

Counters (namespace ``concepts``): ``in``, ``kept`` (the framework's), ``texts``,
``texts_with_concepts``, ``texts_without_concepts``, ``concepts`` (concept ids written),
``texts_<lang>`` and ``texts_with_concepts_<lang>`` (per language, so a language whose
dictionary misses shows), ``no_dictionary_<lang>`` (texts in a language with no
dictionary either way: direct matches only), ``boxes_mapped``, ``boxes_unmapped``
(labelled boxes whose label is no concept) and ``regions_unlabelled`` (rows whose regions
have no labels).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from curation.concepts.config import ConceptsConfig
from curation.concepts.mapper import ConceptMapper
from curation.concepts.vocab import read_vocabulary
from schemas.rows import Reject
from schemas.stage import ApplyRowStage, RowStage


def _texts(row: dict[str, Any], mapper: ConceptMapper, kinds: frozenset[str], stats: Counter[str]) -> list[dict[str, Any]]:
    texts = []
    for text in row["texts"]:
        if text["kind"] not in kinds:
            texts.append(text)
            continue
        lang = text["lang"]
        spans = text.get("spans")
        found = mapper.switched_concepts(text["text"], lang, spans) if spans else mapper.text_concepts(text["text"], lang)
        stats["texts"] += 1
        stats[f"texts_{lang}"] += 1
        if not mapper.has_dictionary(lang):
            stats[f"no_dictionary_{lang}"] += 1
        if found:
            stats["texts_with_concepts"] += 1
            stats[f"texts_with_concepts_{lang}"] += 1
            stats["concepts"] += len(found)
        else:
            stats["texts_without_concepts"] += 1
        texts.append({**text, "concepts": found})
    return texts


def _regions(regions: dict[str, Any] | None, mapper: ConceptMapper, stats: Counter[str]) -> dict[str, Any] | None:
    if regions is None:
        return None
    labels = regions.get("labels")
    if labels is None:
        stats["regions_unlabelled"] += 1
        return regions
    concepts = [mapper.label_concept(label) for label in labels]
    mapped = sum(1 for c in concepts if c is not None)
    stats["boxes_mapped"] += mapped
    stats["boxes_unmapped"] += sum(1 for label in labels if label is not None) - mapped
    return {**regions, "concepts": concepts}


def map_rows(rows: list[dict[str, Any]], mapper: ConceptMapper, cfg: ConceptsConfig,
             stats: Counter[str]) -> tuple[list[dict[str, Any]], list[Reject]]:
    """Concepts for a batch of pairs rows: (rows, no rejects)."""
    kinds = frozenset(cfg.kinds)
    return [{**row, "texts": _texts(row, mapper, kinds, stats), "regions": _regions(row.get("regions"), mapper, stats)}
            for row in rows], []


class AssignConcepts(RowStage):
    """The ``concepts`` stage's logic; the model is the ``ConceptMapper``."""

    batch_size = 256

    def __init__(self, cfg: ConceptsConfig):
        self.cfg = cfg

    def load(self) -> ConceptMapper:
        return ConceptMapper(self.cfg)

    def process(self, table: str, rows: list[dict[str, Any]], model: ConceptMapper,
                stats: Counter[str]) -> tuple[list[dict[str, Any]], list[Reject]]:
        return map_rows(rows, model, self.cfg, stats)


class MapConcepts(ApplyRowStage):
    """Row stage: {"pairs", "parallel"} -> ({"pairs" with concepts, "parallel"}, no rejects).

    cfg: the ``[concepts]`` settings; stage: its name in the registry. Building it loads
    the vocabulary, dictionaries and label map once, so that a malformed file stops the
    build before the pipeline runs.
    """

    def __init__(self, cfg: ConceptsConfig, stage: str, label: str | None = None):
        ConceptMapper(cfg, read_vocabulary(cfg.vocabulary, cfg.alias_separator))
        super().__init__(stage, AssignConcepts(cfg), label)
        self.cfg = cfg
