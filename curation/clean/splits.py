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

from curation.output.spill import GroupOnDisk

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


def leak_keys(record: tuple, moved: dict[str, str]) -> Iterator[tuple[str, tuple[str, str]]]:
    """(key, (row id, split)) for a key record's image and each of its captions
    (``curation.clean.keys.KeyRecord``), with the split the earlier rounds moved it to."""
    row_id, split, image, captions = record[0], record[4], record[5], record[7]
    member = (row_id, moved.get(row_id, split))
    yield "i:" + image, member
    for key in captions:
        yield "c:" + key, member


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
    grouped. directory: where the leak keys are grouped (``GroupOnDisk``).

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
            for r in range(self.ROUNDS):
                found = (
                    keys
                    | f"LeakKeys{r}" >> beam.FlatMap(leak_keys, moved=beam.pvalue.AsDict(moved))
                    | f"ByKey{r}" >> GroupOnDisk(f"{self.directory}{r}")
                    | f"Moves{r}" >> beam.FlatMap(moves)
                )
                moved = ((moved, found) | f"All{r}" >> beam.Flatten()
                         | f"PerRow{r}" >> beam.CombinePerKey(most_held_out))
        return moved | "Decisions" >> beam.Map(lambda kv: (kv[0], ("split", kv[1])))
