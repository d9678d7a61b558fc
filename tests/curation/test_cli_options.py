"""Options after build/demo go to Beam; a mistyped one is refused, naming the nearest."""

from __future__ import annotations

import pytest

from curation.cli import main
from curation.pipeline import check_beam_args


def test_beam_options_pass_and_typos_are_refused(tmp_path, capsys: pytest.CaptureFixture[str]):
    check_beam_args(["--direct_num_workers", "2", "--direct_running_mode=multi_processing", "--runner",
                     "FnApiRunner", "--project", "my-project-123", "--temp_location", "gs://b/tmp",
                     "--experiments", "x", "--sdk_container_image", "img:1"], ["--out"])
    with pytest.raises(ValueError, match="unknown option --direct_num_workrs; did you mean --direct_num_workers"):
        check_beam_args(["--direct_num_workrs", "2"], [])
    config = tmp_path / "b.toml"
    config.write_text('[[sources]]\nname = "s"\nformat = "jsonl"\npaths = ["x.jsonl"]\n')
    assert main(["build", "--config", str(config), "--out", str(tmp_path / "o"), "--overwite"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "m3curate build: error: ValueError: unknown option --overwite; did you mean --overwrite?"
    assert not (tmp_path / "o").exists()


def test_a_missing_gpu_fails_before_the_pipeline_on_a_local_runner(tmp_path, capsys: pytest.CaptureFixture[str]):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "x.jsonl").write_text("")
    config = tmp_path / "b.toml"
    config.write_text('[[sources]]\nname = "s"\nformat = "jsonl"\npaths = ["x.jsonl"]\n'
                      '[mt]\nmodel = "nowhere"\ntargets = ["de"]\ndevice = "cuda"\n')
    assert main(["build", "--config", str(config), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "use --device cpu" in err[0] and not (tmp_path / "o").exists()
    # a remote runner's workers may have the GPU this machine lacks: not refused for that
    from curation.config import load_config
    from curation.pipeline import check_local_devices

    check_local_devices(load_config(config), "DataflowRunner")
