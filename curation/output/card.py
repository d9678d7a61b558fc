"""The dataset card: ``DIR/README.md``, written with every build, beside manifest.json.

A Hugging Face dataset card (YAML front matter, then prose) so that the build folder can be
pushed to the Hub or read locally with ``datasets.load_dataset(DIR, "pairs")``: one config
per table (``pairs``, ``parallel``) with its features, taken from the Arrow schemas in
``schemas/`` (declared once there; never inferred from rows). The card is made from the
manifest only, so it is as deterministic as the manifest, and the shards are not touched.

Shards hold rows of every split (a row's split is its ``split`` column), so each config
has one split named ``all_splits`` rather than a ``train`` that would silently include the
validation and test images; filter on the ``split`` column, or use ``m3curate export
--format hf``, which writes real splits.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import yaml

from schemas import SCHEMAS

CARD = "README.md"
CARD_SPLIT = "all_splits"
CONFIG_TABLES = ("pairs", "parallel")

_DTYPES = {
    pa.string(): "string", pa.large_string(): "large_string", pa.binary(): "binary",
    pa.large_binary(): "large_binary", pa.bool_(): "bool", pa.int8(): "int8", pa.int16(): "int16",
    pa.int32(): "int32", pa.int64(): "int64", pa.float16(): "float16", pa.float32(): "float32",
    pa.float64(): "float64",
}


def _feature(arrow: pa.DataType) -> dict[str, Any]:
    """One Arrow type as a Hugging Face ``datasets`` YAML feature (the ``dtype``/``struct``/
    ``list`` forms ``datasets.Features._to_yaml_list`` writes, datasets >= 4)."""
    if arrow in _DTYPES:
        return {"dtype": _DTYPES[arrow]}
    if pa.types.is_struct(arrow):
        return {"struct": [{"name": f.name, **_feature(f.type)} for f in arrow]}
    if pa.types.is_list(arrow) or pa.types.is_fixed_size_list(arrow):
        inner = _feature(arrow.value_type)  # a list of lists nests as {"list": {"list": ...}}
        out: dict[str, Any] = {"list": inner["dtype"] if "dtype" in inner else inner.get("struct", inner)}
        if pa.types.is_fixed_size_list(arrow):
            out["length"] = arrow.list_size
        return out
    raise TypeError(f"no Hugging Face feature for Arrow type {arrow}")


def features(table: str) -> list[dict[str, Any]]:
    """The YAML feature list of one table's schema."""
    return [{"name": f.name, **_feature(f.type)} for f in SCHEMAS[table]]


def front_matter(manifest: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML metadata: languages, configs (data files) and dataset_info (features)."""
    tables = [t for t in CONFIG_TABLES if manifest["files"].get(t)]
    configs = [
        {"config_name": t, "data_files": [{"split": CARD_SPLIT, "path": f"{t}/*.parquet"}], **({"default": True} if t == "pairs" else {})}
        for t in tables
    ]
    info = [{"config_name": t, "features": features(t)} for t in tables]  # splits would need Arrow byte sizes
    langs = sorted(lang.split("_")[0] for lang in manifest["languages"] if lang != "und")
    return {"language": sorted(set(langs)), "tags": ["m3curate", "multilingual", "image-text"],
            "configs": configs, "dataset_info": info}


def _by_source(manifest: dict[str, Any]) -> str:
    by_source = manifest["counts"]["by_source"]
    return "\n".join(f"- `{name}`: {c['output']:,} kept of {c['input']:,} read" for name, c in sorted(by_source.items()))


def render_card(manifest: dict[str, Any]) -> str:
    """The whole README.md of a build, from its manifest."""
    counts = manifest["counts"]
    meta = yaml.safe_dump(front_matter(manifest), sort_keys=False, allow_unicode=True, width=1000)
    langs = ", ".join(f"{k} {v:,}" for k, v in manifest["languages"].items())
    body = f"""# m3curate dataset

Multilingual image-text pre-training data curated by m3curate (schema version
{manifest['schema_version']}). `manifest.json` beside this card lists every shard, the
resolved build config, tool versions and the reconciled counts; `rejects/` keeps every
dropped record with its stage and reason.

- images (`pairs` rows): {counts['pairs_rows']:,}
- parallel text rows: {counts['parallel_rows']:,}
- input records {counts['input_records']:,} = kept {counts['output_records']:,} + rejected {counts['rejected_records']:,}
- texts by language: {langs}

Records by source:

{_by_source(manifest)}

## Loading

```python
import datasets
pairs = datasets.load_dataset("path/to/this/folder", "pairs")["{CARD_SPLIT}"]
train = pairs.filter(lambda row: row["split"] == "train")
parallel = datasets.load_dataset("path/to/this/folder", "parallel")["{CARD_SPLIT}"]
```

Shards hold rows of every split, so each config has one split, `{CARD_SPLIT}`; a row's
own split is its `split` column (an image and its duplicates are always in one split).
`m3curate export DIR --format hf|webdataset|cclm --out OUT` writes per-split copies in the
formats other trainers read.

## Fields

`pairs`: one row per image: `image` (encoded bytes, width, height, format, sha256),
optional `regions`, and `texts`, every text of the image with its language, LID score,
kind (`caption`, `translation`, `codeswitch`, `weak`), origin, the index of the text it
was derived from or anchored to, RC3 relevance and its scorer, and code-switched spans.
`parallel`: text-text pairs with their languages and origin. Every field is documented
in m3curate's `schemas/README.md`.
"""
    return f"---\n{meta}---\n\n{body}"
