"""Weak-text relevance (RC3): the ``relevance`` row stage, ``ScoreRelevance``.

RC3 keeps weakly-aligned web texts (alt-texts, WIT reference descriptions) and lets the
trainer pull each towards its image only as far as its *textual relevance* to the image's
strictly-aligned caption allows. This stage computes that relevance, in [0, 1], for every
``weak`` text of a ``pairs`` row, with one of the scorers of ``curation.relevance.scorers``.

Anchor resolution, per weak text:

1. its ``anchor`` index, when it points at a non-weak text of the row (the caption the
   input paired it with, language and all: the index records which anchor was used);
2. else, with ``no_anchor = "fallback"``, the configured ``fallback_anchor`` text (in
   ``fallback_anchor_lang``); ``relevance_scorer`` then reads ``<scorer>@fallback``;
3. else the text is rejected: ``relevance/no_anchor``.

Then ``relevance`` and ``relevance_scorer`` are written into the text. A score below
``threshold`` (when > 0) rejects the text, ``relevance/below_threshold``, its score kept in
the reject's detail and raw text. A text the scorer cannot judge (no dictionary or
translation direction between its language and the anchor's) keeps ``relevance`` null:
it is not evidence of irrelevance, and the trainer's ``data.null_relevance`` decides.
When the ``mt`` stage back-translated a weak text into its anchor's language
(``mt.back_translate``: a ``translation`` text with ``derived_from`` = the weak text), the
scorers that would translate it themselves score that translation against the anchor
instead (``reuse_origin``: ``translate`` when the mt stage used its model, ``embedding``
with ``back_translate`` and the ``[mt]`` model; counter ``reused_back_translation``);
``lexical`` always compares the weak text itself. A dropped weak text takes its
back-translation with it. Dropped texts are text-level rejects; the row's indices are remapped as the ``lid`` stage
does; a row left with no text is one record-level reject. ``parallel`` rows pass through.

Beam: the stage framework (``schemas.stage``) batches the rows that have a weak text,
``batch_size`` rows per scoring call so an encoder sees whole batches, and loads the scorer
(its model) once per process, or once per machine with ``model_copies``; other rows go
around it. Counters (namespace ``relevance``): ``in``, ``kept``, ``rejected_<reason>``
(the framework's), ``scored_<scorer>_<lang>``, ``unscored_<scorer>_<lang>``,
``fallback_anchor``, ``reused_back_translation``, and ``unscored_why_<reason>_<lang>`` for
every weak text left unscored, with a warning once per process, scorer, reason and
language (``curation.relevance.scorers.UNSCORED`` lists the reasons).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from curation.relevance.config import RelevanceConfig
from curation.relevance.scorers import UNSCORED, Pair, Scorer, why_unscored
from schemas.rows import Reject, back_translated_from, remap_text_indices
from schemas.stage import ApplyRowStage, RowStage

NO_ANCHOR = "no_anchor"
BELOW_THRESHOLD = "below_threshold"


class Anchor(NamedTuple):
    text: str
    lang: str
    fallback: bool


def resolve_anchor(texts: Sequence[dict[str, Any]], i: int, cfg: RelevanceConfig) -> Anchor | None:
    """The anchor of weak text ``i`` (module docstring, steps 1-3); None: reject it."""
    idx = texts[i].get("anchor")
    if idx is not None and 0 <= idx < len(texts) and idx != i and texts[idx]["kind"] != "weak":
        return Anchor(texts[idx]["text"], texts[idx]["lang"], False)
    if cfg.no_anchor == "fallback":
        return Anchor(cfg.fallback_anchor, cfg.fallback_anchor_lang, True)
    return None


Result = tuple[int, float | None, Anchor | None]  # (text index, score, anchor)


def _apply(row: dict[str, Any], results: list[Result], scorer_id: str, cfg: RelevanceConfig,
           tally: Counter[tuple[str, str]], kept_rows: list[dict[str, Any]], rejects: list[Reject]) -> None:
    """Write the scores of one row's weak texts; drop (and reject) the texts that fail.
    ``tally`` counts (outcome, language): ``score_rows`` names the counters once a batch."""
    texts = list(row["texts"])
    dropped: list[tuple[int, str, str]] = []
    threshold = cfg.threshold
    for i, score, anchor in results:
        if anchor is None:
            dropped.append((i, NO_ANCHOR, "weak text without an anchor caption (relevance.no_anchor = \"reject\")"))
            continue
        sid = scorer_id
        if anchor.fallback:
            sid = f"{scorer_id}@fallback"
            tally[("fallback", "")] += 1
        text = texts[i].copy()
        text["relevance"], text["relevance_scorer"] = score, None if score is None else sid
        texts[i] = text
        if score is None:
            tally[("unscored", text["lang"])] += 1
        elif score < threshold:
            dropped.append((i, BELOW_THRESHOLD, f"relevance {score:.4f} < threshold {threshold} ({sid})"))
        else:
            tally[("scored", text["lang"])] += 1
    if not dropped:
        new_row = row.copy()
        new_row["texts"] = texts
        kept_rows.append(new_row)
        return
    _drop(row, texts, dropped, tally, kept_rows, rejects)


def _counter_names(tally: Counter[tuple[str, str]], scorer: str, stats: Counter[str]) -> None:
    """(outcome, language) tallies as the stage's counter names (module docstring)."""
    for (outcome, what), n in tally.items():
        if outcome in ("scored", "unscored"):
            stats[f"{outcome}_{scorer}_{what}"] += n
        else:
            stats["fallback_anchor"] += n


def _drop(row: dict[str, Any], texts: list[dict[str, Any]], dropped: list[tuple[int, str, str]],
          tally: Counter[tuple[str, str]], kept_rows: list[dict[str, Any]], rejects: list[Reject]) -> None:
    """Remove the dropped texts (text-level rejects), or reject the row if none is left. The
    ``mt`` stage's back-translation of a dropped weak text goes with it."""
    reasons = {i: reason for i, reason, _ in dropped}
    followers = [(j, reasons[d], f"back-translation of text {d}") for j, t in enumerate(texts)
                 if (d := back_translated_from(texts, t)) in reasons]
    dropped = dropped + followers
    gone = {i for i, _, _ in dropped}
    new_index = {i: n for n, i in enumerate(i for i in range(len(texts)) if i not in gone)}
    kept = [texts[i] for i in new_index]
    if not kept:
        reason = dropped[-1][1]
        detail = "every text dropped: " + "; ".join(f"text {i}: {r}: {d}" for i, r, d in dropped)
        rejects.append(Reject.of_row({**row, "texts": texts}, reason, detail))
        return
    remap_text_indices(kept, new_index)
    for i, reason, detail in dropped:
        raw = {"row_id": row["id"], "index": i, "text": texts[i]}
        rejects.append(Reject.of_row(row, reason, f"text {i} ({texts[i]['kind']}, {texts[i]['lang']}): {detail}",
                                     raw, level="text"))
    kept_rows.append({**row, "texts": kept})


def _back_translations(texts: Sequence[dict[str, Any]], origin: str | None) -> dict[tuple[int, str], str]:
    """(weak text index, language) -> the ``mt`` stage's back-translation of it (made by the
    model ``origin``; None: by any)."""
    return {(d, t["lang"]): t["text"] for t in texts
            if (d := back_translated_from(texts, t)) is not None and (origin is None or t["origin"] == origin)}


def reuse_origin(cfg: RelevanceConfig, scorer_id: str) -> str | None | bool:
    """Whose back-translations the scorer takes: ``translate`` those of its own model
    (its id is ``translate:<model id>``, the ``mt`` stage's origin is ``<model id>``);
    ``embedding`` with ``back_translate`` and the ``[mt]`` model (no ``mt_model`` of its
    own) any; False: none (``lexical``, and an embedding scorer that does not translate)."""
    if cfg.scorer == "translate":
        return scorer_id.removeprefix("translate:")
    if cfg.scorer == "embedding" and cfg.back_translate and not cfg.mt_model:
        return None
    return False


def _plan(rows: Sequence[dict[str, Any]], cfg: RelevanceConfig, scorer_id: str
          ) -> tuple[list[list[tuple[int, Anchor | None]] | None], list[Pair], int]:
    """Per row, the (index, anchor) of its weak texts (None: it has none); the pairs to
    score, in that order; and how many of them reuse a back-translation (module docstring)."""
    plan: list[list[tuple[int, Anchor | None]] | None] = []
    pairs: list[Pair] = []
    reused = 0
    origin = reuse_origin(cfg, scorer_id)
    for row in rows:
        texts = row["texts"]
        weak, back = None, None
        for i, text in enumerate(texts):
            if text["kind"] == "weak":
                anchor = resolve_anchor(texts, i, cfg)
                if weak is None:
                    weak = []
                    back = {} if origin is False else _back_translations(texts, origin)
                weak.append((i, anchor))
                if anchor is None:
                    continue
                translated = back.get((i, anchor.lang)) if text["lang"] != anchor.lang else None
                if translated is not None:
                    reused += 1
                    pairs.append(Pair(translated, anchor.lang, anchor.text, anchor.lang))
                else:
                    pairs.append(Pair(text["text"], text["lang"], anchor.text, anchor.lang))
        plan.append(weak)
    return plan, pairs, reused


_WARNED: set[tuple[str, str, str]] = set()


def _unscored(scorer: Scorer, scorer_id: str, pair: Pair, lang: str, stats: Counter[str]) -> None:
    """Count why a weak text stayed unscored (``unscored_why_<reason>_<lang>``), and warn
    once per process, scorer, reason and language: a null relevance is not evidence of
    irrelevance, but a scorer that scores nothing should not go unnoticed."""
    reason = why_unscored(scorer, pair)
    stats[f"unscored_why_{reason}_{lang}"] += 1
    if (scorer_id, reason, lang) not in _WARNED:
        _WARNED.add((scorer_id, reason, lang))
        logging.getLogger(__name__).warning("relevance (%s): weak texts in %s stay unscored (%s -> %s): %s",
                                            scorer_id, lang, pair.lang, pair.anchor_lang, UNSCORED[reason])


def score_rows(rows: Sequence[dict[str, Any]], scorer: Scorer, cfg: RelevanceConfig, stats: Counter[str],
               scorer_id: str | None = None) -> tuple[list[dict[str, Any]], list[Reject]]:
    """Score every weak text of a batch of pairs rows with one scorer call: (rows, rejects)."""
    sid = scorer_id or scorer.id
    plan, pairs, reused = _plan(rows, cfg, sid)
    if reused:
        stats["reused_back_translation"] += reused
    scores = scorer.score(pairs) if pairs else []
    if len(scores) != len(pairs):
        raise ValueError(f"scorer {sid} returned {len(scores)} scores for {len(pairs)} pairs")
    tally: Counter[tuple[str, str]] = Counter()
    kept: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    k = 0
    for row, weak in zip(rows, plan, strict=True):
        if weak is None:
            kept.append(row)
            continue
        results: list[Result] = []
        for i, anchor in weak:
            if anchor is None:
                results.append((i, None, None))
            else:
                results.append((i, scores[k], anchor))
                if scores[k] is None:
                    _unscored(scorer, sid, pairs[k], row["texts"][i]["lang"], stats)
                k += 1
        _apply(row, results, sid, cfg, tally, kept, rejects)
    _counter_names(tally, cfg.scorer, stats)
    return kept, rejects


def has_weak(row: dict[str, Any]) -> bool:
    for t in row["texts"]:  # noqa: SIM110 (a loop: any() of a generator costs more, once per row)
        if t["kind"] == "weak":
            return True
    return False


class ScoreWeakTexts(RowStage):
    """The ``relevance`` stage's logic: the weak texts of ``batch_size`` rows scored in one
    scorer call. Rows without a weak text go around it (``wants``).

    cfg: the ``[relevance]`` settings. loader: builds the scorer from cfg on the workers.
    scorer_id: the id recorded on scored texts, when known without loading the model (a
    model shared across processes is a proxy whose attributes cannot be read).
    """

    wants = staticmethod(has_weak)

    def __init__(self, cfg: RelevanceConfig, loader: Callable[[RelevanceConfig], Scorer], scorer_id: str | None):
        self.cfg, self.loader, self.scorer_id = cfg, loader, scorer_id
        self.batch_size = cfg.batch_size

    def load(self) -> Scorer:
        return self.loader(self.cfg)

    def copies(self) -> int | None:
        return self.cfg.copies()

    def process(self, table: str, rows: list[dict[str, Any]], model: Scorer,
                stats: Counter[str]) -> tuple[list[dict[str, Any]], list[Reject]]:
        return score_rows(rows, model, self.cfg, stats, self.scorer_id)


class ScoreRelevance(ApplyRowStage):
    """Row stage: {"pairs", "parallel"} -> ({"pairs" with weak texts scored, "parallel"}, rejects).

    cfg: the ``[relevance]`` settings. stage: its name in the registry. loader: cfg ->
    Scorer, called on the workers (default: ``curation.relevance.build.build_scorer``
    with ``mt``, the build's ``[mt]`` settings, for the translate scorer). Building the
    transform checks the configuration and its files (``check_relevance``), before the
    pipeline runs. With ``model_copies`` (one encoder per GPU machine) rows go through
    ``RunInference``; otherwise the framework's in-DoFn batching (``schemas.stage``).
    """

    def __init__(self, cfg: RelevanceConfig, stage: str, loader: Callable[[RelevanceConfig], Scorer] | None = None,
                 mt: Any = None, label: str | None = None):
        from curation.relevance.build import ScorerLoader, check_relevance

        scorer_id = None if loader is not None else check_relevance(cfg, mt)
        super().__init__(stage, ScoreWeakTexts(cfg, loader or ScorerLoader(mt), scorer_id), label)
        self.cfg = cfg
