"""Exact deduplication of pairs and parallel rows.

Duplicates are grouped by a key (image sha256 and/or normalised texts); within a group
the row with the smallest (source, source_id) is kept, so the choice is the same on any
runner and any number of workers. The others become ``dedup/duplicate`` rejects naming
the row that was kept.
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


def pick_unique(key: str, rows: Iterable[dict[str, Any]], what: str) -> Iterator[Any]:
    """Keep the first row by (source, source_id); yield the others as rejects."""
    ordered = sorted(rows, key=lambda r: (r["source"], r["source_id"], r["id"]))
    kept = ordered[0]
    yield kept
    for dup in ordered[1:]:
        detail = f"same {what} as kept record {kept['source']}:{kept['source_id']} (id {kept['id']})"
        yield beam.pvalue.TaggedOutput(
            REJECTS_TAG,
            Reject(DEDUP, "duplicate", detail, dup["source"], dup["source_id"], without_image_bytes(dup), dup["id"]),
        )


class _PickUniqueFn(beam.DoFn):
    def __init__(self, what: str):
        self.what = what
        self.counters = StageCounters(DEDUP)

    def process(self, element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
        key, rows = element
        for out in pick_unique(key, rows, self.what):
            self.counters.inc("in")
            self.counters.inc("rejected_duplicate" if isinstance(out, beam.pvalue.TaggedOutput) else "kept")
            yield out


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
        out = (
            rows
            | "Key" >> beam.Map(lambda r: (key_fn(r, key), r))
            | "Group" >> beam.GroupByKey()
            | "Pick" >> beam.ParDo(_PickUniqueFn(what)).with_outputs(REJECTS_TAG, main="main")
        )
        return out.main, out[REJECTS_TAG]
