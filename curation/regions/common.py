"""What every region source shares: the ``regions`` value, box normalisation, class names,
and the row key that joins a row to precomputed features."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from curation.regions.config import RegionsConfig, read_classes

# Why a row got no regions: the reject reason (missing = "reject") or counter (missing = "keep").
NO_FEATURES = "no_features"  # precomputed: no record for the row's key
NO_BOXES = "no_boxes"  # a detector found nothing
NO_KEY = "no_key"  # the row has no value for the configured key (or key_regex did not match)


def regions_value(boxes: np.ndarray, features: np.ndarray, extractor: str, labels: Sequence[str | None] | None = None,
                  scores: Sequence[float] | np.ndarray | None = None) -> dict[str, Any]:
    """A row's ``regions`` (schemas.arrow.REGIONS): boxes (n, 4) normalised to [0, 1],
    features (n, d); labels and scores per box or None; ``concepts`` is the concepts stage's."""
    n = len(boxes)
    if len(features) != n or (labels is not None and len(labels) != n) or (scores is not None and len(scores) != n):
        raise ValueError(f"{extractor}: {n} boxes but {len(features)} features, "
                         f"{None if labels is None else len(labels)} labels, {None if scores is None else len(scores)} scores")
    return {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(n, 4).tolist(),
        "features": np.asarray(features, dtype=np.float32).reshape(n, -1).tolist(),
        "extractor": extractor,
        "labels": None if labels is None else list(labels),
        "label_scores": None if scores is None else np.asarray(scores, dtype=np.float32).tolist(),
        "concepts": None,
    }


def normalise_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel boxes x0, y0, x1, y1 of a width x height image as fractions of it, clipped to [0, 1]."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width}x{height} is not positive")
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / np.array([width, height, width, height])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


class ClassNames:
    """Label id -> class name: line ``id`` of the ``classes`` file, else ``default`` (a
    list such as torchvision's COCO names), else the id as a string."""

    def __init__(self, path: str = "", default: Sequence[str] | None = None):
        self.names = read_classes(path) if path else list(default or [])

    def __call__(self, label_id: int) -> str:
        i = int(label_id)
        return self.names[i] if 0 <= i < len(self.names) and self.names[i] else str(i)


def normalise_key(key: str) -> str:
    """Keys of digits compare as numbers (``000123`` = ``123``); others as written, trimmed."""
    key = key.strip()
    return str(int(key)) if key.isdigit() else key


def row_key(row: dict[str, Any], cfg: RegionsConfig, pattern: re.Pattern[str] | None) -> str | None:
    """The lookup key of a row by ``cfg.key`` (and ``key_regex``), or None when it has none."""
    if cfg.key == "image_sha256":
        value = row["image"]["sha256"]
    elif cfg.key == "member_stem":
        member = (row.get("provenance") or {}).get("member")
        value = os.path.splitext(os.path.basename(member))[0] if member else None
    else:
        value = row.get(cfg.key)
    if not value:
        return None
    if pattern is not None:
        found = pattern.search(value)
        if found is None or not found.group(1):
            return None
        value = found.group(1)
    return normalise_key(value)
