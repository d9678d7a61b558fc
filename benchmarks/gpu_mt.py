"""The GPU check's MT parts: engine throughput on the M2M-100-418M shape, and exactness on CUDA.

``engines``: one random-weight model of M2M-100 418M's shape made by fairseq-train
(``bench_mt``), 1000 random sentences, output fixed at 24 tokens, beam 4.
fairseq-generate (fp16, its own generation time) is the baseline. Then every engine is
loaded, warmed up, timed and released one after the other: CTranslate2 in float16 and
int8_float16 (one conversion), the fairseq engine in float16, bfloat16 and float32 (the two
engines with a target first, so a part stopped at its budget has measured them). A random
model's next-token distributions are nearly flat, so "same output" counts near-ties resolved
differently by other arithmetic; it is reported, not judged.

``exactness``: what tests/translate/test_mt_exactness.py checks on CPU, on the CUDA device in
fp32. The model is the demo's trained tiny MT model (``m3curate demo`` trains it as the tests'
fixture does); the sentences are the demo's held-out en-de, en-fr and en-es captions (never
trained on), binarised for fairseq-generate; the engine batches them with another token
budget, as the test does. Same text, scores to 1e-5, and >= 80 % equal to the reference
(the model is a real one, not noise).

In a rehearsal both run on CPU: a 2+2-layer d=64 model, 48 sentences, float32 in place of
float16/bfloat16, CTranslate2 float32/int8 in place of float16/int8_float16; exactness on
en-de only.
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
# the two with a target first: a part stopped at its budget has measured them
ENGINES = (("ct2", "float16"), ("fairseq", "float16"), ("ct2", "int8_float16"), ("fairseq", "bfloat16"),
           ("fairseq", "float32"))
CPU_STAND_IN = {"float16": "float32", "bfloat16": "float32", "int8_float16": "int8"}
TARGETS = {("ct2", "float16"): 3.0, ("fairseq", "float16"): 1.0}  # x fairseq-generate
BEAMS = (1, 4)
EXACT_LANGS = {False: ("de", "fr", "es"), True: ("de",)}


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


def _time_engine(kind: str, dtype: str, ctx: Ctx, model: Path, ct2_dir: Path | None, dec: Decoding,
                 load: Load, sentences: list[str], gen) -> tuple[dict, float | None]:
    """One engine: loaded, warmed up, timed on every sentence, released. (row, speed-up over
    fairseq-generate); an engine that fails to load or run gives its error in the row."""
    cuda, n = ctx.device == "cuda", len(sentences)
    run_as = dtype if cuda else CPU_STAND_IN.get(dtype, dtype)
    row = {"engine": bench_mt.engine_name(kind, dtype).split(" (")[0], "dtype": run_as if cuda else f"{dtype} (ran {run_as})"}
    try:
        engine = bench_mt.open_engine(kind, run_as, model, ct2_dir, dec, ctx.device, load.threads, sentences[:64])
        hyps, seconds = bench_mt.timed(engine.translate, sentences, "src", "tgt")
        del engine
    except Exception as err:  # the next engines still run; the part fails on this row's check
        return {**row, "sentences_per_s": "-", "vs_generate": "-", "same_output": f"ERROR: {err}"[:300]}, None
    finally:
        _free()
    speedup = gen.gen_seconds / seconds
    return {**row, "sentences_per_s": round(n / seconds, 1), "vs_generate": f"{speedup:.2f}x",
            "same_output": f"{bench_mt.same_output(hyps, gen.hypotheses)}/{n}"}, speedup


def engines(ctx: Ctx, rec: Recorder) -> None:
    model, sentences, dec, load = _model(ctx, rec)
    work, n, cuda = Path(ctx.work), len(sentences), ctx.device == "cuda"
    if not cuda:
        rec.note("rehearsal: fairseq-generate, fairseq float16/bfloat16 and CTranslate2 float16/int8_float16 ran as "
                 "float32/int8 on CPU")
    gen = bench_mt.generate(model, work, dec, ctx.device, load.threads)
    rec.row("engines", {"engine": "fairseq-generate", "dtype": "float16" if cuda else "float32",
                        "sentences_per_s": round(n / gen.gen_seconds, 1), "vs_generate": "1.00x", "same_output": f"{n}/{n}"})
    ct2_dir = None
    for kind, dtype in ENGINES:
        if kind == "ct2" and ct2_dir is None:
            ct2_dir = bench_mt.convert_once(model, work, ctx.device)
        row, speedup = _time_engine(kind, dtype, ctx, model, ct2_dir, dec, load, sentences, gen)
        rec.row("engines", row)
        if speedup is None:
            rec.check(f"{row['engine']} {dtype} ran", False, row["same_output"])
        elif cuda and (kind, dtype) in TARGETS:  # recorded at once: the part may be stopped later
            name = f"{bench_mt.engine_name(kind, dtype).removeprefix('m3curate ')} vs fairseq-generate"
            rec.target(name, round(speedup, 2), TARGETS[(kind, dtype)], "x")


def _heldout(demo: Path, lang: str, limit: int = 120) -> list[tuple[str, str]]:
    """The demo's held-out en-``lang`` captions (never trained on): (source, reference)."""
    with (demo / "inputs" / "heldout" / "parallel.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r["src"], r["tgt"]) for r in rows if r["tgt_lang"] == lang][:limit]


def _generate_all(ctx: Ctx, mt: Path, pairs: dict[str, list[tuple[str, str]]]) -> dict:
    """fairseq-generate's output for every (language, beam), four runs at a time, on the pairs
    binarised in work/bin (every direction at once, as the tests' fixture does for en-de)."""
    from translate.baseline import run_generate
    from translate.checkpoint import model_info, safe_load
    from translate.demo_model import binarize

    work, model_dir = Path(ctx.work), mt / "model"
    bin_dir = work / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for d in model_dir.glob("dict.*.txt"):  # the multilingual task wants every language's dictionary
        shutil.copyfile(d, bin_dir / d.name)
    binarize({("en", lang): p for lang, p in pairs.items()}, "test", mt / "spm.model", mt / "dict.txt",
             work / "raw", bin_dir)
    info = model_info(safe_load(model_dir / "model.pt"))
    jobs = [(lang, beam) for lang in pairs for beam in BEAMS]

    def run(job: tuple[str, int]):
        return run_generate(bin_dir, model_dir / "model.pt", info, "en", job[0], Decoding(beam=job[1], max_tokens=1024),
                            spm_model=mt / "spm.model", cuda=ctx.device == "cuda")

    with ThreadPoolExecutor(min(4, len(jobs))) as pool:
        return dict(zip(jobs, pool.map(run, jobs), strict=True))


def exactness(ctx: Ctx, rec: Recorder) -> None:
    from translate.fairseq_engine import FairseqTranslator

    demo = Path(ctx.demo)
    mt = demo / "models" / "mt"
    pairs = {lang: _heldout(demo, lang) for lang in EXACT_LANGS[ctx.rehearse]}
    generated = _generate_all(ctx, mt, pairs)
    n = sum(len(p) for p in pairs.values())
    rec.figure(device=ctx.device, dtype="float32", sentences=n, directions=", ".join(f"en-{lang}" for lang in pairs),
               model="the demo's trained tiny en->de/fr/es model")
    if ctx.rehearse:
        rec.note("rehearsal: on CPU fp32 (what tests/translate runs), en-de only; the GPU run does en-de/fr/es on CUDA fp32")
    for beam in BEAMS:
        engine = FairseqTranslator(mt / "model", Decoding(beam=beam, max_tokens=300), device=ctx.device,
                                   dtype="float32", cpu_threads=1)
        same = right = 0
        diff = 0.0
        for lang, lang_pairs in pairs.items():
            ours, theirs = engine.translate([s for s, _ in lang_pairs], "en", lang), generated[(lang, beam)].hypotheses
            row = {"direction": f"en-{lang}", "beam": beam, "sentences": len(lang_pairs),
                   "same_text": sum(a.text == b.text for a, b in zip(ours, theirs, strict=True)),
                   "max_score_diff": max(abs(a.score - b.score) for a, b in zip(ours, theirs, strict=True)),
                   "equal_to_reference": sum(h.text == t for h, (_, t) in zip(ours, lang_pairs, strict=True))}
            same, right, diff = same + row["same_text"], right + row["equal_to_reference"], max(diff, row["max_score_diff"])
            rec.row("exactness", {**row, "max_score_diff": f"{row['max_score_diff']:.1e}"})
        rec.check(f"beam {beam} same text", same == n, f"{same}/{n}")
        rec.check(f"beam {beam} scores within 1e-5", diff <= 1e-5, f"max |diff| {diff:.1e}")
        rec.check(f"beam {beam} real translations", right >= 0.8 * n, f"{right}/{n} equal the reference")
