"""The ``[relevance]`` settings (RC3 weak-text relevance): a dataclass, validated once.

Kept beside the stage, as ``codeswitch/config.py`` is, so that ``curation/config.py`` only
declares the section: ``relevance_config_from_dict`` raises ``ConfigError`` naming the
setting and what to change. Dictionary and model paths resolve against the config file's
directory and must exist; they are read when ``ScoreRelevance`` is built, still before the
pipeline runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from schemas.settings import check_known, resolve_path

SCORERS = ("lexical", "translate", "embedding")
NO_ANCHOR = ("reject", "fallback")
CALIBRATIONS = ("linear", "logistic")
DEVICES = ("cpu", "cuda")


class RelevanceConfigError(ValueError):
    """A ``[relevance]`` setting is wrong (curation.config re-raises it as ConfigError)."""


@dataclass
class RelevanceConfig:
    """Relevance of every weak text to its anchor (the ``relevance`` stage); off unless
    ``enabled`` (a ``[relevance]`` section that sets ``scorer``, or ``enabled = true``).

    enabled: run the stage (default: true when the section is present).
    scorer: "lexical" (dictionary token-overlap F1; no model), "translate" (chrF of a
        machine translation against the anchor) or "embedding" (calibrated cosine of a
        sentence encoder). See curation/relevance/scorers.py.
    dictionaries: MUSE ``{src}-{tgt}.txt`` directory or table for ``lexical`` (empty:
        the ``[codeswitch]`` dictionaries).
    threshold: weak texts scoring below it are rejected (relevance/below_threshold); 0 = off.
    no_anchor: a weak text without anchor is "reject"ed (relevance/no_anchor) or scored
        against ``fallback_anchor`` (in ``fallback_anchor_lang``) with "fallback".
    mt_model: model directory for ``translate`` (and for ``embedding`` with
        ``back_translate``); empty: the ``[mt]`` section's model. mt_engine: fairseq |
        ctranslate2.
    encoder: directory of the sentence encoder for ``embedding`` (sentence-transformers,
        or fastText ``model.bin`` + ``m3curate-encoder.json``).
    back_translate: ``embedding`` only: translate the weak text into the anchor's
        language first (needed for a monolingual encoder).
    chrf_beta: ``translate``: chrF's beta. 1 (chrF1, precision and recall alike) rather
        than sacrebleu's default 2, which weights recall as MT evaluation should: a weak
        text that truly describes part of the image is not irrelevant for omitting the
        rest (on the demo's graded texts, Spearman 0.605 at beta 1 against 0.567 at 2).
    calibration: "linear" (clip((cos - cos_low) / (cos_high - cos_low), 0, 1)) or
        "logistic" (1 / (1 + exp(-8 (cos - mid) / (cos_high - cos_low))), mid halfway).
    device: cpu | cuda (the encoder's). batch_size: rows per scoring call.
    model_copies: encoder copies per worker machine (Beam ``model_copies``); 0 = 1 on
        cuda, one per process on cpu.
    threads: torch intra-op threads of each process that loads a sentence-transformers
        encoder on cpu (``torch.set_num_threads``, process-wide); 0 = torch's default (one
        per core), which oversubscribes the CPU when a machine runs several Beam worker
        processes: on a 2-CPU machine under load, 1 thread encoded MiniLM twice as fast as 2.
    calibration_map: a JSON calibration from ``m3curate relevance calibrate`` (a monotone
        map from the scorer's raw score to the probability that the pair is aligned,
        fitted for this scorer); the stage records ``<scorer id>|<method>:<digest>``.
        Empty: raw scores.
    """

    enabled: bool = False
    scorer: str = "lexical"
    dictionaries: str | dict[str, str] = ""
    threshold: float = 0.0
    no_anchor: str = "reject"
    fallback_anchor: str = ""
    fallback_anchor_lang: str = "en"
    mt_model: str = ""
    mt_engine: str = "fairseq"
    encoder: str = ""
    back_translate: bool = False
    chrf_beta: float = 1.0
    calibration: str = "linear"
    cos_low: float = 0.0
    cos_high: float = 1.0
    device: str = "cpu"
    batch_size: int = 64
    model_copies: int = 0
    threads: int = 0
    calibration_map: str = ""

    def copies(self) -> int | None:
        """Beam ``model_copies``: one shared encoder per machine on cuda, else per process."""
        if self.model_copies > 0:
            return self.model_copies
        return 1 if self.device == "cuda" else None


def _fail(name: str, value: Any, fix: str) -> RelevanceConfigError:
    return RelevanceConfigError(f"relevance.{name} = {value!r}: {fix}")


def _check_choices(cfg: RelevanceConfig) -> None:
    for name, allowed in (("scorer", SCORERS), ("no_anchor", NO_ANCHOR), ("calibration", CALIBRATIONS),
                          ("device", DEVICES), ("mt_engine", ("fairseq", "ctranslate2"))):
        if getattr(cfg, name) not in allowed:
            raise _fail(name, getattr(cfg, name), f"use one of {allowed}")


def _check_numbers(cfg: RelevanceConfig) -> None:
    for name in ("threshold", "cos_low", "cos_high", "chrf_beta"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(name, value, "must be a number")
    if not 0 <= cfg.threshold <= 1:
        raise _fail("threshold", cfg.threshold, "must be in [0, 1] (0 = off)")
    if cfg.chrf_beta <= 0:
        raise _fail("chrf_beta", cfg.chrf_beta, "must be positive (1: chrF1; 2: sacrebleu's default)")
    if not -1 <= cfg.cos_low < cfg.cos_high <= 1:
        raise RelevanceConfigError(f"relevance: need -1 <= cos_low < cos_high <= 1, got {cfg.cos_low}, {cfg.cos_high}")
    for name, low in (("batch_size", 1), ("model_copies", 0), ("threads", 0)):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _fail(name, value, f"must be an integer >= {low}")


def _check_paths(cfg: RelevanceConfig) -> None:
    if cfg.no_anchor == "fallback" and not cfg.fallback_anchor.strip():
        raise _fail("fallback_anchor", cfg.fallback_anchor, "set the text weak texts without anchor are scored against")
    if cfg.scorer == "embedding":
        if not cfg.encoder:
            raise _fail("encoder", cfg.encoder, "point it at a sentence-transformers or fastText encoder directory")
        if "://" not in cfg.encoder and not os.path.isdir(cfg.encoder):
            raise _fail("encoder", cfg.encoder, "no such directory")
    if cfg.mt_model and "://" not in cfg.mt_model and not os.path.isdir(cfg.mt_model):
        raise _fail("mt_model", cfg.mt_model, "no such directory")


def relevance_config_from_dict(data: dict[str, Any] | None, base_dir: str = ".") -> RelevanceConfig:
    """A validated RelevanceConfig from the parsed ``[relevance]`` table (None: stage off).

    A present section turns the stage on unless it says ``enabled = false``.
    """
    if data is None:
        return RelevanceConfig()
    check_known("relevance", data, RelevanceConfig, RelevanceConfigError)
    cfg = RelevanceConfig(**{"enabled": True, **data})
    if isinstance(cfg.dictionaries, str):
        cfg.dictionaries = resolve_path(cfg.dictionaries, base_dir)
    elif isinstance(cfg.dictionaries, dict):
        cfg.dictionaries = {k: resolve_path(v, base_dir) for k, v in cfg.dictionaries.items()}
    else:
        raise _fail("dictionaries", cfg.dictionaries, "a directory or a table {\"en-de\" = \"file.txt\"}")
    cfg.encoder, cfg.mt_model = resolve_path(cfg.encoder, base_dir), resolve_path(cfg.mt_model, base_dir)
    cfg.calibration_map = resolve_path(cfg.calibration_map, base_dir)
    _check_choices(cfg)
    _check_numbers(cfg)
    _check_paths(cfg)
    return cfg


def resolve_relevance(cfg: RelevanceConfig, codeswitch_dictionaries: str | dict[str, str]) -> RelevanceConfig:
    """``cfg`` with empty ``dictionaries`` defaulted to the ``[codeswitch]`` ones (so the
    manifest's resolved config shows which files the lexical scorer read); an enabled
    lexical scorer with no dictionaries at all is an error, before any work."""
    if not cfg.dictionaries and codeswitch_dictionaries:
        cfg = replace(cfg, dictionaries=codeswitch_dictionaries)
    if cfg.enabled and cfg.scorer == "lexical" and not cfg.dictionaries:
        raise _fail("dictionaries", cfg.dictionaries, "the lexical scorer needs MUSE dictionaries: set "
                    "relevance.dictionaries or [codeswitch] dictionaries")
    return cfg
