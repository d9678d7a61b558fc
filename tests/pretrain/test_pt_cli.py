"""End to end through the CLI on a tiny generated dataset; schema mismatches refused clearly."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from pretrain_helpers import MICRO, write_dataset

from pretrain.cli import main, parse_set, register
from pretrain.config import ConfigError, load_config
from pretrain.train import run_training
from schemas import SCHEMA_VERSION
from schemas.dataset import DatasetError
from schemas.validate import SchemaError

torch.set_num_threads(1)

CONFIG = """
[model]
preset = "tiny"
{model}

[data]
batch_size = 8
parallel_batch_size = 8
num_workers = 0
null_relevance = 0.5

[train]
steps = 6
warmup_steps = 1
log_every = 2
ckpt_every = 4
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("cli") / "ds", n=32, n_test=6)


@pytest.mark.slow
def test_tokenizer_pretrain_evaluate(tmp_path, dataset, capsys):
    tok = tmp_path / "spm.model"
    assert main(["pretrain", "tokenizer", "--data", str(dataset), "--out", str(tok), "--vocab-size", "100"]) == 0
    assert tok.stat().st_size > 0
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(model="\n".join(f"{k} = {v}" for k, v in MICRO.items())))
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(dataset), "--out", str(run), "--config", str(cfg),
                 "--set", f'tokenizer.model="{tok}"', "--set", "loss.weak_form=regularizer"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004.pt", "step-00000006.pt"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4, 6]
    assert {"loss", "itc", "weak", "ttc", "mlm", "itm", "lr", "samples_per_s", "skipped"} <= set(lines[-1])
    assert json.loads((run / "config.json").read_text())["loss"]["weak_form"] == "regularizer"
    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(dataset), "--json", str(out_json), "--rerank", "3"]) == 0
    printed = capsys.readouterr().out
    assert "r_mean" in printed.splitlines()[1] and "mean r_mean over languages" in printed
    result = json.loads(out_json.read_text())
    assert set(result["languages"]) == {"en", "de"}
    assert result["languages"]["de"]["images"] == 6 and 0 <= result["languages"]["en"]["r_mean"] <= 100


def test_help_has_examples():
    parser = argparse.ArgumentParser(prog="m3curate")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    for name in ("pretrain", "evaluate"):
        assert "example:" in sub.choices[name].format_help()
    assert parse_set(["train.steps=5", "loss.weak_form=soft", 'data.lang_weights.en=0.5']) == {
        "train": {"steps": 5}, "loss": {"weak_form": "soft"}, "data": {"lang_weights": {"en": 0.5}}}


def test_config_errors_name_the_setting():
    with pytest.raises(ConfigError, match="loss.weak_form = 'hard'"):
        load_config(None, {"loss": {"weak_form": "hard"}})
    with pytest.raises(ConfigError, match=r"\[train\]: unknown setting\(s\) \['stpes'\]"):
        load_config(None, {"train": {"stpes": 3}})
    with pytest.raises(ConfigError, match="data.null_relevance"):
        load_config(None, {"data": {"null_relevance": 2}})


def _rewrite_shard(root: Path, mutate) -> None:
    path = root / "pairs" / "part-0.parquet"
    table = pq.read_table(path)
    pq.write_table(mutate(table), path)


def test_schema_mismatch_is_refused_before_training(tmp_path):
    cfg = load_config(None, {"model": MICRO, "train": {"steps": 1, "warmup_steps": 0}})
    old = write_dataset(tmp_path / "old", n=8, n_test=0)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "schema_version": "2.0"}))
    with pytest.raises(DatasetError, match=f"schema version 2.0, this m3curate reads {SCHEMA_VERSION}"):
        run_training(cfg, str(old), str(tmp_path / "r1"))
    typed = write_dataset(tmp_path / "typed", n=8, n_test=0)
    _rewrite_shard(typed, lambda t: t.drop_columns(["regions"]))
    with pytest.raises(SchemaError, match="column 'regions': .*missing"):
        run_training(cfg, str(typed), str(tmp_path / "r2"))
    meta = write_dataset(tmp_path / "meta", n=8, n_test=0)
    _rewrite_shard(meta, lambda t: t.replace_schema_metadata({b"m3curate.schema_version": b"2.1", b"m3curate.table": b"pairs"}))
    with pytest.raises(SchemaError, match="schema version 2.1 is not compatible"):
        run_training(cfg, str(meta), str(tmp_path / "r3"))
    assert not (tmp_path / "r1" / "checkpoints").exists() and not (tmp_path / "r3" / "checkpoints").exists()


def test_older_minor_version_dataset_trains(tmp_path):
    """A schema-1.0 dataset (parallel shards without the declared-language columns that 1.1
    added) is read: the trainer selects its columns from what the file has."""
    cfg = load_config(None, {"model": MICRO, "data": {"batch_size": 4, "parallel_batch_size": 4, "num_workers": 0,
                                                      "null_relevance": 0.5},
                             "train": {"steps": 2, "warmup_steps": 0, "log_every": 1}})
    old = write_dataset(tmp_path / "v10", n=8, n_test=0)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "schema_version": "1.0"}))
    v10 = {b"m3curate.schema_version": b"1.0"}
    for kind in ("pairs", "parallel"):
        for path in (old / kind).glob("*.parquet"):
            table = pq.read_table(path)
            if kind == "parallel":
                table = table.drop_columns(["src_declared_lang", "tgt_declared_lang"])
            pq.write_table(table.replace_schema_metadata({**table.schema.metadata, **v10}), path)
    out = run_training(cfg, str(old), str(tmp_path / "run"), quiet=True)
    assert out["step"] == 2 and out["metrics"]["ttc"] > 0


def test_demo_training_returns_metrics(tmp_path, dataset):
    from pretrain.demo import run_demo_training

    small = {"model": MICRO, "data": {"batch_size": 8, "parallel_batch_size": 8, "num_workers": 0},
             "tokenizer": {"vocab_size": 100}}
    out = run_demo_training(str(dataset), str(tmp_path / "demo"), steps=3, overrides=small, quiet=True)
    assert out["train"]["step"] == 3 and set(out["eval"]["languages"]) == {"en", "de"}
    assert out["chance_r_mean"] == pytest.approx(100 * (1 + 5 + 6) / 6 / 3, abs=0.01)  # 6 held-out images
    assert (tmp_path / "demo" / "demo_eval.txt").read_text().startswith("retrieval on")
    again = run_demo_training(str(dataset), str(tmp_path / "demo"), steps=2, overrides=small, quiet=True)
    assert again["train"]["step"] == 2  # a re-run replaces the earlier demo run


def test_tokenizer_creates_its_output_folder(tmp_path, dataset):
    out = tmp_path / "runs" / "new" / "spm.model"  # pretrain/README.md's first command: runs/spm.model
    assert main(["pretrain", "tokenizer", "--data", str(dataset), "--out", str(out), "--vocab-size", "100"]) == 0
    assert out.stat().st_size > 0


def _fake_result(*args, **kwargs) -> dict:
    return {"checkpoint": "c", "data": "d", "rerank": 0, "languages": {}, "mean_r_mean": 0.0}


def test_evaluate_json_folder_is_created_and_checked_before_evaluating(tmp_path, monkeypatch, capsys):
    import pretrain.evaluate

    monkeypatch.setattr(pretrain.evaluate, "evaluate", _fake_result)
    out = tmp_path / "results" / "m30k" / "eval.json"
    assert main(["evaluate", "--checkpoint", "c", "--data", "d", "--format", "json", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["mean_r_mean"] == 0.0

    def must_not_run(*args, **kwargs):
        raise AssertionError("evaluated before checking --json")

    monkeypatch.setattr(pretrain.evaluate, "evaluate", must_not_run)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"--json .*a-file/eval.json: .*a-file is not a folder"):
        main(["evaluate", "--checkpoint", "c", "--data", "d", "--json", str(blocker / "eval.json")])
    with pytest.raises(ValueError, match="is a folder"):
        main(["evaluate", "--checkpoint", "c", "--data", "d", "--json", str(tmp_path)])


def test_compile_says_it_is_compiling_before_the_first_step(tmp_path, dataset, monkeypatch, capsys):
    """torch.compile compiles on the first step, minutes of silence: the run says so first."""
    import pretrain.train

    monkeypatch.setattr(torch, "compile", lambda module, **kw: module)  # the message, not the compiler, is tested
    before_first_step: list[str] = []
    real_step = pretrain.train.train_step

    def step(run, stream):
        if not before_first_step:
            before_first_step.append(capsys.readouterr().err)
        return real_step(run, stream)

    monkeypatch.setattr(pretrain.train, "train_step", step)
    cfg = load_config(None, {"model": MICRO, "data": {"batch_size": 4, "parallel_batch_size": 4, "num_workers": 0,
                                                      "null_relevance": 0.5},
                             "train": {"steps": 1, "warmup_steps": 0, "compile": True}, "tokenizer": {"vocab_size": 100}})
    run_training(cfg, str(dataset), str(tmp_path / "run"))
    assert "compiling the model with torch.compile" in before_first_step[0]
    assert "first step done in" in capsys.readouterr().err


class _RunsAShell:
    """Pickles as a call of os.system: what a hostile "checkpoint" holds."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoints(tmp_path: Path) -> list[Path]:
    import pickle

    marker = tmp_path / "PWNED"
    zipped, legacy, plain = tmp_path / "evil.pt", tmp_path / "evil_legacy.pt", tmp_path / "evil.pkl"
    torch.save({"format": "m3curate-rc3/1", "model": _RunsAShell(marker)}, zipped)
    torch.save({"model": _RunsAShell(marker)}, legacy, _use_new_zipfile_serialization=False)
    plain.write_bytes(pickle.dumps({"model": _RunsAShell(marker)}, protocol=4))
    return [zipped, legacy, plain]


def test_unsafe_checkpoint_is_refused_in_one_line_naming_the_global(tmp_path, dataset, capsys):
    """`m3curate evaluate --checkpoint evil.pt`: one line, UnsafeCheckpointError, the global
    named (os.system is posix.system), nothing run; so for --resume and init weights too."""
    from curation.cli import main as m3curate
    from pretrain.checkpoint import UnsafeCheckpointError, load_init_weights, saved_config

    capsys.readouterr()
    for evil in _evil_checkpoints(tmp_path):
        assert m3curate(["evaluate", "--checkpoint", str(evil), "--data", str(dataset)]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"m3curate evaluate: error: UnsafeCheckpointError: {evil}: refused to load")
        assert "posix.system" in err and "weights_only" not in err
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    (run / "step-00000001.pt").write_bytes((tmp_path / "evil.pt").read_bytes())
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        saved_config(tmp_path / "run")
    cfg = load_config(None, {"model": MICRO, "train": {"steps": 1, "warmup_steps": 0}})
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        run_training(cfg, str(dataset), str(tmp_path / "run"), resume=True)
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        load_init_weights(torch.nn.Linear(2, 2), tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


def test_unreadable_checkpoint_is_one_line(tmp_path, dataset, capsys):
    from curation.cli import main as m3curate

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all\n")
    assert m3curate(["evaluate", "--checkpoint", str(junk), "--data", str(dataset)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a readable PyTorch checkpoint" in err
