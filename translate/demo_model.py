"""Train the demo's tiny multilingual fairseq transformer, offline, with fairseq's own CLIs.

The model is shaped like M2M-100 / NLLB rather than like a bilingual WMT model: one
shared SentencePiece vocabulary and dictionary for every language, fairseq's
``translation_multi_simple_epoch`` task, the source language token prepended to the
source (``--encoder-langtok src``) and the target language token forced as the first
decoder token (``--decoder-langtok``). So the demo and the tests exercise exactly the
code path a real M2M-100 checkpoint takes, at a size that trains in well under a
minute on two CPU cores.

Training runs ``fairseq-preprocess`` and ``fairseq-train`` as subprocesses (the same
commands a user would type), with a fixed seed and one data-loading worker, so the same
pairs give the same checkpoint. The result is a *model directory* the engines load:

    model.pt                  the checkpoint (fairseq-train's checkpoint_last.pt)
    dict.<lang>.txt           the shared dictionary, once per language (the task wants one each)
    sentencepiece.bpe.model   the SentencePiece model (fairseq's name for it)

and, beside it under ``workdir/bin``, the binarised data (``fairseq-generate`` reads it).

``bilingual=True`` trains the other shape the engines load, a WMT-style bilingual model:
fairseq's ``translation`` task, one direction, no language tokens, and a dictionary per
side (``dict.<src>.txt`` from the source texts, ``dict.<tgt>.txt`` from the target
texts, so the embeddings are not shared between encoder and decoder); the SentencePiece
model is still one, trained on both sides.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "model.pt"
SPM_FILE = "sentencepiece.bpe.model"


@dataclass(frozen=True)
class DemoModelSpec:
    """Size and training schedule of the demo transformer.

    layers/dim/ffn/heads: encoder and decoder alike (embeddings shared across both).
    vocab_size: SentencePiece pieces (a soft limit: small corpora may get fewer).
    epochs, lr, warmup, max_tokens: fairseq-train's --max-epoch, --lr, --warmup-updates,
    --max-tokens. seed: fairseq-train's --seed (SentencePiece training is deterministic).
    """

    layers: int = 2
    dim: int = 64
    ffn: int = 128
    heads: int = 4
    vocab_size: int = 300
    epochs: int = 15
    lr: float = 0.005
    warmup: int = 60
    max_tokens: int = 3000
    dropout: float = 0.1
    seed: int = 1


def fairseq_bin(name: str) -> str:
    """Path of a fairseq console script: next to this interpreter (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH; install fairseq-fixed")
    return found


def tool_env(threads: int = 1, **extra: str) -> dict[str, str]:
    """The environment for a fairseq subprocess: this one, with ``threads`` intra-op threads.

    One thread is the default because these models are tiny: on a busy 2-core machine
    OpenMP's spinning threads make small matrix products 5-7x slower than one thread.
    """
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **extra})
    return env


def run_tool(cmd: Sequence[str], log: Callable[[str], None] | None = None, env: dict[str, str] | None = None) -> None:
    """Run a fairseq CLI; on failure raise with the tail of its output, which says why."""
    started = time.time()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env if env is not None else tool_env())
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}):\n{tail}")
    if log is not None:
        log(f"{Path(cmd[0]).name} done in {time.time() - started:.1f}s")


def _train_spm(texts: list[str], prefix: Path, vocab_size: int) -> Path:
    import sentencepiece as spm

    corpus = prefix.with_suffix(".txt")
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, hard_vocab_limit=False, num_threads=1, minloglevel=2,
        # fairseq's dictionary owns the specials; SentencePiece must not emit them as pieces
        bos_id=-1, eos_id=-1, unk_id=0,
    )
    return prefix.with_suffix(".model")


def _write_dict(lines: list[str], path: Path) -> None:
    """fairseq's dict format (``piece count``), most frequent first, ties by piece: deterministic."""
    counts = Counter(piece for line in lines for piece in line.split())
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    path.write_text("".join(f"{piece} {n}\n" for piece, n in ordered), encoding="utf-8")


def _write_dicts(pairs_by_lang: dict[str, list[tuple[str, str]]], src_lang: str, texts: list[str],
                 spm_model: Path, work: Path, bilingual: bool) -> dict[str, Path]:
    """language → its dictionary: ``work/dict.txt`` from all ``texts`` for every language,
    or (bilingual) ``work/dict.<lang>.txt`` from that language's side of the pairs alone."""
    if not bilingual:
        shared = work / "dict.txt"
        _write_dict(encode_pieces(spm_model, texts), shared)
        return {lang: shared for lang in [src_lang, *sorted(pairs_by_lang)]}
    (tgt_lang, pairs), = pairs_by_lang.items()
    dicts = {src_lang: work / f"dict.{src_lang}.txt", tgt_lang: work / f"dict.{tgt_lang}.txt"}
    for lang, side in ((src_lang, 0), (tgt_lang, 1)):
        _write_dict(encode_pieces(spm_model, [pair[side] for pair in pairs]), dicts[lang])
    return dicts


def encode_pieces(spm_model: Path, texts: Sequence[str]) -> list[str]:
    """Texts as space-joined SentencePiece pieces: what fairseq-preprocess and the engines see."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    return [" ".join(sp.encode(t, out_type=str)) for t in texts]


Directions = dict[tuple[str, str], list[tuple[str, str]]]


def binarize(
    data: Directions, split: str, spm_model: Path, dict_path: Path | Mapping[str, Path], raw: Path, dest: Path,
    log: Callable[[str], None] | None = None,
) -> None:
    """Binarise ``split`` (train, valid or test) pairs of each (source, target) direction
    into ``dest`` with fairseq-preprocess, against fixed dictionaries, so that splits
    binarised in separate runs share one vocabulary.

    dict_path: the dictionary shared by all languages, or one per language (language → path).
    """
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split = {split!r}: fairseq-preprocess knows train, valid and test")
    raw.mkdir(parents=True, exist_ok=True)
    commands = []
    for (src, tgt), pairs in data.items():
        stem = raw / f"{split}.{src}-{tgt}"
        for lang, side in ((src, 0), (tgt, 1)):
            lines = encode_pieces(spm_model, [p[side] for p in pairs])
            Path(f"{stem}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        src_dict, tgt_dict = (dict_path[src], dict_path[tgt]) if isinstance(dict_path, Mapping) else (dict_path,) * 2
        commands.append([fairseq_bin("fairseq-preprocess"), "--source-lang", src, "--target-lang", tgt,
                         f"--{split}pref", str(stem), "--destdir", str(dest),
                         "--srcdict", str(src_dict), "--tgtdict", str(tgt_dict), "--workers", "1"])
    # one process per direction, concurrently: each is mostly fairseq's import time
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        list(pool.map(lambda cmd: run_tool(cmd, log), commands))


def _task_flags(directions: list[tuple[str, str]], bilingual: bool) -> list[str]:
    """The task and embedding-sharing flags: M2M-100-like, or WMT-like with a dictionary per side."""
    if bilingual:
        (src, tgt), = directions
        return ["--task", "translation", "--source-lang", src, "--target-lang", tgt,
                "--share-decoder-input-output-embed"]
    return ["--task", "translation_multi_simple_epoch", "--lang-pairs", ",".join(f"{a}-{b}" for a, b in directions),
            "--encoder-langtok", "src", "--decoder-langtok", "--share-all-embeddings"]


def _train_command(bin_dir: Path, save_dir: Path, directions: list[tuple[str, str]], spec: DemoModelSpec,
                   bilingual: bool = False) -> list[str]:
    s = spec
    return [
        fairseq_bin("fairseq-train"), str(bin_dir), *_task_flags(directions, bilingual), "--arch", "transformer",
        "--encoder-layers", str(s.layers), "--decoder-layers", str(s.layers),
        "--encoder-embed-dim", str(s.dim), "--decoder-embed-dim", str(s.dim),
        "--encoder-ffn-embed-dim", str(s.ffn), "--decoder-ffn-embed-dim", str(s.ffn),
        "--encoder-attention-heads", str(s.heads), "--decoder-attention-heads", str(s.heads),
        "--dropout", str(s.dropout), "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
        "--lr", str(s.lr), "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(s.warmup),
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--max-tokens", str(s.max_tokens), "--max-epoch", str(s.epochs), "--seed", str(s.seed),
        "--cpu", "--num-workers", "0", "--disable-validation", "--no-epoch-checkpoints",
        "--save-interval", str(s.epochs), "--save-dir", str(save_dir),
        "--log-format", "simple", "--log-interval", "50",
    ]


def train_demo_model(
    workdir: str | Path,
    pairs_by_lang: dict[str, list[tuple[str, str]]],
    src_lang: str = "en",
    spec: DemoModelSpec | None = None,
    log: Callable[[str], None] | None = None,
    both_directions: bool = False,
    bilingual: bool = False,
) -> Path:
    """Train a multilingual ``src_lang`` → each key of ``pairs_by_lang`` transformer.

    pairs_by_lang: target language → (source text, target text) training pairs.
    both_directions: also train each target → ``src_lang`` on the same pairs, reversed
        (back-translation of weak texts needs it); training takes about twice as long.
    bilingual: train a bilingual ``translation`` model with separate dictionaries instead
        (module docstring); ``pairs_by_lang`` must then hold exactly one target language.
    Returns the model directory (``workdir/model``); ``workdir/bin`` holds the binarised
    training data and ``workdir/spm.model`` the SentencePiece model. Raises RuntimeError
    with fairseq's own message when one of its commands fails.
    """
    spec = spec or DemoModelSpec()
    if not pairs_by_lang or any(not pairs for pairs in pairs_by_lang.values()):
        raise ValueError("pairs_by_lang: give at least one target language with at least one pair")
    if src_lang in pairs_by_lang:
        raise ValueError(f"pairs_by_lang has the source language {src_lang!r} as a target")
    if bilingual and (len(pairs_by_lang) != 1 or both_directions):
        raise ValueError("bilingual: give exactly one target language, one direction (no both_directions)")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    data: Directions = {(src_lang, t): list(pairs_by_lang[t]) for t in sorted(pairs_by_lang)}
    if both_directions:
        data.update({(t, src_lang): [(b, a) for a, b in pairs_by_lang[t]] for t in sorted(pairs_by_lang)})
    texts = [t for pairs in pairs_by_lang.values() for pair in pairs for t in pair]
    spm_model = _train_spm(texts, work / "spm", spec.vocab_size)
    dicts = _write_dicts(pairs_by_lang, src_lang, texts, spm_model, work, bilingual)
    bin_dir = work / "bin"
    binarize(data, "train", spm_model, dicts, work / "raw", bin_dir, log)
    save_dir = work / "checkpoints"
    run_tool(_train_command(bin_dir, save_dir, sorted(data), spec, bilingual), log)
    model_dir = work / "model"
    model_dir.mkdir(exist_ok=True)
    shutil.copyfile(save_dir / "checkpoint_last.pt", model_dir / MODEL_FILE)
    shutil.copyfile(spm_model, model_dir / SPM_FILE)
    for lang, path in dicts.items():
        shutil.copyfile(path, model_dir / f"dict.{lang}.txt")
    return model_dir

