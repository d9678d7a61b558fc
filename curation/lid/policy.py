"""The ``lid`` stage's decisions, as pure functions of detections (no Beam, no fastText).

``LidPolicy.decide`` turns one detection into an outcome; ``label_pairs_row`` and
``label_parallel_row`` apply the outcomes of a row's texts to it: they write ``lang`` and
``lang_score`` into the kept texts, drop the rejected ones (remapping indices) and build
the Rejects. The order of the checks, and why, is in ``curation/lid/stage.py``'s docstring.

An outcome is a tuple ``(lang, score, reason, detail)``: ``reason`` is None for a kept
text, else the reject reason (``low_confidence``, ``lang_mismatch``, ``not_allowed``).
Counts go into a plain ``Counter`` that the DoFn turns into Beam counters once a batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from curation.lid.config import LidConfig
from curation.lid.labels import NOT_A_LANGUAGE, normalise_code
from schemas.rows import UNDETERMINED, Reject, lang_key, remap_text_indices

LOW_CONFIDENCE = "low_confidence"
LANG_MISMATCH = "lang_mismatch"
NOT_ALLOWED = "not_allowed"

Outcome = tuple[str, float, str | None, str]


@lru_cache(maxsize=4096)
def declared_code(value: str | None) -> str | None | bool:
    """A declared language as a canonical code; None when nothing is declared (absent,
    ``und``, ``mul``...), False when the value is not a language code at all."""
    if not value or value == UNDETERMINED:
        return None
    code = normalise_code(value)
    if code is None:
        return False
    return None if code in NOT_A_LANGUAGE else code


class LidPolicy:
    """The ``[lid]`` settings, with codes normalised once, as decisions on detections."""

    def __init__(self, cfg: LidConfig):
        self.max_chars = cfg.max_chars
        self.threshold = cfg.threshold
        self.thresholds = {normalise_code(k) or k: v for k, v in cfg.thresholds.items()}
        self.allowed = frozenset(lang_key(normalise_code(a) or a) for a in cfg.allowed)
        self.low_confidence = cfg.low_confidence
        self.mismatch = cfg.mismatch
        # No per-language thresholds, no allow-list: an undeclared confident text is kept as is.
        self.simple = not self.thresholds and not self.allowed

    def limit(self, code: str) -> float:
        """The threshold for ``code``: its own, else its base language's, else the global one."""
        if not self.thresholds:
            return self.threshold
        found = self.thresholds.get(code)
        return found if found is not None else self.thresholds.get(lang_key(code), self.threshold)

    def confident(self, code: str, score: float) -> bool:
        """Score 0 (empty text, nothing detected) is never confident, whatever the threshold."""
        return score > 0.0 and score >= self.limit(code)

    def overrides(self, code: str, score: float, declared: str | None) -> bool:
        """Whether a confident detection disagrees with a usable declared language."""
        return declared is not None and self.confident(code, score) and lang_key(declared) != lang_key(code)

    def decide(self, code: str, score: float, declared: str | None, declared_score: float | None,
               stats: Counter[str]) -> Outcome:
        """The outcome for one text; ``declared_score`` is the model's probability for
        the declared language (needed only when ``mismatch == "declared"``)."""
        if not self.confident(code, score):
            if self.low_confidence == "und":
                return UNDETERMINED, score, None, ""
            detail = "empty text" if score <= 0.0 else f"detected {code} with score {score:.3f} < threshold {self.limit(code)}"
            return code, score, LOW_CONFIDENCE, detail
        lang = code
        if declared is not None and lang_key(declared) != lang_key(code):
            stats["mismatch"] += 1
            if self.mismatch == "reject":
                return code, score, LANG_MISMATCH, f"declared {declared}, detected {code} ({score:.3f})"
            if self.mismatch == "declared":
                lang, score = declared, declared_score if declared_score is not None else 0.0
        if self.allowed and lang_key(lang) not in self.allowed:
            return lang, score, NOT_ALLOWED, f"{lang} ({score:.3f}) is not among allowed {sorted(self.allowed)}"
        return lang, score, None, ""


def label_pairs_row(row: dict[str, Any], outcomes: list[Outcome], stats: Counter[str],
                    kept_rows: list[dict[str, Any]], rejects: list[Reject]) -> None:
    """Apply a row's outcomes: the labelled row goes to ``kept_rows`` (if any text is
    kept) and a Reject per dropped text to ``rejects``; a row that loses every text is
    one record-level Reject instead (reason of its last text)."""
    kept: list[dict[str, Any]] = []
    new_index: dict[int, int] = {}
    dropped: list[tuple[int, str, str]] = []
    for i, (text, (lang, score, reason, detail)) in enumerate(zip(row["texts"], outcomes, strict=True)):
        if reason is None:
            new_index[i] = len(kept)
            kept.append({**text, "lang": lang, "lang_score": score})
        else:
            dropped.append((i, reason, detail))
    if not kept:
        reason = dropped[-1][1]
        detail = "every text dropped: " + "; ".join(f"text {i}: {r}: {d}" for i, r, d in dropped)
        rejects.append(Reject.of_row(row, reason, detail))
        return
    if dropped:
        remap_text_indices(kept, new_index)
    for i, reason, detail in dropped:
        raw = {"row_id": row["id"], "index": i, "text": row["texts"][i]}
        detail = f"text {i} ({row['texts'][i]['kind']}): {detail}"
        rejects.append(Reject.of_row(row, reason, detail, raw, level="text"))
    for text in kept:
        stats[f"lang_{text['lang']}"] += 1
    kept_rows.append({**row, "texts": kept})


def label_parallel_row(row: dict[str, Any], src: Outcome, tgt: Outcome, stats: Counter[str],
                       kept_rows: list[dict[str, Any]], rejects: list[Reject]) -> None:
    """The labelled parallel row to ``kept_rows``, or one record-level Reject when either
    side is dropped (reason of the first dropped side)."""
    failed = [(side, o) for side, o in (("src", src), ("tgt", tgt)) if o[2] is not None]
    if failed:
        reason = str(failed[0][1][2])
        detail = "; ".join(f"{side}: {o[2]}: {o[3]}" for side, o in failed)
        rejects.append(Reject.of_row(row, reason, detail))
        return
    stats[f"lang_{src[0]}"] += 1
    stats[f"lang_{tgt[0]}"] += 1
    kept_rows.append({**row, "src_lang": src[0], "src_lang_score": src[1], "tgt_lang": tgt[0], "tgt_lang_score": tgt[1]})


class Predictor(Protocol):
    """What the policy needs of a model (``curation.lid.model.LidModel``; a fake in tests)."""

    def predict(self, texts: Sequence[str], max_chars: int) -> tuple[list[str], list[float]]: ...

    def probability(self, texts: Sequence[str], keys: Sequence[str], max_chars: int) -> list[float]: ...


def _declared(values: Iterable[str | None], stats: Counter[str]) -> list[str | None]:
    """Declared languages as canonical codes (None where nothing usable is declared)."""
    out: list[str | None] = []
    for value in values:
        code = declared_code(value) if value else None
        if code is False:
            stats["declared_unknown"] += 1
            code = None
        out.append(code)  # type: ignore[arg-type]
    return out


class Detections(NamedTuple):
    """A batch's detections; ``special`` holds the outcomes of the texts the policy does
    not simply keep as detected (most batches: none), so the common case allocates nothing."""

    codes: list[str]
    scores: list[float]
    special: dict[int, Outcome]

    def outcome(self, i: int) -> Outcome:
        found = self.special.get(i)
        return found if found is not None else (self.codes[i], self.scores[i], None, "")


def detect(texts: list[str], declared: list[str | None], model: Predictor, policy: LidPolicy,
           stats: Counter[str]) -> Detections:
    """Detections of a batch of texts: one prediction call (two with ``mismatch =
    "declared"``, the second only for the texts whose declaration is overridden)."""
    codes, scores = model.predict(texts, policy.max_chars)
    declared_scores: dict[int, float] = {}
    if policy.mismatch == "declared":
        todo = [i for i, d in enumerate(declared) if policy.overrides(codes[i], scores[i], d)]
        if todo:
            keys = [lang_key(declared[i]) for i in todo]  # type: ignore[arg-type]
            probs = model.probability([texts[i] for i in todo], keys, policy.max_chars)
            declared_scores = dict(zip(todo, probs, strict=True))
    threshold = policy.threshold
    if policy.simple:  # only undeclared, confident texts can skip decide()
        todo = [i for i, (s, d) in enumerate(zip(scores, declared, strict=True))
                if d is not None or not (s >= threshold and s > 0.0)]
    else:
        todo = list(range(len(texts)))
    special = {}
    for i in todo:
        outcome = policy.decide(codes[i], scores[i], declared[i], declared_scores.get(i), stats)
        if outcome[2] is not None or outcome[0] != codes[i] or outcome[1] != scores[i]:
            special[i] = outcome
    return Detections(codes, scores, special)


Labelled = tuple[list[dict[str, Any]], list[Reject]]


def label_pairs_batch(rows: list[dict[str, Any]], model: Predictor, policy: LidPolicy, stats: Counter[str]) -> Labelled:
    """Label every text of a batch of pairs rows at once: (kept rows, rejects)."""
    texts = [t["text"] for row in rows for t in row["texts"]]
    declared = _declared((t.get("declared_lang") for row in rows for t in row["texts"]), stats)
    found = detect(texts, declared, model, policy, stats)
    codes, scores, special = found
    kept_rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    langs: list[str] = []
    at = 0
    for row in rows:
        row_texts = row["texts"]
        n = len(row_texts)
        if n == 1 and at not in special:  # the common case: one text, kept as detected
            text = row_texts[0].copy()
            text["lang"], text["lang_score"] = codes[at], scores[at]
            new = row.copy()
            new["texts"] = [text]
            kept_rows.append(new)
            langs.append(codes[at])
        else:
            label_pairs_row(row, [found.outcome(i) for i in range(at, at + n)], stats, kept_rows, rejects)
        at += n
    for lang, count in Counter(langs).items():
        stats[f"lang_{lang}"] += count
    return kept_rows, rejects


def label_parallel_batch(rows: list[dict[str, Any]], model: Predictor, policy: LidPolicy,
                         stats: Counter[str]) -> Labelled:
    """Label both sides of a batch of parallel rows at once: (kept rows, rejects)."""
    texts = [text for row in rows for text in (row["src_text"], row["tgt_text"])]
    declared = _declared((lang for row in rows for lang in (row["src_lang"], row["tgt_lang"])), stats)
    found = detect(texts, declared, model, policy, stats)
    kept_rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for i, row in enumerate(rows):
        label_parallel_row(row, found.outcome(2 * i), found.outcome(2 * i + 1), stats, kept_rows, rejects)
    return kept_rows, rejects
