"""The concept level (MVP) and the detector labels (MRC): vocabularies and per-row ids.

Concepts are language-independent ids the ``[concepts]`` stage writes: each text's
``texts[].concepts`` (canonical concept names, unique, in order of first occurrence) and each
region's ``regions.concepts`` (the concept its detector label maps to, or null). The dataset
root's ``concepts.txt`` lists the vocabulary, one name per line, line index = id. Detector
labels (``regions.labels``, for masked region classification) have no vocabulary file: the
trainer collects the labels of the training split, sorted (``scan_region_labels``).

Both vocabularies go into every checkpoint (``concepts``, ``region_labels``), so a resumed
run and evaluation map names to the same ids the run trained with.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pretrain.images import BadSample
from pretrain.shards import Dataset, _open, read_unit
from schemas.dataset import read_dataset_text

CONCEPTS_FILE = "concepts.txt"


@dataclass
class Vocabularies:
    """Concept names (index = id) and detector label names (index = MRC class)."""

    concepts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._concept_ids = {c: i for i, c in enumerate(self.concepts)}
        self._label_ids = {c: i for i, c in enumerate(self.labels)}

    def concept_ids(self, names: list[str | None] | None, strict: bool = True) -> list[int]:
        """Ids of ``names``, -1 for a null item. An unknown name is a BadSample (the row was
        made with another concepts.txt) when ``strict``, else -1."""
        out = []
        for name in names or []:
            i = -1 if name is None else self._concept_ids.get(name)
            if i is None:
                if strict:
                    raise BadSample("unknown_concept", f"concept {name!r} is not in the run's {CONCEPTS_FILE}")
                i = -1
            out.append(i)
        return out

    def label_ids(self, names: list[str | None] | None) -> list[int]:
        """MRC class of each label, -1 for a null or unknown label (no target)."""
        return [-1 if n is None else self._label_ids.get(n, -1) for n in names or []]


def read_concepts(root: str) -> list[str]:
    """The dataset's concept vocabulary (concepts.txt), or a clear error without one."""
    text = read_dataset_text(root.rstrip("/"), CONCEPTS_FILE)
    if text is None:
        raise FileNotFoundError(f"{root}: no {CONCEPTS_FILE}; model.concepts needs the dataset's concept vocabulary, "
                                "which the [concepts] stage writes; build with that stage or set model.concepts = 0")
    names = [line.strip() for line in text.splitlines()]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{root.rstrip('/')}/{CONCEPTS_FILE}: one concept name per line, none empty, none repeated")
    return names


def resolve_concepts(setting: int, root: str, saved: list[str] | None) -> list[str]:
    """The run's concept vocabulary for ``model.concepts = setting``: the checkpoint's when
    resuming (``saved``), else the dataset's concepts.txt (whose size must be ``setting``
    when that is > 0)."""
    if setting == 0:
        return []
    names = saved if saved is not None else read_concepts(root)
    if setting > 0 and len(names) != setting:
        raise ValueError(f"model.concepts = {setting}, but {root}/{CONCEPTS_FILE} lists {len(names)} concepts; "
                         f"set model.concepts = {len(names)} or -1 (take the file's size)")
    return names


def _has_field(schema: pa.Schema, column: str, name: str) -> bool:
    typ = schema.field(column).type if column in schema.names else None
    return typ is not None and pa.types.is_struct(typ) and typ.get_field_index(name) >= 0


def scan_region_labels(data: Dataset, split: str) -> list[str]:
    """The sorted detector labels of ``split``'s regions (reads only ``regions.labels``)."""
    labels: set[str] = set()
    for unit in data.pairs:
        if not _has_field(_open(unit.path).schema_arrow, "regions", "labels"):
            continue
        for row in read_unit(unit, ["split", "regions.labels"], split):
            labels.update(x for x in ((row.get("regions") or {}).get("labels") or []) if x is not None)
    return sorted(labels)


def require_labels(labels: list[str], root: str, split: str) -> None:
    """loss.mrc needs labelled regions: refuse a dataset whose regions carry none."""
    if not labels:
        raise ValueError(f"{root}: loss.mrc classifies masked regions by their detector label, and no region of split "
                         f"{split!r} has one (regions.labels is null or absent; schema 1.2 and a labelling [regions] "
                         "extractor write them); set loss.mrc = 0 (loss.mrfr trains on the features alone)")


def text_concepts(names: list[str] | None, vocab: Vocabularies, limit: int) -> list[int]:
    """The first ``limit`` concept ids of a text (its concepts are unique, in order)."""
    return [i for i in vocab.concept_ids(names) if i >= 0][:limit]


def region_ids(row: dict[str, Any], vocab: Vocabularies, limit: int, concepts: bool, labels: bool,
               strict: bool = True) -> dict[str, list[int]]:
    """Per region slot (``limit``, -1 past the row's regions): its concept id and its MRC
    class. ``strict``: an unknown concept is a BadSample (training), else none (evaluation)."""
    reg = row.get("regions") or {}
    n = min(limit, len(reg.get("features") or []))
    out = {}
    if concepts:
        got = vocab.concept_ids((reg.get("concepts") or [None] * n)[:n], strict)
        out["concepts"] = got + [-1] * (limit - len(got))
    if labels:
        got = vocab.label_ids((reg.get("labels") or [None] * n)[:n])
        out["labels"] = got + [-1] * (limit - len(got))
    return out


def mask_concepts(ids: list[int], prob: float, rng: random.Random) -> list[bool]:
    """Which concept tokens text concept prediction masks: each with ``prob``, and one drawn
    at random when none was (as regions are masked, UNITER's ``_get_img_mask``)."""
    masked = [rng.random() < prob for _ in ids]
    if ids and not any(masked):
        masked[rng.randrange(len(ids))] = True
    return masked
