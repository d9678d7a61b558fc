"""build.toml of the demo corpus: its [[sources]] (every input format ``curation.demo.corpus``
writes, the held-out test set and, when there is one, the validation set) and the few
settings a build of it needs; stages (LID, MT, code-switching, relevance) are appended by
``curation.demo.run``."""

from __future__ import annotations

import json
from typing import Any


def _toml_value(value: Any) -> str:
    """TOML literal for str/int/bool/list/dict (JSON string escapes are valid TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML literal for {value!r}")


def _sources(files_lang: str | None, validation: bool = False) -> list[dict[str, Any]]:
    """The [[sources]] of build.toml; paths are relative to the TOML file (out_dir)."""
    en = {"kind": "pair", "lang": "en"}
    sources: list[dict[str, Any]] = [
        {"name": "captions_jsonl", "format": "jsonl", "paths": ["inputs/captions.jsonl"], **en},
        {"name": "captions_csv", "format": "csv", "paths": ["inputs/captions.csv"], **en},
        {"name": "captions_tsv", "format": "tsv", "paths": ["inputs/captions.tsv"], **en,
         "columns": {"id": "id", "caption": "alt", "image": "file"}},
        {"name": "img2dataset_parquet", "format": "parquet", "paths": ["inputs/img2dataset/*.parquet"],
         **en, "columns": {"image": "jpg"}},
        {"name": "webdataset", "format": "webdataset", "paths": ["inputs/webdataset/*.tar"], **en},
        {"name": "weak", "format": "jsonl", "kind": "weak", "paths": ["inputs/weak.jsonl"], "anchor_lang": "en"},
        {"name": "parallel_tsv", "format": "tsv", "kind": "parallel", "paths": ["inputs/parallel.tsv"]},
    ]
    if files_lang:
        sources.append({"name": "parallel_files", "format": "parallel_files", "kind": "parallel",
                        "paths": ["inputs/parallel_en.txt"], "tgt_paths": [f"inputs/parallel_{files_lang}.txt"],
                        "src_lang": "en", "tgt_lang": files_lang})
    sources.append({"name": "heldout", "format": "jsonl", "paths": ["inputs/heldout/captions.jsonl"],
                    **en, "split": "test"})
    if validation:
        sources.append({"name": "validation", "format": "jsonl", "paths": ["inputs/validation/captions.jsonl"],
                        **en, "split": "validation"})
    return sources


def build_toml(seed: int, files_lang: str | None, image_size: int, validation: bool = False) -> str:
    """The text of the demo's build config (with a ``validation`` source when asked)."""
    lines = ["# m3curate build config for the synthetic demo corpus (written by curation.demo.corpus).",
             f"seed = {seed}", "", "[image]", f"max_side = {image_size}", "min_side = 32", "",
             "[dedup]", 'key = "image+caption"', "", "[output]", "rows_per_shard = 256",
             "row_group_rows = 64"]
    for src in _sources(files_lang, validation):
        lines += ["", "[[sources]]", *(f"{k} = {_toml_value(v)}" for k, v in src.items())]
    return "\n".join(lines) + "\n"
