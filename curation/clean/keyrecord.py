"""The key record: what the spine's decisions (``ids.py``, ``dedup.py``, ``splits.py``) read
of a row, about 200 bytes, made by ``curation.clean.keys.key_record``.

Between steps a key record is a plain tuple (``tuple(KeyRecord(...))``: smaller to encode);
the steps that read it index it by the field constants below, never by bare numbers, so
the field order is stated once, here.
"""

from __future__ import annotations

from typing import NamedTuple


class KeyRecord(NamedTuple):
    """One row's keys (a plain tuple between steps: ``tuple(record)``)."""

    id: str
    source: str
    source_id: str
    provenance: tuple[str, int, str]
    split: str
    image: str  # sha256 of the stored image bytes ("" for parallel rows)
    dedup: str | None  # the dedup key (None: dedup off)
    captions: tuple[str, ...]  # caption keys (``splits.caption_keys``)


# Positions of the fields in the plain tuple.
ID, SOURCE, SOURCE_ID, PROVENANCE, SPLIT, IMAGE, DEDUP, CAPTIONS = (KeyRecord._fields.index(name) for name in (
    "id", "source", "source_id", "provenance", "split", "image", "dedup", "captions"))
