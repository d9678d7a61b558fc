"""schemas/splits.py: a dataset whose splits share an image is refused, naming the rows."""

from __future__ import annotations

import pyarrow as pa
import pytest

from schemas.splits import SplitLeakError, check_split_leaks, split_leaks


def table(rows: list[tuple[str, str, str]]) -> pa.Table:
    return pa.table({"id": [r[0] for r in rows], "split": [r[1] for r in rows],
                     "image": [{"sha256": r[2], "bytes": b"x"} for r in rows]})


def test_images_in_two_splits_are_named():
    first = table([("a", "train", "d1"), ("b", "test", "d2")])
    second = table([("c", "test", "d1"), ("d", "train", "d3"), ("e", "train", "d3")])
    assert split_leaks([first, second]) == {"d1": {"train": ["a"], "test": ["c"]}}
    with pytest.raises(SplitLeakError, match=r"ds: 1 image\(s\) .*test \['c'\], train \['a'\]"):
        check_split_leaks([first, second], "ds")
    check_split_leaks([second.slice(1)], "ds")  # one image in one split, twice: fine
