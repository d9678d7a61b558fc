"""Tiny curated datasets built through the schema's own validator, and a micro model config.

The images are coloured squares at one of four positions, captioned in en with de
translations, code-switched variants, weak texts (graded relevance, some without anchor),
optional ROI features, parallel rows and a test split: every kind the trainer reads.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from pretrain.config import PretrainConfig, load_config
from schemas import SCHEMA_VERSION, SCHEMAS, validate_rows

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 30), "blue": (30, 60, 220), "yellow": (230, 200, 20)}
DE = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb"}
POS = {"left": (2, 10), "right": (18, 10), "top": (10, 2), "bottom": (10, 18)}
DE_POS = {"left": "links", "right": "rechts", "top": "oben", "bottom": "unten"}


def mark(img: Image.Image, i: int | None) -> None:
    """Make picture ``i`` a file of its own: one corner pixel encodes ``i``, so that a train
    and a test picture of the same scene are different images (the trainer refuses a
    dataset whose splits share an image)."""
    if i is not None:
        img.putpixel((0, 0), (i % 256, (i // 256) % 256, 128))


def jpeg(colour: str, pos: str, size: int = 32, i: int | None = None) -> bytes:
    img = Image.new("RGB", (size, size), (240, 240, 240))
    x, y = POS[pos]
    img.paste(COLOURS[colour], (x, y, x + 12, y + 12))
    mark(img, i)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def scene_jpeg(rgb: tuple[int, int, int], xy: tuple[int, int], rng: Any, i: int) -> bytes:
    """A 32 px scene for the learning tests: a 14 px square of ``rgb`` near ``xy``, jittered
    by one pixel (``rng``), picture ``i`` marked as a file of its own."""
    img = Image.new("RGB", (32, 32), (235, 235, 235))
    (x, y), (dx, dy) = xy, (rng.randint(-1, 1), rng.randint(-1, 1))
    img.paste(rgb, (x + dx, y + dy, x + dx + 14, y + dy + 14))
    mark(img, i)  # one picture, one file: train and test never share an image
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _text(text: str, kind: str = "caption", lang: str = "en", **kw: Any) -> dict[str, Any]:
    base = {"text": text, "lang": lang, "lang_score": None, "declared_lang": None, "kind": kind, "origin": "t",
            "derived_from": None, "anchor": None, "relevance": None, "relevance_scorer": None, "score": None, "spans": None}
    return {**base, **kw}


CONCEPTS = [*COLOURS, "square", *POS, "photo"]  # the concept vocabulary of concepts.txt


def pair_row(i: int, split: str = "train", regions: bool = False, image: bytes | None = None,
             concepts: bool = False) -> dict[str, Any]:
    colour, pos = list(COLOURS)[i % 4], list(POS)[(i // 4) % 4]
    data = image if image is not None else jpeg(colour, pos, i=i)
    en = f"a {colour} square on the {pos}"
    cs_word = DE[colour]
    named = {"concepts": [colour, "square", pos]} if concepts else {}
    texts = [_text(en, **named), _text(f"ein {DE[colour]}es Quadrat {DE_POS[pos]}", "translation", "de", derived_from=0, **named),
             _text(f"a {cs_word} square on the {pos}", "codeswitch", derived_from=0,
                   spans=[{"src_start": 2, "src_end": 2 + len(colour), "start": 2, "end": 2 + len(cs_word), "lang": "de"}],
                   **named)]
    if i % 3 == 0:
        rel = [1.0, 0.3, 0.0][(i // 3) % 3]
        weak = f"foto {DE[colour]}" if rel else "alle Rechte vorbehalten"
        texts.append(_text(weak, "weak", "de", anchor=None if i % 9 == 0 else 0, relevance=rel if i % 2 else None))
    region = {"boxes": [[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9]],
              "features": [[0.5, -1.0, 2.0, 0.0, 1.0, 0.25], [float(i % 4 + k) for k in range(6)]], "extractor": "toy"}
    if concepts:  # a background box the detector could not name, and the square
        region.update(labels=[None, f"{colour} box"], label_scores=[0.0, 0.9], concepts=[None, colour])
    return {"id": f"r{i:04d}", "source": "tiny", "source_id": str(i), "split": split,
            "provenance": {"file": "x", "row": i, "url": None, "member": None},
            "image": {"bytes": data, "width": 32, "height": 32, "format": "JPEG", "sha256": hashlib.sha256(data).hexdigest()},
            "regions": region if regions else None, "texts": texts}


def parallel_row(i: int) -> dict[str, Any]:
    colour, pos = list(COLOURS)[i % 4], list(POS)[(i // 4) % 4]
    return {"id": f"p{i:04d}", "source": "par", "source_id": str(i), "split": "train",
            "provenance": {"file": "p", "row": i, "url": None, "member": None},
            "src_text": f"a {colour} square on the {pos}", "src_lang": "en", "src_lang_score": None,
            "tgt_text": f"ein {DE[colour]}es Quadrat {DE_POS[pos]}", "tgt_lang": "de", "tgt_lang_score": None,
            "origin": "par", "score": None, "pair_id": None}


def write_dataset(root: Path, n: int = 48, n_test: int = 8, regions: bool = False, pair_shards: int = 2,
                  bad_rows: dict[int, bytes] | None = None, parallel: int = 32, concepts: bool = False) -> Path:
    """A valid dataset: ``pair_shards`` pairs shards (row groups of 8), one parallel shard;
    with ``concepts``, texts and regions carry concepts (and regions detector labels), and
    the root has concepts.txt."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [pair_row(i, regions=regions, image=(bad_rows or {}).get(i), concepts=concepts) for i in range(n)]
    rows += [pair_row(n + i, "test", regions, concepts=concepts) for i in range(n_test)]
    if concepts:
        (root / "concepts.txt").write_text("\n".join(CONCEPTS) + "\n", encoding="utf-8")
    files: dict[str, list[dict[str, Any]]] = {"pairs": [], "parallel": [], "rejects": []}
    for s in range(pair_shards):
        _write(root, "pairs", f"pairs/part-{s}.parquet", rows[s::pair_shards], files)
    if parallel:
        _write(root, "parallel", "parallel/part-0.parquet", [parallel_row(i) for i in range(parallel)], files)
    manifest = {"schema_version": SCHEMA_VERSION, "files": files, "counts": {}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _write(root: Path, kind: str, rel: str, rows: list[dict[str, Any]], files: dict[str, list]) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    rows = [{f.name: r.get(f.name) for f in SCHEMAS[kind]} for r in rows]  # later nullable fields: null
    pq.write_table(validate_rows(rows, kind), root / rel, row_group_size=8)
    files[kind].append({"path": rel, "rows": len(rows)})


MICRO = {"image_size": 32, "patch_size": 8, "vision_width": 32, "vision_layers": 1, "vision_heads": 2,
         "text_width": 32, "text_layers": 1, "text_heads": 2, "fusion_layers": 1, "embed_dim": 16, "max_text_len": 16}


def micro_config(**sections: Any) -> PretrainConfig:
    """A model small enough for many CPU steps per second; sections override as in TOML."""
    base = {"model": dict(MICRO), "data": {"batch_size": 8, "parallel_batch_size": 8, "num_workers": 0,
                                           "shuffle_buffer": 16, "null_relevance": 0.5},
            "train": {"steps": 4, "warmup_steps": 1, "log_every": 1, "ckpt_every": 100, "lr": 1e-3},
            "tokenizer": {"vocab_size": 120}}
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values} if isinstance(values, dict) else values  # [[schedule]]: a list
    return load_config(None, base)


def write_toml(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """A TOML config file from ``{"section": {"key": value}}`` (values: str, number, bool, list)."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
