"""Resume exactness: 10 steps straight == 5 steps, stop, resume, 5 steps (bit for bit)."""

from __future__ import annotations

import pytest
import torch
from pretrain_helpers import micro_config, write_dataset

from pretrain.checkpoint import load_checkpoint, step_checkpoints
from pretrain.shards import dataset_texts, open_dataset
from pretrain.tokenizer import train_tokenizer
from pretrain.train import run_training

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("resume") / "ds", n=40)
    tok_path = root.parent / "tok.model"
    train_tokenizer(dataset_texts(open_dataset(str(root))), micro_config().tokenizer, tok_path)
    return root, tok_path


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly(tmp_path, dataset, workers):
    root, tok_path = dataset
    # ITM's sampled negatives and the masks draw random numbers: both must be restored too
    cfg = micro_config(train={"steps": 10, "ckpt_every": 3, "keep_checkpoints": 0},
                       data={"num_workers": workers, "batch_size": 6, "parallel_batch_size": 4},
                       tokenizer={"model": str(tok_path)})
    straight = run_training(cfg, str(root), str(tmp_path / "a"), quiet=True)
    first = run_training(cfg, str(root), str(tmp_path / "b"), stop_at=5, quiet=True)
    assert first["step"] == 5 and [s for s, _ in step_checkpoints(tmp_path / "b")] == [3, 5]
    with pytest.raises(FileExistsError, match="--resume"):
        run_training(cfg, str(root), str(tmp_path / "b"), quiet=True)
    resumed = run_training(cfg, str(root), str(tmp_path / "b"), resume=True, quiet=True)
    assert resumed["step"] == straight["step"] == 10
    a, b = load_checkpoint(straight["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert a["data"] == b["data"]
    assert a["schedule"] == b["schedule"] == {"step": 10}
    assert torch.equal(a["rng"][0]["cpu"], b["rng"][0]["cpu"])
