"""The ``[regions]`` settings: a dataclass, validated once, before any work starts.

Kept beside the stage, as ``curation/lid/config.py`` is, so that ``curation/config.py``
only declares the section: ``regions_config_from_dict`` raises ``RegionsConfigError``
naming the setting and what to change. Paths resolve against the config file's folder
and must exist (local paths); feature files are indexed when ``ExtractRegions`` is built
on the workers, the weights file is read there too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from schemas.settings import check_known, resolve_path

SOURCES = ("precomputed", "torchvision", "shapes")
FORMATS = ("auto", "tsv", "npz")
KEYS = ("source_id", "id", "image_sha256", "member_stem")
MISSING = ("reject", "keep")
POOLINGS = ("box_head", "mean")
DEVICES = ("cpu", "cuda")
# BUTD's tools/generate_tsv.py FIELDNAMES: the column order of a header-less TSV.
BUTD_COLUMNS = ["image_id", "image_w", "image_h", "num_boxes", "boxes", "features"]
# LXMERT's files (vg_gqa_obj36.tsv, mscoco_imgfeat): ids and scores of objects and attributes too.
LXMERT_COLUMNS = ["img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf",
                  "num_boxes", "boxes", "features"]


class RegionsConfigError(ValueError):
    """A ``[regions]`` setting is wrong (curation.config re-raises it as ConfigError)."""


@dataclass
class RegionsConfig:
    """Region (ROI) boxes and features of every image (the ``regions`` stage); off while
    ``source`` is empty.

    source: where regions come from: "precomputed" (bottom-up-attention TSV or NPZ files
        keyed by image id, as UC2/M3P/LXMERT release them), "torchvision" (a torchvision
        detection model from a local weights file; the ``detect`` extra) or "shapes" (the
        rule-based detector of the demo's synthetic shapes). See curation/regions/README.md.
    features: precomputed: a TSV file, a list of them, or a directory of ``<image id>.npz``.
    format: auto (a directory: npz; else tsv) | tsv | npz.
    tsv_columns: the column order of a header-less TSV (BUTD's generate_tsv.py order by
        default; LXMERT's files: img_id, img_h, img_w, objects_id, objects_conf, attrs_id,
        attrs_conf, num_boxes, boxes, features). A first line naming the columns is a header.
    key: which value of a row joins it to a feature record: "source_id" (the record's key
        in its source: the input's id column, img2dataset's ``key``), "id" (m3curate's row
        id), "image_sha256" (the stored image's digest) or "member_stem" (a WebDataset
        member's name without folder and extension).
    key_regex: when set, its first group of the row's key value is the lookup key
        (``"(\\\\d+)\\\\.jpg$"``). Keys of digits only compare as numbers (``000123`` = ``123``).
    missing: a row without features (or a detector that finds no box): "reject" drops it
        (``regions/no_features``, ``regions/no_boxes``); "keep" keeps it with ``regions``
        null and counts it.
    classes: a file of class names, one a line: label id i is line i (0-based); for
        precomputed ``objects_id``/``cls_prob`` and torchvision labels. Empty: torchvision's
        COCO names for a 91-class model, else the id as a string.
    allow_pickle: npz: read the ``info`` dict that bottom-up-attention.pytorch pickles
        (holding ``objects_id``/``objects_conf``). Unpickling runs code from the file: only
        for files you trust.
    model: torchvision: the weights file (a state_dict saved by ``torch.save``).
    architecture: torchvision: the builder in ``torchvision.models.detection``
        (fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2, fasterrcnn_mobilenet_v3_large_fpn...).
    pooling: torchvision: a region's feature is the box head's output after RoIAlign over
        the FPN maps ("box_head", 1024 floats for resnet50_fpn) or the mean of its RoIAlign
        maps ("mean", 256 floats).
    score_threshold: torchvision: boxes scoring below are dropped; min_boxes: the best
        boxes kept even below it (as BUTD keeps 10-100); max_boxes: at most this many.
    device: cpu | cuda. threads: torch threads on cpu (0: torch's default).
    batch_size: rows per extraction call.
    extractor: the name written to ``regions.extractor`` (default: derived from the
        source, file and weights, see the README).
    """

    source: str = ""
    features: str | list[str] = ""
    format: str = "auto"
    tsv_columns: list[str] = field(default_factory=lambda: list(BUTD_COLUMNS))
    key: str = "source_id"
    key_regex: str = ""
    missing: str = "reject"
    classes: str = ""
    allow_pickle: bool = False
    model: str = ""
    architecture: str = "fasterrcnn_resnet50_fpn"
    pooling: str = "box_head"
    score_threshold: float = 0.2
    min_boxes: int = 1
    max_boxes: int = 36
    device: str = "cpu"
    threads: int = 0
    batch_size: int = 16
    extractor: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.source)

    def feature_paths(self) -> list[str]:
        return [self.features] if isinstance(self.features, str) else list(self.features)

    def resolved_format(self) -> str:
        if self.format != "auto":
            return self.format
        paths = self.feature_paths()
        return "npz" if len(paths) == 1 and os.path.isdir(paths[0]) else "tsv"


def _fail(name: str, value: Any, fix: str) -> RegionsConfigError:
    return RegionsConfigError(f"regions.{name} = {value!r}: {fix}")


def _check_choices(cfg: RegionsConfig) -> None:
    for name, allowed in (("source", SOURCES), ("format", FORMATS), ("key", KEYS), ("missing", MISSING),
                          ("pooling", POOLINGS), ("device", DEVICES)):
        if getattr(cfg, name) not in allowed:
            raise _fail(name, getattr(cfg, name), f"use one of {allowed}")
    if not isinstance(cfg.allow_pickle, bool):
        raise _fail("allow_pickle", cfg.allow_pickle, "use true or false")
    if not isinstance(cfg.tsv_columns, list) or not {"boxes", "features", "num_boxes"} <= set(cfg.tsv_columns):
        raise _fail("tsv_columns", cfg.tsv_columns, "list the TSV's columns in order; it needs at least an id "
                    "column (image_id or img_id), num_boxes, boxes and features")
    if cfg.key_regex:
        try:
            if re.compile(cfg.key_regex).groups < 1:
                raise _fail("key_regex", cfg.key_regex, "needs one (group): the part of the key to look up")
        except re.error as err:
            raise _fail("key_regex", cfg.key_regex, f"not a regular expression: {err}") from err


def _check_numbers(cfg: RegionsConfig) -> None:
    value = cfg.score_threshold
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _fail("score_threshold", value, "must be in [0, 1]")
    for name, low in (("min_boxes", 0), ("max_boxes", 1), ("threads", 0), ("batch_size", 1)):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _fail(name, value, f"must be an integer >= {low}")
    if cfg.min_boxes > cfg.max_boxes:
        raise RegionsConfigError(f"regions: min_boxes ({cfg.min_boxes}) is above max_boxes ({cfg.max_boxes})")


def _check_paths(cfg: RegionsConfig) -> None:
    if cfg.source == "precomputed":
        paths = cfg.feature_paths()
        if not paths or not all(paths):
            raise _fail("features", cfg.features, "name the TSV file(s) or the directory of .npz files")
        for path in paths:
            if "://" not in path and not os.path.exists(path):
                raise _fail("features", path, "no such file or directory")
        if cfg.resolved_format() == "npz" and (len(paths) != 1 or ("://" not in paths[0] and not os.path.isdir(paths[0]))):
            raise _fail("features", cfg.features, "npz features are one directory of <image id>.npz files")
    if cfg.source == "torchvision":
        if not cfg.model:
            raise _fail("model", cfg.model, "name the detector's weights file (a torchvision state_dict)")
        if "://" not in cfg.model and not os.path.isfile(cfg.model):
            raise _fail("model", cfg.model, "no such file")
    if cfg.classes and "://" not in cfg.classes and not os.path.isfile(cfg.classes):
        raise _fail("classes", cfg.classes, "no such file")


def regions_config_from_dict(data: dict[str, Any] | None, base_dir: str = ".") -> RegionsConfig:
    """A validated RegionsConfig from the parsed ``[regions]`` table (None or no
    ``source``: the stage is off)."""
    data = dict(data or {})
    check_known("regions", data, RegionsConfig, RegionsConfigError)
    try:
        cfg = RegionsConfig(**data)
    except TypeError as err:
        raise RegionsConfigError(f"regions: {err}") from err
    if not cfg.enabled:
        return cfg
    if isinstance(cfg.features, str):
        cfg.features = resolve_path(cfg.features, base_dir)
    elif isinstance(cfg.features, list) and all(isinstance(p, str) for p in cfg.features):
        cfg.features = [resolve_path(p, base_dir) for p in cfg.features]
    else:
        raise _fail("features", cfg.features, "a file, a list of files or a directory")
    cfg.model, cfg.classes = resolve_path(cfg.model, base_dir), resolve_path(cfg.classes, base_dir)
    _check_choices(cfg)
    _check_numbers(cfg)
    _check_paths(cfg)
    return cfg


def read_classes(path: str) -> list[str]:
    """The class names of a ``classes`` file, one a line (the line index is the label id)."""
    from codeswitch.dictionary import read_bytes

    return [line.strip() for line in read_bytes(path).decode("utf-8").splitlines()]
