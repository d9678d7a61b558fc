"""``fairseq-generate``, run as a subprocess: the reference the engines are held to.

The exactness tests and the benchmark compare the engines against fairseq's own CLI on
the same binarised data, the same checkpoint and the same decoding settings. This module
builds that command line from a ``Decoding`` and a checkpoint's ``ModelInfo``, runs it,
and parses its ``D-`` lines back into ``Hypothesis`` objects in sample order.

Safety: fairseq's CLIs call ``torch.load`` without an allow-list, so on PyTorch >= 2.6
they refuse every fairseq checkpoint. The subprocess alone gets
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``; use it only on checkpoints you made or trust
(the tests' and the benchmark's own). The engines never do this.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from translate.checkpoint import ModelInfo
from translate.demo_model import fairseq_bin, tool_env
from translate.engine import Decoding, Hypothesis

_D_LINE = re.compile(r"^D-(\d+)\t(\S+)\t?(.*)$")
_SPEED = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s")


@dataclass(frozen=True)
class GenerateRun:
    """fairseq-generate's hypotheses (by sample id) and its timings.

    gen_seconds: the generation time fairseq-generate reports itself (model loading
    and start-up excluded); wall_seconds: the whole subprocess.
    """

    hypotheses: list[Hypothesis]
    gen_seconds: float
    wall_seconds: float


def task_args(info: ModelInfo, src_lang: str, tgt_lang: str) -> list[str]:
    """The task flags fairseq-generate needs to rebuild the checkpoint's task."""
    args = ["--source-lang", src_lang, "--target-lang", tgt_lang]
    if not info.multilingual:
        return ["--task", "translation", *args]
    args += ["--task", info.task, "--lang-pairs", ",".join(f"{s}-{t}" for s, t in info.pairs),
             "--lang-tok-style", info.lang_tok_style]
    if info.encoder_langtok:
        args += ["--encoder-langtok", info.encoder_langtok]
    if info.decoder_langtok:
        args.append("--decoder-langtok")
    return args


def generate_command(data_dir: Path, checkpoint: Path, info: ModelInfo, src_lang: str, tgt_lang: str,
                     decoding: Decoding, subset: str = "test", spm_model: Path | None = None,
                     cuda: bool = False, fp16: bool = False) -> list[str]:
    d = decoding
    cmd = [fairseq_bin("fairseq-generate"), str(data_dir), "--path", str(checkpoint), "--gen-subset", subset,
           *task_args(info, src_lang, tgt_lang), "--beam", str(d.beam), "--nbest", "1",
           "--lenpen", str(d.lenpen), "--min-len", str(d.min_len),
           "--max-len-a", str(d.max_len_a), "--max-len-b", str(d.max_len_b),
           "--no-repeat-ngram-size", str(d.no_repeat_ngram_size), "--max-tokens", str(d.max_tokens),
           # the default (8) silently drops the last batch when its size is not a multiple
           # of 8 (fairseq issue #5036): up to 7 sentences would go untranslated
           "--required-batch-size-multiple", "1"]
    if d.max_sentences:
        cmd += ["--batch-size", str(d.max_sentences)]
    if spm_model is not None:
        cmd += ["--bpe", "sentencepiece", "--sentencepiece-model", str(spm_model)]
    if not cuda:
        cmd.append("--cpu")
    if fp16:
        cmd.append("--fp16")
    return cmd


def parse_output(text: str) -> tuple[list[Hypothesis], float]:
    """(hypotheses in sample-id order, generation seconds) from fairseq-generate's stdout.

    The ``D-`` score is in base 2; it is converted back to fairseq's natural-log score.
    """
    by_id: dict[int, Hypothesis] = {}
    for line in text.splitlines():
        m = _D_LINE.match(line)
        if m:
            by_id[int(m.group(1))] = Hypothesis(m.group(3), float(m.group(2)) * math.log(2))
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError("fairseq-generate output lacks some sample ids")
    speed = _SPEED.search(text)
    return [by_id[i] for i in range(len(by_id))], float(speed.group(3)) if speed else float("nan")


def run_generate(data_dir: Path, checkpoint: Path, info: ModelInfo, src_lang: str, tgt_lang: str,
                 decoding: Decoding, subset: str = "test", spm_model: Path | None = None,
                 threads: int = 1, cuda: bool = False, fp16: bool = False) -> GenerateRun:
    """Run fairseq-generate on a binarised ``subset``; raises RuntimeError with its output tail."""
    cmd = generate_command(data_dir, checkpoint, info, src_lang, tgt_lang, decoding, subset, spm_model, cuda, fp16)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=tool_env(threads, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"))
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"fairseq-generate failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    hyps, gen = parse_output(proc.stdout + "\n" + proc.stderr)
    return GenerateRun(hyps, gen, wall)
