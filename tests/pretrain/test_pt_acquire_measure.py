"""The MLA demo benchmark's own machinery (benchmarks/mla_demo.py): the English-only copy of
a dataset, the English bit-identity check, and the target verdicts."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from pretrain_helpers import _text, micro_config, write_dataset

from pretrain.acquire import AcquireConfig, run_acquisition
from pretrain.checkpoint import load_checkpoint, save_checkpoint, step_checkpoints
from pretrain.shards import open_dataset
from pretrain.train import run_training
from schemas.dataset import load_manifest, shard_paths

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from mla_demo import _kept_texts, english_identical, language_copy, targets  # noqa: E402


def test_kept_texts_renumber_references() -> None:
    texts = [_text("foto rot", "weak", "de"), _text("a red square"), _text("red photo", "weak", anchor=1),
             _text("a rot square", "codeswitch", derived_from=1), _text("red", "translation", derived_from=0)]
    kept = _kept_texts(texts, {"en"})
    assert [t["text"] for t in kept] == ["a red square", "red photo", "red"]
    assert kept[1]["anchor"] == 0  # was 1: the caption moved up one
    assert kept[2]["derived_from"] is None  # its source (the German weak text) is gone


def test_language_copy_is_english_only_in_the_same_order(tmp_path: Path) -> None:
    full = write_dataset(tmp_path / "full")
    copy = language_copy(full, tmp_path / "en", {"en"})
    open_dataset(str(copy))  # full validation: schema, sizes, digests, splits
    manifest = load_manifest(str(copy))
    assert manifest["files"]["parallel"] == [] and set(manifest["languages"]) == {"en"}
    for a, b in zip(shard_paths(str(full), "pairs"), shard_paths(str(copy), "pairs"), strict=True):
        old, new = pq.ParquetFile(a), pq.ParquetFile(b)
        assert [old.metadata.row_group(i).num_rows for i in range(old.num_row_groups)] == \
               [new.metadata.row_group(i).num_rows for i in range(new.num_row_groups)]
        rows = new.read().to_pylist()
        assert [r["id"] for r in rows] == old.read(columns=["id"]).column("id").to_pylist()
        assert {(t["lang"], t["kind"]) for r in rows for t in r["texts"]} == {("en", "caption")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("measure")
    full = write_dataset(tmp / "full")
    base = tmp / "base"
    run_training(micro_config(train={"steps": 4}), str(language_copy(full, tmp / "en", {"en"})), str(base), quiet=True)
    cfg = AcquireConfig(langs=["de"], nlt_steps=2, le_steps=1, batch_size=4, adapter_layers=1, vocab_size=40,
                        max_trainable_share=1.0)
    run_acquisition(str(base), str(full), str(tmp / "acq"), cfg, quiet=True)
    return full, base, tmp / "acq"


def test_english_identical_holds_and_catches_a_change(runs: tuple[Path, Path, Path]) -> None:
    full, base, acq = runs
    assert english_identical(base, acq, full) == {"weights": True, "text_embeddings": True, "image_embeddings": True,
                                                  "tokenizer": True}
    path = step_checkpoints(acq)[-1][1]
    state = load_checkpoint(path)
    name = next(k for k in state["model"] if k.startswith("text."))
    state["model"][name] = state["model"][name] + 1e-6
    save_checkpoint(path, state)
    with pytest.raises(AssertionError, match="English not served as by the base"):
        english_identical(base, acq, full)


def _run(run: str, seed: int, r_mean: dict[str, float], steps: int = 100, share: float = 0.05) -> dict:
    out = {"run": run, "seed": seed, "r_mean": r_mean, "steps": steps, "trainable_share": share}
    if run not in ("base", "scratch"):
        out.update(langs=["de"], english={"weights": True})
    return out


def test_targets_report_met_and_missed() -> None:
    results = [_run("base", 0, {"en": 80.0, "de": 20.0}), _run("scratch", 0, {"en": 81.0, "de": 80.0}),
               _run("both", 0, {"en": 80.0, "de": 76.0}), _run("le", 0, {"en": 80.0, "de": 74.0}, steps=150, share=0.2)]
    verdicts = targets(results, 400)
    assert "both (de), de: -4.00 mR against from scratch (met: within 5)" in verdicts
    assert "le (de), de: -6.00 mR against from scratch (MISSED: within 5)" in verdicts
    both = next(v for v in verdicts if v.startswith("both (de): "))
    assert "bit-identical (met)" in both and "5.0% of the model (met" in both and "25% of the base's 400 (met" in both
    le = next(v for v in verdicts if v.startswith("le (de): "))
    assert "20.0% of the model (MISSED" in le and "38% of the base's 400 (MISSED" in le
    results[3]["r_mean"]["en"] = 79.0
    assert "English CHANGED (MISSED)" in next(v for v in targets(results, 400) if v.startswith("le (de): "))
