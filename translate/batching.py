"""Token-budget batches from length-sorted sentences, and putting results back in order.

A batch of sentences costs ``len(batch) * longest`` token slots (everything is padded to
the longest), so sorting by length before cutting batches removes almost all padding,
and cutting by a token budget instead of a sentence count keeps memory flat whatever
the lengths. This is what ``fairseq-generate`` does (``batch_by_size`` over
length-ordered indices); the results are put back in input order afterwards.
``bucketed_batches`` cuts the ``mt`` stage's requests into RunInference batches where the
runner has no state (``translate.beam``).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_sentences: int = 0,
                         same_length: bool = False) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, shortest sentences first.

    A batch holds as many sentences as fit ``count * longest <= max_tokens`` (and at most
    ``max_sentences`` when that is > 0). A sentence longer than the budget on its own
    gets a batch of its own rather than being dropped. Ties keep input order (stable
    sort), so the same input always gives the same batches. ``same_length``: a new batch
    also starts at every change of length, so no batch is padded and a sentence's result
    does not depend on which sentences it was sent with (``Decoding.same_length``).
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens = {max_tokens}: must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        longer = max(longest, lengths[i])
        full = max_sentences > 0 and len(current) >= max_sentences
        changed = same_length and lengths[i] != longest
        if current and (full or changed or longer * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, longer = [], lengths[i]
        current.append(i)
        longest = longer
    if current:
        batches.append(current)
    return batches


def restore_order(batches: Sequence[Sequence[int]], results: Sequence[Sequence[T]]) -> list[T]:
    """Per-batch results back in input order: ``results[b][k]`` belongs to ``batches[b][k]``."""
    total = sum(len(b) for b in batches)
    missing = object()
    out: list[object] = [missing] * total
    for batch, res in zip(batches, results, strict=True):
        if len(batch) != len(res):
            raise ValueError(f"a batch of {len(batch)} sentences came back with {len(res)} results")
        for index, value in zip(batch, res, strict=True):
            if out[index] is not missing:
                raise ValueError(f"input {index} is in two batches")
            out[index] = value
    if any(v is missing for v in out):
        raise ValueError("batches do not cover every input")
    return out  # type: ignore[return-value]


def bucketed_batches(lengths: Sequence[int], keys: Sequence[Any], size: int,
                     boundaries: Sequence[int] = ()) -> list[list[int]]:
    """Indices grouped into batches of at most ``size`` that never cross a length bucket.

    The stateless stand-in for Beam's length-bucketed stateful batching (what the ``mt``
    stage uses where a runner has no state, ``translate.beam``): bucket ``b`` holds lengths
    in ``[boundaries[b-1], boundaries[b])`` (Beam's ``bisect_right`` rule); inside a bucket
    the items are sorted by (length, key), so the same items give the same batches in
    whatever order they arrived (keys must be unique and comparable); batches go from
    the shortest bucket to the longest.
    """
    if size < 1:
        raise ValueError(f"batch size = {size}: must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (bisect.bisect_right(boundaries, lengths[i]), lengths[i], keys[i]))
    batches: list[list[int]] = []
    bucket = None
    for i in order:
        b = bisect.bisect_right(boundaries, lengths[i])
        if not batches or b != bucket or len(batches[-1]) >= size:
            batches.append([])
            bucket = b
        batches[-1].append(i)
    return batches
