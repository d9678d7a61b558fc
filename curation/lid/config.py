"""The ``[lid]`` settings: one dataclass, validated once, before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class LidConfigError(ValueError):
    """A ``[lid]`` setting is wrong; the message names it and says what to change."""


@dataclass
class LidConfig:
    """Language identification with fastText (the ``lid`` stage); off when ``model`` is empty.

    model: a fastText LID model file: lid.176.bin/.ftz (labels ``__label__en``) or
        GlotLID/OpenLID (``__label__eng_Latn``). Labels are normalised to one code scheme
        (see ``curation/lid/labels.py``).
    threshold: minimum confidence, globally; thresholds: per-language overrides {lang: t}.
    allowed: languages to keep (empty: all); a text in another one is rejected lid/not_allowed.
    low_confidence: "reject" (reason lid/low_confidence) or "und" (keep, language "und").
    mismatch: what a declared language that differs from the detected one does:
        "flag" (keep the detected language, count it; declared_lang stays beside it),
        "declared" (keep the declared language) or "reject" (reason lid/lang_mismatch).
    max_chars: texts are cut to this many characters before prediction.
    batch_size: texts per fastText call (whole rows); 128-256 is fastest inside Beam (larger
        batches keep rows alive past the young GC generations, see curation/lid/stage.py).
    """

    model: str = ""
    threshold: float = 0.5
    thresholds: dict[str, float] = field(default_factory=dict)
    allowed: list[str] = field(default_factory=list)
    low_confidence: str = "reject"
    mismatch: str = "flag"
    max_chars: int = 1000
    batch_size: int = 128


def validate(lid: LidConfig) -> LidConfig:
    """Range and choice checks; raises LidConfigError naming the setting."""
    if not 0 <= lid.threshold <= 1 or any(not 0 <= t <= 1 for t in lid.thresholds.values()):
        raise LidConfigError("lid.threshold and lid.thresholds values must be in [0, 1]")
    if lid.low_confidence not in ("reject", "und"):
        raise LidConfigError(f"lid.low_confidence = {lid.low_confidence!r}: use 'reject' or 'und'")
    if lid.mismatch not in ("flag", "declared", "reject"):
        raise LidConfigError(f"lid.mismatch = {lid.mismatch!r}: use 'flag', 'declared' or 'reject'")
    if lid.max_chars <= 0 or lid.batch_size <= 0:
        raise LidConfigError("lid.max_chars and lid.batch_size must be positive")
    return lid


def _resolve(path: str, base_dir: str) -> str:
    if "://" in path or Path(path).is_absolute():
        return path
    return str(Path(base_dir) / path)


def lid_config_from_dict(data: dict[str, Any] | None, base_dir: str = ".") -> LidConfig:
    """The ``[lid]`` table as a validated LidConfig; a relative model path resolves
    against ``base_dir`` (the config file's folder)."""
    data = dict(data or {})
    known = {f.name for f in fields(LidConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise LidConfigError(f"lid: unknown setting(s) {unknown}; known: {sorted(known)}")
    if data.get("model"):
        data["model"] = _resolve(data["model"], base_dir)
    try:
        cfg = LidConfig(**data)
    except TypeError as err:
        raise LidConfigError(f"lid: {err}") from err
    return validate(cfg)
