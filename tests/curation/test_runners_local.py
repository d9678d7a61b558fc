"""The build on the distributed runners that run on this machine gives FnApiRunner's dataset.

- the portable runner path (what Flink, Spark and Dataflow Runner v2 use): ``PortableRunner``
  with an embedded job server and an ``EXTERNAL`` environment, i.e. a Beam SDK worker pool
  (``worker_pool_main``) that the test starts and always stops;
- Beam's DaskRunner on a ``dask.distributed`` LocalCluster with two worker processes,
  through m3curate's fix of it (``curation/deploy/dask.py``).

"The same dataset": every file of the output folder byte for byte (shards, manifest, card),
and the same Beam counters in ``run.json``, the only file that names the runner. The build
is a small demo corpus (every input format, planted bad inputs) with LID, code-switching
and relevance, and shards of 20 rows, so each table has several shards. MT is left out
here: on Dask it batches without state and is tested in test_runners_dask_mt.py; on the
portable runner it runs as on FnApiRunner, but its tiny model costs a minute to train
(test_runners_dataflow.py builds its full job instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import pytest

from curation.config import load_config
from curation.demo.corpus import write_corpus
from curation.demo.run import add_codeswitch, add_relevance
from curation.demo.synth import LANGUAGES
from curation.pipeline import run_build

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BEAM_DASK = "apache_beam.runners.dask.dask_runner.DaskRunner"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, lid_model_path: str) -> Path:
    root = tmp_path_factory.mktemp("runners")
    toml = write_corpus(root, n=48, seed=5)
    text = toml.read_text(encoding="utf-8").replace("rows_per_shard = 256", "rows_per_shard = 20")
    assert "rows_per_shard = 20" in text
    text += f'\n[lid]\nmodel = "{lid_model_path}"\nlow_confidence = "und"\n'
    toml.write_text(text + add_codeswitch(root, LANGUAGES) + add_relevance(root), encoding="utf-8")
    return toml


@pytest.fixture(scope="module")
def reference(config: Path) -> Path:
    """The build on FnApiRunner, the local default."""
    out = config.parent / "fnapi"
    run_build(load_config(config), str(out))
    return out


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_same_dataset(got: Path, want: Path, runner: str) -> None:
    got_files, want_files = files_of(got), files_of(want)
    assert sorted(got_files) == sorted(want_files)
    assert sum(name.startswith("pairs/") for name in want_files) > 1  # several shards a table
    differ = [name for name in want_files if name != "run.json" and got_files[name] != want_files[name]]
    assert differ == [], f"{runner} wrote other bytes than FnApiRunner"
    got_run, want_run = json.loads(got_files["run.json"]), json.loads(want_files["run.json"])
    assert got_run["runner"] == runner
    assert got_run["counters"] == want_run["counters"]
    assert want_run["counters"]["write/rejects_rows"] > 0 and want_run["counters"]["lid/in"] > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker pool exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the worker pool did not listen on port {port} within {seconds} s")


@pytest.fixture
def worker_pool(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Beam SDK worker pool on a free port, and its log; its workers run this venv's python
    (the pool starts them with whatever ``python`` is first on PATH). Killed with its
    process group."""
    port = free_port()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    log_path = tmp_path / "worker_pool.log"
    log = log_path.open("wb")
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             "--service_port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for_port(port, pool)
        yield port, log_path
    finally:
        with contextlib.suppress(ProcessLookupError):  # the pool and the workers it started
            os.killpg(pool.pid, signal.SIGKILL)
        pool.wait(timeout=30)
        log.close()


def test_portable_runner_with_an_external_worker_pool_writes_fnapi_s_dataset(config: Path, reference: Path,
                                                                                worker_pool: tuple[int, Path]):
    port, log = worker_pool
    out = config.parent / "portable"
    args = ["--runner", "PortableRunner", "--job_endpoint", "embed", "--environment_type", "EXTERNAL",
            "--environment_config", f"localhost:{port}"]
    run_build(load_config(config), str(out), args)
    assert "Starting worker" in log.read_text()  # the SDK harness ran in the pool's process
    assert_same_dataset(out, reference, "PortableRunner")


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[str]:
    """A LocalCluster of two worker processes, one thread each; yields its address."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_dask_runner_on_a_local_cluster_writes_fnapi_s_dataset(config: Path, reference: Path, dask_cluster: str):
    out = config.parent / "dask"
    run_build(load_config(config), str(out), ["--runner", BEAM_DASK, "--dask_client_address", dask_cluster])
    assert_same_dataset(out, reference, "curation.deploy.dask.DaskRunner")


class _Stateful(beam.DoFn):
    count = beam.transforms.userstate.CombiningValueStateSpec("count", sum)

    def process(self, element, count=beam.DoFn.StateParam(count)):  # noqa: B008 - Beam's idiom
        count.add(1)
        yield element


def test_dask_runner_refuses_a_stateful_step_naming_it(dask_cluster: str):
    """State and timers are missing on Dask (the mt stage then batches per bundle instead): a
    stateful step the pipeline does not adapt fails
    before any task starts, naming the step, rather than running it wrongly."""
    from curation.pipeline import pipeline_options

    p = beam.Pipeline(options=pipeline_options(["--runner", BEAM_DASK, "--dask_client_address", dask_cluster]))
    _ = p | beam.Create([("k", 1)]) | "Counted" >> beam.ParDo(_Stateful())
    with pytest.raises(NotImplementedError, match="'Counted' uses state or timers"):
        p.run()


def test_the_upstream_repro_fails_on_beam_s_dask_runner_and_passes_on_the_fix():
    """benchmarks/dask_runner_repro.py, the reproduction for the upstream Beam issue: when
    Beam's own runner passes it, curation/deploy/dask.py can go."""
    script = str(ROOT / "benchmarks" / "dask_runner_repro.py")
    fixed = subprocess.run([sys.executable, script, "--runner", "curation.deploy.dask.DaskRunner"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr[-3000:]
    beam_s = subprocess.run([sys.executable, script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert beam_s.returncode == 1, "Beam's DaskRunner now passes the repro: drop the workaround\n" + beam_s.stdout
    assert "DIFF 1_tagged_outputs" in beam_s.stdout and "DIFF 2_every_leaf" in beam_s.stdout
