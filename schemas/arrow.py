"""The Arrow schemas of m3curate's output: the one contract between writer and trainer.

Declared once, here. Writers and readers pass them explicitly; nothing is inferred
from a first record. Every field is documented in ``schemas/README.md``; a change to
any field bumps ``SCHEMA_VERSION`` (major for a breaking change, minor for an added
nullable field).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1.2"
METADATA_KEY = b"m3curate.schema_version"
KIND_KEY = b"m3curate.table"

SPAN = pa.struct(
    [
        pa.field("src_start", pa.int32(), nullable=False),
        pa.field("src_end", pa.int32(), nullable=False),
        pa.field("start", pa.int32(), nullable=False),
        pa.field("end", pa.int32(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
    ]
)

TEXT = pa.struct(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("lang_score", pa.float32()),
        pa.field("declared_lang", pa.string()),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("derived_from", pa.int32()),
        pa.field("anchor", pa.int32()),
        pa.field("relevance", pa.float32()),
        pa.field("relevance_scorer", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("spans", pa.list_(SPAN)),
        pa.field("concepts", pa.list_(pa.string())),
    ]
)

IMAGE = pa.struct(
    [
        pa.field("bytes", pa.binary(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("format", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
    ]
)

REGIONS = pa.struct(
    [
        pa.field("boxes", pa.list_(pa.list_(pa.float32(), 4)), nullable=False),
        pa.field("features", pa.list_(pa.list_(pa.float32())), nullable=False),
        pa.field("extractor", pa.string(), nullable=False),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("label_scores", pa.list_(pa.float32())),
        pa.field("concepts", pa.list_(pa.string())),
    ]
)

PROVENANCE = pa.struct(
    [
        pa.field("file", pa.string(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("member", pa.string()),
    ]
)


def _schema(kind: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={METADATA_KEY: SCHEMA_VERSION.encode(), KIND_KEY: kind.encode()})


PAIRS = _schema(
    "pairs",
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("provenance", PROVENANCE, nullable=False),
        pa.field("image", IMAGE, nullable=False),
        pa.field("regions", REGIONS),
        pa.field("texts", pa.list_(TEXT), nullable=False),
    ],
)

PARALLEL = _schema(
    "parallel",
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("provenance", PROVENANCE, nullable=False),
        pa.field("src_text", pa.string(), nullable=False),
        pa.field("src_lang", pa.string(), nullable=False),
        pa.field("src_lang_score", pa.float32()),
        pa.field("tgt_text", pa.string(), nullable=False),
        pa.field("tgt_lang", pa.string(), nullable=False),
        pa.field("tgt_lang_score", pa.float32()),
        pa.field("src_declared_lang", pa.string()),
        pa.field("tgt_declared_lang", pa.string()),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("score", pa.float32()),
        pa.field("pair_id", pa.string()),
    ],
)

REJECTS = _schema(
    "rejects",
    [
        pa.field("record_id", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_id", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("level", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
        pa.field("raw_truncated", pa.bool_(), nullable=False),
    ],
)

SCHEMAS: dict[str, pa.Schema] = {"pairs": PAIRS, "parallel": PARALLEL, "rejects": REJECTS}

