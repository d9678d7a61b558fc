"""A build with ``[mt]`` on Beam's DaskRunner gives FnApiRunner's dataset.

Dask has no state and timers, so there the ``mt`` stage batches its requests per bundle
(``translate.beam._BundleBatchFn``) instead of through Beam's stateful length-bucketed
``BatchElements``; the runner picks the path (``translate.beam.has_state``). The model
batches then differ (on Dask a bundle is a whole partition), and the dataset must not.
The model is the tests' tiny fairseq transformer (en → de, fr, es), trained here for a few epochs: its distributions are flat, so near-ties are everywhere and a
padding-dependent number would show as another translation or score. ``batch_size = 8``
and small length buckets give many batches of mixed composition on both runners.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import pytest
from test_runners_local import BEAM_DASK, assert_same_dataset

from curation.config import load_config
from curation.demo.corpus import write_corpus
from curation.pipeline import pipeline_options, run_build
from translate.batching import bucketed_batches
from translate.beam import TranslateCaptions, _BundleBatchFn, has_state
from translate.checkpoint import ModelInfo
from translate.config import TranslateConfig

MT_TARGETS = ("de", "fr", "es")


def _write_config(root: Path, model: Path, lid_model_path: str, batch_size: int) -> Path:
    toml = write_corpus(root, n=48, seed=5)
    text = toml.read_text(encoding="utf-8").replace("rows_per_shard = 256", "rows_per_shard = 20")
    assert "rows_per_shard = 20" in text
    targets = ", ".join(f'"{t}"' for t in MT_TARGETS)
    text += f'\n[lid]\nmodel = "{lid_model_path}"\nlow_confidence = "und"\n'
    text += (f'\n[mt]\nmodel = "{model}"\ntargets = [{targets}]\nsource_langs = ["en"]\nbeam = 4\n'
             f'cpu_threads = 1\nbatch_size = {batch_size}\nbucket_boundaries = [24, 40]\n')
    toml.write_text(text, encoding="utf-8")
    return toml


@pytest.fixture(scope="module")
def mt_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curation.demo.synth import parallel_captions
    from translate.demo_model import DemoModelSpec, train_demo_model

    pairs = {lang: parallel_captions(300, 11, "en", lang) for lang in MT_TARGETS}
    spec = DemoModelSpec(layers=1, epochs=3, vocab_size=200)
    return train_demo_model(tmp_path_factory.mktemp("dask_mt_model"), pairs, spec=spec)


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[str]:
    """A LocalCluster of two worker processes, one thread each; yields its address."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _builds(root: Path, model: Path, lid_model_path: str, batch_size: int, cluster: str) -> tuple[Path, Path]:
    """The same build on FnApiRunner and on Dask: (FnApiRunner's folder, Dask's)."""
    config = load_config(_write_config(root, model, lid_model_path, batch_size))
    fnapi, dask = root / "fnapi", root / "dask"
    run_build(config, str(fnapi))
    run_build(config, str(dask), ["--runner", BEAM_DASK, "--dask_client_address", cluster])
    counters = json.loads((fnapi / "run.json").read_text())["counters"]
    assert counters["mt/requests"] > 100 and counters["mt/translated_de"] > 30, counters
    return fnapi, dask


def test_a_build_with_mt_on_dask_writes_fnapi_s_dataset(tmp_path: Path, mt_model: Path, lid_model_path: str,
                                                         dask_cluster: str):
    """One request a batch: every model batch is one sentence on both runners, so the
    shards, the manifest and the counters are the same, byte for byte."""
    fnapi, dask = _builds(tmp_path, mt_model, lid_model_path, 1, dask_cluster)
    assert_same_dataset(dask, fnapi, "curation.deploy.dask.DaskRunner")


def test_batches_of_mixed_lengths_give_the_same_bytes_on_both_runners(tmp_path: Path, mt_model: Path,
                                                                      lid_model_path: str, dask_cluster: str):
    """Eight requests a batch: the runners group requests differently (FnApiRunner: Beam's
    stateful length buckets, filled in arrival order; Dask: per bundle), and the engine cuts
    model batches of one source token length (``[mt] same_length_batches``, the default), so
    no score depends on its batch-mates: the datasets are the same, byte for byte. (With
    padded batches 13-15 of 174 scores differed in the last float32 bits: translate/README.md.)"""
    fnapi, dask = _builds(tmp_path, mt_model, lid_model_path, 8, dask_cluster)
    assert_same_dataset(dask, fnapi, "curation.deploy.dask.DaskRunner")


def _requests(n: int, seed: int) -> list[tuple[tuple[str, int, str], tuple[str, str, str]]]:
    rng = random.Random(seed)
    return [((f"r{i:03d}", 0, "de"), ("x" * rng.randint(1, 60), "en", "de")) for i in range(n)]


def _bundle(fn: _BundleBatchFn, requests: list) -> list[list]:
    fn.start_bundle()
    batches = [b for r in requests for b in fn.process(r)]
    return batches + [wv.value for wv in fn.finish_bundle()]


def test_a_bundle_s_batches_do_not_depend_on_arrival_order_and_respect_buckets():
    requests = _requests(100, 1)
    shuffled = random.Random(2).sample(requests, len(requests))
    got = _bundle(_BundleBatchFn(8, [24, 40], limit=1000), requests)
    assert got == _bundle(_BundleBatchFn(8, [24, 40], limit=1000), shuffled)
    assert sorted(r for b in got for r in b) == sorted(requests)
    for batch in got:
        assert len(batch) <= 8
        lengths = [len(r[1][0]) for r in batch]
        assert len({(n >= 24) + (n >= 40) for n in lengths}) == 1, "a batch crosses a length bucket"
        assert batch == sorted(batch, key=lambda r: (len(r[1][0]), r[0]))


def test_a_full_buffer_sends_full_batches_and_keeps_the_rest():
    requests = _requests(100, 3)
    got = _bundle(_BundleBatchFn(8, [24, 40], limit=30), requests)
    assert sorted(r for b in got for r in b) == sorted(requests), "every request once"
    assert sum(len(b) < 8 for b in got) <= 3, "at most one partial batch a bucket"
    with pytest.raises(ValueError, match="batch size"):
        bucketed_batches([1], ["a"], 0)


def _translate_steps(args: list[str]) -> list[str]:
    cfg = TranslateConfig(model="unused", targets=["de"])
    info = ModelInfo("translation_multi_simple_epoch", (("en", "de"),), ("en", "de"))
    p = beam.Pipeline(options=pipeline_options(args))
    tables = {"pairs": p | "P" >> beam.Create([]), "parallel": p | "Q" >> beam.Create([])}
    _ = tables | "mt" >> TranslateCaptions(cfg, "mt", info=info)
    labels: list[str] = []

    class Labels(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            labels.append(node.full_label)

    p.visit(Labels())
    return labels


def test_the_runner_picks_the_batching_path():
    local = _translate_steps([])
    assert any("BatchElements" in label for label in local) and not any("BatchInBundle" in la for la in local)
    dask = _translate_steps(["--runner", BEAM_DASK])
    assert "mt/BatchInBundle" in dask and not any("BatchElements" in label for label in dask)
    assert has_state(beam.Pipeline(options=pipeline_options([])).runner)
    assert not has_state(beam.Pipeline(options=pipeline_options(["--runner", BEAM_DASK])).runner)


class _LogBundles(beam.DoFn):
    """Passes elements through; appends one line a bundle to ``path`` (the workers share
    this machine's disk)."""

    def __init__(self, path: str, name: str):
        self.path, self.name = path, name

    def process(self, element, *sides):
        yield element

    def finish_bundle(self):
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(self.name + "\n")


def test_dask_computes_each_bundle_once_through_chained_side_inputs(tmp_path: Path, dask_cluster: str):
    """Side inputs that read side inputs: each step's bundles run once (dask 2026.8 embeds a
    ``Bag.reduction`` handed to ``map_partitions`` as a renamed copy of its whole upstream
    graph, which ran every step again for every side input below it)."""
    log = tmp_path / "bundles.log"
    p = beam.Pipeline(options=pipeline_options(["--runner", BEAM_DASK, "--dask_client_address", dask_cluster,
                                                "--dask_npartitions", "2"]))
    first = p | beam.Create(list(range(20))) | "First" >> beam.ParDo(_LogBundles(str(log), "first"))
    second = first | "Second" >> beam.ParDo(_LogBundles(str(log), "second"), beam.pvalue.AsList(first))
    third = first | "Third" >> beam.ParDo(_LogBundles(str(log), "third"), beam.pvalue.AsList(second))
    _ = third | "Fourth" >> beam.ParDo(_LogBundles(str(log), "fourth"), beam.pvalue.AsList(third),
                                       beam.pvalue.AsList(second))
    p.run().wait_until_finish()
    lines = log.read_text(encoding="utf-8").split()
    assert {name: lines.count(name) for name in set(lines)} == {"first": 2, "second": 2, "third": 2, "fourth": 2}


@pytest.mark.slow
def test_a_build_with_mt_keeps_no_rows_in_the_runner_s_memory(tmp_path: Path, mt_model: Path, lid_model_path: str,
                                                              runner_buffers: dict[str, int]):
    """The join of rows and translations goes through runs on disk (``GroupOnDisk``), not a
    grouping FnApiRunner holds: no image waits in the runner's memory (with the join as a
    CoGroupByKey every row's image did). Text-only rows still do: the parallel table's
    Flatten of input and derived rows (about 210 KB here)."""
    config = load_config(_write_config(tmp_path, mt_model, lid_model_path, 8))
    manifest = run_build(config, str(tmp_path / "out"), progress=False)
    assert manifest["counts"]["pairs_rows"] > 30 and manifest["counts"]["derived_parallel_rows"] > 100
    assert runner_buffers["images"] == 0, runner_buffers
