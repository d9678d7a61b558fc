"""Language-ID helpers for the ``m3curate lid`` commands: train, evaluate, label a file.

Plain functions; the CLI wires each to a sub-command and uses its docstring as --help.
Labelled data is TSV, ``lang<TAB>text`` one example a line, or fastText's own format
``__label__lang text``; blank lines are skipped. Languages are compared in the scheme of
``curation.lid.labels`` (so a GlotLID model can be evaluated on data labelled ``de``).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from curation.lid.labels import LABEL_PREFIX, normalise_label
from curation.lid.model import LidModel, load_lid_model


class LidDataError(ValueError):
    """A labelled-data file is malformed; the message names the file and line."""


def read_labelled(path: str) -> Iterator[tuple[str, str]]:
    """(lang, text) pairs of a labelled file, in either accepted format."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if line.startswith(LABEL_PREFIX):
                lang, _, text = line[len(LABEL_PREFIX):].partition(" ")
            elif "\t" in line:
                lang, _, text = line.partition("\t")
            else:
                raise LidDataError(f"{path}:{n}: expected 'lang<TAB>text' or '__label__lang text'")
            lang = lang.strip()
            if not lang or any(c.isspace() for c in lang):
                raise LidDataError(f"{path}:{n}: bad language label {lang!r}")
            yield lang, text.replace("\t", " ")


@contextmanager
def _zeroed_allocations() -> Iterator[None]:
    """Make glibc's malloc hand out zeroed memory for the duration (a no-op elsewhere).

    fasttext 0.9.3 allocates the input matrix uninitialised (``posix_memalign``) and its
    ``uniform`` init fills only ``thread``/10 of it: with fewer than 10 threads the rest
    is whatever the heap held before. Depending on the process' history that is zeros,
    garbage (a model that differs from run to run) or NaN ("Encountered NaN"). With
    M_PERTURB set to 0xFF, malloc clears what it returns, so the rest starts at zero,
    as it does when the matrix lands on fresh pages.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        yield
        return
    m_perturb = -6
    mallopt(m_perturb, 0xFF)
    try:
        yield
    finally:
        mallopt(m_perturb, 0)


def train_lid(data_tsv: str, out_path: str, *, dim: int = 16, epochs: int = 5, lr: float = 0.5,
              minn: int = 2, maxn: int = 4, word_ngrams: int = 1, bucket: int = 200_000,
              loss: str = "softmax", threads: int = 1, seed: int = 0, verbose: int = 0) -> dict[str, Any]:
    """Train a fastText language-ID model on labelled text; writes ``out_path`` (.bin).

    The defaults follow lid.176 (16 dimensions, character n-grams of 2-4, one word per
    token), with a smaller hash table (lid.176: bucket 2,000,000, a 126 MB file; 200,000
    gives 13 MB and is plenty for tens of languages) and softmax, whose scores are true
    probabilities over all languages (lid.176 used hierarchical softmax, faster with
    hundreds of labels: pass loss="hs"). threads=1 makes training deterministic (same
    data and seed, same bytes); more threads train faster but not reproducibly. (On
    glibc, fasttext 0.9.3's partly uninitialised input matrix is zeroed first, see
    ``_zeroed_allocations``: without that, one thread is not reproducible either.)
    Returns {"model", "examples", "languages"}.
    Example: ``train_lid("lid.tsv", "lid.bin", epochs=10)``.
    """
    examples: Counter[str] = Counter()
    tmp_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(tmp_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", dir=tmp_dir, delete=False) as tmp:
        for lang, text in read_labelled(data_tsv):
            tmp.write(f"{LABEL_PREFIX}{lang} {' '.join(text.split())}\n")
            examples[lang] += 1
    try:
        if not examples:
            raise LidDataError(f"{data_tsv}: no labelled examples")
        import fasttext  # heavy import, only where a model is trained

        with _zeroed_allocations():
            model = fasttext.train_supervised(
                input=tmp.name, dim=dim, epoch=epochs, lr=lr, minn=minn, maxn=maxn, wordNgrams=word_ngrams,
                bucket=bucket, loss=loss, thread=threads, seed=seed, verbose=verbose, minCount=1,
            )
        partial = f"{out_path}.partial"
        model.save_model(partial)
        os.replace(partial, out_path)
    finally:
        os.unlink(tmp.name)
    return {"model": out_path, "examples": sum(examples.values()), "languages": dict(sorted(examples.items()))}


def _model(model: str | LidModel) -> LidModel:
    return model if isinstance(model, LidModel) else load_lid_model(model)


def _scores(gold: list[str], predicted: list[str]) -> dict[str, dict[str, float]]:
    """Per-language precision, recall, F1 and support, for every gold or predicted language."""
    pairs = Counter(zip(gold, predicted, strict=True))
    support, guessed = Counter(gold), Counter(predicted)
    out = {}
    for lang in sorted(set(support) | set(guessed)):
        hit = pairs[(lang, lang)]
        p = hit / guessed[lang] if guessed[lang] else 0.0
        r = hit / support[lang] if support[lang] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out[lang] = {"precision": p, "recall": r, "f1": f, "support": support[lang]}
    return out


def evaluate_lid(model: str | LidModel, data_tsv: str, *, max_chars: int = 1000, batch_size: int = 4096) -> dict[str, Any]:
    """Accuracy of a LID model on labelled text, per language and overall.

    Gold labels and predictions are normalised the same way (``lid_labels``), so the
    model's label style does not matter. Macro-F1 averages the languages present in the
    data (a language the model predicts but the data lacks lowers its neighbours'
    recall, not the average's denominator). Returns {"examples", "accuracy", "macro_f1",
    "languages": {lang: {precision, recall, f1, support}}, "confused": [{gold,
    predicted, count}] (the 10 commonest errors)}.
    Example: ``print(format_eval_table(evaluate_lid("lid.bin", "heldout.tsv")))``.
    """
    lid = _model(model)
    data = list(read_labelled(data_tsv))
    if not data:
        raise LidDataError(f"{data_tsv}: no labelled examples")
    gold = [normalise_label(lang) for lang, _ in data]
    predicted: list[str] = []
    for at in range(0, len(data), batch_size):
        predicted += lid.predict([text for _, text in data[at:at + batch_size]], max_chars)[0]
    languages = _scores(gold, predicted)
    present = [s["f1"] for s in languages.values() if s["support"]]
    errors = Counter((g, p) for g, p in zip(gold, predicted, strict=True) if g != p)
    return {
        "model": lid.path,
        "data": data_tsv,
        "examples": len(data),
        "accuracy": sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(data),
        "macro_f1": sum(present) / len(present),
        "languages": languages,
        "confused": [{"gold": g, "predicted": p, "count": n} for (g, p), n in errors.most_common(10)],
    }


def format_eval_table(report: dict[str, Any]) -> str:
    """``evaluate_lid``'s report as a plain-text table for the terminal."""
    lines = [f"{'lang':<10} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for lang, s in report["languages"].items():
        lines.append(f"{lang:<10} {s['precision']:>9.3f} {s['recall']:>7.3f} {s['f1']:>7.3f} {s['support']:>8}")
    n_present = sum(1 for s in report["languages"].values() if s["support"])
    lines.append(f"accuracy {report['accuracy']:.4f} on {report['examples']} texts; "
                 f"macro-F1 {report['macro_f1']:.4f} over {n_present} languages")
    if report["confused"]:
        lines.append("most confused (gold -> predicted): "
                     + ", ".join(f"{c['gold']}->{c['predicted']} {c['count']}" for c in report["confused"]))
    return "\n".join(lines)


@contextmanager
def _open(path: str | None, mode: str) -> Iterator[TextIO]:
    """A file, or stdin/stdout for None or "-" (left open)."""
    if path in (None, "-"):
        yield sys.stdin if "r" in mode else sys.stdout
        return
    if "r" not in mode:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, mode, encoding="utf-8", errors="replace" if "r" in mode else "strict") as f:
        yield f


def _write(out: TextIO, text: str, ranked: list[tuple[str, float]], k: int, fmt: str) -> None:
    if fmt == "jsonl":
        record: dict[str, Any] = {"lang": ranked[0][0], "score": round(ranked[0][1], 6), "text": text}
        if k != 1:
            record["top"] = [{"lang": lang, "score": round(score, 6)} for lang, score in ranked]
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    cells = [f"{lang}\t{score:.4f}" for lang, score in ranked]
    cells += ["\t"] * (max(k, 1) - len(cells))  # a fixed number of columns
    out.write("\t".join(cells) + "\t" + text + "\n")


def predict_file(model: str | LidModel, in_path: str | None, out_path: str | None = None, *, k: int = 1,
                 fmt: str = "tsv", max_chars: int = 1000, batch_size: int = 4096) -> int:
    """Label every line of a text file with its language; returns the number of lines.

    One output line per input line, in order. TSV: ``lang<TAB>score<TAB>text`` (k > 1:
    k lang/score pairs, then the text; empty cells where the model knows fewer
    languages). JSONL: {"lang", "score", "text"} plus "top" (the k best) when k > 1.
    An empty line gets ``und`` and score 0. in_path/out_path None or "-": stdin/stdout.
    Undecodable bytes are read as U+FFFD.
    Example: ``predict_file("lid.bin", "captions.txt", "captions.lang.tsv", k=3)``.
    """
    if fmt not in ("tsv", "jsonl"):
        raise ValueError(f"fmt = {fmt!r}: use 'tsv' or 'jsonl'")
    if k == 0 or k < -1:
        raise ValueError(f"k = {k}: use a positive number (or -1 for every language)")
    lid = _model(model)
    count = 0
    with _open(in_path, "r") as src, _open(out_path, "w") as out:
        batch: list[str] = []
        for line in src:
            batch.append(line.rstrip("\r\n"))
            if len(batch) >= batch_size:
                count += _predict_batch(lid, batch, out, k, fmt, max_chars)
                batch = []
        count += _predict_batch(lid, batch, out, k, fmt, max_chars)
    return count


def _predict_batch(lid: LidModel, texts: list[str], out: TextIO, k: int, fmt: str, max_chars: int) -> int:
    if not texts:
        return 0
    for text, ranked in zip(texts, lid.top_k(texts, max_chars, k), strict=True):
        _write(out, text, ranked, k if k > 0 else len(lid.labels), fmt)
    return len(texts)
