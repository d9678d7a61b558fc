"""A rule-based detector for the demo's synthetic scenes: flat shapes on a plain background.

The demo draws 1-3 filled shapes (circle, square, triangle, star, diamond) in distinct
colours on a light, nearly uniform background (``curation/demo/synth.py``, ``render``).
This detector segments by colour and labels by geometry; no model, deterministic:

1. **Background**: the median colour of the image's border pixels. A pixel is foreground
   when one of its channels differs from it by more than ``FOREGROUND_DELTA``.
2. **Shapes**: 4-connected components of foreground pixels; components under
   ``MIN_AREA_FRACTION`` of the image (JPEG specks) are dropped. One box per component,
   its pixel extent normalised to [0, 1].
3. **Label**, from the component's mask: *solidity* (area / convex-hull area) below
   ``STAR_SOLIDITY`` is a star (its hull is a pentagon of twice its area); else the *fill*
   (area / box area) tells square (≈ 1) from circle (π/4) from triangle and diamond
   (both ½), which the centroid's height in the box tells apart (a triangle's sits at ⅔
   of its height, a diamond's at ½) together with the box's aspect. ``label_scores`` are 1.0:
   the rules give no probability.
4. **Features**, ``FEATURE_DIM`` = 24 floats per box, in this order: the mean and the
   standard deviation of the component's R, G, B (in [0, 1]; 6); the box's centre x, y,
   width, height and area (fractions of the image; 5); fill, solidity, centroid x and y
   within the box (fractions of its width and height), and width / (width + height) (5);
   a colour histogram of the component's pixels in 8 bins (each channel above or below
   half; fractions summing to 1; 8).

The extractor name is ``EXTRACTOR``; change it whenever the features change.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from curation.regions.common import NO_BOXES, regions_value

EXTRACTOR = "demo-shapes:v1"
FEATURE_DIM = 24
FOREGROUND_DELTA = 40
MIN_AREA_FRACTION = 0.002
STAR_SOLIDITY = 0.75
SQUARE_FILL = 0.88
CIRCLE_FILL = 0.66
TRIANGLE_CENTROID = 0.58


def foreground(pixels: np.ndarray) -> np.ndarray:
    """Mask of pixels that differ from the border's median colour (step 1)."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]).astype(np.int16)
    background = np.median(border, axis=0)
    return np.abs(pixels.astype(np.int16) - background).max(axis=2) > FOREGROUND_DELTA


def components(mask: np.ndarray, min_area: int) -> list[np.ndarray]:
    """4-connected components of ``mask`` with at least ``min_area`` pixels, as (n, 2) arrays
    of (y, x), in order of their first pixel in raster order."""
    height, width = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    found = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        queue, pixels = deque([(int(y0), int(x0))]), []
        while queue:
            y, x = queue.popleft()
            pixels.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(pixels) >= min_area:
            found.append(np.array(pixels))
    return found


def hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of pixel squares' corners (Andrew's monotone chain)."""
    corners = np.concatenate([points + d for d in ((0, 0), (0, 1), (1, 0), (1, 1))])
    pts = sorted(set(map(tuple, corners.tolist())))
    if len(pts) < 3:
        return 0.0

    def half(seq: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    hull = half(pts)[:-1] + half(pts[::-1])[:-1]
    ys, xs = np.array([p[0] for p in hull], float), np.array([p[1] for p in hull], float)
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def shape_label(fill: float, solidity: float, centroid_y: float, aspect: float) -> str:
    """Step 3's rules on a component's fill, solidity, centroid height (in its box) and
    width / (width + height)."""
    if solidity < STAR_SOLIDITY:
        return "star"
    if fill >= SQUARE_FILL:
        return "square"
    if fill >= CIRCLE_FILL:
        return "circle"
    return "triangle" if centroid_y > TRIANGLE_CENTROID or aspect > 0.5 else "diamond"


def describe(points: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, str, np.ndarray]:
    """(pixel box x0, y0, x1, y1; label; the FEATURE_DIM features) of one component."""
    height, width = pixels.shape[:2]
    ys, xs = points[:, 0], points[:, 1]
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    bw, bh = float(x1 - x0), float(y1 - y0)
    fill = len(points) / (bw * bh)
    solidity = len(points) / max(hull_area(points), 1.0)
    cx, cy = (xs.mean() + 0.5 - x0) / bw, (ys.mean() + 0.5 - y0) / bh
    aspect = bw / (bw + bh)
    colours = pixels[ys, xs].astype(np.float64) / 255.0
    bins = (colours >= 0.5).astype(int) @ np.array([4, 2, 1])
    hist = np.bincount(bins, minlength=8) / len(points)
    box = np.array([x0, y0, x1, y1], dtype=np.float64)
    geometry = [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, bw / width, bh / height, bw * bh / (width * height)]
    features = np.concatenate([colours.mean(0), colours.std(0), geometry, [fill, solidity, cx, cy, aspect], hist])
    return box, shape_label(fill, solidity, cy, aspect), features.astype(np.float32)


def detect_shapes(image: Image.Image) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    """(boxes normalised to [0, 1], labels, features) of the shapes in ``image``; None: none."""
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    found = components(foreground(pixels), max(1, round(MIN_AREA_FRACTION * width * height)))
    if not found:
        return None
    described = [describe(points, pixels) for points in found]
    boxes = np.stack([d[0] for d in described]) / np.array([width, height, width, height])
    return boxes.astype(np.float32), [d[1] for d in described], np.stack([d[2] for d in described])


class ShapeRegions:
    """The stage's model for ``source = "shapes"``: rows -> regions or a reason."""

    def __init__(self, extractor: str = ""):
        self.extractor = extractor or EXTRACTOR

    def extract(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any] | str]:
        out: list[dict[str, Any] | str] = []
        for row in rows:
            with Image.open(io.BytesIO(row["image"]["bytes"])) as image:
                found = detect_shapes(image)
            if found is None:
                out.append(NO_BOXES)
                continue
            boxes, labels, features = found
            out.append(regions_value(boxes, features, self.extractor, labels, [1.0] * len(labels)))
        return out
