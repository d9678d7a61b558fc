"""The relevance distribution the manifest records: per language and scorer, the weak
texts' score histogram, mean and unscored count."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

HIST_BINS = 10


class RelevanceHistogram:
    """The manifest's relevance distribution, accumulated one row at a time (a build's rows
    need not fit in memory): per language, per scorer, the weak texts' score counts in
    ``bins`` equal bins over [0, 1] (the last one closed), their mean, and how many stayed
    unscored (null, listed under scorer "none")."""

    def __init__(self, bins: int = HIST_BINS):
        self.bins = bins
        self.cells: dict[tuple[str, str], list[Any]] = {}  # (lang, scorer) -> [n, null, sum, counts]

    def add(self, texts: Iterable[dict[str, Any]]) -> None:
        """Count the weak texts of one pairs row's ``texts``."""
        for t in texts:
            if t["kind"] != "weak":
                continue
            cell = self.cells.setdefault((t["lang"], t.get("relevance_scorer") or "none"), [0, 0, 0.0, [0] * self.bins])
            cell[0] += 1
            r = t.get("relevance")
            if r is None:
                cell[1] += 1
            else:
                cell[2] += r
                cell[3][min(int(r * self.bins), self.bins - 1)] += 1

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bins": [round(i / self.bins, 6) for i in range(self.bins + 1)], "by_lang": {}}
        for (lang, sid), (n, null, total, counts) in sorted(self.cells.items()):
            scored = n - null
            out["by_lang"].setdefault(lang, {})[sid] = {
                "n": n, "null": null, "counts": counts, "mean": round(total / scored, 4) if scored else None}
        return out


def relevance_histogram(rows: Iterable[dict[str, Any]], bins: int = HIST_BINS) -> dict[str, Any]:
    """``RelevanceHistogram`` of pairs rows (only ``texts`` is read)."""
    hist = RelevanceHistogram(bins)
    for row in rows:
        hist.add(row["texts"])
    return hist.result()
