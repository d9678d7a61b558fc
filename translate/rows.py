"""Pure functions of the ``mt`` stage: which texts of a row to translate, and the row after.

``plan_requests`` fans a ``pairs`` row out into keyed requests, one per (text, target
language): key ``(row id, text index, target)``, value ``(text, model source code,
model target code)``. After inference, ``merge_row`` puts the outcomes back into the row:
translations are appended to ``texts`` in a fixed order (source text index, then the
target's position in ``mt.targets``), each also becomes a ``parallel`` row, and each
failure becomes a text-level reject. The order never depends on how Beam batched or
grouped the requests, so the output is the same on any runner.

Back-translation (``mt.back_translate``): a weak text with an anchor is translated into
the anchor's language and stored as a ``translation`` text derived from the weak text
(``derived_from`` = its index). Relevance scoring can then compare the anchor with a
text in the anchor's own language. No parallel row is made for it: a weak alt-text is
not a strictly-aligned sentence, and its translation is a scoring aid.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from schemas.rows import UNDETERMINED, Reject, text_entry

RequestKey = tuple[str, int, str]  # (row id, text index, pipeline target language)
Request = tuple[str, str, str]  # (text, model source code, model target code)


@dataclass(frozen=True)
class Outcome:
    """What came back for one request: a translation (reason None) or why there is none."""

    index: int
    target: str
    text: str = ""
    score: float | None = None
    reason: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Plan:
    """The parts of the config the row functions need, plus the model's directions.

    targets: pipeline codes, in output order. pairs: the model's (src, tgt) in *model*
    codes. codes: pipeline code → model code.
    """

    targets: tuple[str, ...]
    source_kinds: frozenset[str]
    source_langs: frozenset[str]
    back_translate: bool
    codes: tuple[tuple[str, str], ...]
    pairs: frozenset[tuple[str, str]]
    model_id: str

    def code(self, lang: str) -> str:
        return dict(self.codes).get(lang, lang)

    def rank(self, target: str) -> tuple[int, int | str]:
        """Sort key of a target: configured targets in config order, others after, by code."""
        return (0, self.targets.index(target)) if target in self.targets else (1, target)


def _wanted(row: dict[str, Any], i: int, text: dict[str, Any], plan: Plan) -> list[str]:
    """Target languages for text ``i``: configured targets, or its anchor's language."""
    if text["kind"] == "weak" and plan.back_translate and text.get("anchor") is not None:
        anchor = row["texts"][text["anchor"]] if 0 <= text["anchor"] < len(row["texts"]) else None
        return [anchor["lang"]] if anchor is not None else []
    if text["kind"] in plan.source_kinds:
        return list(plan.targets)
    return []


def plan_requests(row: dict[str, Any], plan: Plan, stats: Counter[str]) -> list[tuple[RequestKey, Request]]:
    """The translation requests of one pairs row (see module docstring); skips are counted."""
    done = {(t.get("derived_from"), t["lang"]) for t in row["texts"] if t["kind"] == "translation"}
    out = []
    for i, text in enumerate(row["texts"]):
        src = text["lang"]
        for tgt in _wanted(row, i, text, plan):
            if tgt == src:
                continue
            if src == UNDETERMINED or tgt == UNDETERMINED:
                stats["skipped_unknown_lang"] += 1
            elif plan.source_langs and src not in plan.source_langs:
                stats["skipped_source_lang"] += 1
            elif (i, tgt) in done:
                stats["skipped_already_translated"] += 1
            elif (plan.code(src), plan.code(tgt)) not in plan.pairs:
                stats["skipped_unsupported_pair"] += 1
            else:
                out.append(((row["id"], i, tgt), (text["text"], plan.code(src), plan.code(tgt))))
    return out


def request_length(element: Any) -> int:
    """Length (characters) of a request or a keyed request: Beam's bucketing key."""
    request = element[1] if len(element) == 2 else element
    return len(request[0])


def parallel_id(pair_id: str, index: int, target: str, model_id: str) -> str:
    """Stable id of a machine-made parallel row (the text index keeps two captions of one
    image translated into one language apart)."""
    key = f"{pair_id}\x00{index}\x00{target}\x00{model_id}"
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def _parallel(row: dict[str, Any], src: dict[str, Any], out: Outcome, model_id: str) -> dict[str, Any]:
    return {"id": parallel_id(row["id"], out.index, out.target, model_id), "source": row["source"],
            "source_id": row["source_id"], "split": row["split"], "provenance": row["provenance"],
            "src_text": src["text"], "src_lang": src["lang"], "src_lang_score": src.get("lang_score"),
            "tgt_text": out.text, "tgt_lang": out.target, "tgt_lang_score": None,
            "src_declared_lang": src.get("declared_lang"), "tgt_declared_lang": None, "origin": model_id,
            "score": out.score, "pair_id": row["id"]}


def reject(row: dict[str, Any], out: Outcome, model_id: str) -> Reject:
    """The text-level Reject of a translation that was not made (the stage framework
    names its stage)."""
    src = row["texts"][out.index]
    raw = {"text": src["text"], "lang": src["lang"], "kind": src["kind"], "text_index": out.index,
           "target": out.target, "model": model_id, "provenance": row["provenance"]}
    return Reject.of_row(row, str(out.reason), out.detail, raw, level="text")


def merge_row(row: dict[str, Any], outcomes: list[Outcome], plan: Plan,
              stats: Counter[str]) -> tuple[dict[str, Any], list[dict[str, Any]], list[Reject]]:
    """(row with translations appended, its parallel rows, its rejects)."""
    texts = list(row["texts"])
    parallel, rejects = [], []
    for out in sorted(outcomes, key=lambda o: (o.index, plan.rank(o.target))):
        src = row["texts"][out.index]
        if out.reason is None and not out.text.strip():
            out = Outcome(out.index, out.target, reason="empty_output", detail="the model produced an empty translation")
        if out.reason is not None:
            rejects.append(reject(row, out, plan.model_id))
            continue
        texts.append(text_entry(out.text, "translation", plan.model_id, out.target, derived_from=out.index,
                                score=out.score))
        if src["kind"] == "weak":
            stats[f"back_translated_{out.target}"] += 1
        else:
            stats[f"translated_{out.target}"] += 1
            parallel.append(_parallel(row, src, out, plan.model_id))
    return {**row, "texts": texts}, parallel, rejects
