"""The demo's file writers: training and evaluation files made from the generated world.

They live here, not beside the tools that read such files (``curation.lid.tools``,
``curation.relevance.eval``), so that no production module depends on the demo.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from curation.demo.lexicon import LANGUAGES, lexicon_pairs
from curation.demo.synth import lid_texts
from curation.relevance.eval import read_tsv, write_pairs
from curation.relevance.scorers import Pair


def write_lid_training_data(path: str, n: int, seed: int, langs: Sequence[str] = LANGUAGES) -> int:
    """Write ``n`` generated (lang, sentence) examples as TSV for ``train_lid``; returns n.

    The sentences are the demo world's captions, loose descriptions and boilerplate
    (``curation.demo.synth.lid_texts``), languages round-robin. Use a seed other than the
    corpus' so the model is not trained on the very texts it will label.
    Example: ``write_lid_training_data("lid.tsv", 4000, seed=101)``.
    """
    with open(path, "w", encoding="utf-8") as f:
        for lang, text in lid_texts(n, seed, langs):
            f.write(f"{lang}\t{text}\n")
    return n


def write_demo_dictionaries(out_dir: str | Path, langs: Sequence[str] = LANGUAGES,
                            both_ways: bool = False) -> list[Path]:
    """MUSE files ``en-<lang>.txt`` for each language of ``langs`` but English (and, with
    ``both_ways``, ``<lang>-en.txt``) from the caption lexicon, every inflected form
    included; returns their paths. Example: ``write_demo_dictionaries("dicts",
    ("en", "de", "fr", "es", "it"), both_ways=True)`` writes en-it.txt and it-en.txt among others."""
    from codeswitch.dictionary import write_muse_dictionaries

    others = [lang for lang in langs if lang != "en"]
    pairs = {("en", t): lexicon_pairs("en", t) for t in others}
    if both_ways:
        pairs.update({(t, "en"): lexicon_pairs(t, "en") for t in others})
    return write_muse_dictionaries(out_dir, pairs)


def write_demo_graded(weak_jsonl: str | Path, out: str | Path, anchor_lang: str = "en") -> int:
    """The demo's graded TSV from its inputs/weak.jsonl (rows with an anchor); returns rows."""
    lines = ["text\tlang\tanchor\tanchor_lang\tgrade\n"]
    for line in Path(weak_jsonl).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("anchor") and "relevance_grade" in rec:
            lines.append(f"{rec['text']}\t{rec['lang']}\t{rec['anchor']}\t{anchor_lang}\t{rec['relevance_grade']}\n")
    Path(out).write_text("".join(lines), encoding="utf-8")
    return len(lines) - 1


def write_demo_pairs(parallel_tsv: str | Path, out: str | Path) -> int:
    """Aligned pairs in the eval layout from a demo parallel.tsv (src, tgt, src_lang,
    tgt_lang with a header): the target side is the text, the English source its anchor."""
    return write_pairs(out, (Pair(tgt, tgt_lang, src, src_lang)
                             for src, tgt, src_lang, tgt_lang, *_ in read_tsv(parallel_tsv, 4)[1:]))
