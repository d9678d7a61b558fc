"""The GPU check's MT parts: engine throughput on the M2M-100-418M shape, and exactness on CUDA.

``engines``: one random-weight model of M2M-100 418M's shape made by fairseq-train
(``bench_mt``), 1000 random sentences, output fixed at 24 tokens, beam 4.
fairseq-generate (fp16, its own generation time) is the baseline. Then every engine is
loaded, warmed up, timed and released one after the other: the fairseq engine in float32,
float16 and bfloat16, CTranslate2 in float16 and int8_float16 (one conversion). A random
model's next-token distributions are nearly flat, so "same output" counts near-ties resolved
differently by other arithmetic; it is reported, not judged.

``exactness``: what tests/translate/test_mt_exactness.py checks on CPU, on the CUDA device in
fp32. The model is the demo's trained tiny MT model (``m3curate demo`` trains it as the tests'
fixture does); the sentences are the demo's held-out en-de captions, binarised for
fairseq-generate; the engine batches them with another token budget, as the test does.

In a rehearsal both run on CPU: a 2+2-layer d=64 model, 48 sentences, float32 in place of
float16/bfloat16, CTranslate2 float32/int8 in place of float16/int8_float16.
"""

from __future__ import annotations

import csv
import gc
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import bench_mt
from gpu_record import Ctx, Recorder

from translate.engine import Decoding


@dataclass(frozen=True)
class Load:
    sentences: int
    out_len: int
    beam: int
    max_tokens: int
    threads: int


GPU_LOAD = Load(1000, 24, 4, 4096, 4)
REHEARSAL_LOAD = Load(48, 8, 2, 1024, 1)
REHEARSAL_SHAPE = bench_mt.Shape(2, 64, 128, 4, 1000)
FAIRSEQ_DTYPES = ("float32", "float16", "bfloat16")
CPU_STAND_IN = {"float16": "float32", "bfloat16": "float32", "int8_float16": "int8"}
CT2_TARGET, FAIRSEQ_TARGET = 3.0, 1.0


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _model(ctx: Ctx, rec: Recorder) -> tuple[Path, list[str], Decoding, Load]:
    shape = REHEARSAL_SHAPE if ctx.rehearse else bench_mt.M2M100_418M
    load = REHEARSAL_LOAD if ctx.rehearse else GPU_LOAD
    work = Path(ctx.work)
    started = time.perf_counter()
    sentences = bench_mt.make_data(work, load.sentences, shape.vocab, seed=0)
    model = bench_mt.make_model(work, shape, cuda=ctx.device == "cuda")
    rec.figure(model=f"{shape.layers}+{shape.layers} layers, d={shape.dim}, {shape.heads} heads, FFN {shape.ffn}, "
                     f"vocab {shape.vocab}{', pre-norm' if shape.prenorm else ''}, random weights",
               sentences=load.sentences, out_len=load.out_len, beam=load.beam, max_tokens=load.max_tokens,
               model_made_s=round(time.perf_counter() - started, 1))
    dec = Decoding(beam=load.beam, max_len_a=0, max_len_b=load.out_len, min_len=load.out_len,
                   max_tokens=load.max_tokens)
    return model, sentences, dec, load


def engines(ctx: Ctx, rec: Recorder) -> None:
    model, sentences, dec, load = _model(ctx, rec)
    work, n, cuda = Path(ctx.work), len(sentences), ctx.device == "cuda"
    gen = bench_mt.generate(model, work, dec, ctx.device, load.threads)
    rec.row("engines", {"engine": "fairseq-generate", "dtype": "float16" if cuda else "float32",
                        "sentences_per_s": round(n / gen.gen_seconds, 1), "vs_generate": 1.0, "same_output": f"{n}/{n}"})
    if not cuda:
        rec.note("rehearsal: fairseq-generate, fairseq float16/bfloat16 and CTranslate2 float16/int8_float16 ran as "
                 "float32/int8 on CPU")
    specs = [("fairseq", d) for d in FAIRSEQ_DTYPES] + [("ct2", c) for c in ("float16", "int8_float16")]
    ratios, ct2_dir = {}, None
    for kind, dtype in specs:
        run_as = dtype if cuda else CPU_STAND_IN.get(dtype, dtype)
        if kind == "ct2" and ct2_dir is None:
            ct2_dir = bench_mt.convert_once(model, work, ctx.device)
        engine = bench_mt.open_engine(kind, run_as, model, ct2_dir, dec, ctx.device, load.threads, sentences[:64])
        hyps, seconds = bench_mt.timed(engine.translate, sentences, "src", "tgt")
        del engine
        _free()
        ratios[(kind, dtype)] = gen.gen_seconds / seconds
        rec.row("engines", {"engine": bench_mt.engine_name(kind, dtype).split(" (")[0], "dtype": run_as if cuda else
                            f"{dtype} (ran {run_as})", "sentences_per_s": round(n / seconds, 1),
                            "vs_generate": round(ratios[(kind, dtype)], 2),
                            "same_output": f"{bench_mt.same_output(hyps, gen.hypotheses)}/{n}"})
    if cuda:
        rec.target("CTranslate2 float16 vs fairseq-generate", round(ratios[("ct2", "float16")], 2), CT2_TARGET, "x")
        rec.target("fairseq engine float16 vs fairseq-generate", round(ratios[("fairseq", "float16")], 2),
                   FAIRSEQ_TARGET, "x")


def _heldout(demo: Path, limit: int = 120) -> list[tuple[str, str]]:
    """The demo's held-out en-de captions (never trained on): (source, reference)."""
    with (demo / "inputs" / "heldout" / "parallel.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r["src"], r["tgt"]) for r in rows if r["tgt_lang"] == "de"][:limit]


def _generate_both(ctx: Ctx, mt: Path, pairs: list[tuple[str, str]]) -> dict:
    """fairseq-generate at beams 1 and 4 (concurrently) on the pairs, binarised in work/bin."""
    from translate.baseline import run_generate
    from translate.checkpoint import model_info, safe_load
    from translate.demo_model import binarize

    work, model_dir = Path(ctx.work), mt / "model"
    bin_dir = work / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for d in model_dir.glob("dict.*.txt"):  # the multilingual task wants every language's dictionary
        shutil.copyfile(d, bin_dir / d.name)
    binarize({("en", "de"): pairs}, "test", mt / "spm.model", mt / "dict.txt", work / "raw", bin_dir)
    info = model_info(safe_load(model_dir / "model.pt"))

    def run(beam: int):
        return run_generate(bin_dir, model_dir / "model.pt", info, "en", "de", Decoding(beam=beam, max_tokens=1024),
                            spm_model=mt / "spm.model", cuda=ctx.device == "cuda")

    with ThreadPoolExecutor(2) as pool:
        return dict(zip((1, 4), pool.map(run, (1, 4)), strict=True))


def exactness(ctx: Ctx, rec: Recorder) -> None:
    from translate.fairseq_engine import FairseqTranslator

    demo = Path(ctx.demo)
    mt = demo / "models" / "mt"
    pairs = _heldout(demo)
    generated = _generate_both(ctx, mt, pairs)
    sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
    rec.figure(device=ctx.device, dtype="float32", sentences=len(pairs), model="the demo's tiny en->de/fr/es model")
    for beam in (1, 4):
        engine = FairseqTranslator(mt / "model", Decoding(beam=beam, max_tokens=300), device=ctx.device,
                                   dtype="float32", cpu_threads=1)
        ours, theirs = engine.translate(sources, "en", "de"), generated[beam].hypotheses
        same = sum(a.text == b.text for a, b in zip(ours, theirs, strict=True))
        diff = max(abs(a.score - b.score) for a, b in zip(ours, theirs, strict=True))
        right = sum(h.text == r for h, r in zip(ours, refs, strict=True))
        rec.row("exactness", {"beam": beam, "sentences": len(pairs), "same_text": same, "max_score_diff": f"{diff:.1e}",
                              "equal_to_reference": right})
        rec.check(f"beam {beam} same text", same == len(pairs), f"{same}/{len(pairs)}")
        rec.check(f"beam {beam} scores within 1e-5", diff <= 1e-5, f"max |diff| {diff:.1e}")
        rec.check(f"beam {beam} real translations", right >= 0.8 * len(pairs), f"{right}/{len(pairs)} equal the reference")
    if ctx.rehearse:
        rec.note("rehearsal: on CPU fp32 (what tests/translate runs); the GPU run does this on CUDA fp32")
