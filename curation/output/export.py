"""``m3curate export DS --format webdataset|cclm|hf --out OUT``: a built dataset in the formats
other trainers read.

- ``webdataset``: tar shards ``OUT/<split>/NNNNNN.tar`` of samples ``KEY.jpg`` (``.png``/``.webp``
  by the stored format), ``KEY.txt`` (the chosen text) and ``KEY.json`` (every selected text
  with its metadata, the image's size, format, sha256 and provenance), plus ``sizes.json``
  per split (open_clip's ``get_dataset_size`` reads it). KEY is the row id.
- ``cclm``: JSON lines as CCLM/X-VLM's pre-training readers take them (``dataset/
  pretrain_dataset_multilingual.py``): ``OUT/<split>/image_text/*.jsonl`` with the image as
  base64 (``binary``) or a path (``image``, ``--images files``) and ``caption`` a
  ``{lang: text}`` dict (``ImageMultiTextDataset``) or, with ``--per text``, one text and its
  ``language`` (``ImageMonoTextDataset``); ``OUT/<split>/parallel_text/*.jsonl`` with
  ``source_text``/``target_text`` (``ParaTextDataset``, CCLM's ``train_file_text``);
  ``OUT/cclm.yaml`` has the matching config keys.
- ``hf``: ``datasets.DatasetDict.save_to_disk(OUT)``, one split per ``split`` value, the image
  as a ``datasets.Image`` (decoded to PIL on access); ``--table parallel`` for the text pairs.

``--langs``, ``--kinds`` and ``--splits`` choose what goes out; a pairs row whose texts are all
filtered away is left out (counted in ``OUT/export.json``). Texts keep their order, and
``derived_from``/``anchor`` are re-pointed at the kept texts. The chosen text (``.txt``, CCLM's
one caption per language) is the first by ``--kinds`` order, then ``--langs`` order.
The output appears whole or not at all (written beside OUT, then renamed); ``--overwrite``
replaces only an earlier export (a folder holding ``export.json``).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import re
import shutil
import tarfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from curation.progress import Counter as ProgressCounter
from schemas import TEXT_KINDS
from schemas.dataset import load_manifest, shard_paths
from schemas.rows import lang_key, remap_text_indices

FORMATS = ("webdataset", "cclm", "hf")
EXPORT_JSON = "export.json"
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
BATCH_ROWS = 256
LIGHT_COLUMNS = {"pairs": ["split", "texts"], "parallel": ["split", "src_lang", "tgt_lang"]}


class ExportError(ValueError):
    """Bad export options or an output folder that must not be replaced."""


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What to export and how.

    fmt: ``webdataset``, ``cclm`` or ``hf``. langs: languages to keep (None: all; compared as
    ``schemas.rows.lang_key`` does, so ``zh`` keeps ``zh_Hant``). kinds: text kinds to keep, in
    the order of preference for the chosen text. splits: splits to keep (None: all).
    per: ``image`` (one sample per image) or ``text`` (one per selected text; webdataset, cclm).
    table: ``pairs`` or ``parallel`` (hf only; cclm writes both, webdataset only pairs).
    images: ``embed`` (base64 in the line) or ``files`` (``OUT/<split>/images/``, cclm only).
    shard_size: samples per tar shard / lines per JSON-lines file.
    """

    fmt: str
    langs: tuple[str, ...] | None = None
    kinds: tuple[str, ...] = TEXT_KINDS
    splits: tuple[str, ...] | None = None
    per: str = "image"
    table: str = "pairs"
    images: str = "embed"
    shard_size: int = 10_000

    def __post_init__(self) -> None:
        choices = {"fmt": FORMATS, "per": ("image", "text"), "table": ("pairs", "parallel"), "images": ("embed", "files")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ExportError(f"{name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        unknown = [k for k in self.kinds if k not in TEXT_KINDS]
        if unknown or not self.kinds:
            raise ExportError(f"text kinds {unknown or 'none'}: choose from {', '.join(TEXT_KINDS)}")
        if self.shard_size <= 0:
            raise ExportError("shard size must be positive")
        if self.table == "parallel" and self.fmt != "hf":
            raise ExportError("--table parallel is for --format hf (cclm always writes parallel text; webdataset holds images)")

    def keeps_lang(self, lang: str) -> bool:
        return self.langs is None or lang_key(lang) in {lang_key(x) for x in self.langs}


def select_texts(texts: list[dict[str, Any]], cfg: ExportConfig) -> list[dict[str, Any]]:
    """The texts of one row that pass --langs/--kinds, in row order, indices re-pointed."""
    keep = [i for i, t in enumerate(texts) if t["kind"] in cfg.kinds and cfg.keeps_lang(t["lang"])]
    out = [dict(texts[i]) for i in keep]
    remap_text_indices(out, {old: new for new, old in enumerate(keep)})
    return out


def chosen_text(texts: list[dict[str, Any]], cfg: ExportConfig) -> int:
    """Index of the preferred text: first by --kinds order, then --langs order, then row order."""
    langs = [lang_key(x) for x in cfg.langs or ()]

    def rank(i: int) -> tuple[int, int, int]:
        key = lang_key(texts[i]["lang"])
        return (cfg.kinds.index(texts[i]["kind"]), langs.index(key) if key in langs else len(langs), i)

    return min(range(len(texts)), key=rank)


def _open(path: str) -> Any:
    if "://" in path:
        fs, inner = pafs.FileSystem.from_uri(path)
        return fs.open_input_file(inner)
    return open(path, "rb")


def iter_rows(directory: str, table: str, cfg: ExportConfig, stats: Counter[str],
              progress: ProgressCounter | None = None, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of ``table`` in shard order that pass --splits (and for pairs, with texts selected)."""
    for path in shard_paths(directory, table):
        with _open(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=BATCH_ROWS, columns=columns):
                for row in batch.to_pylist():
                    if progress:
                        progress.add()
                    if cfg.splits is not None and row["split"] not in cfg.splits:
                        continue
                    if table == "pairs":
                        row["texts"] = select_texts(row["texts"], cfg)
                        if not row["texts"]:
                            stats["rows_without_selected_texts"] += 1
                            continue
                    elif not (cfg.keeps_lang(row["src_lang"]) and cfg.keeps_lang(row["tgt_lang"])):
                        stats["parallel_rows_other_langs"] += 1
                        continue
                    yield row


def _metadata(row: dict[str, Any], text_index: int) -> dict[str, Any]:
    image = {k: v for k, v in row["image"].items() if k != "bytes"}
    keys = ("id", "source", "source_id", "split", "provenance", "regions", "texts")
    return {**{k: row[k] for k in keys}, "image": image, "text_index": text_index}


class _Shards:
    """Numbered output files per split, a new one every ``size`` samples; one open per split.

    pattern: the file path under ``root`` (``{split}``, ``{index}``). opener: opens a new file.
    """

    def __init__(self, root: Path, pattern: str, size: int, opener: Any):
        self.root, self.pattern, self.size, self.opener = root, pattern, size, opener
        self.counts: dict[str, list[int]] = {}
        self.handles: dict[str, Any] = {}

    def next(self, split: str) -> Any:
        """The open file the next sample of ``split`` goes to."""
        counts = self.counts.setdefault(split, [])
        if not counts or counts[-1] >= self.size:
            if split in self.handles:
                self.handles.pop(split).close()
            counts.append(0)
            path = self.root / self.pattern.format(split=split, index=len(counts) - 1)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.handles[split] = self.opener(path)
        counts[-1] += 1
        return self.handles[split]

    def __enter__(self) -> _Shards:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles.values():
            handle.close()


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)  # fixed owner, mode and time: the same dataset gives the same bytes
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _open_tar(path: Path) -> tarfile.TarFile:
    return tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)


def _open_lines(path: Path) -> Any:
    return path.open("w", encoding="utf-8")


def export_webdataset(directory: str, out: Path, final: Path, cfg: ExportConfig, stats: Counter[str],
                      progress: ProgressCounter | None) -> None:
    with _Shards(out, "{split}/{index:06d}.tar", cfg.shard_size, _open_tar) as shards:
        for row in iter_rows(directory, "pairs", cfg, stats, progress):
            ext = EXTENSIONS.get(row["image"]["format"], "jpg")
            picks = range(len(row["texts"])) if cfg.per == "text" else [chosen_text(row["texts"], cfg)]
            for i in picks:
                tar = shards.next(row["split"])
                key = row["id"] if cfg.per == "image" else f"{row['id']}_{i}"
                _tar_add(tar, f"{key}.{ext}", row["image"]["bytes"])
                _tar_add(tar, f"{key}.txt", row["texts"][i]["text"].encode())
                _tar_add(tar, f"{key}.json", json.dumps(_metadata(row, i), ensure_ascii=False).encode())
                stats[f"samples/{row['split']}"] += 1
    for split, counts in shards.counts.items():
        sizes = {f"{i:06d}.tar": n for i, n in enumerate(counts)}
        (out / split / "sizes.json").write_text(json.dumps(sizes, indent=1) + "\n")


def _cclm_image(row: dict[str, Any], out: Path, final: Path, cfg: ExportConfig) -> dict[str, str]:
    """``binary`` (base64) or ``image``: the absolute path the file will have once OUT is in place
    (CCLM opens ``ann[image_key]`` as given)."""
    if cfg.images == "embed":
        return {"binary": base64.b64encode(row["image"]["bytes"]).decode()}
    name = Path(row["split"]) / "images" / f"{row['id']}.{EXTENSIONS.get(row['image']['format'], 'jpg')}"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(row["image"]["bytes"])
    return {"image": str(final.resolve() / name)}


def _cclm_lines(row: dict[str, Any], image: dict[str, str], cfg: ExportConfig) -> list[dict[str, Any]]:
    head = {"id": row["id"], "split": row["split"], **image}
    texts = row["texts"]
    if cfg.per == "text":
        return [{**head, "caption": t["text"], "language": t["lang"], "kind": t["kind"]} for t in texts]
    caption: dict[str, str] = {}
    for i in sorted(range(len(texts)), key=lambda i: (cfg.kinds.index(texts[i]["kind"]), i)):
        caption.setdefault(texts[i]["lang"], texts[i]["text"])
    return [{**head, "caption": dict(sorted(caption.items()))}]


def _write_line(shards: _Shards, split: str, line: dict[str, Any]) -> None:
    shards.next(split).write(json.dumps(line, ensure_ascii=False) + "\n")


def export_cclm(directory: str, out: Path, final: Path, cfg: ExportConfig, stats: Counter[str],
                progress: ProgressCounter | None) -> None:
    with _Shards(out, "{split}/image_text/part-{index:05d}.jsonl", cfg.shard_size, _open_lines) as images:
        for row in iter_rows(directory, "pairs", cfg, stats, progress):
            image = _cclm_image(row, out, final, cfg)
            for line in _cclm_lines(row, image, cfg):
                _write_line(images, row["split"], line)
                stats[f"image_text_lines/{row['split']}"] += 1
    with _Shards(out, "{split}/parallel_text/part-{index:05d}.jsonl", cfg.shard_size, _open_lines) as parallel:
        for row in iter_rows(directory, "parallel", cfg, stats, progress):
            line = {"id": row["id"], "split": row["split"], "origin": row["origin"], "source_text": row["src_text"],
                    "target_text": row["tgt_text"], "source_lang": row["src_lang"], "target_lang": row["tgt_lang"]}
            _write_line(parallel, row["split"], line)
            stats[f"parallel_text_lines/{row['split']}"] += 1
    splits = set(images.counts) | set(parallel.counts)
    (out / "cclm.yaml").write_text(_cclm_config(final.resolve(), cfg, splits))


def _cclm_config(out: Path, cfg: ExportConfig, splits: set[str]) -> str:
    """The CCLM config keys (configs/Pretrain_*.yaml) that read this export, per split."""
    image_key, rpath = ("binary", False) if cfg.images == "embed" else ("image", True)
    doc = {}
    for split in sorted(splits):
        text_key = "train_file" if cfg.per == "image" else "train_file_mono"
        doc[split] = {
            text_key: [str(out / split / "image_text")],
            "images" if cfg.per == "image" else "images_mono": {
                "image_key": image_key, "is_image_rpath": rpath, "caption_key": "caption", "tokenized": False},
            "train_file_text": [str(out / split / "parallel_text")],
            "texts_para": {"source_key": "source_text", "target_key": "target_text", "tokenized": False},
        }
    return "# CCLM config keys for this export, per split (merge into configs/Pretrain_*.yaml)\n" + yaml.safe_dump(doc, sort_keys=False)


def export_hf(directory: str, out: Path, final: Path, cfg: ExportConfig, stats: Counter[str],
              progress: ProgressCounter | None) -> None:
    """One ``Dataset.from_generator`` per split (datasets draws its own progress bars)."""
    import datasets

    from schemas import SCHEMAS

    features = datasets.Features.from_arrow_schema(SCHEMAS[cfg.table])
    if cfg.table == "pairs":
        del features["image"]
        features.update({"image": datasets.Image(), "image_width": datasets.Value("int32"),
                         "image_height": datasets.Value("int32"), "image_format": datasets.Value("string"),
                         "image_sha256": datasets.Value("string")})
    cache = out.parent / f".{out.name}.hf-cache"
    try:
        splits = {}
        for split in _splits(directory, cfg):
            if not re.fullmatch(r"\w+(\.\w+)*", split):
                raise ExportError(f"split {split!r} is not a valid Hugging Face split name (letters, digits, _ and .)")
            one = dataclasses.replace(cfg, splits=(split,))
            splits[split] = datasets.Dataset.from_generator(
                _hf_rows, features=features, cache_dir=str(cache), gen_kwargs={"directory": directory, "cfg": one})
            stats[f"rows/{split}"] = splits[split].num_rows
        datasets.DatasetDict(splits).save_to_disk(str(out))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    stats.update(_filtered(directory, cfg))


def _splits(directory: str, cfg: ExportConfig) -> list[str]:
    found: set[str] = set()
    for path in shard_paths(directory, cfg.table):
        with _open(path) as handle:
            found.update(pq.read_table(handle, columns=["split"]).column("split").to_pylist())
    return sorted(s for s in found if cfg.splits is None or s in cfg.splits)


def _filtered(directory: str, cfg: ExportConfig) -> Counter[str]:
    """What --langs/--kinds left out (a pass that skips the image bytes)."""
    stats: Counter[str] = Counter()
    for _ in iter_rows(directory, cfg.table, cfg, stats, columns=LIGHT_COLUMNS[cfg.table]):
        pass
    return stats


def _hf_rows(directory: str, cfg: ExportConfig) -> Iterator[dict[str, Any]]:
    for row in iter_rows(directory, cfg.table, cfg, Counter()):
        if cfg.table == "pairs":
            image = row.pop("image")
            row.update({"image": {"bytes": image["bytes"], "path": None}, "image_width": image["width"],
                        "image_height": image["height"], "image_format": image["format"], "image_sha256": image["sha256"]})
        yield row


WRITERS = {"webdataset": export_webdataset, "cclm": export_cclm, "hf": export_hf}


def _staging(out: Path, overwrite: bool) -> Path:
    if out.exists() and any(out.iterdir()):
        if not (out / EXPORT_JSON).exists():
            raise ExportError(f"{out} is not empty and holds no {EXPORT_JSON} (not an m3curate export); choose another --out")
        if not overwrite:
            raise ExportError(f"{out} already holds an export; pass --overwrite to replace it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def run_export(directory: str, out: str, cfg: ExportConfig, overwrite: bool = False) -> dict[str, Any]:
    """Export the dataset in ``directory`` to ``out``; returns what export.json records."""
    manifest = load_manifest(directory)
    target = Path(out)
    staging = _staging(target, overwrite)
    stats: Counter[str] = Counter()
    tables = ("pairs", "parallel") if cfg.fmt == "cclm" else (cfg.table,)
    total = sum(f["rows"] for t in tables for f in manifest["files"].get(t, []))
    progress = None if cfg.fmt == "hf" else ProgressCounter(f"export {cfg.fmt}", total)
    try:
        WRITERS[cfg.fmt](directory, staging, target, cfg, stats, progress)
        record = {"format": cfg.fmt, "dataset": directory, "schema_version": manifest["schema_version"],
                  "options": dataclasses.asdict(cfg), "counts": dict(sorted(stats.items()))}
        (staging / EXPORT_JSON).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if progress:
            progress.close()
    return record
