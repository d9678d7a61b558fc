"""The trainer's loader checks shard sizes against the manifest before it starts, and the
sha256 digests when asked (``--verify``), naming the bad shard (issue 13.5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pretrain_helpers import MICRO, write_dataset

from pretrain.cli import main
from pretrain.config import load_config
from pretrain.shards import open_dataset, verify_dataset
from pretrain.train import run_training
from schemas.dataset import DatasetError, file_digest

torch.set_num_threads(1)


def with_digests(root: Path) -> Path:
    """Record each shard's size and sha256 in the manifest, as a build does."""
    import pyarrow.fs as pafs

    manifest = json.loads((root / "manifest.json").read_text())
    for entries in manifest["files"].values():
        for entry in entries:
            entry["size"], entry["sha256"] = file_digest(pafs.LocalFileSystem(), str(root / entry["path"]))
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return with_digests(write_dataset(tmp_path / "ds", n=16, n_test=4))


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01  # inside the first column chunk: the footer (row groups, schema) stays readable
    path.write_bytes(bytes(data))


def test_truncated_shard_stops_training_before_any_step(tmp_path: Path, dataset: Path) -> None:
    shard = dataset / "pairs" / "part-1.parquet"
    shard.write_bytes(shard.read_bytes()[:-200])
    cfg = load_config(None, {"model": MICRO, "train": {"steps": 1, "warmup_steps": 0}})
    with pytest.raises(DatasetError, match=r"pairs/part-1\.parquet: truncated: \d+ bytes, the manifest says \d+"):
        run_training(cfg, str(dataset), str(tmp_path / "run"), quiet=True)
    assert not (tmp_path / "run" / "checkpoints").exists()
    for full in (True, False):  # the tokenizer and evaluation open it without full validation
        with pytest.raises(DatasetError, match="truncated"):
            open_dataset(str(dataset), full_validation=full)


def test_missing_shard_is_named(dataset: Path) -> None:
    (dataset / "parallel" / "part-0.parquet").unlink()
    with pytest.raises(DatasetError, match=r"parallel/part-0\.parquet: missing"):
        open_dataset(str(dataset), full_validation=False)


def test_altered_shard_is_found_only_when_verifying(dataset: Path) -> None:
    flip_a_byte(dataset / "pairs" / "part-0.parquet")
    open_dataset(str(dataset), full_validation=False)  # same size: sizes cannot tell
    with pytest.raises(DatasetError, match=r"pairs/part-0\.parquet: altered: sha256"):
        open_dataset(str(dataset), full_validation=False, verify=True)
    with pytest.raises(DatasetError, match=r"pairs/part-0\.parquet: altered: sha256"):
        verify_dataset(str(dataset))


def test_pretrain_and_evaluate_verify_flags(tmp_path: Path, dataset: Path) -> None:
    flip_a_byte(dataset / "pairs" / "part-1.parquet")
    args = ["--data", str(dataset), "--out", str(tmp_path / "run"), "--steps", "1"]
    with pytest.raises(DatasetError, match=r"pairs/part-1\.parquet: altered: sha256"):
        main(["pretrain", *args, "--verify"])
    # the data is checked before the checkpoint is read
    with pytest.raises(DatasetError, match=r"pairs/part-1\.parquet: altered: sha256"):
        main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(dataset), "--verify"])
    with pytest.raises(FileNotFoundError):
        main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(dataset)])


def test_old_dataset_without_digests_still_opens_and_names_a_cut_shard(tmp_path: Path) -> None:
    old = write_dataset(tmp_path / "old", n=16, n_test=4)  # its manifest has no size/sha256
    assert open_dataset(str(old), full_validation=False, verify=True).pairs
    shard = old / "pairs" / "part-0.parquet"
    shard.write_bytes(shard.read_bytes()[:-200])
    with pytest.raises(DatasetError, match=r"pairs/part-0\.parquet"):
        open_dataset(str(old), full_validation=False)


def test_a_dataset_whose_splits_share_an_image_is_refused_naming_the_rows(tmp_path):
    """Issue 13, point 2: train row 0 carries test row 48's picture (n=48, n_test=8)."""
    from pretrain_helpers import jpeg, write_dataset

    from pretrain.shards import open_dataset
    from schemas.dataset import validate_dataset
    from schemas.splits import SplitLeakError

    root = write_dataset(tmp_path / "ds", n=48, n_test=8, bad_rows={0: jpeg("red", "left", i=48)})
    for check in (lambda: open_dataset(str(root)), lambda: open_dataset(str(root), full_validation=False),
                  lambda: validate_dataset(str(root))):
        with pytest.raises(SplitLeakError, match=r"1 image\(s\) .*test \['r0048'\], train \['r0000'\]"):
            check()
