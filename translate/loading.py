"""Building the configured engine, and checking the model against the config up front.

``check_model`` runs when the pipeline is built, before any work: the model directory
exists, its checkpoint loads safely, and every configured direction is one the model
was trained on. It reads only the checkpoint's settings (tensors are memory-mapped, not
read), so a 2 GB checkpoint costs milliseconds here; ``load_translator`` does the real
load, once per worker process (or once per machine with ``model_copies``).
"""

from __future__ import annotations

from pathlib import Path

from translate.checkpoint import ModelInfo
from translate.config import TranslateConfig, TranslateConfigError
from translate.engine import Translator
from translate.model_dir import open_fairseq_dir


def read_model_info(cfg: TranslateConfig) -> ModelInfo:
    """The model's languages and token rules, without loading its weights; for a bilingual
    checkpoint, its dictionaries are checked to be there too (``translate.model_dir``)."""
    if cfg.engine == "ctranslate2":
        from translate.ct2_engine import load_meta

        return load_meta(Path(cfg.model))[0]
    return open_fairseq_dir(cfg.model, cfg.checkpoint, cfg.trusted_globals, cfg.language_pair(), mmap=True).info


def check_model(cfg: TranslateConfig) -> ModelInfo:
    """Fail before the pipeline starts on a missing/unsafe model or a direction it lacks."""
    if "://" in cfg.model:
        raise TranslateConfigError(f"mt.model = {cfg.model!r}: copy the model to a local path (or bake it into "
                                   "the worker image); remote model directories are not supported")
    if not Path(cfg.model).is_dir():
        raise TranslateConfigError(f"mt.model = {cfg.model!r}: no such directory")
    try:
        info = read_model_info(cfg)
    except (ValueError, FileNotFoundError) as err:
        raise TranslateConfigError(f"mt.model: {err}") from err
    targets = {t for _, t in info.pairs}
    missing = [t for t in cfg.targets if cfg.model_code(t) not in targets]
    if missing:
        raise TranslateConfigError(f"mt.targets: the model cannot translate into {missing} (model code(s) "
                                   f"{[cfg.model_code(t) for t in missing]}); it translates into {sorted(targets)}. "
                                   "Map codes with mt.lang_codes or drop those targets")
    for src in cfg.source_langs:
        lacking = [t for t in cfg.targets if t != src and (cfg.model_code(src), cfg.model_code(t)) not in info.pairs]
        if lacking:
            raise TranslateConfigError(f"mt.source_langs: the model has no direction {src}->{lacking}")
    return info


def load_translator(cfg: TranslateConfig) -> Translator:
    """The configured engine, loaded (heavy: call it where the model is used)."""
    if cfg.engine == "ctranslate2":
        from translate.ct2_engine import CT2Translator

        return CT2Translator(cfg.model, cfg.decoding(), device=cfg.device, compute_type=cfg.compute_type,
                             cpu_threads=cfg.cpu_threads, model_id=cfg.resolved_model_id(),
                             remove_bpe=cfg.remove_bpe)
    from translate.fairseq_engine import FairseqTranslator

    return FairseqTranslator(cfg.model, cfg.decoding(), checkpoint=cfg.checkpoint, spm_model=cfg.spm_model,
                             device=cfg.device, dtype=cfg.dtype, trusted_globals=cfg.trusted_globals,
                             model_id=cfg.resolved_model_id(), cpu_threads=cfg.cpu_threads,
                             languages=cfg.language_pair(), remove_bpe=cfg.remove_bpe)
