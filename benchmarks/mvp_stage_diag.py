"""Diagnostic of MVP's two-stage schedule (issue 16.5): what the unimodal stage's weights do
to the cross-modal stage that follows (benchmarks/RESULTS.md, "Why MVP's two stages fail here").

On the dataset of the trainer ablation (``benchmarks/ablation_trainer.py``'s mvp2 variant at
w = 1, 400 steps, 30 % unimodal), three steps, each a command:

  stage1  train mvp2's config (or its unimodal stage with other objectives, ``--uni``) and stop
          at the end of the unimodal stage; ``--mlm-fusion`` sends the unimodal MLM through the
          fusion encoder's self-attention (cross-attention skipped) instead of the text encoder
          alone (a monkeypatch, for this diagnostic only)
  stage2  the cross-modal stage as its own run (280 steps, own warm-up and cosine, fresh AdamW)
          from a stage1 run's weights, with the parameters under ``--reset`` prefixes (or all
          but ``--keep``) back at a fresh initialisation; stops after ``--steps`` and prints
          the logged ITC/TTC/RCA/WCA/MLM losses
  cls     the text [CLS] before the final LayerNorm on 200 validation captions: mean norm,
          and the share of its energy that varies between captions

usage: python benchmarks/mvp_stage_diag.py stage1 --data DS --out OUT --name mlmonly --uni '{"mlm": 1.0}'
       python benchmarks/mvp_stage_diag.py stage2 --data DS --out OUT --start mlmonly --name st2 [--reset text.]
       python benchmarks/mvp_stage_diag.py cls --data DS OUT/s1_mlmonly OUT/st2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablation_trainer as A  # noqa: E402

SEED, STEPS, SHARE = 0, 400, 0.3


def _settings(over: dict[str, Any], steps: int) -> Any:
    """The trainer ablation's run config (seed 0, CPU), without periodic checkpoints."""
    from pretrain.config import merge

    return A.run_config(merge(over, {"train": {"ckpt_every": 10_000}}), SEED, steps, "cpu")


def _mlm_through_fusion() -> None:
    from pretrain.model import RC3Model

    def masked_lm(self, ids, labels, context, context_mask, extra=None):  # noqa: ANN001, ANN202
        tokens, mask = self.text(ids, extra)
        hidden = self.fusion(tokens, mask, context, context_mask)[:, : labels.shape[1]]
        picked = labels != -100
        return self.mlm_transform(hidden[picked]) @ self.text.tok.weight.t() + self.mlm_bias, labels[picked], tokens

    RC3Model._masked_lm = masked_lm


def stage1(args: argparse.Namespace) -> dict[str, Any]:
    from pretrain.train import run_training

    over = A.variant_config("mvp2", 1.0, A.data_facts(args.data), STEPS, SHARE)
    if args.uni:
        over["schedule"][0]["loss"] = json.loads(args.uni)
    if args.mlm_fusion:
        _mlm_through_fusion()
    run_training(_settings(over, STEPS), str(args.data), str(args.out / f"s1_{args.name}"),
                 stop_at=over["schedule"][0]["steps"], quiet=True)
    return {"stage1": args.name}


def _init(args: argparse.Namespace, start: Path) -> Path:
    """A state dict: the stage1 run's weights, the chosen prefixes back at a fresh init."""
    import torch

    from pretrain.checkpoint import resolve_checkpoint, saved_config, torch_load
    from pretrain.config import load_config
    from pretrain.train import setup

    fresh = setup(load_config(None, saved_config(start)), str(args.data), tempfile.mkdtemp()).model.state_dict()
    trained = torch_load(resolve_checkpoint(start))["model"]
    resets, keeps = [p for p in args.reset.split(",") if p], [p for p in args.keep.split(",") if p]

    def is_fresh(key: str) -> bool:
        return any(key.startswith(p) for p in resets) or bool(keeps) and not any(key.startswith(p) for p in keeps)

    path = Path(tempfile.mkdtemp()) / "init.pt"
    torch.save({k: fresh[k] if is_fresh(k) else trained[k] for k in fresh}, path)
    return path


def stage2(args: argparse.Namespace) -> dict[str, Any]:
    from pretrain.train import run_training

    mvp2 = A.variant_config("mvp2", 1.0, A.data_facts(args.data), STEPS, SHARE)
    cross = STEPS - mvp2["schedule"][0]["steps"]
    over = {"model": mvp2["model"], "loss": dict(mvp2["schedule"][1]["loss"]),
            "init": str(_init(args, args.out / f"s1_{args.start}"))}
    out = args.out / args.name
    run_training(_settings(over, cross), str(args.data), str(out), stop_at=args.steps, quiet=True)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"stage2": args.name, **{str(d["step"]): {k: round(d[k], 2) for k in ("itc", "ttc", "rca", "wca", "mlm") if k in d}
                                    for d in logged if "step" in d}}


def cls(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from pretrain.evaluate import load_model
    from pretrain.shards import open_dataset, read_unit

    texts: list[str] = []
    for unit in open_dataset(str(args.data), full_validation=False).pairs:
        texts += [t["text"] for row in read_unit(unit, ["split", "texts"], "validation") for t in row["texts"]
                  if t["kind"] == "caption"]
        if len(texts) >= 200:
            break
    rows, got = [], {}
    for run in args.runs:
        model, tok = load_model(run, torch.device("cpu"))
        model.text.ln.register_forward_pre_hook(lambda _m, a: got.__setitem__("x", a[0]))
        ids = tok.encode_batch(texts[:200], model.cfg.max_text_len)
        width = max(map(len, ids))
        with torch.no_grad():
            model.text(torch.tensor([i + [tok.pad_id] * (width - len(i)) for i in ids]))
        first = got["x"][:, 0]
        rows.append({"run": str(run), "cls_norm": round(first.norm(dim=-1).mean().item(), 3),
                     "between_caption_share": round((first.var(0).sum() / first.pow(2).sum(-1).mean()).item(), 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("stage1", "stage2", "cls"))
    ap.add_argument("--data", type=Path, required=True, help="the trainer ablation's dataset")
    ap.add_argument("--out", type=Path, default=Path("/tmp/mvp_diag"))
    ap.add_argument("--name", default="run")
    ap.add_argument("--uni", help="stage1: the unimodal stage's loss weights as JSON (default: mvp2's)")
    ap.add_argument("--mlm-fusion", action="store_true", help="stage1: unimodal MLM through the fusion encoder")
    ap.add_argument("--start", help="stage2: the stage1 run (its --name)")
    ap.add_argument("--reset", default="", help="stage2: parameter prefixes back at a fresh init (e.g. text.,vision.)")
    ap.add_argument("--keep", default="", help="stage2: keep only these prefixes from stage1")
    ap.add_argument("--steps", type=int, default=80, help="stage2: stop after this many steps")
    ap.add_argument("runs", nargs="*", type=Path, help="cls: run directories or checkpoints")
    args = ap.parse_intermixed_args(argv)
    result = {"stage1": stage1, "stage2": stage2, "cls": cls}[args.command](args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
