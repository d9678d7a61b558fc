"""``m3curate pretrain acquire``: the parser and its handler (torch is imported only when run)."""

from __future__ import annotations

import argparse
from typing import Any

ACQUIRE_EXAMPLE = """example:
  m3curate pretrain acquire --checkpoint runs/en --data out/ds --langs it --out runs/en+it
  m3curate pretrain acquire --checkpoint runs/en --data out/ds --langs de,fr,es --out runs/en+3 \\
      --nlt-steps 400 --le-steps 200
  m3curate pretrain acquire --out runs/en+it --checkpoint runs/en --data out/ds --langs it --resume
  m3curate evaluate --checkpoint runs/en+it --data out/ds --split test

The base model stays frozen, bit for bit. Each new language gets a SentencePiece model
trained on its texts in --data, token embeddings and small adapters in front of the frozen
text encoder, trained first on parallel text against the base's English embeddings (NLT),
then contrastively on its captions against the frozen image encoder (LE). The checkpoint in
--out serves the base's languages exactly as before and the new ones through their encoders.
--resume continues the run in --out with its own settings (only --threads, --device,
--ckpt-every and --le-steps, an extension of the last stage, may change)."""

# flag -> AcquireConfig field, for the settings the command line exposes
FLAGS = {"nlt_steps": int, "le_steps": int, "batch_size": int, "lr": float, "vocab_size": int, "adapter_layers": int,
         "adapter_dim": int, "embed_rank": int, "pivot": str, "seed": int, "threads": int, "device": str, "ckpt_every": int,
         "max_trainable_share": float}


def add_parser(sub: Any, fmt: type) -> None:
    a = sub.add_parser("acquire", help="add languages to a trained model, backbone frozen (MLA)", epilog=ACQUIRE_EXAMPLE,
                       formatter_class=fmt, description="MLA language acquisition: a light encoder per new language "
                       "on the frozen model, trained by Native Language Transfer then Language Exposure.")
    a.add_argument("--checkpoint", required=True, help="the trained base: a checkpoint file or run directory")
    a.add_argument("--data", required=True, help="curated dataset with the new languages' parallel rows and captions")
    a.add_argument("--langs", required=True, help="comma-separated languages to acquire, e.g. it or de,fr")
    a.add_argument("--out", required=True, help="run directory for the acquisition's checkpoints")
    a.add_argument("--resume", action="store_true", help="continue the acquisition in --out from its latest checkpoint")
    for name, kind in FLAGS.items():
        a.add_argument("--" + name.replace("_", "-"), type=kind, help=f"AcquireConfig.{name} (see pretrain/README.md)")
    a.set_defaults(func=run)


def run(args: argparse.Namespace, rest: list[str]) -> int:
    from pretrain.acquire import AcquireConfig, run_acquisition, saved_config

    langs = [x.strip() for x in args.langs.split(",") if x.strip()]
    given = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    saved = saved_config(args.out) if args.resume else None
    cfg = AcquireConfig(**{**(saved or {}), "langs": langs, **given})
    result = run_acquisition(args.checkpoint, args.data, args.out, cfg, resume=args.resume)
    print(f"acquire: step {result['step']}, {result['trainable_params']:,} trainable parameters "
          f"({result['trainable_share']:.1%}), checkpoint {result['checkpoint']}")
    return 0
