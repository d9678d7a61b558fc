"""No leakage between splits: the check ``m3curate validate`` and the trainer run.

An image (by the sha256 of its stored bytes) must not have rows in two splits of a
dataset: a retrieval number on a test image the model trained on is inflated. The build
keeps this true (``curation/clean/splits.py``); this check refuses a dataset where it does
not hold (an older build, a hand-edited or merged dataset), naming the rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

MAX_NAMED = 10


class SplitLeakError(ValueError):
    """An image has rows in more than one split; the message names them."""


KEY_COLUMNS = ["id", "split", "image.sha256"]  # what the check reads of a pairs shard: no image bytes


def split_leaks(tables: Iterable[pa.Table]) -> dict[str, dict[str, list[str]]]:
    """{image sha256: {split: [row ids]}} for every image with rows in two or more splits,
    from ``pairs`` tables with the columns id, split and the image's sha256 (as read with
    ``KEY_COLUMNS``: a ``sha256`` column, or the whole ``image`` struct)."""
    seen: dict[str, dict[str, list[str]]] = {}
    for table in tables:
        names = table.column_names
        digests = (table.column("sha256") if "sha256" in names
                   else pc.struct_field(table.column("image"), "sha256")).to_pylist()
        for digest, split, row_id in zip(digests, table.column("split").to_pylist(), table.column("id").to_pylist(),
                                         strict=True):
            seen.setdefault(digest, {}).setdefault(split, []).append(row_id)
    return {digest: splits for digest, splits in seen.items() if len(splits) > 1}


def check_split_leaks(tables: Iterable[pa.Table], where: str) -> None:
    """Raise SplitLeakError naming the first ``MAX_NAMED`` images whose rows sit in two splits."""
    leaks = split_leaks(tables)
    if not leaks:
        return
    named = "; ".join(f"image {digest[:12]}…: " + ", ".join(f"{split} {sorted(ids)}" for split, ids in sorted(splits.items()))
                      for digest, splits in sorted(leaks.items())[:MAX_NAMED])
    more = f" (and {len(leaks) - MAX_NAMED} more)" if len(leaks) > MAX_NAMED else ""
    raise SplitLeakError(f"{where}: {len(leaks)} image(s) have rows in more than one split, which would leak "
                         f"held-out images into training: {named}{more}; rebuild the dataset (the build keeps "
                         f"one image in one split)")


