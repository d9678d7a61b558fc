"""fairseq's canonical bilingual recipe, run at toy size: what users' checkpoints look like.

The recipe of fairseq's translation examples (``examples/translation``, IWSLT'14):
tokenise, learn joint BPE with subword-nmt (``learn_bpe``) and apply it to every split
(``apply_bpe``: ``@@ `` marks a word that goes on), then

    fairseq-preprocess --source-lang en --target-lang de --trainpref .. --validpref .. \\
        --testpref .. --destdir data-bin [--joined-dictionary]
    fairseq-train data-bin --arch transformer ...        (no --source-lang/--target-lang)
    fairseq-generate data-bin --path checkpoints/checkpoint_best.pt --beam 5 --remove-bpe

``fairseq-train`` infers the pair from ``data-bin`` and the checkpoint records none;
with validation on, ``checkpoint_best.pt`` is written. The test's model directory is
what a user copies out: ``checkpoint_best.pt`` and the two ``dict.<lang>.txt`` files,
no ``model.pt``, no SentencePiece model.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from translate.baseline import parse_output
from translate.demo_model import fairseq_bin, run_tool, tool_env
from translate.engine import Hypothesis

SRC, TGT = "en", "de"
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class RecipeModel:
    """A model trained by the recipe. data_bin: fairseq-preprocess's --destdir;
    checkpoints: fairseq-train's --save-dir; model_dir: checkpoint_best.pt + dicts only;
    test: the test split's (BPE'd source, BPE'd target) lines, as fairseq-generate reads them."""

    work: Path
    data_bin: Path
    checkpoints: Path
    model_dir: Path
    test: list[tuple[str, str]]


def tokenize(text: str) -> str:
    """A stand-in for Moses' tokenizer: punctuation split off."""
    return " ".join(text.replace(",", " ,").replace(".", " .").split())


def write_bpe_splits(work: Path, splits: dict[str, list[tuple[str, str]]], merges: int) -> Path:
    """Learn joint BPE on the training split's two sides (subword-nmt), apply it to every
    split; writes ``work/bpe/{split}.{en,de}``; returns that folder."""
    from subword_nmt.apply_bpe import BPE
    from subword_nmt.learn_bpe import learn_bpe

    out = work / "bpe"
    out.mkdir(parents=True, exist_ok=True)
    tokenised = {name: [(tokenize(s), tokenize(t)) for s, t in pairs] for name, pairs in splits.items()}
    joint = out / "train.joint"
    joint.write_text("".join(f"{s}\n{t}\n" for s, t in tokenised["train"]), encoding="utf-8")
    codes = out / "codes"
    with joint.open(encoding="utf-8") as infile, codes.open("w", encoding="utf-8") as outfile:
        learn_bpe(infile, outfile, merges)
    with codes.open(encoding="utf-8") as f:
        bpe = BPE(f)
    for name, pairs in tokenised.items():
        for lang, side in ((SRC, 0), (TGT, 1)):
            lines = [bpe.segment(p[side]) for p in pairs]
            (out / f"{name}.{lang}").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return out


def preprocess(text_dir: Path, dest: Path, joined: bool) -> None:
    cmd = [fairseq_bin("fairseq-preprocess"), "--source-lang", SRC, "--target-lang", TGT,
           *[f"--{s}pref={text_dir / s}" for s in SPLITS], "--destdir", str(dest), "--workers", "1"]
    run_tool([*cmd, "--joined-dictionary"] if joined else cmd)


def train(data_bin: Path, save_dir: Path, layers: int, epochs: int, joined: bool) -> None:
    """fairseq-train as the recipe runs it: the data dir alone says which languages."""
    sharing = "--share-all-embeddings" if joined else "--share-decoder-input-output-embed"
    run_tool([
        fairseq_bin("fairseq-train"), str(data_bin), "--arch", "transformer", sharing,
        "--encoder-layers", str(layers), "--decoder-layers", str(layers),
        "--encoder-embed-dim", "64", "--decoder-embed-dim", "64",
        "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128",
        "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
        "--dropout", "0.1", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "0.005",
        "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "50",
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--max-tokens", "500", "--max-epoch", str(epochs), "--seed", "1",
        "--cpu", "--num-workers", "0", "--no-epoch-checkpoints", "--save-dir", str(save_dir),
        "--log-format", "simple", "--log-interval", "100",
    ])


def train_recipe(work: Path, bpe_dir: Path, joined: bool, layers: int, epochs: int) -> RecipeModel:
    """Preprocess ``bpe_dir``'s splits, train, and copy checkpoint_best.pt and the dicts out."""
    data_bin, checkpoints, model_dir = work / "data-bin", work / "checkpoints", work / "model"
    preprocess(bpe_dir, data_bin, joined)
    train(data_bin, checkpoints, layers, epochs, joined)
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoints / "checkpoint_best.pt", model_dir / "checkpoint_best.pt")
    for lang in (SRC, TGT):
        shutil.copyfile(data_bin / f"dict.{lang}.txt", model_dir / f"dict.{lang}.txt")
    lines = {lang: (bpe_dir / f"test.{lang}").read_text(encoding="utf-8").splitlines() for lang in (SRC, TGT)}
    return RecipeModel(work, data_bin, checkpoints, model_dir, list(zip(lines[SRC], lines[TGT], strict=True)))


def generate(model: RecipeModel, beam: int, extra: Sequence[str] = ("--remove-bpe",)) -> list[Hypothesis]:
    """fairseq-generate on the test split as the recipe runs it (no language flags; the
    pair is inferred from data-bin). ``--required-batch-size-multiple 1``: the default 8
    drops the last batch when it is not a multiple of 8 (fairseq issue #5036).
    fairseq's CLIs cannot load checkpoints with weights_only=True (PyTorch >= 2.6), so
    this one command, on the test's own checkpoint, runs with it off."""
    import subprocess

    cmd = [fairseq_bin("fairseq-generate"), str(model.data_bin), "--path",
           str(model.checkpoints / "checkpoint_best.pt"), "--gen-subset", "test", "--beam", str(beam),
           "--nbest", "1", "--max-tokens", "1000", "--required-batch-size-multiple", "1", "--cpu", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=tool_env(1, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"))
    if proc.returncode != 0:
        raise RuntimeError(f"fairseq-generate failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return parse_output(proc.stdout + "\n" + proc.stderr)[0]
