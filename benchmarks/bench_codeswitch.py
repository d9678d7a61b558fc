"""Code-switching benchmark: tokens/s of the switcher against a plain word-by-word lookup loop.

Both run over the same generated captions, in the same process, against the same synthetic
MUSE dictionaries (100,000+ source words into de/fr/es, 1-3 translations each, 2% of the
entries multi-word). The plain loop is M3P's ``clag`` inner loop without its random draws:
split on spaces, look each word up, replace it with its first translation, join. The
switcher additionally strips punctuation, folds case, matches multi-word entries longest
first, draws its randomness from (seed, record id, variant), carries capitalisation over
and records spans. "tokens" are space-separated words of the source texts. Generation and
dictionary loading are not timed.

    python benchmarks/bench_codeswitch.py --texts 50000
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from codeswitch.beam import switch_row
from codeswitch.config import CodeSwitchConfig, codeswitch_config_from_dict, load_switcher
from codeswitch.dictionary import PUNCT, write_muse_dictionaries
from codeswitch.switch import Switcher, draw_key

LANGS = ("de", "fr", "es")
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))


def make_vocab(size: int, seed: int) -> list[str]:
    rng = random.Random(f"vocab:{seed}")
    words: dict[str, None] = {}
    while len(words) < size:
        words[_word(rng)] = None
    return list(words)


def make_dictionaries(vocab: list[str], seed: int) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """en -> de/fr/es: every vocab word with 1-3 translations, plus 2% two-word phrases."""
    rng = random.Random(f"dict:{seed}")
    phrases = [f"{rng.choice(vocab)} {rng.choice(vocab)}" for _ in range(len(vocab) // 50)]
    pairs = {}
    for lang in LANGS:
        entries = [(w, _word(rng) + lang) for w in vocab + phrases for _ in range(rng.randint(1, 3))]
        pairs[("en", lang)] = entries
    return pairs


def make_texts(vocab: list[str], n: int, seed: int, oov: float = 0.1) -> list[str]:
    """Captions of 6-20 words, Zipf-distributed over the vocabulary, 10% unknown words,
    capitalised, with commas and a final period, like normalised alt-texts."""
    rng = random.Random(f"texts:{seed}")
    weights = [1 / (r + 1) ** 1.05 for r in range(len(vocab))]
    pool = rng.choices(vocab, weights, k=n * 14)
    texts = []
    at = 0
    for _ in range(n):
        k = rng.randint(6, 20)
        words = [w if rng.random() > oov else f"x{rng.randint(0, 10**6)}" for w in pool[at : at + k]]
        at += k
        if k > 10:
            words[k // 2] += ","
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def plain_loop(texts: list[str], first: dict[str, str]) -> int:
    """M3P's clag inner loop, without the random draws: the cost floor of any switcher."""
    changed = 0
    for text in texts:
        words = []
        for word in text.split(" "):
            if word not in first:
                words.append(word)
                continue
            words.append(first[word])
        changed += " ".join(words) != text
    return changed


def plain_loop_normalised(texts: list[str], first: dict[str, str]) -> int:
    """The same loop looking up each word as the switcher does: lower-cased, edge punctuation
    stripped (so "Circle," is found); the replacement keeps the punctuation."""
    changed = 0
    for text in texts:
        words = []
        for word in text.split(" "):
            key = word.lower().strip(PUNCT)
            if key not in first:
                words.append(word)
                continue
            words.append(word.replace(key, first[key]) if key != word else first[key])
        changed += " ".join(words) != text
    return changed


def switch_all(texts: list[str], switcher: Switcher) -> int:
    """What the Beam DoFn does per text: analyse once, key, switch (one variant)."""
    switched = 0
    for i, text in enumerate(texts):
        analysis = switcher.analyse(text, "en")
        if analysis is not None and switcher.switch(analysis, draw_key(0, str(i), 0, 0)) is not None:
            switched += 1
    return switched


def m3p_multi(texts: list[str], nested: dict[str, dict[str, list[str]]], word_ratio: float) -> int:
    """M3P's multi-word algorithm with its own kind of draws (Python's global-style RNG,
    one per text; no spans, no case or punctuation handling, not reproducible per record)."""
    rng = random.Random(0)
    changed = 0
    for text in texts:
        words = []
        for word in text.split(" "):
            by_lang = nested.get(word)
            if by_lang is None or rng.random() >= word_ratio:
                words.append(word)
                continue
            langs = list(by_lang)
            targets = by_lang[langs[rng.randint(0, len(langs) - 1)]]
            words.append(targets[rng.randint(0, len(targets) - 1)])
        changed += " ".join(words) != text
    return changed


def rows_of(texts: list[str]) -> list[dict]:
    """Minimal pairs rows (id + one caption) as the DoFn receives them."""
    return [{"id": f"r{i}", "texts": [{"text": t, "lang": "en", "kind": "caption"}]} for i, t in enumerate(texts)]


def switch_rows(rows: list[dict], switcher: Switcher, cfg: CodeSwitchConfig) -> int:
    """What the Beam DoFn does per row, counters and new text entries included."""
    counts: Counter = Counter()
    for row in rows:
        switch_row(row, switcher, cfg, 0, counts)
    return counts["variants"]


def timings(repeats: int, paths: dict[str, Callable[[], int]]) -> dict[str, float]:
    """Best CPU seconds of each path over ``repeats`` interleaved rounds.

    CPU time (not wall time) and interleaving keep other load on a shared machine from
    favouring one path: each round runs every path once, back to back.
    """
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(repeats):
        for name, fn in paths.items():
            started = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=50_000)
    parser.add_argument("--vocab", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    vocab = make_vocab(args.vocab, args.seed)
    pairs = make_dictionaries(vocab, args.seed)
    texts = make_texts(vocab, args.texts, args.seed)
    tokens = sum(t.count(" ") + 1 for t in texts)
    first: dict[str, str] = {}
    for s, t in pairs[("en", "de")]:
        first.setdefault(s, t)
    with tempfile.TemporaryDirectory() as tmp:
        write_muse_dictionaries(Path(tmp), pairs)
        started = time.perf_counter()
        switchers, configs = {}, {}
        for mode in ("single", "multi", "sentence"):
            configs[mode] = codeswitch_config_from_dict({"dictionaries": tmp, "mode": mode})
            switchers[mode], stats = load_switcher(configs[mode])
        load_s = (time.perf_counter() - started) / 3
    entries = {pair: s.entries for pair, s in stats.items()}
    analysis = [switchers["single"].analyse(t, "en") for t in texts]
    coverage = sum(a.covered for a in analysis) / sum(a.tokens for a in analysis)

    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{len(texts)} texts, {tokens} tokens; dictionary entries {entries}; "
          f"coverage {coverage:.1%}; dictionaries load in {load_s:.2f}s")
    paths: dict[str, Callable[[], int]] = {
        "plain lookup loop (M3P clag shape)": lambda: plain_loop(texts, first),
        "plain lookup loop, words lower-cased and stripped": lambda: plain_loop_normalised(texts, first),
    }
    nested: dict[str, dict[str, list[str]]] = {}
    for (_, lang), entries in pairs.items():
        for src, tgt in entries:
            nested.setdefault(src, {}).setdefault(lang, []).append(tgt)
    paths["M3P multi-word algorithm, its own draws (reference)"] = lambda: m3p_multi(texts, nested, 0.8)
    for mode, switcher in switchers.items():
        paths[f"switcher, mode {mode}"] = lambda s=switcher: switch_all(texts, s)
    rows = rows_of(texts)
    paths["DoFn body (switch_row), mode single"] = lambda: switch_rows(rows, switchers["single"], configs["single"])
    best = timings(args.repeats, paths)
    base = best["plain lookup loop (M3P clag shape)"]
    print("| path | CPU seconds | tokens/s | time vs M3P-shaped loop |\n|---|---|---|---|")
    for name, secs in best.items():
        print(f"| {name} | {secs:.3f} | {tokens / secs:,.0f} | {secs / base:.2f}x |")
    print(f"DoFn body: {len(rows) / best[list(best)[-1]]:,.0f} rows/s (one caption each)")

if __name__ == "__main__":
    main()
