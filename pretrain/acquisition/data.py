"""What the two MLA stages read from a curated dataset, as resumable per-language streams.

* Native Language Transfer: ``parallel`` rows pairing the pivot language (English) with the
  new language, either way round; a sample is (pivot text, new-language text).
* Language Exposure: ``pairs`` rows holding a new-language text of an allowed kind
  (captions, translations; weak alt-texts only when asked); a sample is (image, that text).

Each (language, table) is one ``RowStream`` (the trainer's deterministic, shuffled, endless
stream), so its position (epoch, rows) is all a checkpoint needs. Rows without a usable
sample are skipped; which of several new-language texts a row shows is drawn from a
``Random`` seeded by (seed, language, epoch, row), so a resumed stream replays exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch

from pretrain.images import BadSample, center_resize, decode
from pretrain.shards import (
    PAIR_COLUMNS,
    PARALLEL_COLUMNS,
    Dataset,
    RowStream,
    StreamPosition,
    read_unit,
    seeded,
    with_split,
)


def scan_languages(data: Dataset, langs: list[str], pivot: str, kinds: list[str], split: str) -> dict[str, dict[str, int]]:
    """Per language, how many rows each stage can use (``nlt``, ``le``); reads only text
    columns and keeps only the counts."""
    found = {lang: {"nlt": 0, "le": 0} for lang in langs}
    for unit in data.pairs:
        for row in read_unit(unit, ["split", "texts"], split):
            for lang in {t["lang"] for t in row["texts"] if t["lang"] in found and t["kind"] in kinds}:
                found[lang]["le"] += 1
    for unit in data.parallel:
        for row in read_unit(unit, ["split", "src_lang", "tgt_lang"], split):
            for side, other in (("src", "tgt"), ("tgt", "src")):
                if row[f"{side}_lang"] in found and row[f"{other}_lang"] == pivot:
                    found[row[f"{side}_lang"]]["nlt"] += 1
    return found


def language_texts(data: Dataset, lang: str, split: str) -> Iterator[str]:
    """Every text of ``lang`` in ``split`` (pairs texts of all kinds, parallel sides), as a
    stream: the new language's tokenizer trains on it (SentencePiece samples at most
    ``tokenizer.max_sentences``), so memory does not grow with the dataset."""
    for unit in data.pairs:
        for row in read_unit(unit, ["split", "texts"], split):
            yield from (t["text"] for t in row["texts"] if t["lang"] == lang)
    for unit in data.parallel:
        for row in read_unit(unit, ["split", "src_text", "src_lang", "tgt_text", "tgt_lang"], split):
            yield from (row[f"{side}_text"] for side in ("src", "tgt") if row[f"{side}_lang"] == lang)


def nlt_sample(row: dict[str, Any], lang: str, pivot: str) -> tuple[str, str] | None:
    """(pivot text, new-language text) of a parallel row, None when it pairs other languages."""
    if row["src_lang"] == pivot and row["tgt_lang"] == lang:
        return row["src_text"], row["tgt_text"]
    if row["tgt_lang"] == pivot and row["src_lang"] == lang:
        return row["tgt_text"], row["src_text"]
    return None


def le_text(row: dict[str, Any], lang: str, kinds: list[str], rng: Any) -> str | None:
    """One of the row's texts in ``lang`` of an allowed kind, drawn uniformly; None if none."""
    options = [t["text"] for t in row["texts"] if t["lang"] == lang and t["kind"] in kinds and t["text"]]
    return rng.choice(options) if options else None


class LanguageStream:
    """Endless samples of one stage for one language, with the position to resume at.

    ``position`` is the stream's (epoch, rows) after the last sample handed out; ``skipped``
    counts rows and images that gave no sample, by reason."""

    def __init__(self, data: Dataset, stage: str, lang: str, cfg: Any, start: list[int] | None,
                 skipped: dict[str, int] | None = None, image_size: int = 0):
        table, columns = ("parallel", PARALLEL_COLUMNS) if stage == "nlt" else ("pairs", PAIR_COLUMNS)
        units = with_split(data.parallel if stage == "nlt" else data.pairs, cfg.split)
        if not units:
            raise ValueError(f"{data.root}: no {table} rows of split {cfg.split!r} for {stage} ({lang})")
        self.stage, self.lang, self.cfg, self.size = stage, lang, cfg, image_size
        self.rows = RowStream(units, columns, cfg.split, f"{cfg.seed}/acquire/{lang}", 0, 1, cfg.shuffle_buffer,
                              StreamPosition(*start) if start else None)
        self.position = list(start) if start else [0, 0]
        self.skipped: Counter[str] = Counter(skipped or {})
        self._iter = iter(self.rows)

    def _next(self) -> Any:
        while True:
            row, pos = next(self._iter)
            self.position = [self.rows.position.epoch, self.rows.position.rows]
            sample = self._sample(row, pos)
            if sample is not None:
                return sample

    def _sample(self, row: dict[str, Any], pos: StreamPosition) -> Any:
        if self.stage == "nlt":
            return nlt_sample(row, self.lang, self.cfg.pivot)
        text = le_text(row, self.lang, list(self.cfg.le_kinds), seeded(self.cfg.seed, "le", self.lang, pos.epoch, pos.rows))
        if text is None:
            return None
        try:
            image = decode(row["image"]["bytes"], self.size, row["image"]["sha256"])
        except BadSample as err:
            self.skipped[err.reason] += 1
            return None
        return center_resize(image, self.size), row["image"]["sha256"], text

    def batch(self, n: int) -> list[Any]:
        return [self._next() for _ in range(n)]


def pad_ids(ids: list[list[int]], pad: int) -> torch.Tensor:
    width = max(len(i) for i in ids)
    return torch.tensor([i + [pad] * (width - len(i)) for i in ids], dtype=torch.long)


def streams(data: Dataset, stage: str, cfg: Any, state: dict[str, Any], image_size: int) -> dict[str, LanguageStream]:
    """One stream per language for ``stage``, started at ``state``'s recorded positions."""
    out: dict[str, LanguageStream] = {}
    for lang in cfg.langs:
        saved = state.get(lang, {}).get(stage, {})
        out[lang] = LanguageStream(data, stage, lang, cfg, saved.get("position"), saved.get("skipped"), image_size)
    return out


def stream_state(current: dict[str, LanguageStream], stage: str, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with ``stage``'s positions and skip counts updated from the live streams."""
    out = {lang: dict(v) for lang, v in state.items()}
    for lang, stream in current.items():
        out.setdefault(lang, {})[stage] = {"position": list(stream.position), "skipped": dict(stream.skipped)}
    return out


