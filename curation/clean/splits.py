"""Splits without leakage: every row of one image, and every exact-duplicate caption of a
held-out image, in one split (the ``split`` stage, ``AssignSplits``).

Sources declare a split (``[[sources]].split``), and the same picture or the same caption
can come in through two of them: a web crawl that also holds a benchmark's test images, or
a template caption ("a red car") on both sides. A retrieval number measured on a test
image the model trained on is inflated, so before any row stage runs:

- rows whose stored image bytes are equal (``image.sha256``) all move to the highest-
  ranked split any of them has;
- rows with a caption (kind ``caption``, compared exactly after the text stage's
  normalisation) equal to a caption in a higher-ranked split move to that split too.

Rank: ``test`` > ``val`` (also ``valid``, ``validation``, ``dev``) > any other split name
> ``train`` (ties between other names break alphabetically, so the result never depends
on the runner). Held-out splits only ever gain rows; nothing is dropped. The moves are
found on the rows' key records (image digest, caption keys, id, split), grouped on disk,
never on the rows (``curation.clean.keys``), and applied where the rows stream back from
disk. ``parallel`` rows pass through; the ``mt`` stage runs after this one, so the
parallel rows it derives carry the moved split.

Counters (namespace ``split``, counted where the moves are applied): ``in``, ``kept``
(rows), ``moved_<from>_to_<to>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from curation.clean import keyrecord as kr
from curation.output.runs import Segment
from curation.output.spill import SpillFn, merged_groups

HELD_OUT = ("test", "val", "valid", "validation", "dev")


def rank(split: str) -> tuple[int, str]:
    """Sort key of a split: lower is more held out (``test`` first, ``train`` last)."""
    if split in HELD_OUT:
        return (HELD_OUT.index(split), "")
    return (len(HELD_OUT) + (1 if split == "train" else 0), split)


def caption_keys(row: dict[str, Any]) -> list[str]:
    """The row's captions as compact keys (a digest of the exact text)."""
    return [hashlib.blake2b(t["text"].encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
            for t in row["texts"] if t["kind"] == "caption"]


def leak_keys(record: tuple) -> Iterator[tuple[str, tuple[str, str]]]:
    """(key, (row id, split)) for a key record's image and each of its captions
    (``curation.clean.keyrecord``)."""
    member = (record[kr.ID], record[kr.SPLIT])
    yield "i:" + record[kr.IMAGE], member
    for key in record[kr.CAPTIONS]:
        yield "c:" + key, member


def round_moves(part: tuple[int, Iterable[Segment]], moved: dict[str, str]) -> Iterator[tuple[str, str]]:
    """The moves of one partition of the leak keys' runs, on the splits ``moved`` (the
    earlier rounds' moves) gives the rows."""
    for key, members in merged_groups(part[1]):
        yield from moves((key, [(row_id, moved.get(row_id, split)) for row_id, split in members]))


def moves(group: tuple[str, Iterable[tuple[str, str]]]) -> Iterator[tuple[str, str]]:
    """(row id, split it moves to) for the rows of one key that are not in its top split."""
    _, members = group
    members = list(members)
    top = most_held_out(split for _, split in members)
    for row_id, split in members:
        if split != top:
            yield row_id, top


def most_held_out(splits: Iterable[str]) -> str:
    """The most held-out of ``splits`` (by ``rank``)."""
    return min(splits, key=rank)


class AssignSplits(beam.PTransform):
    """Key records of pairs rows (``curation.clean.keys``) -> (row id, ("split", new
    split)) for the rows that move (module docstring); ``keys.ApplyDecisions`` moves them.

    splits: the splits the sources declare; with one, nothing can move and no key is
    grouped. directory: where the leak keys (image digests and caption keys with row ids)
    are sorted into runs, once: each round merges the same runs, with the moves so far.

    A move can make a new leak (a row moved for its caption shares its image with a row
    that stayed), so the moves are found in ``ROUNDS`` rounds, each on the splits the
    earlier ones gave. A longer chain than that is left for ``m3curate validate`` and the
    trainer, which refuse a dataset whose splits share an image, naming the rows.
    """

    ROUNDS = 3

    def __init__(self, splits: Iterable[str], directory: str):
        super().__init__()
        self.splits, self.directory = frozenset(splits), directory

    def expand(self, keys: beam.PCollection) -> beam.PCollection:
        moved = keys.pipeline | "NoMoves" >> beam.Create([])
        if len(self.splits) > 1:
            parts = (  # the leak keys sorted into runs once; each round merges them again
                keys
                | "LeakKeys" >> beam.FlatMap(leak_keys)
                | "Spill" >> beam.ParDo(SpillFn(self.directory))
                | "Parts" >> beam.GroupByKey()
            )
            for r in range(self.ROUNDS):
                found = (  # a shuffle of the few descriptors per round: FnApiRunner would fuse the
                    # rounds' readers of one GroupByKey into one stage, each waiting on the one before
                    parts | f"Round{r}" >> beam.Reshuffle()
                    | f"Moves{r}" >> beam.FlatMap(round_moves, moved=beam.pvalue.AsDict(moved))
                )
                moved = ((moved, found) | f"All{r}" >> beam.Flatten()
                         | f"PerRow{r}" >> beam.CombinePerKey(most_held_out))
        return moved | "Decisions" >> beam.Map(lambda kv: (kv[0], ("split", kv[1])))
