"""Checkpoints load with weights_only=True and an allow-list; anything else is refused clearly."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from translate.checkpoint import ModelDirError, UnsafeCheckpointError, model_info, safe_load


def _malicious(path):
    # A pickle that would call os.system on load if it were unpickled unsafely.
    torch.save({"model": {}, "args": argparse.Namespace(task="translation"), "hook": os.system}, path)


def test_disallowed_global_is_refused_with_its_name(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    _malicious(path)
    # an environment switch must not turn the safety off: weights_only is passed explicitly
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_load(path)
    message = str(info.value)
    assert "system" in message and "allow-list" in message and str(path) in message
    assert "trusted_globals" in message


def test_namespace_is_allowed_and_trusted_globals_extend_the_list(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "args": argparse.Namespace(task="translation",
                source_lang="en", target_lang="de")}, path)
    state = safe_load(path)
    assert model_info(state).pairs == (("en", "de"),)
    odd = tmp_path / "odd.pt"
    torch.save({"model": {}, "extra": argparse.ArgumentParser}, odd)
    with pytest.raises(UnsafeCheckpointError):
        safe_load(odd)
    assert safe_load(odd, trusted=["argparse.ArgumentParser"])["extra"] is argparse.ArgumentParser


def test_missing_or_broken_files_say_so(tmp_path):
    with pytest.raises(ModelDirError, match="no such checkpoint"):
        safe_load(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelDirError, match="not a readable PyTorch checkpoint"):
        safe_load(tmp_path / "junk.pt")


def test_the_trained_checkpoint_needs_nothing_beyond_the_allow_list(tiny_mt):
    info = model_info(safe_load(tiny_mt.checkpoint))
    assert info.multilingual and info.encoder_langtok == "src" and info.decoder_langtok
    assert sorted(info.pairs) == [("en", "de"), ("en", "es"), ("en", "fr")]
