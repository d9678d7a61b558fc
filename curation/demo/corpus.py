"""Writes the demo's synthetic input corpus in every format the readers take, plus build.toml.

The demo must exercise what a real build meets: JSONL/CSV/TSV tables with image files
beside them (one with non-default column names), img2dataset Parquet (with failed
downloads) and WebDataset shards, weakly-aligned multilingual alt-texts, parallel text,
and a few planted bad inputs whose rejects the demo can show and its tests can count.
``inputs/expected.json`` records what was written and which rejects the planted inputs
must produce, so that the manifest can be checked against it.

Everything comes from ``curation.demo.synth`` and is byte-for-byte reproducible for a given
(n, seed, langs, held_out): files are written in a fixed order with fixed metadata (tar
members carry mtime 0 and no owner names).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import tarfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.demo.buildconfig import build_toml
from curation.demo.synth import LANGUAGES, Sample, generate, sample_rng, split, split_validation
from curation.demo.weak import GRADED_KINDS, graded_weak_text

IMAGE_SIZE = 96
WDS_SHARD_SIZE = 1000
# Share of the train samples per pair source, in this order (the rest goes to the last).
PAIR_SHARES = (("captions_jsonl", 0.35), ("captions_csv", 0.05), ("captions_tsv", 0.15),
               ("img2dataset_parquet", 0.20), ("webdataset", 0.25))
WEAK_SHARE = 0.6  # of the samples whose images lie in inputs/images/
# Graded weak texts cycle whole/part/wrong_colour/unrelated (curation/demo/weak.py).
WEAK_KIND_CYCLE = GRADED_KINDS
NOT_AN_IMAGE = b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n"
EXPECTED_REJECTS = {"truncated": "image/truncated", "not_image": "image/not_an_image",
                    "empty": "text/empty", "duplicate": "dedup/duplicate",
                    "failed": "read/download_failed"}


def _partition(train: Sequence[Sample]) -> dict[str, list[Sample]]:
    """Consecutive slices of ``train`` per pair source, sized by PAIR_SHARES."""
    parts, start, total = {}, 0, len(train)
    for i, (name, share) in enumerate(PAIR_SHARES):
        end = total if i == len(PAIR_SHARES) - 1 else min(total, start + round(total * share))
        parts[name] = list(train[start:end])
        start = end
    return parts


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """One JSON object per line, UTF-8 kept readable (no \\u escapes); returns the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
    path.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def _write_delimited(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]], delimiter: str) -> int:
    """CSV/TSV with a header line, minimal quoting and "\\n" line ends."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    path.write_text(buf.getvalue(), encoding="utf-8")
    return count


def _write_images(images_dir: Path, samples: Iterable[Sample]) -> None:
    """<id>.jpg per sample: the files the table sources' relative image paths name."""
    images_dir.mkdir(parents=True, exist_ok=True)
    for s in samples:
        (images_dir / f"{s.id}.jpg").write_bytes(s.image)


def _pair_row(s: Sample) -> dict[str, Any]:
    """A CC3M-style row: key, English caption, image path relative to the table file."""
    return {"key": s.id, "caption": s.captions["en"], "image": f"images/{s.id}.jpg"}


def _write_jsonl_source(inputs: Path, samples: list[Sample], planted: list[dict[str, str]]) -> int:
    """captions.jsonl, with the truncated JPEG, the empty caption and the duplicate planted."""
    rows = [_pair_row(s) for s in samples]
    if samples:
        victim = samples[0]
        (inputs / "images/bad_truncated.jpg").write_bytes(victim.image[: len(victim.image) // 2])
        rows.append({"key": "bad_truncated", "caption": victim.captions["en"],
                     "image": "images/bad_truncated.jpg"})
        rows.append({"key": "bad_empty_caption", "caption": "", "image": f"images/{victim.id}.jpg"})
        dup = samples[-1]
        (inputs / f"images/{dup.id}_dup.jpg").write_bytes(dup.image)
        rows.append({"key": f"{dup.id}_dup", "caption": dup.captions["en"], "image": f"images/{dup.id}_dup.jpg"})
        for key, why in (("bad_truncated", "truncated"), ("bad_empty_caption", "empty"),
                         (f"{dup.id}_dup", "duplicate")):
            planted.append({"source": "captions_jsonl", "key": key, "reject": EXPECTED_REJECTS[why]})
    return _write_jsonl(inputs / "captions.jsonl", rows)


def _write_tsv_source(inputs: Path, samples: list[Sample], planted: list[dict[str, str]]) -> int:
    """captions.tsv with columns id/alt/file (not the defaults) and a non-image .jpg."""
    rows = [(s.id, s.captions["en"], f"images/{s.id}.jpg") for s in samples]
    if samples:
        (inputs / "images/bad_not_image.jpg").write_bytes(NOT_AN_IMAGE)
        rows.append(("bad_not_image", samples[0].captions["en"], "images/bad_not_image.jpg"))
        planted.append({"source": "captions_tsv", "key": "bad_not_image", "reject": EXPECTED_REJECTS["not_image"]})
    return _write_delimited(inputs / "captions.tsv", ("id", "alt", "file"), rows, "\t")


def _url(key: str) -> str:
    """A plausible (never fetched) source URL, as img2dataset records it."""
    return f"https://images.example.com/synth/{key}.jpg"


def _write_parquet_source(inputs: Path, samples: list[Sample], planted: list[dict[str, str]]) -> int:
    """img2dataset-style Parquet with the image bytes in ``jpg``, plus two failed downloads."""
    rows = [{"key": s.id, "caption": s.captions["en"], "url": _url(s.id), "status": "success",
             "error_message": None, "width": s.image_size, "height": s.image_size, "jpg": s.image}
            for s in samples]
    for i, s in enumerate(samples[:2]):
        key = f"failed_{i}"
        rows.append({"key": key, "caption": s.captions["en"], "url": _url(key), "status": "failed_to_download",
                     "error_message": "HTTP Error 404: Not Found" if i == 0 else "timed out",
                     "width": None, "height": None, "jpg": None})
        planted.append({"source": "img2dataset_parquet", "key": key, "reject": EXPECTED_REJECTS["failed"]})
    schema = pa.schema([("key", pa.string()), ("caption", pa.string()), ("url", pa.string()),
                        ("status", pa.string()), ("error_message", pa.string()), ("width", pa.int32()),
                        ("height", pa.int32()), ("jpg", pa.binary())])
    out = inputs / "img2dataset" / "00000.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out, compression="zstd")
    return len(rows)


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a member with fixed metadata, so the shard bytes depend on content only."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _write_webdataset_source(inputs: Path, samples: list[Sample]) -> int:
    """img2dataset-style WebDataset shards 00000.tar...: KEY.jpg, KEY.txt, KEY.json."""
    out = inputs / "webdataset"
    out.mkdir(parents=True, exist_ok=True)
    for shard, start in enumerate(range(0, max(len(samples), 1), WDS_SHARD_SIZE)):
        with tarfile.open(out / f"{shard:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for s in samples[start:start + WDS_SHARD_SIZE]:
                meta = {"key": s.id, "caption": s.captions["en"], "url": _url(s.id)}
                _tar_add(tar, f"{s.id}.jpg", s.image)
                _tar_add(tar, f"{s.id}.txt", s.captions["en"].encode("utf-8"))
                _tar_add(tar, f"{s.id}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    return len(samples)


def _write_weak_source(inputs: Path, samples: list[Sample], langs: Sequence[str], seed: int,
                       share: float = WEAK_SHARE) -> Counter[str]:
    """weak.jsonl: one non-English alt-text for a ``share`` of the on-disk images, its construction
    cycling whole/part/wrong_colour/unrelated (``curation.demo.weak``) and languages
    round-robin (shifted by one each cycle when their count shares a factor with the
    cycle's 4, e.g. de/fr/es/it, so that every language gets every kind); every tenth row
    has no anchor. Columns the build does not read record
    the truth: ``relevance_kind``, ``relevance_grade`` (1.0/0.6/0.3/0.0) and
    ``relevance_label`` (high/high/low/none, as the RC3 ablation script reads it)."""
    weak_langs = [lang for lang in langs if lang != "en"] or ["en"]
    chosen = [s for s in samples if sample_rng(seed, "weak-pick", s.index).random() < share]
    rows, labels = [], Counter()
    shift = math.gcd(len(weak_langs), len(WEAK_KIND_CYCLE)) > 1
    for j, s in enumerate(chosen):
        lang = weak_langs[(j + (j // len(WEAK_KIND_CYCLE) if shift else 0)) % len(weak_langs)]
        kind = WEAK_KIND_CYCLE[j % len(WEAK_KIND_CYCLE)]
        text, grade, label = graded_weak_text(s.scene, lang, sample_rng(seed, "weak", s.index), kind)
        row = {"key": f"w_{s.id}", "text": text, "lang": lang, "image": f"images/{s.id}.jpg"}
        if j % 10 != 9:
            row["anchor"] = s.captions["en"]
        row.update(relevance_label=label, relevance_grade=grade, relevance_kind=kind)
        rows.append(row)
        labels[label] += 1
        labels[f"kind:{kind}"] += 1
    _write_jsonl(inputs / "weak.jsonl", rows)
    return labels


def _parallel_pairs(samples: Sequence[Sample], langs: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """Unique (src, tgt, src_lang, tgt_lang) caption pairs en -> each other language."""
    pairs = dict.fromkeys((s.captions["en"], s.captions[lang], "en", lang)
                          for s in samples for lang in langs if lang != "en")
    return list(pairs)


def _write_parallel_sources(inputs: Path, samples: list[Sample], langs: Sequence[str]) -> dict[str, int]:
    """parallel.tsv (all pairs but the second half of the first target language's) and the
    aligned parallel_en.txt / parallel_<lang>.txt (that half), so no pair appears twice."""
    pairs = _parallel_pairs(samples, langs)
    files_lang = next((lang for lang in langs if lang != "en"), None)
    first = [p for p in pairs if p[3] == files_lang]
    to_files = set(first[len(first) // 2:])
    tsv_rows = [p for p in pairs if p not in to_files]
    file_rows = [p for p in pairs if p in to_files]
    counts = {"parallel_tsv": _write_delimited(inputs / "parallel.tsv", ("src", "tgt", "src_lang", "tgt_lang"),
                                               tsv_rows, "\t")}
    if files_lang:
        (inputs / "parallel_en.txt").write_text("".join(p[0] + "\n" for p in file_rows), encoding="utf-8")
        (inputs / f"parallel_{files_lang}.txt").write_text("".join(p[1] + "\n" for p in file_rows),
                                                           encoding="utf-8")
        counts["parallel_files"] = len(file_rows)
    return counts


def _write_heldout(out: Path, samples: list[Sample], train: list[Sample], langs: Sequence[str]) -> int:
    """``out``/captions.jsonl (English caption plus caption_<lang> gold captions) with its
    images, and ``out``/parallel.tsv: MT evaluation pairs whose English side no train
    sample has (short scenes recur, and evaluating on training text would flatter MT).
    ``out`` is inputs/heldout (the test split) or inputs/validation."""
    _write_images(out / "images", samples)
    rows = [{**_pair_row(s), **{f"caption_{lang}": s.captions[lang] for lang in langs if lang != "en"}}
            for s in samples]
    seen = {s.captions["en"] for s in train}
    pairs = [p for p in _parallel_pairs(samples, langs) if p[0] not in seen]
    _write_delimited(out / "parallel.tsv", ("src", "tgt", "src_lang", "tgt_lang"), pairs, "\t")
    return _write_jsonl(out / "captions.jsonl", rows)


def _prepare(out_dir: Path) -> Path:
    """Empty out_dir/inputs (only if it is a previous demo corpus), so no stale shard stays."""
    inputs = out_dir / "inputs"
    if inputs.exists():
        if not (inputs / "expected.json").is_file():
            raise FileExistsError(f"{inputs} exists and is not a demo corpus; choose another out_dir")
        shutil.rmtree(inputs)
    (inputs / "images").mkdir(parents=True)
    return inputs


def without_heldout_captions(train: list[Sample], heldout: list[Sample]) -> list[Sample]:
    """The training samples none of whose captions (any language) a held-out sample has:
    short scenes recur, and a held-out caption seen in training flatters retrieval."""
    held = {text for s in heldout for text in s.captions.values()}
    return [s for s in train if held.isdisjoint(s.captions.values())]


def corpus_splits(n: int, seed: int, langs: Sequence[str], held_out: int | float = 0.1,
                  validation: int | float = 0) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train, validation, test) samples: ``held_out`` test and ``validation`` validation
    images (each a count, or a fraction of ``n``), disjoint in images and in captions (any
    language); training samples sharing a caption with either are left out. The test set
    does not depend on ``validation``."""
    train, test = split(generate(n, seed, langs, IMAGE_SIZE), held_out, seed)
    train, valid = split_validation(train, test, validation, seed) if validation else (train, [])
    train = without_heldout_captions(train, test + valid)
    if not train:
        raise ValueError(f"n = {n}: no training sample is left beside {len(test)} test and {len(valid)} "
                         "validation samples (and those sharing their captions); generate more")
    return train, valid, test


def _write_train_sources(inputs: Path, train: list[Sample], langs: Sequence[str], seed: int,
                         weak_share: float) -> tuple[dict[str, int], list[dict[str, str]], Counter[str]]:
    """Every training source (pairs, weak, parallel): (record counts, planted bad inputs, weak labels)."""
    parts = _partition(train)
    on_disk = parts["captions_jsonl"] + parts["captions_csv"] + parts["captions_tsv"]
    _write_images(inputs / "images", on_disk)
    planted: list[dict[str, str]] = []
    counts = {
        "captions_jsonl": _write_jsonl_source(inputs, parts["captions_jsonl"], planted),
        "captions_csv": _write_delimited(inputs / "captions.csv", ("key", "caption", "image"),
                                         [tuple(_pair_row(s).values()) for s in parts["captions_csv"]], ","),
        "captions_tsv": _write_tsv_source(inputs, parts["captions_tsv"], planted),
        "img2dataset_parquet": _write_parquet_source(inputs, parts["img2dataset_parquet"], planted),
        "webdataset": _write_webdataset_source(inputs, parts["webdataset"]),
    }
    weak = _write_weak_source(inputs, on_disk, langs, seed, weak_share)
    counts["weak"] = sum(n for k, n in weak.items() if not k.startswith("kind:"))
    counts.update(_write_parallel_sources(inputs, train, langs))
    return counts, planted, weak


def write_corpus(out_dir: Path, n: int, seed: int, langs: Sequence[str] = LANGUAGES,
                 held_out: int | float = 0.1, weak_share: float = WEAK_SHARE,
                 validation: int | float = 0) -> Path:
    """Write the corpus under out_dir/inputs/, out_dir/build.toml and inputs/expected.json;
    return the build.toml path. ``langs`` must include "en" (the caption language);
    ``held_out``: test images in inputs/heldout (split "test"), a count or a fraction of
    ``n``; ``validation``: the same for inputs/validation (split "validation"), none by
    default (``corpus_splits``); ``weak_share``: the share of on-disk images that get a
    weak alt-text. Example: ``write_corpus(out, 6000, 0, held_out=1000, validation=500)``."""
    if "en" not in langs:
        raise ValueError(f"langs = {list(langs)}: must include 'en', the language of the captions")
    out_dir = Path(out_dir)
    train, valid, heldout = corpus_splits(n, seed, langs, held_out, validation)
    inputs = _prepare(out_dir)
    counts, planted, weak = _write_train_sources(inputs, train, langs, seed, weak_share)
    counts["heldout"] = _write_heldout(inputs / "heldout", heldout, train, langs)
    if valid:
        counts["validation"] = _write_heldout(inputs / "validation", valid, train, langs)
    files_lang = next((lang for lang in langs if lang != "en"), None)
    toml_path = out_dir / "build.toml"
    toml_path.write_text(build_toml(seed, files_lang, IMAGE_SIZE, bool(valid)), encoding="utf-8")
    samples = {"train": len(train), "heldout": len(heldout), **({"validation": len(valid)} if valid else {})}
    expected = {
        "n": n, "seed": seed, "langs": list(langs), "held_out": held_out,
        **({"validation": validation} if valid else {}), "image_size": IMAGE_SIZE, "samples": samples,
        "input_records": counts, "total_input_records": sum(counts.values()),
        "planted": planted, "rejects": dict(sorted(Counter(p["reject"] for p in planted).items())),
        "weak_relevance": {k: n for k, n in sorted(weak.items()) if not k.startswith("kind:")},
        "weak_relevance_kinds": {k[5:]: n for k, n in sorted(weak.items()) if k.startswith("kind:")},
        "note": "rejects lists only the planted bad inputs; language ID and relevance "
                "scoring may reject more (e.g. weak texts of relevance 'none').",
    }
    (inputs / "expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    return toml_path


def count_or_fraction(text: str) -> int | float:
    """A CLI value of --held-out/--validation: "1000" is a count, "0.1" a fraction."""
    try:
        return int(text)
    except ValueError:
        return float(text)


EXAMPLES = """examples:
  python -m curation.demo.corpus out/demo --n 600
  python -m curation.demo.corpus out/demo-it --n 600 --langs en,de,fr,es,it
  python -m curation.demo.corpus out/ablation --n 6000 --held-out 1000 --validation 500
"""


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m curation.demo.corpus OUT [--n N] [--seed S] [--langs L] [--held-out H]
    [--validation V]``: write a corpus by hand (inputs/ and build.toml under OUT)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, default=400, help="samples generated (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--langs", default=",".join(LANGUAGES),
                        help=f"caption languages, en first (default {','.join(LANGUAGES)}; add it for Italian)")
    parser.add_argument("--held-out", type=count_or_fraction, default=0.1,
                        help="test images in inputs/heldout: a count (1000) or a fraction of --n (default 0.1)")
    parser.add_argument("--validation", type=count_or_fraction, default=0,
                        help="validation images in inputs/validation: a count or a fraction (default 0: none)")
    parser.add_argument("--weak-share", type=float, default=WEAK_SHARE,
                        help=f"share of the on-disk images with a weak alt-text (default {WEAK_SHARE})")
    args = parser.parse_args(argv)
    try:
        path = write_corpus(args.out_dir, args.n, args.seed, tuple(args.langs.split(",")), args.held_out,
                            args.weak_share, args.validation)
    except (ValueError, TypeError, FileExistsError) as err:
        parser.error(str(err))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
