"""Evaluating relevance scorers: aligned vs shuffled pairs (ROC-AUC), and graded texts (Spearman).

``m3curate relevance eval --pairs aligned.tsv`` reads pairs known to be aligned, makes as
many mismatched pairs by a seeded derangement of the anchors (no pair keeps its own), and
asks how well each scorer separates the two: ROC-AUC (the Mann-Whitney U statistic over
all aligned x shuffled comparisons, ties counting one half) and the score distribution of
each. ``--graded FILE`` adds Spearman's rank correlation between the scores and the
constructed or human grades. Both metrics are implemented here, with numpy only: no
scikit-learn or scipy dependency for two formulas.

File layouts (TSV, UTF-8, optional header line starting with ``text``):

- pairs: ``text<TAB>lang<TAB>anchor<TAB>anchor_lang``
- graded: ``text<TAB>lang<TAB>anchor<TAB>anchor_lang<TAB>grade``; the demo writes one
  (``write_demo_graded``) from its weak.jsonl.

Pairs a scorer cannot judge (None) are left out of its metrics and counted as ``unscored``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curation.relevance.scorers import UNSCORED, Pair, Scorer, why_unscored


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (what Spearman and Mann-Whitney need)."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    out = np.empty(len(x), dtype=np.float64)
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            out[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return out


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(score of a random positive > a random negative), ties 1/2: Mann-Whitney U / (n1 n0)."""
    n1, n0 = len(positive), len(negative)
    if not n1 or not n0:
        raise ValueError("ROC-AUC needs at least one positive and one negative score")
    r = ranks([*positive, *negative])
    u = r[:n1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the tie-averaged ranks (nan if either is constant)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("Spearman needs two sequences of the same length, at least 2")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom else float("nan")


def distribution(scores: Sequence[float]) -> dict[str, float]:
    """Summary of a score list: n, mean and the 10/25/50/75/90th percentiles."""
    if not scores:
        return {"n": 0}
    q = np.percentile(np.asarray(scores, dtype=np.float64), [10, 25, 50, 75, 90])
    return {"n": len(scores), "mean": round(float(np.mean(scores)), 4),
            **{f"p{p}": round(float(v), 4) for p, v in zip((10, 25, 50, 75, 90), q, strict=True)}}


def read_tsv(path: str | Path, columns: int) -> list[list[str]]:
    """Rows of a TSV with at least ``columns`` fields (header and blank lines skipped)."""
    rows = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or (lineno == 1 and line.startswith("text\t")):
            continue
        fields = line.split("\t")
        if len(fields) < columns:
            raise ValueError(f"{path}:{lineno}: expected {columns} tab-separated fields, got {len(fields)}")
        rows.append(fields)
    return rows


def read_pairs(path: str | Path) -> list[Pair]:
    return [Pair(*f[:4]) for f in read_tsv(path, 4)]


def read_graded(path: str | Path) -> tuple[list[Pair], list[float]]:
    rows = read_tsv(path, 5)
    return [Pair(*f[:4]) for f in rows], [float(f[4]) for f in rows]


def shuffled(pairs: Sequence[Pair], seed: int) -> list[Pair]:
    """Each text with another pair's anchor (a seeded derangement: a rotation of a shuffle)."""
    if len(pairs) < 2:
        raise ValueError("need at least 2 aligned pairs to build mismatched ones")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    out: list[Pair | None] = [None] * len(pairs)
    for k, i in enumerate(order):
        j = order[(k + 1) % len(order)]
        out[i] = pairs[i]._replace(anchor=pairs[j].anchor, anchor_lang=pairs[j].anchor_lang)
    return out  # type: ignore[return-value]


PROGRESS_EVERY = 5.0


def score_all(scorer: Scorer, pairs: Sequence[Pair], batch_size: int = 256, log: Any = None) -> list[float | None]:
    """Every pair's score, ``batch_size`` at a time; ``log(message)`` (e.g. print to stderr)
    hears pairs done, rate and ETA at most every ``PROGRESS_EVERY`` seconds on long files."""
    out: list[float | None] = []
    started = last = time.time()
    for start in range(0, len(pairs), batch_size):
        out.extend(scorer.score(pairs[start:start + batch_size]))
        now = time.time()
        if log is not None and now - last >= PROGRESS_EVERY and len(out) < len(pairs):
            rate = len(out) / (now - started)
            log(f"{scorer.id}: {len(out)}/{len(pairs)} pairs, {rate:.0f} pairs/s, about "
                f"{(len(pairs) - len(out)) / rate:.0f}s left")
            last = now
    return out


def unscored_counts(scorer: Scorer, pairs: Sequence[Pair], scores: Sequence[float | None]) -> dict[str, int]:
    """How many pairs stayed unscored, by ``"<lang> -> <anchor_lang>: <reason>"``
    (``scorers.UNSCORED`` explains each reason)."""
    out: dict[str, int] = {}
    for pair, score in zip(pairs, scores, strict=True):
        if score is None:
            key = f"{pair.lang} -> {pair.anchor_lang}: {why_unscored(scorer, pair)}"
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def unscored_warnings(scorer: Scorer, counts: dict[str, int], total: int) -> list[str]:
    """One warning line per (languages, reason) of ``unscored_counts``, saying what to do."""
    return [f"warning: {scorer.id}: {n} of {total} pairs unscored ({key.split(': ')[0]}): "
            f"{UNSCORED[key.rsplit(': ', 1)[1]]}" for key, n in counts.items()]


def _number(value: float | None) -> float | None:
    """A JSON-safe number: NaN and infinities (no correlation defined) become None."""
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def evaluate_aligned(scorer: Scorer, pairs: Sequence[Pair], seed: int = 0, log: Any = None) -> dict[str, Any]:
    """ROC-AUC and score distributions of aligned against shuffled pairs; ``unscored``
    counts the aligned pairs left unscored (``unscored_shuffled`` the mismatched ones), by
    languages and reason in ``unscored_by``."""
    pos = score_all(scorer, pairs, log=log)
    neg = score_all(scorer, shuffled(pairs, seed), log=log)
    p, n = [s for s in pos if s is not None], [s for s in neg if s is not None]
    report: dict[str, Any] = {"scorer": scorer.id, "pairs": len(pairs),
                              "unscored": len(pos) - len(p), "unscored_shuffled": len(neg) - len(n),
                              "unscored_by": unscored_counts(scorer, pairs, pos),
                              "aligned": distribution(p), "shuffled": distribution(n)}
    report["auc"] = _number(roc_auc(p, n)) if p and n else None
    return report


def evaluate_graded(scorer: Scorer, pairs: Sequence[Pair], grades: Sequence[float], log: Any = None) -> dict[str, Any]:
    """Spearman correlation of scores with grades, and the mean score per grade."""
    scores = score_all(scorer, pairs, log=log)
    kept = [(s, g) for s, g in zip(scores, grades, strict=True) if s is not None]
    by_grade: dict[float, list[float]] = {}
    for s, g in kept:
        by_grade.setdefault(g, []).append(s)
    rho = spearman([s for s, _ in kept], [g for _, g in kept]) if len(kept) > 1 else None
    return {"scorer": scorer.id, "pairs": len(pairs), "unscored": len(pairs) - len(kept),
            "spearman": _number(rho),
            "mean_by_grade": {str(g): round(float(np.mean(v)), 4) for g, v in sorted(by_grade.items())}}


def write_pairs(path: str | Path, pairs: Iterable[Pair]) -> int:
    """Pairs in the layout ``read_pairs`` and ``relevance eval --pairs`` read (a header, then
    text, lang, anchor, anchor_lang); returns how many."""
    lines = ["text\tlang\tanchor\tanchor_lang\n", *("\t".join(p) + "\n" for p in pairs)]
    Path(path).write_text("".join(lines), encoding="utf-8")
    return len(lines) - 1


def score_report(scorer: Scorer, pairs_tsv: str | Path, graded_tsv: str | Path, seed: int = 0) -> dict[str, Any]:
    """A scorer's summary on two eval files (what the demo logs): AUC aligned vs shuffled and Spearman on the grades."""
    aligned = evaluate_aligned(scorer, read_pairs(pairs_tsv), seed)
    graded = evaluate_graded(scorer, *read_graded(graded_tsv))
    return {"scorer": scorer.id, "auc": aligned["auc"], "spearman": graded["spearman"],
            "mean_by_grade": graded["mean_by_grade"]}
