"""Exact deduplication of pairs and parallel rows.

Duplicates are grouped by a key (image sha256 and/or normalised texts); within a group
the row with the smallest (source, source_id, id) is kept, so the choice is the same on
any runner and any number of workers. The others become ``dedup/duplicate`` rejects naming
the row that was kept.

Dedup is decided on the rows' key records (``curation.clean.keys``), grouped by their
dedup key on disk, never on the rows (their image bytes would make a shuffle, and
FnApiRunner's memory, grow with the dataset); the decisions (id -> the kept row's
identity) are applied to the rows where they stream back from disk. Ids are unique here
(``curation.clean.ids.UniqueIds`` runs first).

Counters (namespace ``dedup``): ``in``, ``kept``, ``rejected_duplicate``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

import apache_beam as beam

from curation.clean import keyrecord as kr
from curation.output.spill import GroupOnDisk
from curation.stages import DEDUP
from schemas.rows import Reject, without_image_bytes
from schemas.stage import StageCounters


def _texts_key(row: dict[str, Any]) -> str:
    return "\x1f".join(f"{t['kind']}\x1e{t['text']}" for t in row["texts"])


def pair_key(row: dict[str, Any], key: str) -> str | None:
    """The dedup key of a pairs row, or None when dedup is off (key "none")."""
    if key == "none":
        return None
    parts = []
    if "image" in key:
        parts.append(row["image"]["sha256"])
    if "caption" in key:
        parts.append(_texts_key(row))
    return hashlib.blake2b("\x1d".join(parts).encode(), digest_size=16).hexdigest()


def parallel_key(row: dict[str, Any], key: str) -> str | None:
    """Parallel rows dedup on both sides and their languages (whatever the image key says)."""
    if key == "none":
        return None
    text = "\x1d".join((row["src_lang"], row["src_text"], row["tgt_lang"], row["tgt_text"]))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


DECISIONS = "decisions"
Identity = tuple[str, str, str]  # (source, source_id, id): what dedup orders rows by and names them with


def losers(identities: Iterable[Identity]) -> Iterator[tuple[str, Identity]]:
    """(id, kept row's identity) for every row of a group but the kept one, the smallest."""
    ordered = sorted(identities)
    for dup in ordered[1:]:
        yield dup[2], ordered[0]


def duplicate_reject(dup: dict[str, Any], kept: Identity, what: str) -> Reject:
    detail = f"same {what} as kept record {kept[0]}:{kept[1]} (id {kept[2]})"
    return Reject(DEDUP, "duplicate", detail, dup["source"], dup["source_id"], without_image_bytes(dup), dup["id"])


def key_identity(record: tuple) -> Identity:
    """The identity of a key record (``curation.clean.keyrecord``)."""
    return record[kr.SOURCE], record[kr.SOURCE_ID], record[kr.ID]


class _PickFn(beam.DoFn):
    """(dedup key, key records) -> the kept record; the others' (id, ("duplicate", kept
    identity)) decisions on the ``DECISIONS`` output."""

    def __init__(self) -> None:
        self.counters = StageCounters(DEDUP)
        self.tally: Counter[str] = Counter()

    def start_bundle(self) -> None:
        self.tally = Counter()  # counted once a bundle

    def process(self, group: tuple[str, list[tuple]]) -> Iterator[Any]:
        _, records = group
        ordered = sorted(records, key=key_identity)
        tally = self.tally
        tally["in"] += len(ordered)
        tally["kept"] += 1
        tally["rejected_duplicate"] += len(ordered) - 1
        yield ordered[0]
        for row_id, kept in losers(map(key_identity, ordered)):
            yield beam.pvalue.TaggedOutput(DECISIONS, (row_id, ("duplicate", kept)))

    def finish_bundle(self) -> None:
        self.counters.add(self.tally)


class Deduplicate(beam.PTransform):
    """Exact dedup, decided on key records (``curation.clean.keys``). table: "pairs" or
    "parallel"; key: DedupConfig.key; directory: where the records are grouped by their
    dedup key (``GroupOnDisk``).

    Returns (the kept key records, decisions (id, ("duplicate", kept identity)) for the
    others), applied to the rows by ``keys.ApplyDecisions``.
    """

    def __init__(self, table: str, key: str, directory: str):
        super().__init__()
        self.table, self.key, self.directory = table, key, directory

    def expand(self, keys: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        if self.key == "none":
            return keys, keys.pipeline | "NoDuplicates" >> beam.Create([])
        out = (
            keys
            | "Group" >> GroupOnDisk(self.directory, key=itemgetter(kr.DEDUP))
            | "Pick" >> beam.ParDo(_PickFn()).with_outputs(DECISIONS, main="kept")
        )
        return out.kept, out[DECISIONS]


def what_is_compared(table: str, key: str) -> str:
    """How a duplicate's reject names what it shares with the kept row."""
    return key if table == "pairs" else "source and target text"
