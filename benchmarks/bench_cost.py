"""CPU cost of a build per pair, and what a million pairs costs on Dataflow at that rate.

A local build (FnApiRunner, one worker) of generated JSONL pairs naming real JPEG files
(every tenth row an exact duplicate), with language ID and code-switching, as a Dataflow
CPU worker would run it; CPU seconds are the process's and its children's (user + sys),
so the machine's other load does not inflate them the way it inflates wall time.
Corpus generation and model training are not timed. MT is not in it: on CPU it is another
order of magnitude (RESULTS.md, MT engines), and on Dataflow it runs on GPU workers; the
MT figure is an estimate from the model's shape (``mt_estimate``).

    python benchmarks/bench_cost.py --pairs 2000 --image-size 512 --max-side 384
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from pathlib import Path

from bench_spine import cpu_seconds, make_corpus

from curation.config import load_config
from curation.demo.run import add_codeswitch
from curation.demo.synth import LANGUAGES
from curation.pipeline import run_build

# M2M-100 1.2B's shape (d_model, encoder and decoder layers, FFN, vocabulary).
M2M100_1_2B = {"d": 1024, "layers": 24, "ffn": 8192, "vocab": 128_112}


def write_config(root: Path, corpus: Path, max_side: int) -> Path:
    from curation.demo.writers import write_lid_training_data
    from curation.lid.tools import train_lid

    (root / "models").mkdir(parents=True, exist_ok=True)
    write_lid_training_data(str(root / "models" / "lid.tsv"), 4000, 101)
    train_lid(str(root / "models" / "lid.tsv"), str(root / "models" / "lid.bin"), seed=0)
    toml = root / "build.toml"
    toml.write_text(
        f'[[sources]]\nname = "bench"\nformat = "jsonl"\npaths = ["{corpus}"]\nlang = "en"\n\n'
        f"[image]\nmax_side = {max_side}\nmin_side = 16\n\n[output]\nrows_per_shard = 5000\n\n"
        f'[lid]\nmodel = "models/lid.bin"\nthreshold = 0.5\nlow_confidence = "und"\n'
        + add_codeswitch(root, LANGUAGES), encoding="utf-8")
    return toml


def mt_estimate(src_tokens: int = 15, tgt_tokens: int = 18, beam: int = 4, utilisation: float = 0.10,
                tflops: float = 121.0) -> dict[str, float]:
    """Translations per second on one GPU from M2M-100 1.2B's shape: 2 FLOPs a weight per
    token (encoder per source token; decoder and output projection per target token and
    beam), at ``utilisation`` of the GPU's dense fp16 ``tflops`` (L4: 121). An estimate:
    beam search is partly memory-bound; the utilisation is assumed, not measured."""
    s = M2M100_1_2B
    encoder = s["layers"] * (4 * s["d"] ** 2 + 2 * s["d"] * s["ffn"])
    decoder = s["layers"] * (8 * s["d"] ** 2 + 2 * s["d"] * s["ffn"]) + s["d"] * s["vocab"]
    flops = 2 * (src_tokens * encoder + tgt_tokens * beam * decoder)
    return {"gflops_per_translation": flops / 1e9, "translations_per_s": tflops * 1e12 * utilisation / flops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=512, help="generated image side (px)")
    parser.add_argument("--max-side", type=int, default=384, help="image.max_side of the build")
    parser.add_argument("--workdir", default="/tmp/m3curate-bench-cost")
    args = parser.parse_args()
    root = Path(args.workdir)
    shutil.rmtree(root, ignore_errors=True)
    corpus = make_corpus(root / "corpus", args.pairs, 0, args.image_size)
    cfg = load_config(write_config(root, corpus, args.max_side))
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    manifest = run_build(cfg, str(root / "out"), ["--direct_num_workers=1"])
    cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
    pairs = manifest["counts"]["output_records"]
    per_pair = cpu / args.pairs
    print(f"\n{args.pairs} input pairs ({args.image_size}px JPEG -> max_side {args.max_side}), LID + code-switching, "
          f"{platform.processor() or platform.machine()}")
    print(f"output rows {pairs}; CPU {cpu:.1f} s, wall {wall:.1f} s; {per_pair * 1e3:.2f} CPU ms per input pair")
    print(f"per million input pairs: {per_pair * 1e6 / 3600:.1f} vCPU-hours")
    mt = mt_estimate()
    print(f"MT estimate (M2M-100 1.2B shape, beam 4, 10% of an L4's 121 TFLOPS): "
          f"{mt['gflops_per_translation']:.0f} GFLOPs and {mt['translations_per_s']:.0f} translations/s per GPU")


if __name__ == "__main__":
    main()
