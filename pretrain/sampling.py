"""Per-step choices made for each row: which text variant it shows, which tokens MLM (and
conditional MLM on parallel text) masks, which regions masked region modelling masks, which
patches masked patch modelling masks.

All are row-local and seeded per sample, so a resumed run makes the same choices as an
uninterrupted one without replaying any random state.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pretrain.config import DataConfig
from schemas import back_translated_from

STRICT_KINDS = ("caption", "translation", "codeswitch")


@dataclass
class TextChoice:
    """The text a row shows this step.

    relevance: 1 for strict texts; the weak text's r (or data.null_relevance when unscored).
    anchor: for weak texts, the strictly-aligned text its relevance was measured against.
    spans: character spans switched by code-switching (masked preferentially by MLM).
    concepts: the text's concept names (``texts[].concepts``; None when the stage did not run).
    """

    text: str
    lang: str
    kind: str
    relevance: float = 1.0
    anchor: str | None = None
    spans: list[tuple[int, int]] = field(default_factory=list)
    concepts: list[str] | None = None

    @property
    def is_weak(self) -> bool:
        return self.kind == "weak"


def _source(texts: Sequence[dict[str, Any]], t: dict[str, Any]) -> dict[str, Any]:
    """The weak text that ``t`` is a back-translation of (``mt.back_translate``), else ``t``:
    a translation of a weak text is as weakly aligned as the text, and takes its relevance
    and anchor."""
    d = back_translated_from(texts, t)
    return t if d is None else texts[d]


def _weight(t: dict[str, Any], src: dict[str, Any], cfg: DataConfig) -> float:
    w = cfg.kind_weights.get(src["kind"], 1.0) * cfg.lang_weights.get(t["lang"], 1.0)
    if w > 0 and src["kind"] == "weak" and src.get("relevance") is None and cfg.null_relevance == "skip":
        return 0.0
    return w


def choose_text(texts: Sequence[dict[str, Any]], cfg: DataConfig, rng: random.Random) -> TextChoice | None:
    """Draw one text by kind x language weight; None when the policy leaves the row nothing."""
    sources = [_source(texts, t) for t in texts]
    weights = [_weight(t, src, cfg) for t, src in zip(texts, sources, strict=True)]
    total = sum(weights)
    if total <= 0:
        return None
    pick = rng.random() * total
    idx = len(texts) - 1
    for i, w in enumerate(weights):
        pick -= w
        if pick < 0 and w > 0:
            idx = i
            break
    t, src = texts[idx], sources[idx]
    if src["kind"] != "weak":
        spans = [(s["start"], s["end"]) for s in t.get("spans") or []]
        return TextChoice(t["text"], t["lang"], t["kind"], spans=spans, concepts=t.get("concepts"))
    r = src.get("relevance")
    relevance = float(cfg.null_relevance if r is None else r)
    anchor_idx = src.get("anchor")
    anchor = texts[anchor_idx]["text"] if anchor_idx is not None else None
    return TextChoice(t["text"], t["lang"], "weak", relevance=relevance, anchor=anchor, concepts=t.get("concepts"))


def mask_tokens(ids: list[int], in_span: Sequence[bool], cfg: DataConfig, rng: random.Random,
                mask_id: int, vocab_size: int, special: frozenset[int]) -> tuple[list[int], list[int]]:
    """BERT-style masking with M3P's preference for code-switched tokens.

    Each ordinary token is chosen with ``mask_prob``, each token of a switched span with
    ``span_mask_prob``; at most ``max_masks`` are kept, switched ones first. A chosen token
    becomes [MASK] (80%), a random token (10%) or stays (10%). Labels are -100 elsewhere.
    """
    return masked_tokens(ids, in_span, (cfg.mask_prob, cfg.span_mask_prob), cfg.max_masks, rng, mask_id, vocab_size, special)


def mask_parallel(ids: list[int], cfg: DataConfig, rng: random.Random, mask_id: int, vocab_size: int,
                  special: frozenset[int]) -> tuple[list[int], list[int]]:
    """Masking of the parallel side conditional MLM predicts: each token with
    ``cmlm_mask_prob``, at most ``cmlm_max_masks``, 80/10/10 (CCLM: 0.4 and 12)."""
    return masked_tokens(ids, [], (cfg.cmlm_mask_prob, cfg.cmlm_mask_prob), cfg.cmlm_max_masks, rng, mask_id, vocab_size, special)


def masked_tokens(ids: list[int], in_span: Sequence[bool], probs: tuple[float, float], max_masks: int,
                  rng: random.Random, mask_id: int, vocab_size: int, special: frozenset[int]) -> tuple[list[int], list[int]]:
    """(masked ids, labels): tokens chosen with probs[0] (probs[1] inside a switched span),
    switched ones first, at most ``max_masks``; [MASK] 80%, random 10%, kept 10%."""
    chosen_span, chosen_plain = [], []
    for i, tok in enumerate(ids):
        if tok in special:
            continue
        flagged = bool(in_span[i]) if i < len(in_span) else False
        if rng.random() < probs[1 if flagged else 0]:
            (chosen_span if flagged else chosen_plain).append(i)
    chosen = (chosen_span + chosen_plain)[:max_masks]
    masked, labels = list(ids), [-100] * len(ids)
    for i in chosen:
        labels[i] = ids[i]
        u = rng.random()
        if u < 0.8:
            masked[i] = mask_id
        elif u < 0.9:
            other = rng.randrange(vocab_size)
            masked[i] = mask_id if other in special else other
    return masked, labels


def mask_regions(count: int, limit: int, prob: float, rng: random.Random) -> list[bool]:
    """Which of ``limit`` region slots masked region modelling masks: each of the first
    ``count`` (the real regions) with ``prob``, and one drawn at random when none was
    (UNITER's ``_get_img_mask``, as M3P and UC2 use it); padded slots never."""
    masked = [rng.random() < prob for _ in range(count)]
    if count and not any(masked):
        masked[rng.randrange(count)] = True
    return masked + [False] * (limit - count)


def masked_blocks(blocks: int, prob: float) -> int:
    """How many of ``blocks`` masked patch modelling masks: ceil(blocks * prob), as SimMIM's
    MaskGenerator counts them (rounded to 9 decimals first, so 10 * 0.3 is 3, not 4)."""
    return math.ceil(round(blocks * prob, 9))


def mask_patches(grid: int, block: int, prob: float, rng: random.Random) -> list[bool]:
    """Which patches of a ``grid`` x ``grid`` ViT input masked patch modelling masks, row
    major: the grid is cut into (grid / block)^2 squares of ``block`` x ``block`` patches and
    exactly ``masked_blocks`` of them, drawn without replacement, are masked whole (SimMIM's
    MaskGenerator: mask_patch_size / model_patch_size = block)."""
    side = grid // block
    chosen = set(rng.sample(range(side * side), masked_blocks(side * side, prob)))
    return [(r // block) * side + c // block in chosen for r in range(grid) for c in range(grid)]
