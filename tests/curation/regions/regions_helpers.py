"""Shared helpers of the regions tests: demo scenes with their true boxes, pairs rows, IoU."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

from curation.demo import synth


def true_box(shape: synth.Shape) -> np.ndarray:
    """The drawn shape's box, normalised (render() draws at twice the size, same fractions)."""
    fx, fy = synth.CENTRES[shape.position]
    cx, cy, r = fx + shape.dx, fy + shape.dy, synth.RADII[shape.size]
    points = synth._outline(shape.kind, cx, cy, r)
    if points is None:
        return np.array([cx - r, cy - r, cx + r, cy + r])
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return np.array([min(xs), min(ys), max(xs), max(ys)])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def scene_jpeg(seed: int, i: int, size: int = 96) -> tuple[synth.Scene, bytes]:
    scene = synth.sample_scene(synth.sample_rng(seed, i))
    return scene, synth.encode_jpeg(synth.render(scene, size))


def pair_row(i: int, data: bytes, source_id: str | None = None) -> dict:
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
    return {
        "id": f"r{i}", "source": "demo", "source_id": source_id or f"{i:06d}", "split": "train",
        "provenance": {"file": "in.jsonl", "row": i, "url": None, "member": f"shard/{i:06d}.jpg"},
        "image": {"bytes": data, "width": width, "height": height, "format": "JPEG",
                  "sha256": hashlib.sha256(data).hexdigest()},
        "regions": None,
        "texts": [{"text": "a red circle", "lang": "en", "lang_score": None, "declared_lang": None,
                   "kind": "caption", "origin": "demo", "derived_from": None, "anchor": None,
                   "relevance": None, "relevance_scorer": None, "score": None, "spans": None}],
    }
