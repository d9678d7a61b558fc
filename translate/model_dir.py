"""A fairseq model directory, opened and checked before fairseq sees it.

``open_fairseq_dir`` finds the checkpoint, loads it safely, reads its languages and, for a
bilingual (``translation``) checkpoint, finds the two dictionaries it needs. fairseq's
``translation`` task reads ``dict.<src>.txt`` and ``dict.<tgt>.txt`` from its data
directory (``fairseq-preprocess --destdir``); users copy them beside the checkpoint.
A missing or wrong file is named in one line here instead of a traceback in fairseq:

- The languages: the checkpoint's own, or, when it records none (fairseq's canonical
  recipe trains without --source-lang/--target-lang and fairseq-train infers the pair
  from the data directory), the ``languages`` the caller gives (``--src/--tgt``, or
  ``mt.source_langs``/``mt.targets``).
- Both files present: each must have as many entries as the embedding it feeds (the
  encoder's: the source dictionary; the decoder's: the target one). When they fit only
  the other way round, the direction given is the reverse of the model's, and the error
  says so (with a joined dictionary the two directions cannot be told apart).
- One missing: a joined dictionary (``fairseq-preprocess --joined-dictionary``: one
  dictionary for both sides) may be present under one name only, the other side's
  ``dict.<lang>.txt`` or ``dict.txt``; it serves both sides when its size fits both
  embeddings (or, where the embeddings cannot be read, the model shares all embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from translate.checkpoint import (
    ModelDirError,
    ModelInfo,
    find_checkpoint,
    model_info,
    safe_load,
    setting,
    task_config,
)

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq's Dictionary puts these first
OVERWRITE = " #fairseq:overwrite"
JOINED_NAME = "dict.txt"


@dataclass(frozen=True)
class Dictionaries:
    """The dictionary files of a bilingual checkpoint (the same path twice when joined)."""

    source: Path
    target: Path


@dataclass(frozen=True)
class FairseqDir:
    """An opened fairseq model directory: the checkpoint file, its loaded state, what it
    translates, and (bilingual checkpoints) its dictionaries."""

    root: Path
    checkpoint: Path
    state: dict[str, Any]
    info: ModelInfo
    dicts: Dictionaries | None


def open_fairseq_dir(model_dir: str | Path, checkpoint: str | None = None, trusted: Sequence[str] = (),
                     languages: tuple[str, str] | None = None, mmap: bool = False) -> FairseqDir:
    """Open ``model_dir`` (see the module docstring); ModelDirError / UnsafeCheckpointError
    naming what is wrong. mmap: map the tensors (for reading the settings only)."""
    root = Path(model_dir)
    path = find_checkpoint(root, checkpoint)
    state = safe_load(path, trusted, mmap=mmap)
    info = model_info(state, languages)
    dicts = None if info.multilingual else bilingual_dictionaries(root, state, info)
    return FairseqDir(root, path, state, info, dicts)


def dict_words(path: Path) -> list[str]:
    """The entries of a fairseq ``dict.txt`` (``word count [#fairseq:overwrite]`` a line)."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.rstrip()
        if line.endswith(OVERWRITE):
            line = line[: -len(OVERWRITE)]
        if line:
            words.append(line.rsplit(" ", 1)[0])
    return words


def dict_size(path: Path) -> int:
    """How many tokens fairseq's Dictionary loaded from ``path`` holds (its 4 specials included)."""
    return len(SPECIALS) + len(set(dict_words(path)) - set(SPECIALS))


def embedding_rows(state: dict[str, Any]) -> tuple[int | None, int | None]:
    """(encoder, decoder) token embedding rows of the checkpoint; None where it has no such tensor."""
    weights = state.get("model") or {}

    def rows(key: str) -> int | None:
        shape = getattr(weights.get(key), "shape", None)
        return int(shape[0]) if shape else None

    return rows("encoder.embed_tokens.weight"), rows("decoder.embed_tokens.weight")


def _shares_all_embeddings(state: dict[str, Any]) -> bool:
    model_cfg = setting(state.get("cfg"), "model") or state.get("args")
    return bool(setting(model_cfg, "share_all_embeddings", False))


def bilingual_dictionaries(root: Path, state: dict[str, Any], info: ModelInfo) -> Dictionaries:
    """The checkpoint's two dictionaries in ``root``, checked against its embeddings."""
    (src, tgt), = info.pairs
    paths = {src: root / f"dict.{src}.txt", tgt: root / f"dict.{tgt}.txt"}
    enc, dec = embedding_rows(state)
    if all(p.is_file() for p in paths.values()):
        _check_sizes(root, (src, tgt), (dict_size(paths[src]), dict_size(paths[tgt])), (enc, dec))
        return Dictionaries(paths[src], paths[tgt])
    joined = next((p for p in [*paths.values(), root / JOINED_NAME] if p.is_file()), None)
    if joined is not None and (dict_size(joined) == enc == dec if enc and dec else _shares_all_embeddings(state)):
        return Dictionaries(joined, joined)
    missing = " and ".join(p.name for p in paths.values() if not p.is_file())
    recorded = bool(setting(task_config(state), "source_lang"))
    why = "" if recorded else " (the languages given, as the checkpoint records none)"
    have = sorted(p.name for p in root.glob("dict*.txt"))
    raise ModelDirError(f"{root}: no {missing}: the checkpoint translates {src}->{tgt}{why} and needs dict.{src}.txt "
                        f"and dict.{tgt}.txt beside it (fairseq-preprocess writes them into its --destdir); "
                        f"the directory has {', '.join(have) if have else 'no dictionary'}")


def _check_sizes(root: Path, pair: tuple[str, str], sizes: tuple[int, int], rows: tuple[int | None, int | None]) -> None:
    (src, tgt), (enc, dec) = pair, rows
    if enc is None or dec is None or sizes == (enc, dec):
        return
    if sizes[::-1] == (enc, dec):
        raise ModelDirError(f"{root}: the checkpoint translates {tgt}->{src}, not {src}->{tgt}: its encoder embeds "
                            f"{enc} tokens, as many as dict.{tgt}.txt holds; swap the languages (--src/--tgt, "
                            "or mt.source_langs/mt.targets)")
    raise ModelDirError(f"{root}: dict.{src}.txt holds {sizes[0]} tokens and dict.{tgt}.txt {sizes[1]}, but the "
                        f"checkpoint's encoder embeds {enc} and its decoder {dec}: these are not the dictionaries "
                        "it was trained with")

