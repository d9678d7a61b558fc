"""The full Dataflow job of a build with every stage, built offline.

With ``apache-beam[gcp]`` installed, ``--runner DataflowRunner --dry_run=True`` builds the
whole job (the Runner v2 pipeline proto the service would receive) without credentials or
network, and ``run()`` returns a result whose ``.job`` holds it. The config has LID, MT,
code-switching and relevance, on the demo's generated inputs with tiny models the module
trains (a fastText LID model, a one-layer fairseq transformer), and writes to ``gs://``.
The pipeline is built with ``build_pipeline`` as ``run_build`` builds it; ``run_build``
itself stages a local output folder and reconciles after the run, which a dry run has not.

What a user relies on: every stage is a step, in the registry's order; the MT inference
step, and only it, asks for a GPU (the default hint on ``device = "cuda"``, or
``[mt] accelerator``); every step runs in the given SDK container; every leaf is a
primitive Dataflow runs (no Python-only transform); every DoFn and CombineFn unpickles in
a fresh interpreter, as on a worker.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest

pytest.importorskip("google.cloud.dataflow", reason="needs apache-beam[gcp]: pip install -e '.[gcp]'")

from apache_beam.portability.api import beam_runner_api_pb2  # noqa: E402

from curation.config import BuildConfig, load_config  # noqa: E402
from curation.demo.corpus import write_corpus  # noqa: E402
from curation.demo.run import add_codeswitch, add_relevance  # noqa: E402
from curation.demo.synth import LANGUAGES, parallel_captions  # noqa: E402
from curation.pipeline import build_pipeline, check_beam_args, check_inputs, pipeline_options  # noqa: E402
from curation.stages import active_stages  # noqa: E402

pytestmark = pytest.mark.slow

IMAGE = "us-central1-docker.pkg.dev/my-project-123/m3curate/worker:0.1.0"
OUT = "gs://bucket/m3curate/out"
DATAFLOW = ["--runner", "DataflowRunner", "--dry_run=True", "--project", "my-project-123",
            "--region", "us-central1", "--temp_location", "gs://bucket/tmp", "--sdk_container_image", IMAGE]
L4 = "type:nvidia-l4;count:1;install-nvidia-driver"
ACCELERATOR_URN = "beam:resources:accelerator:v1"
PRIMITIVES = {"beam:transform:pardo:v1", "beam:transform:group_by_key:v1", "beam:transform:impulse:v1",
              "beam:transform:flatten:v1"}
PICKLED = {"beam:dofn:pickled_python_info:v1", "beam:combinefn:pickled_python:v1"}
ROW_STAGES = ["lid", "mt", "codeswitch", "relevance"]  # curation.stages, in order
PIPELINE_ORDER = ["ValidateImages", "NormaliseTexts", "DedupPairs", "AssignSplits", *ROW_STAGES, "WriteDataset"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, lid_model_path: str) -> Path:
    """The demo corpus with LID, MT (a one-layer, one-epoch en->de/fr fairseq model: the job
    needs its files, not its quality), code-switching and relevance; returns build.toml
    without the [mt] table (``config`` adds it)."""
    from translate.demo_model import DemoModelSpec, train_demo_model

    root = tmp_path_factory.mktemp("dataflow")
    toml = write_corpus(root, n=40, seed=3)
    pairs = {lang: parallel_captions(100, 7, "en", lang) for lang in ("de", "fr")}
    model = train_demo_model(root / "mt", pairs, spec=DemoModelSpec(layers=1, epochs=1, vocab_size=150))
    stages = f'\n[lid]\nmodel = "{lid_model_path}"\nlow_confidence = "und"\n'
    toml.write_text(toml.read_text(encoding="utf-8") + stages + add_codeswitch(root, LANGUAGES)
                    + add_relevance(root), encoding="utf-8")
    (root / "mt.toml").write_text(f'\n[mt]\nmodel = "{model}"\ntargets = ["de", "fr"]\nsource_langs = ["en"]\n',
                                  encoding="utf-8")
    return toml


def config(corpus: Path, mt_extra: str = "") -> BuildConfig:
    path = corpus.parent / "build-dataflow.toml"
    mt = (corpus.parent / "mt.toml").read_text(encoding="utf-8")
    path.write_text(corpus.read_text(encoding="utf-8") + mt + mt_extra, encoding="utf-8")
    return load_config(path)


def dry_run(cfg: BuildConfig) -> beam_runner_api_pb2.Pipeline:
    """The Dataflow job's pipeline proto, built offline (no credentials, no network)."""
    check_beam_args(DATAFLOW, own=())  # what `m3curate build` checks first: Beam knows every flag
    check_inputs(cfg)
    p = beam.Pipeline(options=pipeline_options(DATAFLOW))
    build_pipeline(p, cfg, f"{OUT}/.staging-dryrun")
    result = p.run()
    assert result.job.proto.name.startswith("beamapp-")
    return result.job.proto_pipeline


@pytest.fixture(scope="module")
def job(corpus: Path) -> Iterator[beam_runner_api_pb2.Pipeline]:
    """The job of the GPU build: ``[mt] device = "cuda"`` and no explicit accelerator."""
    cfg = config(corpus, 'device = "cuda"\n')
    assert [s.name for s in active_stages(cfg)] == ROW_STAGES
    yield dry_run(cfg)


def transforms(pipeline: beam_runner_api_pb2.Pipeline) -> dict[str, Any]:
    return {t.unique_name: t for t in pipeline.components.transforms.values()}


def top_level(pipeline: beam_runner_api_pb2.Pipeline) -> dict[str, Any]:
    by_id = pipeline.components.transforms
    (root,) = pipeline.root_transform_ids
    return {by_id[t].unique_name: by_id[t] for t in by_id[root].subtransforms}


def test_every_stage_is_a_step_in_the_registry_order(job: beam_runner_api_pb2.Pipeline, corpus: Path):
    steps = top_level(job)
    sources = [src.name for src in config(corpus).sources]
    assert {f"Read[{name}]" for name in sources} | {"CountInputs", "DedupParallel", "AllRejects"} <= set(steps)
    assert set(PIPELINE_ORDER) <= set(steps)
    # the pairs flow through the spine in order, then the row stages one into the next
    produced_by = {pc: name for name, t in steps.items() for pc in t.outputs.values()}
    feeders = {name: {produced_by.get(pc) for pc in t.inputs.values()} - {None} for name, t in steps.items()}
    for before, after in zip(PIPELINE_ORDER, PIPELINE_ORDER[1:], strict=False):
        assert before in upstream_of(after, feeders), f"{after} does not come after {before}"
    for before, after in zip(ROW_STAGES, [*ROW_STAGES[1:], "WriteDataset"], strict=True):
        assert before in feeders[after], f"{after} is not fed by {before} (fed by {sorted(feeders[after])})"


def upstream_of(step: str, feeders: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [step]
    while todo:
        for feeder in feeders[todo.pop()] - seen:
            seen.add(feeder)
            todo.append(feeder)
    return seen


def test_the_writers_write_to_gcs(job: beam_runner_api_pb2.Pipeline):
    from apache_beam.internal import pickler

    for table in ("pairs", "parallel", "rejects"):
        write = transforms(job)[f"WriteDataset/Write_{table}/Write"]
        fn = pickler.loads(beam_runner_api_pb2.ParDoPayload.FromString(write.spec.payload).do_fn.payload)[0]
        assert fn.directory == f"{OUT}/.staging-dryrun" and fn.table == table


def accelerated(pipeline: beam_runner_api_pb2.Pipeline) -> dict[str, bytes]:
    """Leaf steps whose environment carries an accelerator hint, and the hint."""
    envs = pipeline.components.environments
    return {t.unique_name: envs[t.environment_id].resource_hints[ACCELERATOR_URN]
            for t in pipeline.components.transforms.values()
            if not t.subtransforms and ACCELERATOR_URN in envs[t.environment_id].resource_hints}


def test_only_the_mt_inference_step_asks_for_a_gpu(job: beam_runner_api_pb2.Pipeline):
    hinted = accelerated(job)
    assert hinted, "no step carries an accelerator hint"
    assert set(hinted.values()) == {L4.encode()}
    assert all(name.startswith("mt/Translate/BeamML_RunInference/") for name in hinted)
    assert any("_RunInferenceDoFn" in name for name in hinted)


@pytest.mark.parametrize(("mt_extra", "want"), [
    ('accelerator = "type:nvidia-tesla-t4;count:2;install-nvidia-driver"\n',
     b"type:nvidia-tesla-t4;count:2;install-nvidia-driver"),
    ('device = "cuda"\naccelerator = "none"\n', None),  # every worker has a GPU already
    ("", None),  # CPU inference
])
def test_the_mt_accelerator_hint_is_configurable(corpus: Path, mt_extra: str, want: bytes | None):
    hinted = accelerated(dry_run(config(corpus, mt_extra)))
    assert set(hinted.values()) == ({want} if want else set())


def test_every_step_runs_in_the_sdk_container(job: beam_runner_api_pb2.Pipeline):
    envs = job.components.environments
    used = {t.environment_id for t in job.components.transforms.values() if t.environment_id}
    assert len(used) == 2  # the default environment and the one with the GPU hint
    for env_id in used:
        assert envs[env_id].urn == "beam:env:docker:v1"
        assert beam_runner_api_pb2.DockerPayload.FromString(envs[env_id].payload).container_image == IMAGE


def test_every_leaf_is_a_dataflow_primitive(job: beam_runner_api_pb2.Pipeline):
    leaves = {t.spec.urn for t in job.components.transforms.values() if not t.subtransforms}
    assert leaves <= PRIMITIVES


UNPICKLE = """
import json, pickle, sys
from apache_beam.internal import pickler
failed = []
for name, payload in pickle.load(open(sys.argv[1], "rb")):
    try:
        pickler.loads(payload)
    except Exception as err:
        failed.append(f"{name}: {type(err).__name__}: {err}")
print(json.dumps(failed))
"""


def test_every_dofn_and_combinefn_unpickles_in_a_fresh_interpreter(job: beam_runner_api_pb2.Pipeline,
                                                                   tmp_path: Path):
    payloads = []  # DoFns known by URN (Beam's KeyWithVoid...) are not pickled: skipped
    for t in job.components.transforms.values():
        if t.spec.urn == "beam:transform:pardo:v1":
            fn = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload).do_fn
        elif t.spec.urn in ("beam:transform:combine_per_key:v1", "beam:transform:combine_grouped_values:v1"):
            fn = beam_runner_api_pb2.CombinePayload.FromString(t.spec.payload).combine_fn
        else:
            continue
        if fn.urn in PICKLED:
            payloads.append((t.unique_name, fn.payload))
    assert len(payloads) > 100 and any(name.startswith("mt/") for name, _ in payloads)
    path = tmp_path / "payloads.pkl"
    path.write_bytes(pickle.dumps(payloads))
    done = subprocess.run([sys.executable, "-c", UNPICKLE, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_on_dask_the_mt_stage_is_refused_naming_its_step(corpus: Path):
    """MT batches through Beam's stateful BatchElements; Beam's DaskRunner has no state and
    timers, so m3curate's Dask runner refuses the build while translating the graph, before
    any task runs (curation/deploy/dask.py)."""
    pytest.importorskip("dask.bag")
    from apache_beam.runners.dask.overrides import dask_overrides

    from curation.deploy.dask import _Visitor

    p = beam.Pipeline(options=pipeline_options([]))
    build_pipeline(p, config(corpus), str(corpus.parent / "unused"))
    p.replace_all(dask_overrides())
    with pytest.raises(NotImplementedError, match=r"step 'mt/Translate/.*' uses state or timers"):
        p.visit(_Visitor({}, 2))
