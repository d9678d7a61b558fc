"""The demo's pre-training: the ``tiny`` model for a few CPU minutes, then held-out retrieval.

``run_demo_training`` is what ``m3curate demo`` calls after its build. The demo dataset has
English captions, weak de/fr/es alt-texts and en<->de/fr/es parallel text; until the MT stage
adds translations, de/fr/es retrieval is learned through TTC (parallel text) and the weak
pairs, which is exactly the cross-lingual transfer RC3 and CCLM rely on.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch

from pretrain.config import load_config, merge
from pretrain.evaluate import evaluate, format_table

# Chosen on the demo corpus (benchmarks/RESULTS.md): a peak LR that converges in a
# few hundred steps, weak texts used at a neutral prior until the relevance stage scores them,
# one compute thread plus one loader process (robust on a busy two-core machine).
DEMO_SETTINGS: dict[str, Any] = {
    "model": {"preset": "tiny"},
    "data": {"batch_size": 32, "parallel_batch_size": 32, "num_workers": 1, "null_relevance": 0.5},
    "train": {"lr": 5e-4, "log_every": 25, "ckpt_every": 10_000, "keep_checkpoints": 1, "threads": 1},
}


def chance_r_mean(images: int) -> float:
    """Mean recall of a random ranking with one positive per query: mean of k/N for k = 1, 5, 10."""
    return 100.0 * sum(min(k, images) / images for k in (1, 5, 10)) / 3


def _calibrate_steps(minutes: float) -> int:
    """Steps that fit ``minutes``, from the measured speed of this machine (~0.25 s/step on
    two idle cores); clamped so the schedule stays sensible on very slow or fast machines."""
    from pretrain.config import PRESETS
    from pretrain.losses import RC3Loss
    from pretrain.model import build_model

    cfg = load_config(None, DEMO_SETTINGS)
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    model = build_model(PRESETS["tiny"], cfg.loss, 2000, 0)
    loss = RC3Loss(cfg.loss)
    b, size = cfg.data.batch_size, cfg.model.image_size
    batch = {"images": torch.randint(0, 255, (b, 3, size, size), dtype=torch.uint8),
             "text_ids": torch.randint(4, 2000, (b, 24)), "mlm_ids": torch.randint(4, 2000, (b, 24)),
             "mlm_labels": torch.randint(4, 2000, (b, 24)), "relevance": torch.ones(b),
             "is_weak": torch.zeros(b, dtype=torch.bool), "has_anchor": torch.zeros(b, dtype=torch.bool),
             "anchor_ids": torch.randint(4, 2000, (b, 4)), "src_ids": torch.randint(4, 2000, (b, 24)),
             "tgt_ids": torch.randint(4, 2000, (b, 24))}
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        loss(**model(batch))["loss"].backward()
        times.append(time.perf_counter() - t0)
    per_step = min(times) * 1.15  # the optimiser step and the loader's share of the CPU
    return int(max(100, min(5000, minutes * 60 / per_step)))


RUN_FILES = ("checkpoints", "metrics.jsonl", "tokenizer.model", "config.json", "demo_eval.txt")


def _clear_previous(out: Path) -> None:
    """A re-run of the demo replaces its earlier run (only the files a run writes)."""
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def run_demo_training(data_dir: str, out_dir: str, minutes: float | None = 3.0, steps: int | None = None,
                      heldout: str | None = None, overrides: dict[str, Any] | None = None, quiet: bool = False) -> dict[str, Any]:
    """Train ``tiny`` on ``data_dir`` into ``out_dir`` (``steps``, or as many as fit ``minutes``),
    then evaluate on ``heldout`` (a benchmark-style folder) or the dataset's test split.

    Returns {"train": run summary, "eval": evaluate() result, "chance_r_mean", "table"}.
    An earlier demo run in ``out_dir`` is replaced.
    """
    from pretrain.train import run_training

    _clear_previous(Path(out_dir))
    if steps is None:
        steps = _calibrate_steps(minutes or 3.0)
    settings = merge(DEMO_SETTINGS, {"train": {"steps": steps, "warmup_steps": max(1, steps // 10)}})
    cfg = load_config(None, merge(settings, overrides or {}))
    if not quiet:
        print(f"demo pretrain: tiny model, {steps} steps of batch {cfg.data.batch_size} on {data_dir}")
    trained = run_training(cfg, data_dir, out_dir, quiet=quiet)
    target = heldout or data_dir
    result = evaluate(out_dir, target, split="test")
    images = min(m["images"] for m in result["languages"].values())
    table = format_table(result)
    if not quiet:
        print(table)
        print(f"chance level: r_mean {chance_r_mean(images):.2f} for {images} images")
    summary = {"train": trained, "eval": result, "chance_r_mean": round(chance_r_mean(images), 2), "table": table}
    (Path(out_dir) / "demo_eval.txt").write_text(table + "\n", encoding="utf-8")
    return summary
