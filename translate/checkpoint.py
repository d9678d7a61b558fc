"""Safe loading of fairseq checkpoints, and what a model directory holds.

A ``.pt`` checkpoint is a pickle: unpickling an untrusted one runs arbitrary code. So
every checkpoint is read with ``torch.load(weights_only=True)``, passed explicitly (an
environment variable such as ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off),
inside ``torch.serialization.safe_globals`` holding an explicit allow-list: fairseq
stores its training arguments as ``argparse.Namespace``, which is plain data. A file
that needs any other global is refused with ``UnsafeCheckpointError`` naming the
global; a user who has checked the file can allow that exact global by name
(``trusted_globals``). Nothing switches the safety off process-wide.

A *model directory* is what ``fairseq-train`` plus the user's tokenizer leave behind:
the checkpoint, ``dict.<lang>.txt`` files and, optionally, a SentencePiece model.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALLOWED_GLOBALS: tuple[Any, ...] = (argparse.Namespace,)
CHECKPOINT_NAMES = ("model.pt", "checkpoint_best.pt", "checkpoint_last.pt")
SPM_NAMES = ("sentencepiece.bpe.model", "spm.model", "sentencepiece.model")
CT2_FILES = ("model.bin", "config.json")  # what every CTranslate2 model directory holds
MULTILINGUAL_TASK = "translation_multi_simple_epoch"
BILINGUAL_TASK = "translation"


class UnsafeCheckpointError(ValueError):
    """The checkpoint needs a global that is not on the allow-list (message names it)."""


class ModelDirError(ValueError):
    """The model directory lacks a file the engines need (message names it)."""


def resolve_global(name: str) -> Any:
    """``"package.module.Name"`` → the object, for a user's ``trusted_globals`` entry."""
    module, _, attr = name.rpartition(".")
    if not module:
        raise ValueError(f"trusted global {name!r}: write it as module.Name (e.g. numpy.dtype)")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"trusted global {name!r} cannot be imported: {err}") from err


@contextlib.contextmanager
def allowed_globals(trusted: Sequence[str] = ()) -> Iterator[None]:
    """The allow-list as a context: ``ALLOWED_GLOBALS`` plus the named ``trusted`` ones.

    Wrap third-party loaders (fairseq, CTranslate2's converter) in it; they call
    ``torch.load`` with weights-only loading on (PyTorch >= 2.6 default, explicit in
    CTranslate2), which consults this list.
    """
    import torch

    extra = [resolve_global(n) for n in trusted]
    with torch.serialization.safe_globals([*ALLOWED_GLOBALS, *extra]):
        yield


def safe_load(path: str | Path, trusted: Sequence[str] = (), mmap: bool = False) -> dict[str, Any]:
    """``torch.load`` the checkpoint on CPU with weights only and the allow-list.

    mmap: map the tensors instead of reading them (cheap, for reading the settings only).
    Raises UnsafeCheckpointError naming the refused global(s), or ModelDirError when the
    file is missing or not a checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelDirError(f"{path}: no such checkpoint file")
    try:
        with allowed_globals(trusted):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError:
                if not mmap:  # legacy (pre-zip) files cannot be mapped: read them whole
                    raise
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        names = _unsafe_globals(path)
        if names:
            raise UnsafeCheckpointError(
                f"{path}: refused to load: the checkpoint needs {', '.join(names)}, which is not on the allow-list "
                "of safe globals (only argparse.Namespace is). Unpickling it could run code. If you trust this "
                "file, allow exactly those names with trusted_globals.") from None
        raise ModelDirError(f"{path}: not a readable PyTorch checkpoint ({_reason(err)})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ModelDirError(f"{path}: not a readable PyTorch checkpoint ({_reason(err)})") from err
    if not isinstance(state, dict) or "model" not in state:
        raise ModelDirError(f"{path}: not a fairseq checkpoint (no 'model' entry)")
    return state


def _unsafe_globals(path: Path) -> list[str]:
    """The globals the file wants beyond the allow-list (empty when it cannot tell)."""
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip checkpoint, or corrupt: no names to report
        return []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in ALLOWED_GLOBALS}
    return [n for n in names if n not in allowed]


def _reason(err: Exception) -> str:
    """The informative part of a torch.load error (its first lines are generic advice)."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].split("Check the documentation", 1)[0]
    return " ".join(text.split())[:300] or type(err).__name__


def setting(obj: Any, key: str, default: Any = None) -> Any:
    """A setting from a dict, DictConfig or Namespace alike (fairseq stores all three)."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    try:
        return obj[key] if key in obj else getattr(obj, key, default)
    except TypeError:
        return getattr(obj, key, default)


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint says about its languages.

    task: ``translation`` (bilingual) or ``translation_multi_simple_epoch`` (M2M-100/NLLB).
    pairs: the trained directions. langs: the languages with tokens (multilingual).
    lang_tok_style: ``multilingual`` (``__en__``) or ``mbart`` (``[en_XX]``).
    encoder_langtok: ``src``/``tgt``/None: which language token is prepended to the source.
    decoder_langtok: whether the target language token is forced as first output token.
    """

    task: str
    pairs: tuple[tuple[str, str], ...]
    langs: tuple[str, ...]
    lang_tok_style: str = "multilingual"
    encoder_langtok: str | None = None
    decoder_langtok: bool = False

    @property
    def multilingual(self) -> bool:
        return self.task == MULTILINGUAL_TASK


def task_config(state: dict[str, Any]) -> Any:
    """The task's settings in a loaded checkpoint: ``cfg.task`` (fairseq >= 0.10) or ``args``."""
    return setting(state.get("cfg"), "task") or state.get("args")


def model_info(state: dict[str, Any], languages: tuple[str, str] | None = None) -> ModelInfo:
    """Read the task settings out of a loaded checkpoint; ModelDirError for tasks the engines
    do not support (with the supported ones named).

    languages: (source, target) for a bilingual checkpoint that records none (fairseq's
    canonical recipe: ``fairseq-train data-bin`` without --source-lang/--target-lang, the
    pair inferred from the data directory); ignored when the checkpoint records its own.
    """
    task_cfg = task_config(state)
    task = setting(task_cfg, "task") or setting(task_cfg, "_name")
    if task == BILINGUAL_TASK:
        src, tgt = setting(task_cfg, "source_lang"), setting(task_cfg, "target_lang")
        if not src or not tgt:
            if not languages:
                raise ModelDirError(
                    "the bilingual checkpoint does not record its languages (fairseq-train inferred them from its "
                    "data directory): give them as --src/--tgt (m3curate mt), or as mt.source_langs and mt.targets "
                    "(one of each)")
            src, tgt = languages
        return ModelInfo(task, ((src, tgt),), (src, tgt))
    if task != MULTILINGUAL_TASK:
        raise ModelDirError(f"checkpoint task {task!r} is not supported: use a '{BILINGUAL_TASK}' "
                            f"or '{MULTILINGUAL_TASK}' (M2M-100/NLLB-style) checkpoint")
    if setting(task_cfg, "lang_tok_replacing_bos_eos", False):
        raise ModelDirError("checkpoint uses --lang-tok-replacing-bos-eos, which is not supported")
    raw_pairs = setting(task_cfg, "lang_pairs") or []
    if isinstance(raw_pairs, str):
        raw_pairs = raw_pairs.split(",")
    pairs = tuple(tuple(p.strip().split("-", 1)) for p in raw_pairs if p.strip())
    langs = setting(task_cfg, "langs")
    if isinstance(langs, str):
        langs = langs.split(",")
    if not langs:
        langs = sorted({lang for pair in pairs for lang in pair})
    return ModelInfo(task, pairs, tuple(langs), setting(task_cfg, "lang_tok_style", "multilingual"),
                     setting(task_cfg, "encoder_langtok"), bool(setting(task_cfg, "decoder_langtok", False)))


def find_checkpoint(model_dir: str | Path, name: str | None = None) -> Path:
    """The checkpoint file of a model directory: ``name``, else the first of CHECKPOINT_NAMES."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelDirError(f"{root}: not a directory; point the model at a fairseq checkpoint directory")
    for candidate in [name] if name else CHECKPOINT_NAMES:
        if (root / candidate).is_file():
            return root / candidate
    if all((root / f).is_file() for f in CT2_FILES):
        raise ModelDirError(f"{root} is a CTranslate2 model (it has {' and '.join(CT2_FILES)}), not a fairseq "
                            "checkpoint directory: pass --engine ctranslate2 (mt.engine = \"ctranslate2\")")
    wanted = name or " or ".join(CHECKPOINT_NAMES)
    raise ModelDirError(f"{root}: no checkpoint {wanted} in it")


def find_spm(model_dir: str | Path, explicit: str | None = None) -> Path | None:
    """The SentencePiece model: ``explicit`` (must exist), else one of SPM_NAMES, else None
    (the model then reads text that is already tokenised, pieces separated by spaces)."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ModelDirError(f"sentencepiece model {path}: no such file")
        return path
    for candidate in SPM_NAMES:
        if (Path(model_dir) / candidate).is_file():
            return Path(model_dir) / candidate
    return None


def lang_token(lang: str, style: str) -> str:
    """fairseq's language token for ``lang`` (``multilingual_utils.get_lang_tok``, main spec)."""
    return f"[{lang}]" if style == "mbart" else f"__{lang}__"
