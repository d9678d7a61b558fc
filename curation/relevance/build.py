"""Building the configured relevance scorer, and checking it before the pipeline runs.

``check_relevance`` runs when ``ScoreRelevance`` is built: it reads the dictionaries (a
malformed file or no dictionary at all fails there, not on a worker), checks the encoder
directory and the translation model's settings, and returns the scorer id that will be
recorded. ``build_scorer`` does the real load on each worker, through ``ScorerLoader``
(a picklable callable, so that the RunInference handler can carry it).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from codeswitch.dictionary import DictionaryError, list_dictionaries, load_lexicons, pair_of
from curation.relevance.calibrate import CalibratedScorer, Calibration, CalibrationError
from curation.relevance.config import RelevanceConfig, RelevanceConfigError
from curation.relevance.encoders import (
    EncoderError,
    SentenceTransformerEncoder,
    encoder_info,
    load_encoder,
    read_meta,
)
from curation.relevance.scorers import EmbeddingScorer, LexicalScorer, Scorer, TranslateScorer


def dictionary_files(cfg: RelevanceConfig) -> dict[tuple[str, str], str]:
    """(src, tgt) -> MUSE file of ``relevance.dictionaries`` (a directory or a table)."""
    if isinstance(cfg.dictionaries, dict):
        return {pair: path for key, path in cfg.dictionaries.items() if (pair := pair_of(key))}
    return list_dictionaries(cfg.dictionaries) if cfg.dictionaries else {}


def lexical_scorer(cfg: RelevanceConfig) -> LexicalScorer:
    """The lexical scorer over every configured dictionary, in every direction they give."""
    files = dictionary_files(cfg)
    if not files:
        raise RelevanceConfigError("relevance.dictionaries: no {src}-{tgt}.txt dictionary found; set "
                                   "relevance.dictionaries or [codeswitch] dictionaries (MUSE format)")
    lexicons, _ = load_lexicons(files, sorted({t for _, t in files}), fold=True, on_malformed="skip")
    return LexicalScorer(lexicons)


def translator_config(cfg: RelevanceConfig, mt: Any) -> Any:
    """The ``[mt]`` settings with ``relevance.mt_model``/``mt_engine`` put in, where set."""
    from translate.config import TranslateConfig

    base = mt if mt is not None else TranslateConfig()
    if cfg.mt_model:
        base = dataclasses.replace(base, model=cfg.mt_model, engine=cfg.mt_engine, model_id=None)
    if not base.model:
        raise RelevanceConfigError(f"relevance.scorer = {cfg.scorer!r} needs a translation model: set "
                                   "relevance.mt_model or [mt] model")
    return base


def load_translation(cfg: RelevanceConfig, mt: Any) -> tuple[Any, Any]:
    """(loaded Translator, pipeline code -> model code) for the translate/embedding scorers."""
    from translate.loading import load_translator

    tcfg = translator_config(cfg, mt)
    return load_translator(tcfg), tcfg.model_code


def build_scorer(cfg: RelevanceConfig, mt: Any = None) -> Scorer:
    """The configured scorer, loaded (heavy: call it where scoring happens), through its
    calibration when ``calibration_map`` is set."""
    scorer = _raw_scorer(cfg, mt)
    if not cfg.calibration_map:
        return scorer
    return CalibratedScorer(scorer, Calibration.load(cfg.calibration_map))


def _raw_scorer(cfg: RelevanceConfig, mt: Any = None) -> Scorer:
    if cfg.scorer == "lexical":
        return lexical_scorer(cfg)
    if cfg.scorer == "translate":
        translator, code = load_translation(cfg, mt)
        return TranslateScorer(translator, code, cfg.chrf_beta)
    encoder = load_encoder(cfg.encoder, cfg.device, cfg.batch_size)
    if cfg.threads > 0 and cfg.device == "cpu" and isinstance(encoder, SentenceTransformerEncoder):
        import torch

        torch.set_num_threads(cfg.threads)
    translator, code = load_translation(cfg, mt) if cfg.back_translate else (None, str)
    return EmbeddingScorer(encoder, cfg.calibration, cfg.cos_low, cfg.cos_high, translator, code)


class ScorerLoader:
    """``build_scorer`` with the build's ``[mt]`` settings bound: picklable, for the handler."""

    def __init__(self, mt: Any = None):
        self.mt = mt

    def __call__(self, cfg: RelevanceConfig) -> Scorer:
        return build_scorer(cfg, self.mt)


def check_relevance(cfg: RelevanceConfig, mt: Any = None) -> str:
    """Fail before the pipeline starts (RelevanceConfigError naming the setting); returns
    the scorer id the stage will record (with its calibration's, when one is set)."""
    raw = _check_raw(cfg, mt)
    if not cfg.calibration_map:
        return raw
    try:
        calibration = Calibration.load(cfg.calibration_map)
    except CalibrationError as err:
        raise RelevanceConfigError(f"relevance.calibration_map: {err}") from err
    if calibration.data.get("scorer") != raw:
        raise RelevanceConfigError(f"relevance.calibration_map: fitted for {calibration.data.get('scorer')!r}, "
                                   f"the configured scorer is {raw!r}; fit one with `m3curate relevance calibrate`")
    return f"{raw}|{calibration.id}"


def _check_raw(cfg: RelevanceConfig, mt: Any = None) -> str:
    if cfg.scorer == "lexical":
        try:
            lexical_scorer(cfg)
        except DictionaryError as err:
            raise RelevanceConfigError(f"relevance.dictionaries: {err}") from err
        return LexicalScorer.id
    if cfg.scorer == "translate" or cfg.back_translate:
        tcfg = translator_config(cfg, mt)
        from translate.loading import check_model

        check_model(dataclasses.replace(tcfg, targets=[], source_langs=[]))  # directions are per pair
        if cfg.scorer == "translate":
            return f"translate:{tcfg.resolved_model_id()}"
    try:
        encoder_info(cfg.encoder)  # the kind and the declared languages, as the workers will read them
        meta = read_meta(cfg.encoder)
    except EncoderError as err:
        raise RelevanceConfigError(f"relevance.encoder: {err}") from err
    return f"embedding:{meta.get('name') or os.path.basename(os.path.normpath(cfg.encoder))}"
