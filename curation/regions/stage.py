"""Region (ROI) boxes and features of every image: the ``regions`` stage (``ExtractRegions``).

RC3 (and M3P/UC2) feed a detector's region features next to the image patches. This
stage fills a ``pairs`` row's ``regions`` (``schemas/README.md``): boxes normalised to
[0, 1] of the stored image, one feature vector per box, the extractor's name, and, where
the source gives them, a label and a score per box. The source is the config's
``source`` (``curation.regions.config``):

- ``precomputed``: bottom-up-attention TSV/NPZ records joined by ``key``
  (``curation.regions.precomputed``);
- ``torchvision``: a detection model from a local weights file, RoIAlign features
  (``curation.regions.detector``; the ``detect`` extra);
- ``shapes``: the demo's rule-based shape detector (``curation.regions.shapes``).

A row the source has nothing for (no record for its key, ``no_features``; no key value,
``no_key``; no box found, ``no_boxes``) is, by ``missing``, a record-level reject
(``regions/<reason>``) or kept with ``regions`` null and counted (``missing_<reason>``).
Every regions value of a build comes from one extractor; the stage overwrites whatever
``regions`` a row had. ``parallel`` rows pass through.

Counters (namespace ``regions``): ``in``, ``kept``, ``rejected_<reason>`` (the framework's),
``with_regions``, ``boxes`` (total boxes written), ``labelled_boxes`` and ``missing_<reason>``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from curation.regions.config import RegionsConfig
from schemas.rows import Reject
from schemas.stage import ApplyRowStage, RowStage

DETAILS = {
    "no_features": "no precomputed features for the row's key",
    "no_key": "the row has no value for the configured regions.key (or regions.key_regex did not match it)",
    "no_boxes": "the detector found no box",
}


class RegionSource(Protocol):
    """What the stage needs of a source: its name and, per row, regions or a reason."""

    extractor: str

    def extract(self, rows: list[dict[str, Any]]) -> list[dict[str, Any] | str]: ...


def load_source(cfg: RegionsConfig) -> RegionSource:
    """The configured source, built on the worker (indexes feature files, loads weights)."""
    if cfg.source == "precomputed":
        from curation.regions.precomputed import PrecomputedRegions

        return PrecomputedRegions(cfg)
    if cfg.source == "torchvision":
        from curation.regions.detector import TorchvisionRegions

        return TorchvisionRegions(cfg)
    from curation.regions.shapes import ShapeRegions

    return ShapeRegions(cfg.extractor)


def attach_regions(rows: list[dict[str, Any]], source: RegionSource, cfg: RegionsConfig,
                   stats: Counter[str]) -> tuple[list[dict[str, Any]], list[Reject]]:
    """Regions for a batch of pairs rows: (kept rows, rejects) by the module docstring."""
    found = source.extract(rows)
    if len(found) != len(rows):
        raise ValueError(f"{source.extractor}: {len(found)} results for {len(rows)} rows")
    kept: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for row, regions in zip(rows, found, strict=True):
        if isinstance(regions, str):
            if cfg.missing == "reject":
                rejects.append(Reject.of_row(row, regions, f"{DETAILS[regions]} ({source.extractor}, key "
                                             f"{cfg.key}); regions.missing = \"keep\" keeps such rows"))
                continue
            stats[f"missing_{regions}"] += 1
            kept.append({**row, "regions": None})
            continue
        stats["with_regions"] += 1
        stats["boxes"] += len(regions["boxes"])
        if regions["labels"] is not None:
            stats["labelled_boxes"] += sum(1 for label in regions["labels"] if label is not None)
        kept.append({**row, "regions": regions})
    return kept, rejects


class AttachRegions(RowStage):
    """The ``regions`` stage's logic: ``batch_size`` rows per extraction call."""

    def __init__(self, cfg: RegionsConfig):
        self.cfg = cfg
        self.batch_size = cfg.batch_size

    def load(self) -> RegionSource:
        return load_source(self.cfg)

    def copies(self) -> int | None:
        return 1 if self.cfg.device == "cuda" else None

    def process(self, table: str, rows: list[dict[str, Any]], model: RegionSource,
                stats: Counter[str]) -> tuple[list[dict[str, Any]], list[Reject]]:
        return attach_regions(rows, model, self.cfg, stats)


class ExtractRegions(ApplyRowStage):
    """Row stage: {"pairs", "parallel"} -> ({"pairs" with regions, "parallel"}, rejects).

    cfg: the ``[regions]`` settings; stage: its name in the registry. Building it checks
    what can be checked before the pipeline runs: that torchvision imports when the
    source needs it.
    """

    def __init__(self, cfg: RegionsConfig, stage: str, label: str | None = None):
        if cfg.source == "torchvision":
            from curation.regions.detector import import_torchvision

            import_torchvision()
        super().__init__(stage, AttachRegions(cfg), label)
        self.cfg = cfg
