"""Benchmark: the pipeline's fairseq and CTranslate2 engines against ``fairseq-generate``.

One run, one random-weight transformer, one set of binarised sentences, one beam size:

1. make random "captions" (word tokens, 8-40 long) and a word dictionary; binarise them
   with ``fairseq-preprocess``;
2. make the checkpoint with ``fairseq-train`` (one update at a negligible learning rate:
   the weights stay random, and the file is exactly what fairseq writes);
3. time ``fairseq-generate`` on the binarised test split (its own reported generation
   time, start-up and model loading excluded), then the fairseq engine and CTranslate2
   (float32 and int8 on CPU; float16 and int8_float16 on CUDA) on the same sentences,
   model loading excluded, tokenisation and detokenisation included;
4. check the outputs agree, and print the figures with date, machine and settings as a
   markdown section for ``benchmarks/RESULTS.md`` (``--out FILE`` appends it to FILE).

A random model would stop at random lengths, so the output length is fixed
(``--min-len`` = ``--max-len-b`` = ``--out-len``): every engine generates exactly the same
number of tokens for every sentence.

CPU (default): 6+6 layers, d=512, 8 heads, FFN 2048, 8k vocabulary, beam 4, one thread.
GPU (``--m2m100``): the shape of M2M-100 418M (12+12 layers, d=1024, 16 heads, FFN 4096,
128k vocabulary, pre-norm), fp16 on CUDA. ``--fairseq-dtypes float32,float16,bfloat16``
times the fairseq engine in each of those (CUDA only for the half types).

The CTranslate2 model is converted once (float16 on CUDA, float32 on CPU); each compute
type quantises it at load time. The checkpoint is written without optimiser state
(``--no-save-optimizer-state``): 1.7 GB instead of 5 GB for the M2M-100 shape, the same
model. ``benchmarks/gpu_check.py`` reuses these pieces for its MT part.

    python benchmarks/bench_mt.py                 # CPU, < 5 minutes on 2 cores
    python benchmarks/bench_mt.py --m2m100 --sentences 2000 --threads 8   # on a GPU machine
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from translate.demo_model import fairseq_bin, run_tool, tool_env  # noqa: E402
from translate.engine import Decoding, Hypothesis  # noqa: E402


@dataclass(frozen=True)
class Shape:
    layers: int
    dim: int
    ffn: int
    heads: int
    vocab: int
    prenorm: bool = False


CPU_SHAPE = Shape(6, 512, 2048, 8, 8000)
M2M100_418M = Shape(12, 1024, 4096, 16, 128_000, prenorm=True)


def make_data(work: Path, n: int, vocab: int, seed: int) -> list[str]:
    """Random word-token sentences (train: 64 for the one update; test: n) and the dictionary."""
    rng = random.Random(seed)
    raw = work / "raw"
    raw.mkdir(parents=True)

    def sentence() -> str:
        return " ".join(f"w{rng.randrange(vocab)}" for _ in range(rng.randint(8, 40)))

    test = [sentence() for _ in range(n)]
    for split, lines in (("train", [sentence() for _ in range(64)]), ("test", test)):
        for side in ("src", "tgt"):
            (raw / f"{split}.{side}").write_text("".join(f"{s}\n" for s in lines), encoding="utf-8")
    (work / "dict.txt").write_text("".join(f"w{i} {vocab - i}\n" for i in range(vocab)), encoding="utf-8")
    return test


def make_model(work: Path, shape: Shape, cuda: bool) -> Path:
    """Binarise, then one fairseq-train update; returns the model directory."""
    d = str(work / "dict.txt")
    run_tool([fairseq_bin("fairseq-preprocess"), "--source-lang", "src", "--target-lang", "tgt",
              "--trainpref", str(work / "raw/train"), "--testpref", str(work / "raw/test"),
              "--destdir", str(work / "bin"), "--srcdict", d, "--tgtdict", d, "--workers", "2"])
    s = shape
    cmd = [fairseq_bin("fairseq-train"), str(work / "bin"), "--task", "translation", "--arch", "transformer",
           "--source-lang", "src", "--target-lang", "tgt",
           "--share-all-embeddings", "--encoder-layers", str(s.layers), "--decoder-layers", str(s.layers),
           "--encoder-embed-dim", str(s.dim), "--decoder-embed-dim", str(s.dim),
           "--encoder-ffn-embed-dim", str(s.ffn), "--decoder-ffn-embed-dim", str(s.ffn),
           "--encoder-attention-heads", str(s.heads), "--decoder-attention-heads", str(s.heads),
           "--optimizer", "adam", "--lr", "1e-9", "--max-update", "1", "--max-tokens", "1024",
           "--criterion", "cross_entropy", "--seed", "1", "--num-workers", "0", "--disable-validation",
           "--no-epoch-checkpoints", "--no-save-optimizer-state", "--save-dir", str(work / "ckpt"),
           "--log-format", "none"]
    if s.prenorm:
        cmd += ["--encoder-normalize-before", "--decoder-normalize-before"]
    if not cuda:
        cmd.append("--cpu")
    run_tool(cmd, env=tool_env(2))
    model = work / "model"
    model.mkdir()
    shutil.copyfile(work / "ckpt/checkpoint_last.pt", model / "model.pt")
    for side in ("src", "tgt"):
        shutil.copyfile(work / "dict.txt", model / f"dict.{side}.txt")
    return model


def timed(fn, *args) -> tuple[list[Hypothesis], float]:
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def engine_specs(device: str, fairseq_dtypes: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """(kind, dtype) of every engine timed on ``device``: the fairseq engine in each of
    ``fairseq_dtypes`` (default float16 on CUDA, float32 on CPU), then CTranslate2."""
    cuda = device == "cuda"
    dtypes = fairseq_dtypes or (("float16",) if cuda else ("float32",))
    ct2 = ("float16", "int8_float16") if cuda else ("float32", "int8")
    return [("fairseq", d) for d in dtypes] + [("ct2", c) for c in ct2]


def engine_name(kind: str, dtype: str) -> str:
    return f"m3curate {'fairseq' if kind == 'fairseq' else 'CTranslate2'} engine ({dtype})"


def convert_once(model: Path, work: Path, device: str) -> Path:
    """The CTranslate2 model every CTranslate2 row loads (float16 on CUDA, else float32)."""
    from translate.ct2_engine import convert_checkpoint

    return convert_checkpoint(model, work / "ct2", "float16" if device == "cuda" else None, force=True)


def open_engine(kind: str, dtype: str, model: Path, ct2_dir: Path, dec: Decoding, device: str, threads: int,
                warm_up: list[str]):
    """One engine, loaded, and warmed up on ``warm_up`` (allocators, kernel choice)."""
    if kind == "fairseq":
        from translate.fairseq_engine import FairseqTranslator

        engine = FairseqTranslator(model, dec, device=device, dtype=dtype, cpu_threads=threads)
    else:
        from translate.ct2_engine import CT2Translator

        engine = CT2Translator(ct2_dir, dec, device=device, compute_type=dtype, cpu_threads=threads)
    engine.translate(warm_up, "src", "tgt")
    return engine


def same_output(hyps: list[Hypothesis], base: list[Hypothesis]) -> int:
    """How many sentences got exactly the text ``base`` has."""
    return sum(a.text == b.text for a, b in zip(hyps, base, strict=True))


def generate(model: Path, work: Path, dec: Decoding, device: str, threads: int):
    """fairseq-generate on the binarised test split (fp16 on CUDA, as it is used there)."""
    from translate.baseline import run_generate
    from translate.checkpoint import model_info, safe_load

    info = model_info(safe_load(model / "model.pt"))
    cuda = device == "cuda"
    return run_generate(work / "bin", model / "model.pt", info, "src", "tgt", dec, threads=threads, cuda=cuda, fp16=cuda)


def run_engines(model: Path, work: Path, sentences: list[str], dec: Decoding, args: argparse.Namespace) -> list[dict]:
    """Time every engine in ``args.rounds`` interleaved rounds and keep each one's best round
    (the machine may be shared: the best round is the least disturbed). fairseq-generate first."""
    ct2_dir = convert_once(model, work, args.device)
    engines = {engine_name(kind, dtype): open_engine(kind, dtype, model, ct2_dir, dec, args.device, args.threads,
                                                     sentences[:8])
               for kind, dtype in engine_specs(args.device, args.fairseq_dtypes)}
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        gen = generate(model, work, dec, args.device, args.threads)
        runs = [("fairseq-generate", gen.hypotheses, gen.gen_seconds,
                 f"its own generation time (whole process {gen.wall_seconds:.1f}s)")]
        for name, translator in engines.items():
            hyps, seconds = timed(translator.translate, sentences, "src", "tgt")
            runs.append((name, hyps, seconds, ""))
        for name, hyps, seconds, note in runs:
            entry = best.setdefault(name, {"engine": name, "seconds": seconds, "hyps": hyps, "note": note, "all": []})
            entry["all"].append(seconds)
            if seconds < entry["seconds"]:
                entry.update(seconds=seconds, hyps=hyps, note=note)
    return list(best.values())


def machine() -> dict[str, str]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import ctranslate2
    import fairseq
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"date": subprocess.run(["date"], capture_output=True, text=True).stdout.strip(),
            "cpu": f"{model}, nproc {os.cpu_count()}", "gpu": gpu, "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "versions": f"torch {torch.__version__}, fairseq {fairseq.__version__}, ctranslate2 {ctranslate2.__version__}"}


def report(rows: list[dict], n: int, shape: Shape, dec: Decoding, args: argparse.Namespace, info: dict) -> str:
    base = rows[0]
    lines = [f"## MT engines, {'M2M-100-418M-shaped' if shape == M2M100_418M else 'CPU-sized'} random model "
             f"({info['date']})", "",
             f"- machine: {info['cpu']}; GPU: {info['gpu']}; load average at start: {info['load']}",
             f"- {info['versions']}; device {args.device}, {args.threads} thread(s) for every engine",
             f"- model: {shape.layers}+{shape.layers} layers, d={shape.dim}, {shape.heads} heads, FFN {shape.ffn}, "
             f"vocab {shape.vocab}{', pre-norm' if shape.prenorm else ''}; random weights",
             f"- data: {n} sentences of 8-40 tokens; output fixed at {args.out_len} tokens + EOS; beam {dec.beam}; "
             f"max_tokens {dec.max_tokens}; best of {args.rounds} interleaved rounds", "",
             "| engine | sentences/s | vs fairseq-generate | same output as fairseq-generate | note |",
             "|---|---|---|---|---|"]
    for r in rows:
        rate = n / r["seconds"]
        same = same_output(r["hyps"], base["hyps"])
        rounds = ", ".join(f"{n / x:.1f}" for x in r["all"])
        lines.append(f"| {r['engine']} | {rate:.1f} | {base['seconds'] / r['seconds']:.2f}x | "
                     f"{same}/{n} | rounds: {rounds} sent/s. {r['note']} |")
    lines += ["", "Targets: fairseq engine >= 1.0x fairseq-generate; CTranslate2 >= 2x on CPU (>= 3x on GPU).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sentences", type=int, default=200)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--out-len", type=int, default=24, help="fixed output length in tokens")
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds; the best is reported")
    p.add_argument("--m2m100", action="store_true", help="M2M-100-418M shape, CUDA, fp16")
    p.add_argument("--fairseq-dtypes", type=lambda v: tuple(v.split(",")),
                   help="comma list of fairseq engine dtypes (default: float16 on CUDA, float32 on CPU)")
    p.add_argument("--workdir", help="keep the model and data here (default: a temporary directory)")
    p.add_argument("--out", help="also append the markdown section to this file (e.g. benchmarks/RESULTS.md)")
    args = p.parse_args(argv)
    args.device = "cuda" if args.m2m100 else "cpu"
    shape = M2M100_418M if args.m2m100 else CPU_SHAPE
    dec = Decoding(beam=args.beam, max_len_a=0, max_len_b=args.out_len, min_len=args.out_len, max_tokens=args.max_tokens)
    info = machine()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_mt_"))
    started = time.time()
    sentences = make_data(work, args.sentences, shape.vocab, seed=0)
    model = make_model(work, shape, args.device == "cuda")
    print(f"model ready in {time.time() - started:.0f}s", file=sys.stderr)
    rows = run_engines(model, work, sentences, dec, args)
    text = report(rows, len(sentences), shape, dec, args, info)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write("\n" + text + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    print(f"total {time.time() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
