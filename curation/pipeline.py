"""The build pipeline: readers → image and text validation → dedup → (stages) → Parquet.

``build_pipeline`` only wires PTransforms; each stage's logic lives in its own module as
pure functions and DoFns. ``run_build`` owns the output directory's life cycle (stage,
reconcile, commit) around one pipeline run.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from curation.clean.images import ValidateImages
from curation.clean.keys import unique_rows
from curation.clean.texts import NormaliseTexts
from curation.concepts.vocab import dataset_files as concepts_files
from curation.config import BuildConfig
from curation.output import manifest as manifest_lib
from curation.output import outdir
from curation.output.card import CARD, render_card
from curation.output.write import CountInputs, SortIntoRuns, WriteDataset, remove_runs
from curation.progress import ProgressLine, Ticker, progress_enabled
from curation.read.source import (
    IN_PROCESS_RUNNERS,
    ReadProgressText,
    ReadSource,
    file_size,
    match_paths,
    source_files,
)
from curation.stages import active_stages, stages_run

LOCAL_RUNNER = "FnApiRunner"
DASK_RUNNERS = ("DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner")
DASK_RUNNER = "curation.deploy.dask.DaskRunner"  # Beam's DaskRunner with its bugs worked around
# runners whose workers share this machine's disk, so the read step can report progress
LOCAL_RUNNERS = IN_PROCESS_RUNNERS



def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the command line; without --runner, the offline local runner.

    The DirectRunner would first try Prism, which downloads a binary at run time.
    """
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
    elif standard.runner in DASK_RUNNERS:  # Beam's mis-routes tagged outputs: curation/deploy/dask.py
        standard.runner = DASK_RUNNER
    return options


def _beam_flags(args: list[str]) -> set[str]:
    """Every option Beam's PipelineOptions subclasses declare (a runner named by its module
    path, such as Beam's DaskRunner, is imported first: its options register on import)."""
    import argparse
    import importlib

    for i, arg in enumerate(args):
        runner = arg.split("=", 1)[1] if arg.startswith("--runner=") else args[i + 1] if arg == "--runner" and i + 1 < len(args) else ""
        if "." in runner:
            with contextlib.suppress(ImportError):
                importlib.import_module(runner.rsplit(".", 1)[0])
    parser = argparse.ArgumentParser(add_help=False, conflict_handler="resolve")
    seen, todo = set(), [PipelineOptions]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                with contextlib.suppress(Exception):  # one odd subclass must not hide the rest
                    sub._add_argparse_args(parser)
    return {flag for action in parser._actions for flag in action.option_strings}


def check_beam_args(args: list[str], own: Iterable[str]) -> None:
    """Refuse an option neither this command nor Beam knows, naming the nearest known one
    (Beam itself only warns "Unparseable argument" and the build goes on without it)."""
    flags = [a.split("=", 1)[0] for a in args if a.startswith("-") and not _is_number(a)]
    if not flags:
        return
    known = _beam_flags(args)
    for flag in flags:
        if flag not in known:
            near = difflib.get_close_matches(flag, [*own, *known], n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else "; see --help (Beam options pass through unchanged)"
            raise ValueError(f"unknown option {flag}{hint}")


def _is_number(arg: str) -> bool:
    try:
        float(arg)
    except ValueError:
        return False
    return True


def check_local_devices(cfg: BuildConfig, runner: str) -> None:
    """On a local runner the workers are this machine: a GPU or compute type it lacks fails
    here, in one line, not as a worker traceback. (Remote runners' workers may have the
    GPU this machine lacks: they are not checked here.)"""
    if str(runner).rsplit(".", 1)[-1] not in LOCAL_RUNNERS:
        return
    if cfg.mt.enabled:
        if cfg.mt.engine == "ctranslate2":
            from translate.ct2_engine import require_compute

            require_compute(cfg.mt.device, cfg.mt.compute_type)
        else:
            from translate.fairseq_engine import require_device

            require_device(cfg.mt.device)
    for enabled, device in ((cfg.relevance.enabled, cfg.relevance.device), (cfg.regions.enabled, cfg.regions.device)):
        if enabled and device.startswith("cuda"):
            from translate.fairseq_engine import require_device

            require_device(device)


def check_inputs(cfg: BuildConfig) -> dict[str, list[str]]:
    """Expand every source's globs before the pipeline starts; a glob matching nothing fails here."""
    return {src.name: match_paths(src) for src in cfg.sources}


class EachSource(beam.PTransform):
    """``make()`` applied to each source's PCollection (a tuple), its outputs kept apart: a
    tuple of the per-source outputs. Records are never flattened across sources (FnApiRunner
    holds a multi-input Flatten's elements, image bytes and all, in memory); what joins them
    is small (key records grouped on disk, run descriptors, counts)."""

    def __init__(self, make: Callable[[], beam.PTransform]):
        super().__init__()
        self.make = make

    def expand(self, inputs: tuple[beam.PCollection, ...]) -> tuple[Any, ...]:
        return tuple(pc | str(i) >> self.make() for i, pc in enumerate(inputs))


def build_pipeline(p: beam.Pipeline, cfg: BuildConfig, directory: str, progress_dir: str | None = None) -> None:
    """Wire the whole build into pipeline ``p``, writing shards under ``directory`` (the
    readers report to ``progress_dir`` when given)."""
    reads = [p | f"Read[{src.name}]" >> ReadSource(src, progress_dir) for src in cfg.sources]
    records, rejects = tuple(r[0] for r in reads), [r[1] for r in reads]
    (*records, *rejects) | "CountInputs" >> CountInputs(directory)
    valid = records | "ValidateImages" >> EachSource(lambda: ValidateImages(cfg.image))
    texts = tuple(v for v, _ in valid) | "NormaliseTexts" >> EachSource(lambda: NormaliseTexts(cfg.text))
    rejects += [r for _, r in valid] + [r for *_, r in texts]
    stages = active_stages(cfg)
    tables = spine_tables(p, cfg, texts, directory, rejects, direct=not stages)
    for stage in stages:
        tables, stage_rejects = tables | stage.name >> stage.make(cfg, stage.name, directory)
        rejects.append(stage_rejects)
    all_rejects = tuple(rejects) | "AllRejects" >> SortIntoRuns("rejects", directory)
    sharded = () if stages else ("pairs", "parallel")
    {**tables, "rejects": all_rejects} | "WriteDataset" >> WriteDataset(directory, cfg.output, sharded)


def spine_tables(p: beam.Pipeline, cfg: BuildConfig, texts: tuple[Any, ...], directory: str, rejects: list[Any],
                 direct: bool) -> dict[str, beam.PCollection]:
    """{"pairs": rows, "parallel": rows} through the spine's id checks, dedup and splits
    (``unique_rows``) from each source's (pairs, parallel, rejects) of the text stage;
    the rejects are appended to ``rejects``.

    direct (no row stage follows): the rows go straight into the writer's runs, split by
    shard (``WriteDataset(sharded=...)`` takes their descriptors), and each table is made
    only from the sources whose kind makes its rows (a table no source makes is empty).
    """
    splits = {src.split for src in cfg.sources}
    per_shard = cfg.output.rows_per_shard if direct else None
    tables = {}
    for i, (table, name) in enumerate((("pairs", "Pairs"), ("parallel", "Parallel"))):
        made = tuple(t[i] for t, src in zip(texts, cfg.sources, strict=True)
                     if not direct or (src.kind == "parallel") == (table == "parallel"))
        if not made:
            tables[table] = p | f"No{name}" >> beam.Create([])
            continue
        tables[table], table_rejects = unique_rows(made, name, cfg.dedup.key, splits, directory, per_shard)
        rejects.append(table_rejects)
    return tables


def counters(result: Any) -> dict[str, int]:
    """Beam counters of a finished pipeline as {"namespace/name": value}."""
    out: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter())["counters"]:
        try:
            value = c.committed
        except Exception:  # some runners only report attempted values
            value = None
        if value is None:
            value = c.attempted
        key = f"{c.key.metric.namespace}/{c.key.metric.name}"
        out[key] = out.get(key, 0) + int(value or 0)
    return dict(sorted(out.items()))


def log(message: str) -> None:
    print(f"[m3curate] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def read_progress(cfg: BuildConfig, runner: str, show: bool | None) -> Any:
    """A progress folder for the readers and a line on stderr that sums it, or None.

    show: None draws it on a local runner when stderr is a terminal (``curation.progress``).
    """
    line = ProgressLine(enabled=(runner in LOCAL_RUNNERS and progress_enabled()) if show is None else show)
    if not line.enabled:
        yield None
        return
    totals = {}
    for src in cfg.sources:
        files = source_files(src)
        totals[src.name] = (len(files), sum(file_size(p) + file_size(t) for p, t in files))
    directory = tempfile.mkdtemp(prefix="m3curate-progress-")
    try:
        with Ticker(ReadProgressText(directory, totals), line):
            yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_build(cfg: BuildConfig, out: str, beam_args: list[str] | None = None, overwrite: bool = False,
              progress: bool | None = None) -> dict[str, Any]:
    """Run the build into ``out``; returns the manifest. Raises on bad input dirs or lost records.

    progress: draw the read step's progress on stderr (None: on a local runner when stderr is
    a terminal, see ``read_progress``).
    """
    options = pipeline_options(list(beam_args or []))
    files = check_inputs(cfg)
    runner = options.view_as(StandardOptions).runner
    check_local_devices(cfg, runner)
    staging = outdir.prepare(out, overwrite)
    log(f"{sum(map(len, files.values()))} input files from {len(files)} sources; runner {runner}")
    started = time.time()
    try:
        with read_progress(cfg, runner, progress) as progress_dir:
            p = beam.Pipeline(options=options)
            build_pipeline(p, cfg, staging, progress_dir)
            result = p.run()
            result.wait_until_finish()
        remove_runs(staging)  # the writers' sorted runs (curation/output/write.py)
        log(f"pipeline finished in {time.time() - started:.1f}s; reconciling counts")
        manifest = manifest_lib.build_manifest(cfg.to_dict(), staging, stages_run(cfg))
        manifest_lib.check(manifest)
        vocabulary = concepts_files(cfg.concepts, manifest)  # concepts.txt when the concepts stage ran
        run = {"runner": runner, "seconds": round(time.time() - started, 2), "counters": counters(result)}
        extra = {"run.json": json.dumps(run, indent=1).encode(), CARD: render_card(manifest).encode(), **vocabulary}
        outdir.commit(staging, out, manifest, extra=extra)
    except BaseException:
        outdir.abandon(staging)
        raise
    manifest["run"] = run
    return manifest
