"""Resume: the run of the checkpoint continues (its config, step target, schedule, metrics),
bit for bit on CPU (10 steps straight == 5 steps, stop, resume, 5 steps), with one thread
or several."""

from __future__ import annotations

import json

import pytest
import torch
from pretrain_helpers import MICRO, micro_config, write_dataset, write_toml

from pretrain.checkpoint import ResumeError, load_checkpoint, step_checkpoints
from pretrain.cli import main
from pretrain.progress import trim_metrics
from pretrain.shards import dataset_texts, open_dataset
from pretrain.tokenizer import train_tokenizer
from pretrain.train import lr_at, run_training

torch.set_num_threads(1)

# the bit-for-bit claim is made for CPU (CUDA kernels are not deterministic)
CPU = {"device": "cpu"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("resume") / "ds", n=40)
    tok_path = root.parent / "tok.model"
    train_tokenizer(dataset_texts(open_dataset(str(root))), micro_config().tokenizer, tok_path)
    return root, tok_path


def _same_run(a_path: str, b_path: str) -> None:
    a, b = load_checkpoint(a_path), load_checkpoint(b_path)
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert a["data"] == b["data"] and a["schedule"] == b["schedule"]
    assert torch.equal(a["rng"][0]["cpu"], b["rng"][0]["cpu"])


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly(tmp_path, dataset, workers):
    root, tok_path = dataset
    # ITM's sampled negatives and the masks draw random numbers: both must be restored too
    cfg = micro_config(train={"steps": 10, "ckpt_every": 3, "keep_checkpoints": 0, **CPU},
                       data={"num_workers": workers, "batch_size": 6, "parallel_batch_size": 4},
                       tokenizer={"model": str(tok_path)})
    straight = run_training(cfg, str(root), str(tmp_path / "a"), quiet=True)
    first = run_training(cfg, str(root), str(tmp_path / "b"), stop_at=5, quiet=True)
    assert first["step"] == 5 and [s for s, _ in step_checkpoints(tmp_path / "b")] == [3, 5]
    with pytest.raises(FileExistsError, match="--resume"):
        run_training(cfg, str(root), str(tmp_path / "b"), quiet=True)
    resumed = run_training(cfg, str(root), str(tmp_path / "b"), resume=True, quiet=True)
    assert resumed["step"] == straight["step"] == 10
    _same_run(straight["checkpoint"], resumed["checkpoint"])
    assert load_checkpoint(resumed["checkpoint"])["schedule"] == {"step": 10}


def test_resume_is_exact_with_several_threads(tmp_path, dataset):
    """With two torch threads, the backward of ITM's negative indexing summed in thread order
    (two identical runs differed by 1e-5); the trainer's deterministic CPU kernels fix that."""
    root, tok_path = dataset
    # big enough that torch splits the indexing backward over threads (> 32768 elements)
    cfg = micro_config(train={"steps": 8, "ckpt_every": 4, "threads": 2, **CPU},
                       model={"image_size": 64, "vision_width": 64, "text_width": 64},
                       loss={"itm_negatives": "hardest"},
                       data={"batch_size": 16, "parallel_batch_size": 4}, tokenizer={"model": str(tok_path)})
    try:
        straight = run_training(cfg, str(root), str(tmp_path / "a"), quiet=True)
        again = run_training(cfg, str(root), str(tmp_path / "b"), quiet=True)
        run_training(cfg, str(root), str(tmp_path / "c"), stop_at=4, quiet=True)
        resumed = run_training(cfg, str(root), str(tmp_path / "c"), resume=True, quiet=True)
    finally:
        torch.set_num_threads(1)
    assert not torch.are_deterministic_algorithms_enabled()  # restored for the caller
    _same_run(straight["checkpoint"], again["checkpoint"])
    _same_run(straight["checkpoint"], resumed["checkpoint"])


def test_resume_refuses_another_run(tmp_path, dataset):
    root, tok_path = dataset
    base = {"train": {"steps": 4, "ckpt_every": 2, **CPU}, "tokenizer": {"model": str(tok_path)}}
    run_training(micro_config(**base), str(root), str(tmp_path / "r"), stop_at=2, quiet=True)
    changed = micro_config(train={**base["train"], "lr": 0.1}, tokenizer=base["tokenizer"])
    with pytest.raises(ResumeError, match=r"train.lr = 0.1 differs from the run's 0.001"):
        run_training(changed, str(root), str(tmp_path / "r"), resume=True, quiet=True)
    shorter = micro_config(train={**base["train"], "steps": 1}, tokenizer=base["tokenizer"])
    with pytest.raises(ResumeError, match="train.steps = 1 is below the checkpoint's step 2"):
        run_training(shorter, str(root), str(tmp_path / "r"), resume=True, quiet=True)


def test_resume_says_when_it_is_not_bit_for_bit(tmp_path, dataset, capsys):
    root, tok_path = dataset
    base = {"train": {"steps": 3, "ckpt_every": 2, **CPU}, "tokenizer": {"model": str(tok_path)}}
    run_training(micro_config(**base), str(root), str(tmp_path / "r"), stop_at=2, quiet=True)
    capsys.readouterr()
    try:  # threads may change on resume; the rounding then differs, and the run says so
        out = run_training(micro_config(train={**base["train"], "threads": 2}, tokenizer=base["tokenizer"]),
                           str(root), str(tmp_path / "r"), resume=True)
    finally:
        torch.set_num_threads(1)
    err = capsys.readouterr().err
    assert out["step"] == 3 and "resumed at step 2 of 3" in err
    assert "resume: the run continues from step 2, not bit for bit (threads 1 -> 2)" in err


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _cli(root, run, *extra: str) -> int:
    return main(["pretrain", "--data", str(root), "--out", str(run), *extra])


def test_cli_resume_continues_the_original_run(tmp_path, dataset, capsys):
    root, tok_path = dataset
    cfg = write_toml(tmp_path / "micro.toml", {
        "model": MICRO, "data": {"batch_size": 6, "parallel_batch_size": 4, "num_workers": 0, "null_relevance": 0.5},
        "train": {"log_every": 1, "ckpt_every": 2, "keep_checkpoints": 0, "lr": 1e-3, **CPU},
        "tokenizer": {"model": str(tok_path)}})
    run = tmp_path / "run"
    assert _cli(root, run, "--config", str(cfg), "--steps", "6") == 0
    config_json, original = (run / "config.json").read_bytes(), _metrics(run)
    assert [m["step"] for m in original] == [1, 2, 3, 4, 5, 6]
    # nothing left to do: the run's target is 6 (not the preset's 1,000), config.json is kept
    assert _cli(root, run, "--resume") == 0
    assert [s for s, _ in step_checkpoints(run)] == [2, 4, 6] and (run / "config.json").read_bytes() == config_json
    # a crash after logging steps 5 and 6 but before checkpoint 6: resume from 4
    step6 = load_checkpoint(run / "checkpoints" / "step-00000006.pt")
    (run / "checkpoints" / "step-00000006.pt").unlink()
    assert _cli(root, run, "--resume") == 0
    again = _metrics(run)
    assert [m["step"] for m in again] == [1, 2, 3, 4, 5, 6]  # no duplicates, in order
    for old, new in zip(original, again, strict=True):  # the same schedule and the same losses
        assert {k: old[k] for k in ("lr", "loss", "itc", "mlm")} == {k: new[k] for k in ("lr", "loss", "itc", "mlm")}
    resumed = load_checkpoint(run / "checkpoints" / "step-00000006.pt")
    assert all(torch.equal(v, resumed["model"][k]) for k, v in step6["model"].items())
    assert (run / "config.json").read_bytes() == config_json
    # --steps on resume extends the target; warmup is kept and the cosine becomes a 10-step one
    capsys.readouterr()
    assert _cli(root, run, "--resume", "--steps", "10") == 0
    assert "train.steps 6 -> 10" in capsys.readouterr().err
    extended = _metrics(run)
    assert [m["step"] for m in extended] == list(range(1, 11))
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["steps"] == 10 and saved["train"]["warmup_steps"] == 0  # a fresh --steps 10 would give 1
    ten = micro_config(train={"steps": 10, "warmup_steps": 0, "lr": 1e-3})
    assert [m["lr"] for m in extended[6:]] == pytest.approx([lr_at(ten.train, s) for s in range(6, 10)], rel=1e-12)
    # any other change is refused, naming the setting
    with pytest.raises(ValueError, match="train.lr = 0.5 differs"):
        _cli(root, run, "--resume", "--set", "train.lr=0.5")
    with pytest.raises(ValueError, match="preset = 'base' differs"):
        _cli(root, run, "--resume", "--preset", "base")


def test_trim_metrics_keeps_steps_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (2, 4, 6, 8)) + '{"step": 10, "lo')
    assert trim_metrics(path, 4) == 3
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [2, 4]
    assert trim_metrics(path, 4) == 0 and trim_metrics(tmp_path / "none.jsonl", 0) == 0
