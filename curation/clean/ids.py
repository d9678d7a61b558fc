"""One row per id: input records that share an id become ``dedup/duplicate_id`` rejects.

A row's id is a digest of its source and its key (``curation.read.records.record_id``), so
two input rows with one ``key`` (a repeated id column, the same shard listed twice...)
would give two rows with one id, which the writer refuses at the end of the build. Here,
before content dedup, the first of them by provenance (file, row, tar member) is kept and
the others are rejected, naming it. Only ids are shuffled to find the repeated ones; the
rows of a repeated id (few) are then grouped to pick the keeper, so image bytes travel
through a shuffle only for rows that collide.

Counters (namespace ``dedup``): ``rejected_duplicate_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from curation.stages import DEDUP
from schemas.rows import REJECTS_TAG, Reject, without_image_bytes
from schemas.stage import StageCounters

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


class _RouteFn(beam.DoFn):
    def process(self, row: dict[str, Any], repeated: dict[str, bool]) -> Iterator[Any]:
        if row["id"] in repeated:
            yield beam.pvalue.TaggedOutput("repeated", (row["id"], row))
        else:
            yield row


class _CountFn(beam.DoFn):
    def __init__(self) -> None:
        self.counters = StageCounters(DEDUP)

    def process(self, reject: Reject) -> Iterator[Reject]:
        self.counters.inc(f"rejected_{reject.reason}")
        yield reject


class UniqueIds(beam.PTransform):
    """Rows (pairs or parallel) -> (rows with unique ids, rejects): module docstring."""

    def expand(self, rows: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        repeated = (
            rows
            | "Ids" >> beam.Map(lambda r: (r["id"], 1))
            | "PerId" >> beam.CombinePerKey(sum)
            | "Repeated" >> beam.FlatMap(lambda kv: [(kv[0], True)] if kv[1] > 1 else [])
        )
        routed = rows | "Route" >> beam.ParDo(_RouteFn(), repeated=beam.pvalue.AsDict(repeated)).with_outputs(
            "repeated", main="unique")
        picked = (
            routed.repeated
            | "ById" >> beam.GroupByKey()
            | "PickFirst" >> beam.FlatMap(pick_first).with_outputs(REJECTS_TAG, main="kept")
        )
        kept = (routed.unique, picked.kept) | "All" >> beam.Flatten()
        return kept, picked[REJECTS_TAG] | "Count" >> beam.ParDo(_CountFn())
