"""One row per id: input records that share an id become ``dedup/duplicate_id`` rejects.

A row's id is a digest of its source and its key (``curation.read.records.record_id``), so
two input rows with one ``key`` (a repeated id column, the same shard listed twice...)
would give two rows with one id, which the writer refuses at the end of the build. Here,
before content dedup, the first of them by provenance (file, row, tar member) is kept and
the others are rejected, naming it. The choice is taken twice with the same rule, never
with image bytes in a shuffle: on the key records (grouped by id on disk), for the
decisions downstream, and on the rows where those are applied (``curation.clean.keys``),
where rows sharing an id are neighbours.

Counters (namespace ``dedup``): ``rejected_duplicate_id`` (counted where the rows are).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

import apache_beam as beam

from curation.clean import keyrecord as kr
from curation.output.spill import GroupOnDisk
from curation.stages import DEDUP
from schemas.rows import REJECTS_TAG, Reject, without_image_bytes

DUPLICATE_ID = "duplicate_id"


def provenance_key(row: dict[str, Any]) -> tuple[str, int, str]:
    p = row["provenance"]
    return (p["file"], p["row"], p.get("member") or "")


def pick_first(group: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
    """The row of an id that came first in its input; the others as rejects naming it."""
    _, rows = group
    ordered = sorted(rows, key=provenance_key)
    kept = ordered[0]
    yield kept
    file, row, member = provenance_key(kept)
    where = f"{file}:{row}" + (f" ({member})" if member else "")
    for dup in ordered[1:]:
        detail = f"another input record has the same id {kept['id']} (source {kept['source']!r}, key " \
                 f"{kept['source_id']!r}); the first, at {where}, was kept"
        yield beam.pvalue.TaggedOutput(REJECTS_TAG, Reject(DEDUP, DUPLICATE_ID, detail, dup["source"],
                                                           dup["source_id"], without_image_bytes(dup), dup["id"]))


def first_by_provenance(group: tuple[str, list[tuple]]) -> Iterator[tuple]:
    """The key record of an id that came first in its input (``provenance_key``'s order)."""
    _, records = group
    yield min(records, key=lambda k: tuple(k[kr.PROVENANCE]))


class UniqueIds(beam.PTransform):
    """Key records (``curation.clean.keys``; one PCollection or one per source) -> one per
    id, the first by provenance.

    The rows themselves are picked the same way where the decisions are applied
    (``keys.ApplyDecisions``, with ``pick_first``), which also makes the rejects.
    directory: where the key records are grouped by id (``GroupOnDisk``).
    """

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, keys: beam.PCollection | tuple[beam.PCollection, ...]) -> beam.PCollection:
        return (
            keys
            | "Group" >> GroupOnDisk(self.directory, key=itemgetter(kr.ID))
            | "First" >> beam.FlatMap(first_by_provenance)
        )
