"""Exact deduplication of pairs and parallel rows.

Duplicates are grouped by a key (image sha256 and/or normalised texts); within a group
the row with the smallest (source, source_id, id) is kept, so the choice is the same on
any runner and any number of workers. The others become ``dedup/duplicate`` rejects naming
the row that was kept.

Only keys and row identities go through the shuffle, never the rows (their image bytes
would make the shuffle, and FnApiRunner's memory, grow with the dataset): the groups give
the ids of the duplicates, which reach the rows as a side input (its size is the number
of duplicates), and the rows are split where they are. Row ids are unique here
(``curation.clean.ids.UniqueIds`` runs first).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from curation.stages import DEDUP
from schemas.rows import REJECTS_TAG, Reject, without_image_bytes
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


Identity = tuple[str, str, str]  # (source, source_id, id): what dedup orders rows by and names them with


def identity(row: dict[str, Any]) -> Identity:
    return row["source"], row["source_id"], row["id"]


def losers(identities: Iterable[Identity]) -> Iterator[tuple[str, Identity]]:
    """(id, kept row's identity) for every row of a group but the kept one, the smallest."""
    ordered = sorted(identities)
    for dup in ordered[1:]:
        yield dup[2], ordered[0]


def duplicate_reject(dup: dict[str, Any], kept: Identity, what: str) -> Reject:
    detail = f"same {what} as kept record {kept[0]}:{kept[1]} (id {kept[2]})"
    return Reject(DEDUP, "duplicate", detail, dup["source"], dup["source_id"], without_image_bytes(dup), dup["id"])


def pick_unique(key: str, rows: Iterable[dict[str, Any]], what: str) -> Iterator[Any]:
    """One group in memory: the kept row first, then the others as tagged rejects."""
    ordered = sorted(rows, key=identity)
    lost = dict(losers(map(identity, ordered)))
    for row in ordered:
        yield beam.pvalue.TaggedOutput(REJECTS_TAG, duplicate_reject(row, lost[row["id"]], what)) \
            if row["id"] in lost else row


class _PickUniqueFn(beam.DoFn):
    """Rows whose id is in ``lost`` (id -> kept row's identity) become rejects."""

    def __init__(self, what: str):
        self.what = what
        self.counters = StageCounters(DEDUP)

    def process(self, row: dict[str, Any], lost: dict[str, Identity]) -> Iterator[Any]:
        self.counters.inc("in")
        kept = lost.get(row["id"])
        if kept is None:
            self.counters.inc("kept")
            yield row
        else:
            self.counters.inc("rejected_duplicate")
            yield beam.pvalue.TaggedOutput(REJECTS_TAG, duplicate_reject(row, kept, self.what))


class Deduplicate(beam.PTransform):
    """Exact dedup of schema-shaped rows. table: "pairs" or "parallel"; key: DedupConfig.key.

    Returns (unique rows, rejects).
    """

    def __init__(self, table: str, key: str):
        super().__init__()
        self.table = table
        self.key = key

    def expand(self, rows: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        if self.key == "none":
            empty = rows.pipeline | "NoDuplicates" >> beam.Create([])
            return rows, empty
        key_fn = pair_key if self.table == "pairs" else parallel_key
        what = self.key if self.table == "pairs" else "source and target text"
        key = self.key
        lost = (
            rows
            | "Key" >> beam.Map(lambda r: (key_fn(r, key), identity(r)))
            | "Group" >> beam.GroupByKey()
            | "Losers" >> beam.FlatMap(lambda group: losers(group[1]))
        )
        out = rows | "Pick" >> beam.ParDo(_PickUniqueFn(what), beam.pvalue.AsDict(lost)).with_outputs(
            REJECTS_TAG, main="main")
        return out.main, out[REJECTS_TAG]
