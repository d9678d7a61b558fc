"""The demo's shape detector finds the shapes a generated scene contains."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
from PIL import Image
from regions_helpers import iou, pair_row, scene_jpeg, true_box

from curation.regions.shapes import (
    EXTRACTOR,
    FEATURE_DIM,
    ShapeRegions,
    detect_shapes,
    hull_area,
    shape_label,
)


def _score(n: int, size: int) -> tuple[int, int, int, int]:
    """(shapes, found with IoU >= 0.5, of those labelled right, detections) over n scenes."""
    shapes = found = right = detections = 0
    for i in range(n):
        scene, data = scene_jpeg(3, i, size)
        with Image.open(io.BytesIO(data)) as im:
            boxes, labels, features = detect_shapes(im)
        assert features.shape == (len(boxes), FEATURE_DIM) and features.dtype == np.float32
        detections += len(boxes)
        for shape in scene.shapes:
            shapes += 1
            truth = true_box(shape)
            best = max(range(len(boxes)), key=lambda j: iou(truth, boxes[j]))
            if iou(truth, boxes[best]) >= 0.5:
                found += 1
                right += labels[best] == shape.kind
    return shapes, found, right, detections


def test_it_finds_every_shape_of_generated_scenes_and_labels_them():
    shapes, found, right, detections = _score(60, 96)
    assert shapes > 100 and found == shapes and detections == shapes
    assert right >= 0.9 * found


def test_it_works_at_other_image_sizes():
    shapes, found, right, detections = _score(20, 160)
    assert found == shapes == detections and right >= 0.9 * found


def test_rules_on_hand_made_masks():
    assert shape_label(fill=1.0, solidity=1.0, centroid_y=0.5, aspect=0.5) == "square"
    assert shape_label(fill=0.78, solidity=0.98, centroid_y=0.5, aspect=0.5) == "circle"
    assert shape_label(fill=0.5, solidity=0.97, centroid_y=0.66, aspect=0.54) == "triangle"
    assert shape_label(fill=0.5, solidity=0.97, centroid_y=0.5, aspect=0.41) == "diamond"
    assert shape_label(fill=0.4, solidity=0.55, centroid_y=0.55, aspect=0.5) == "star"
    square = np.array([(y, x) for y in range(4) for x in range(4)])
    assert hull_area(square) == 16.0


def test_blank_image_has_no_boxes_and_the_source_says_so():
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (240, 240, 240)).save(buf, format="JPEG")
    _, data = scene_jpeg(3, 0)
    out = ShapeRegions().extract([pair_row(0, buf.getvalue()), pair_row(1, data)])
    assert out[0] == "no_boxes"
    regions = out[1]
    assert regions["extractor"] == EXTRACTOR and regions["concepts"] is None
    assert len(regions["boxes"]) == len(regions["labels"]) == len(regions["label_scores"]) == len(regions["features"])
    assert all(0 <= v <= 1 for box in regions["boxes"] for v in box)


def test_deterministic():
    _, data = scene_jpeg(5, 1)
    rows = [pair_row(0, data)]
    assert ShapeRegions().extract(rows) == ShapeRegions().extract(rows)


def test_labels_cover_every_shape_kind():
    seen = Counter()
    for i in range(40):
        scene, data = scene_jpeg(11, i)
        with Image.open(io.BytesIO(data)) as im:
            seen.update(detect_shapes(im)[1])
    assert set(seen) == {"circle", "square", "triangle", "star", "diamond"}
