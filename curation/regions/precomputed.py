"""Precomputed region features in the bottom-up-attention layouts, looked up by image id.

Two layouts, as UC2, M3P, LXMERT and bottom-up-attention.pytorch release them:

- **TSV** (peteanderson80/bottom-up-attention ``tools/generate_tsv.py``): one image a line,
  tab-separated, no header, columns ``image_id, image_w, image_h, num_boxes, boxes,
  features`` (``tsv_columns`` for another order, e.g. LXMERT's ``img_id, img_h, img_w,
  objects_id, objects_conf, attrs_id, attrs_conf, num_boxes, boxes, features``; a first line
  naming the columns is taken as the header). ``boxes`` is base64 of float32
  ``num_boxes x 4`` pixel boxes x0, y0, x1, y1 in the original image; ``features`` base64
  of float32 ``num_boxes x D``; optional ``objects_id`` (int64, a class id per box) and
  ``objects_conf`` (float32) give labels and label scores.
- **NPZ**, one ``<image id>.npz`` per image in a directory (bottom-up-attention.pytorch's
  ``extract_features.py``: ``x`` features, ``bbox`` pixel boxes, ``num_bbox``, ``image_h``,
  ``image_w`` and a pickled ``info`` dict with ``objects_id``/``objects_conf``; also read:
  ``features``, ``boxes``, UNITER's ``norm_bb`` (already normalised), top-level
  ``objects_id``/``objects``, ``objects_conf``/``conf`` and ``cls_prob``/``soft_labels``
  (argmax and max, skipping a first background column when there is one more column than
  class names)).

Boxes are normalised by the file's image size (so the stored image may have been
downscaled; an EXIF rotation applied by the image stage would not match). The TSV files
are indexed once per process (key -> byte offset: no feature is decoded until a row asks
for it); the NPZ directory is listed once.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from curation.regions.common import (
    NO_FEATURES,
    NO_KEY,
    ClassNames,
    normalise_boxes,
    normalise_key,
    regions_value,
    row_key,
)
from curation.regions.config import RegionsConfig

ID_COLUMNS = ("image_id", "img_id")
FEATURE_KEYS = ("x", "features", "feat", "image_feat")
BOX_KEYS = ("bbox", "boxes", "norm_bb")
LABEL_KEYS = ("objects_id", "objects", "object_ids")
SCORE_KEYS = ("objects_conf", "conf")
PROB_KEYS = ("cls_prob", "soft_labels")


class FeatureError(ValueError):
    """A feature file is malformed; the message names the file and the image id."""


def _open(path: str) -> Any:
    if "://" not in path:
        return open(path, "rb")
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path)


def _decode(value: str, dtype: Any, shape: tuple[int, ...], where: str, column: str) -> np.ndarray:
    try:
        return np.frombuffer(base64.b64decode(value), dtype=dtype).reshape(shape)
    except (ValueError, TypeError) as err:
        raise FeatureError(f"{where}: column {column}: {err}") from err


class TsvFeatures:
    """Index of BUTD-layout TSV files: normalised image id -> (file, byte offset)."""

    def __init__(self, paths: Sequence[str], columns: Sequence[str]):
        self.paths, self.columns = list(paths), [list(columns) for _ in paths]
        self.index: dict[str, tuple[int, int]] = {}
        for f, path in enumerate(self.paths):
            self._scan(f, path)

    def _scan(self, f: int, path: str) -> None:
        with _open(path) as handle:
            offset = 0
            for n, line in enumerate(handle):
                first = line.split(b"\t", 1)[0].decode("utf-8", "replace").strip()
                if n == 0 and first in ID_COLUMNS:
                    self.columns[f] = line.decode("utf-8").rstrip("\r\n").split("\t")
                elif first:
                    self.index.setdefault(normalise_key(first), (f, offset))
                offset += len(line)
        if not any(c in ID_COLUMNS for c in self.columns[f]):
            raise FeatureError(f"{path}: no image_id / img_id column among {self.columns[f]}")

    def record(self, key: str) -> dict[str, Any] | None:
        """The decoded record of an image id, or None when the files have none."""
        where = self.index.get(key)
        if where is None:
            return None
        f, offset = where
        with _open(self.paths[f]) as handle:
            handle.seek(offset)
            line = handle.readline().decode("utf-8").rstrip("\r\n")
        values = line.split("\t")
        columns = self.columns[f]
        place = f"{self.paths[f]} (image {key})"
        if len(values) != len(columns):
            raise FeatureError(f"{place}: {len(values)} columns, expected {len(columns)} ({columns})")
        raw = dict(zip(columns, values, strict=True))
        n = int(raw["num_boxes"])
        out: dict[str, Any] = {
            "boxes": _decode(raw["boxes"], np.float32, (n, 4), place, "boxes"),
            "features": _decode(raw["features"], np.float32, (n, -1), place, "features"),
            "width": float(raw.get("image_w") or raw.get("img_w") or 0),
            "height": float(raw.get("image_h") or raw.get("img_h") or 0),
        }
        if raw.get("objects_id"):
            out["label_ids"] = _decode(raw["objects_id"], np.int64, (n,), place, "objects_id")
        if raw.get("objects_conf"):
            out["scores"] = _decode(raw["objects_conf"], np.float32, (n,), place, "objects_conf")
        return out


def _first(data: Any, keys: Sequence[str]) -> Any:
    for k in keys:
        if k in data:
            return data[k]
    return None


class NpzFeatures:
    """A directory of ``<image id>.npz`` files, listed once: normalised id -> path."""

    def __init__(self, directory: str, allow_pickle: bool):
        self.allow_pickle = allow_pickle
        if "://" in directory:
            from apache_beam.io.filesystems import FileSystems

            found = [m.path for r in FileSystems.match([directory.rstrip("/") + "/*.npz"]) for m in r.metadata_list]
        else:
            found = [os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".npz")]
        self.index = {normalise_key(os.path.basename(p)[:-4]): p for p in sorted(found)}

    def record(self, key: str) -> dict[str, Any] | None:
        path = self.index.get(key)
        if path is None:
            return None
        with _open(path) as handle:
            data = np.load(io.BytesIO(handle.read()), allow_pickle=self.allow_pickle)
            arrays = {k: data[k] for k in data.files if k != "info" or self.allow_pickle}
        info = arrays.pop("info", None)
        if info is not None and info.dtype == object:
            arrays = {**{k: np.asarray(v) for k, v in info.item().items()}, **arrays}
        return _npz_record(arrays, path)


def _npz_record(arrays: dict[str, Any], path: str) -> dict[str, Any]:
    features, boxes = _first(arrays, FEATURE_KEYS), _first(arrays, BOX_KEYS)
    if features is None or boxes is None:
        raise FeatureError(f"{path}: needs features ({'/'.join(FEATURE_KEYS)}) and boxes ({'/'.join(BOX_KEYS)}); "
                           f"has {sorted(arrays)}")
    features = np.asarray(features, dtype=np.float32)
    features = features.reshape(len(features), -1)
    out: dict[str, Any] = {"features": features}
    if "norm_bb" in arrays and "bbox" not in arrays and "boxes" not in arrays:
        out["boxes"], out["normalised"] = np.asarray(boxes, dtype=np.float32)[:, :4], True
    else:
        out["boxes"] = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out["width"] = float(_first(arrays, ("image_w", "img_w", "w")) or 0)
        out["height"] = float(_first(arrays, ("image_h", "img_h", "h")) or 0)
    label_ids, scores, probs = _first(arrays, LABEL_KEYS), _first(arrays, SCORE_KEYS), _first(arrays, PROB_KEYS)
    if label_ids is not None:
        out["label_ids"] = np.asarray(label_ids).reshape(-1).astype(np.int64)
    elif probs is not None:
        out["probs"] = np.asarray(probs, dtype=np.float32).reshape(len(features), -1)
    if scores is not None:
        out["scores"] = np.asarray(scores, dtype=np.float32).reshape(-1)
    return out


class PrecomputedRegions:
    """The stage's model for ``source = "precomputed"``: rows -> regions or a reason."""

    def __init__(self, cfg: RegionsConfig):
        self.cfg = cfg
        paths = cfg.feature_paths()
        if cfg.resolved_format() == "npz":
            self.store: TsvFeatures | NpzFeatures = NpzFeatures(paths[0], cfg.allow_pickle)
        else:
            self.store = TsvFeatures(paths, cfg.tsv_columns)
        self.names = ClassNames(cfg.classes)
        self.pattern = re.compile(cfg.key_regex) if cfg.key_regex else None
        self.extractor = cfg.extractor or f"precomputed:{cfg.resolved_format()}:{os.path.basename(paths[0].rstrip('/'))}"

    def _labels(self, rec: dict[str, Any]) -> tuple[list[str] | None, np.ndarray | None]:
        scores = rec.get("scores")
        if "label_ids" in rec:
            return [self.names(i) for i in rec["label_ids"]], scores
        if "probs" in rec:
            probs = rec["probs"]
            skip = 1 if self.names.names and probs.shape[1] == len(self.names.names) + 1 else 0
            ids = probs[:, skip:].argmax(axis=1)
            return [self.names(i) for i in ids], probs[np.arange(len(ids)), ids + skip] if scores is None else scores
        return None, scores

    def extract(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any] | str]:
        out: list[dict[str, Any] | str] = []
        for row in rows:
            key = row_key(row, self.cfg, self.pattern)
            rec = None if key is None else self.store.record(key)
            if rec is None:
                out.append(NO_KEY if key is None else NO_FEATURES)
                continue
            boxes = rec["boxes"] if rec.get("normalised") else normalise_boxes(
                rec["boxes"], rec["width"] or row["image"]["width"], rec["height"] or row["image"]["height"])
            labels, scores = self._labels(rec)
            out.append(regions_value(boxes, rec["features"], self.extractor, labels, scores))
        return out
