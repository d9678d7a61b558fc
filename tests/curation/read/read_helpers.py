"""Shared builders for the reader tests."""


from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curation.config import SourceConfig
from curation.read.records import RawRecord

# --- helpers ---------------------------------------------------------------------------
from schemas.rows import Reject

# --- helpers ---------------------------------------------------------------------------



def image_bytes(fmt: str = "PNG", color: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format=fmt)
    return buffer.getvalue()


def source(path: Path | str, fmt: str, kind: str = "pair", **kwargs: Any) -> SourceConfig:
    return SourceConfig(name="src", format=fmt, paths=[str(path)], kind=kind, **kwargs)


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def records(items: list[RawRecord | Reject]) -> list[RawRecord]:
    return [i for i in items if isinstance(i, RawRecord)]


def rejects(items: list[RawRecord | Reject]) -> list[Reject]:
    return [i for i in items if isinstance(i, Reject)]


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"", **info: Any) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    for key, value in info.items():
        setattr(member, key, value)
    tar.addfile(member, io.BytesIO(data) if data else None)


def img2dataset_parquet(path: Path, n: int = 3, failed: frozenset[int] = frozenset()) -> Path:
    jpg = image_bytes("JPEG")
    rows = {
        "key": [f"{i:09d}" for i in range(n)],
        "caption": [f"caption {i}" for i in range(n)],
        "url": [f"http://example.com/{i}.jpg" for i in range(n)],
        "status": ["failed_to_download" if i in failed else "success" for i in range(n)],
        "error_message": ["HTTP 404" if i in failed else None for i in range(n)],
        "width": [None if i in failed else 8 for i in range(n)],
        "height": [None if i in failed else 8 for i in range(n)],
        "jpg": [None if i in failed else jpg for i in range(n)],
    }
    pq.write_table(pa.table(rows), path, row_group_size=128)
    return path


# --- JSONL -----------------------------------------------------------------------------




def build_shard(path: Path, members: list[tuple[str, bytes, dict[str, Any]]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data, info in members:
            add_member(tar, name, data, **info)
    return path

