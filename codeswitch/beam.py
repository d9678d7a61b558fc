"""The ``CodeSwitch`` pipeline stage: adds code-switched text variants to ``pairs`` rows.

Each row's switchable texts (``from_kinds``) get up to ``variants`` code-switched versions,
appended to ``texts`` so that existing indices stay valid. A new text points at its source
with ``derived_from``, keeps the source's language (the matrix language; the switched-in
languages are on its spans) and has ``origin`` = the dictionary set. Variants identical to
the source or to an earlier variant are not added. ``parallel`` rows pass through.

Random draws depend only on (seed, record id, text index, variant), so the output is the
same on any runner and any number of workers. Dictionaries are read in ``setup()`` on each
worker, and once when the transform is built, so that a malformed file fails the build
before the pipeline starts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from codeswitch.config import CodeSwitchConfig, load_switcher
from codeswitch.switch import Switched, Switcher, draw_key
from schemas.rows import text_entry
from schemas.stage import ApplyRowStage, RowStage


def codeswitch_text(out: Switched, lang: str, derived_from: int, origin: str) -> dict[str, Any]:
    """A ``texts`` element (``schemas.rows.text_entry``) for one code-switched variant."""
    return text_entry(out.text, "codeswitch", origin, lang, derived_from=derived_from,
                      spans=[span._asdict() for span in out.spans])


def switch_row(row: dict[str, Any], switcher: Switcher, cfg: CodeSwitchConfig, seed: int, counts: Counter) -> dict[str, Any]:
    """``row`` with its code-switched variants appended to ``texts``; tallies into ``counts``.

    counts: source_texts, no_dictionary (no dictionary from the text's language), tokens,
    covered_tokens, no_coverage (texts without one covered word), variants (added),
    unchanged (variants equal to the source or an earlier one), switched_<lang> (source
    words switched into lang).
    """
    texts = row["texts"]
    origin = cfg.origin
    added: list[dict[str, Any]] = []
    for i, source in enumerate(texts):
        if source["kind"] not in cfg.from_kinds:
            continue
        counts["source_texts"] += 1
        analysis = switcher.analyse(source["text"], source["lang"])
        if analysis is None:
            counts["no_dictionary"] += 1
            continue
        counts["tokens"] += analysis.tokens
        counts["covered_tokens"] += analysis.covered
        if not analysis.units:
            counts["no_coverage"] += 1
            continue
        seen = {source["text"]}
        for variant in range(cfg.variants):
            out = switcher.switch(analysis, draw_key(seed, row["id"], i, variant))
            if out is None or out.text in seen:
                counts["unchanged"] += 1
                continue
            seen.add(out.text)
            counts["variants"] += 1
            for span, words in zip(out.spans, out.words, strict=True):
                counts[f"switched_{span.lang}"] += words
            added.append(codeswitch_text(out, source["lang"], i, origin))
    return {**row, "texts": [*texts, *added]} if added else row


class SwitchTexts(RowStage):
    """The ``codeswitch`` stage's logic: ``switch_row`` over a batch of pairs rows; its
    model is the ``Switcher`` (the dictionaries), read once per process on the workers."""

    batch_size = 64

    def __init__(self, cfg: CodeSwitchConfig, seed: int):
        self.cfg, self.seed = cfg, seed

    def load(self) -> Switcher:
        return load_switcher(self.cfg)[0]

    def process(self, table: str, rows: list[dict[str, Any]], switcher: Switcher,
                stats: Counter[str]) -> tuple[list[dict[str, Any]], list[Any]]:
        return [switch_row(row, switcher, self.cfg, self.seed, stats) for row in rows], []


class CodeSwitch(ApplyRowStage):
    """Row stage: {"pairs", "parallel"} -> ({"pairs" with codeswitch texts, "parallel"}, rejects).

    cfg: the ``[codeswitch]`` settings; a disabled config (no dictionaries) passes rows
    through. seed: the build seed. stage: its name in the registry. Building the transform
    reads the dictionaries once, so a missing or malformed file fails here, not on a
    worker; ``load_stats`` keeps what was read per file. The stage drops nothing: its
    rejects collection is always empty. Counters (namespace = stage): ``in``, ``kept``
    and ``switch_row``'s counts.
    """

    def __init__(self, cfg: CodeSwitchConfig, seed: int, stage: str, label: str | None = None):
        logic = SwitchTexts(cfg, seed)
        if not cfg.enabled:
            logic.tables = ()
        super().__init__(stage, logic, label)
        self.cfg, self.seed = cfg, seed
        self.load_stats = load_switcher(cfg)[1] if cfg.enabled else {}
