"""Retrieval test sets: a curated dataset's split, or a benchmark folder.

An ``EvalSet`` is images plus, per language, captions that each point at their image; an
image may have several captions per language (Multi30K en/de have five, COCO five).

Benchmark folders (Multi30K test2016, multilingual COCO 1K, or any folder laid out the same)
come in either of two layouts, chosen by which file is present:

* ``images.txt`` (one image file name per line; files in ``images/`` or next to it) with
  one caption file per language aligned line by line: ``captions.<lang>.txt``, and for
  several captions per image ``captions.<lang>.1.txt``, ``captions.<lang>.2.txt``, ...
  Multi30K: ``images.txt`` = ``image_splits/test_2016_flickr.txt``, ``captions.de.txt`` =
  ``test_2016_flickr.de`` (task 1), ``captions.de.<k>.txt`` = ``test_2016.<k>.de`` (task 2).
* ``captions.jsonl``: one object per image with ``image`` (path relative to the folder)
  and its captions as ``caption_<lang>`` keys, a ``captions`` object ``{lang: text}`` (CCLM's
  format), or ``caption`` (language ``lang`` when the object has one, else ``en``); each value
  a string or a list of strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretrain.shards import open_dataset, read_unit, with_split

CAPTION_FILE = re.compile(r"^captions\.([A-Za-z_]+)(?:\.(\d+))?\.txt$")


@dataclass
class EvalSet:
    """images: loaders returning encoded bytes; captions: lang -> [(image index, text)].

    regions: per image, its row's ``regions`` (boxes, features, concepts, ...) or None;
    empty when the set has no region data at all (benchmark folders). concepts: lang -> per
    caption (aligned with ``captions[lang]``) its concept names or None."""

    name: str
    images: list[Callable[[], bytes]] = field(default_factory=list)
    captions: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    regions: list[dict[str, Any] | None] = field(default_factory=list)
    concepts: dict[str, list[list[str] | None]] = field(default_factory=dict)

    def add(self, lang: str, image: int, text: str | list[str], concepts: list[str] | None = None) -> None:
        for t in [text] if isinstance(text, str) else text:
            if t and t.strip():
                self.captions.setdefault(lang, []).append((image, t.strip()))
                self.concepts.setdefault(lang, []).append(concepts)

    def has_regions(self) -> bool:
        return any(r and r.get("features") for r in self.regions)


def _file_loader(path: Path) -> Callable[[], bytes]:
    def load() -> bytes:
        return path.read_bytes()
    return load


def _image_path(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / "images" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder}: image {name!r} not found (looked in the folder and in images/)")


def _from_lists(folder: Path) -> EvalSet:
    names = [n.strip() for n in (folder / "images.txt").read_text(encoding="utf-8").splitlines() if n.strip()]
    out = EvalSet(folder.name, [_file_loader(_image_path(folder, n)) for n in names])
    for path in sorted(folder.iterdir()):
        m = CAPTION_FILE.match(path.name)
        if not m:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) != len(names):
            raise ValueError(f"{path}: {len(lines)} lines, images.txt lists {len(names)} images; they must align")
        for i, line in enumerate(lines):
            out.add(m.group(1), i, line)
    return out


def _from_jsonl(folder: Path) -> EvalSet:
    out = EvalSet(folder.name)
    for n, line in enumerate((folder / "captions.jsonl").read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        rec = json.loads(line)
        if "image" not in rec:
            raise ValueError(f"{folder / 'captions.jsonl'}: line {n + 1} has no 'image'")
        i = len(out.images)
        out.images.append(_file_loader(_image_path(folder, rec["image"])))
        if "caption" in rec:
            out.add(rec.get("lang") or "en", i, rec["caption"])
        for lang, text in (rec.get("captions") or {}).items():
            out.add(lang, i, text)
        for key, text in rec.items():
            if key.startswith("caption_"):
                out.add(key[len("caption_"):], i, text)
    return out


def load_benchmark(folder: str | Path) -> EvalSet:
    """A benchmark folder in one of the two layouts of the module docstring."""
    root = Path(folder)
    if (root / "images.txt").is_file():
        out = _from_lists(root)
    elif (root / "captions.jsonl").is_file():
        out = _from_jsonl(root)
    else:
        raise FileNotFoundError(f"{root}: neither images.txt (+ captions.<lang>.txt) nor captions.jsonl; "
                                "see `m3curate evaluate --help` for the benchmark layouts")
    if not out.images or not out.captions:
        raise ValueError(f"{root}: no images or no captions found")
    return out


def load_curated(data_dir: str, split: str = "test", kinds: tuple[str, ...] = ("caption", "translation")) -> EvalSet:
    """The ``split`` rows of a curated dataset (accepted through schemas.dataset); each
    image's texts of ``kinds`` are its captions in their languages, with their concepts;
    each image brings its row's regions (a region model is evaluated with them)."""
    data = open_dataset(data_dir, full_validation=False)
    out = EvalSet(f"{Path(data_dir).name}:{split}")
    for unit in with_split(data.pairs, split):  # image bytes are read only where the split lives
        for row in read_unit(unit, ["split", "image", "regions", "texts"], split):
            i = len(out.images)
            data_bytes = row["image"]["bytes"]
            out.images.append(lambda b=data_bytes: b)
            out.regions.append(row.get("regions"))
            for t in row["texts"]:
                if t["kind"] in kinds:
                    out.add(t["lang"], i, t["text"], t.get("concepts"))
    if not out.images:
        raise ValueError(f"{data_dir}: no pairs rows with split {split!r}")
    return out


def load_evalset(path: str, split: str = "test") -> EvalSet:
    """A curated dataset (has manifest.json) or a benchmark folder."""
    return load_curated(path, split) if (Path(path) / "manifest.json").exists() or "://" in path else load_benchmark(path)
