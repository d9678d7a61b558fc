"""Corpus BLEU and chrF with sacrebleu, for ``m3curate mt eval``.

sacrebleu's defaults (13a tokenisation, chrF with character 6-grams and beta 2) are the
numbers MT papers report, so they are comparable with published ones; the signature
sacrebleu prints says exactly which settings produced them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def score(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """{"bleu", "chrf", "sentences", "bleu_signature", "chrf_signature"} for one system.

    references: one or more reference streams, each aligned with ``hypotheses``.
    """
    import sacrebleu

    if not references:
        raise ValueError("give at least one reference stream")
    for i, ref in enumerate(references):
        if len(ref) != len(hypotheses):
            raise ValueError(f"reference {i + 1} has {len(ref)} lines, the hypotheses {len(hypotheses)}")
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(r) for r in references])
    c = chrf.corpus_score(list(hypotheses), [list(r) for r in references])
    return {"bleu": round(b.score, 2), "chrf": round(c.score, 2), "sentences": len(hypotheses),
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file without their newlines (a trailing newline adds no line)."""
    text = Path(path).read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []


def score_files(hypotheses: str | Path, references: Sequence[str | Path]) -> dict[str, Any]:
    """``score`` on files, line by line; the error names the file whose length differs."""
    hyps = read_lines(hypotheses)
    refs = []
    for path in references:
        lines = read_lines(path)
        if len(lines) != len(hyps):
            raise ValueError(f"{path} has {len(lines)} lines but {hypotheses} has {len(hyps)}: they must align")
        refs.append(lines)
    return score(hyps, refs)
