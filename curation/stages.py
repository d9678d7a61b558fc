"""The stage registry: every stage's name, written once, in the order records pass them.

``SPINE`` always runs: reading, image and text validation, dedup, leak-free splits. ``ROW_STAGES`` are the
row stages over curated rows, each an ``ApplyRowStage`` (``schemas.stage``) or, for
machine translation, a transform on the same counters and rejects: each runs when
``enabled(cfg)``. The stage's name here is its Beam step, its counters' namespace and its
rejects' ``stage``; ``curation.pipeline`` wires the stages from this list, the manifest's
per-stage table and the report read their names from it. Imports stay inside each
``make`` so that a build without a stage never loads its libraries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curation.config import BuildConfig

READ, IMAGE, TEXT, DEDUP, SPLIT = "read", "image", "text", "dedup", "split"
SPINE = (READ, IMAGE, TEXT, DEDUP, SPLIT)
# The writer counts what it wrote under this namespace; it is no stage (it drops nothing).
WRITE = "write"


@dataclass(frozen=True)
class RowStageEntry:
    """A row stage: ``make(cfg, name, directory)`` is a PTransform taking {"pairs": pc,
    "parallel": pc} and returning ({"pairs", "parallel"}, rejects); it runs when
    ``enabled(cfg)``. ``directory``: the build's staging directory, for a stage that groups
    rows through sorted runs on disk (``curation.output.spill.runs_folder``)."""

    name: str
    enabled: Callable[[BuildConfig], bool]
    make: Callable[[BuildConfig, str, str], Any]


def _lid(cfg: BuildConfig, name: str, directory: str) -> Any:
    from curation.lid.stage import DetectLanguage

    return DetectLanguage(cfg.lid, name)


def _mt(cfg: BuildConfig, name: str, directory: str) -> Any:
    from curation.output.spill import GroupOnDisk, runs_folder
    from translate.beam import TranslateCaptions

    return TranslateCaptions(cfg.mt, name, join=GroupOnDisk(runs_folder(directory, name)))


def _codeswitch(cfg: BuildConfig, name: str, directory: str) -> Any:
    from codeswitch.beam import CodeSwitch

    return CodeSwitch(cfg.codeswitch, cfg.seed, name)


def _relevance(cfg: BuildConfig, name: str, directory: str) -> Any:
    from curation.relevance.stage import ScoreRelevance

    return ScoreRelevance(cfg.relevance, name, mt=cfg.mt)


def _regions(cfg: BuildConfig, name: str, directory: str) -> Any:
    from curation.regions.stage import ExtractRegions

    return ExtractRegions(cfg.regions, name)


def _concepts(cfg: BuildConfig, name: str, directory: str) -> Any:
    from curation.concepts.stage import MapConcepts

    return MapConcepts(cfg.concepts, name)


# In order: regions first (it reads only the image, and a row it rejects by its ``missing``
# policy then costs no LID, MT or relevance scoring); language ID next (every later stage
# routes on language), then translation, then code-switching (which may switch
# translations), then relevance scoring; concepts last (it reads every text variant in its
# final language, and the regions' labels).
ROW_STAGES: tuple[RowStageEntry, ...] = (
    RowStageEntry("regions", lambda cfg: cfg.regions.enabled, _regions),
    RowStageEntry("lid", lambda cfg: bool(cfg.lid.model), _lid),
    RowStageEntry("mt", lambda cfg: cfg.mt.enabled, _mt),
    RowStageEntry("codeswitch", lambda cfg: bool(cfg.codeswitch.dictionaries), _codeswitch),
    RowStageEntry("relevance", lambda cfg: cfg.relevance.enabled, _relevance),
    RowStageEntry("concepts", lambda cfg: cfg.concepts.enabled, _concepts),
)
ORDER = (*SPINE, *(stage.name for stage in ROW_STAGES))


def active_stages(cfg: BuildConfig) -> list[RowStageEntry]:
    """The row stages a build runs, in order."""
    return [stage for stage in ROW_STAGES if stage.enabled(cfg)]


def stages_run(cfg: BuildConfig) -> tuple[str, ...]:
    """The names of every stage a build runs, in order: the manifest's per-stage table."""
    return (*SPINE, *(stage.name for stage in active_stages(cfg)))
