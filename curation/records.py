"""The records that flow through the pipeline, and the reject that replaces a dropped one.

A reader turns each input row into a ``RawRecord`` (or a ``Reject``); validation turns a
``RawRecord`` into a schema-shaped dict (a ``pairs`` or ``parallel`` row, see
``schemas/arrow.py``). Every stage yields either its output or a ``Reject``, so that
``input = output + rejected`` holds by construction and is checked in the manifest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# Where a stage sends what it drops (the Beam tagged-output name).
REJECTS_TAG = "rejects"

# Raw values larger than these are truncated in the rejects table (and flagged).
MAX_RAW_STRING = 2048
MAX_RAW_BYTES_HEAD = 64
MAX_RAW_JSON = 16384

RECORD_KINDS = ("pair", "weak", "parallel")


def record_id(source: str, source_id: str) -> str:
    """Stable id of an input record: the same source and key give the same id on any runner."""
    return hashlib.blake2b(f"{source}\x00{source_id}".encode(), digest_size=12).hexdigest()


@dataclass
class RawRecord:
    """One input record after column mapping, before validation.

    ``fields`` holds the mapped text fields by role: ``caption`` (pair), ``text``,
    ``lang``, ``anchor`` (weak), ``src``, ``tgt``, ``src_lang``, ``tgt_lang`` (parallel).
    ``image`` holds encoded bytes, or ``image_path`` a local or remote path to read them.
    ``raw`` is the input row as read, kept for the rejects table.
    """

    source: str
    kind: str
    source_id: str
    split: str
    fields: dict[str, Any]
    provenance: dict[str, Any]
    image: bytes | None = None
    image_path: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    image_info: dict[str, Any] | None = None  # the schema's ``image`` struct, set by ValidateImages

    @property
    def id(self) -> str:
        return record_id(self.source, self.source_id)


@dataclass
class Reject:
    """A dropped record (level "record") or a dropped text variant (level "text")."""

    stage: str
    reason: str
    detail: str
    source: str
    source_id: str | None
    raw: Any
    record_id: str | None = None
    level: str = "record"

    @property
    def key(self) -> str:
        """The ``stage/reason`` key under which the manifest counts this reject."""
        return f"{self.stage}/{self.reason}"

    @classmethod
    def of(cls, record: RawRecord, stage: str, reason: str, detail: str, level: str = "record") -> Reject:
        return cls(stage, reason, detail, record.source, record.source_id, raw_view(record), record.id, level)


def raw_view(record: RawRecord) -> dict[str, Any]:
    """What the rejects table keeps of a raw record: the input row plus where it came from."""
    view: dict[str, Any] = {"row": record.raw, "provenance": record.provenance}
    if record.image is not None:
        view["image"] = record.image
    if record.image_path is not None:
        view["image_path"] = record.image_path
    if record.image_info is not None:
        view["image_info"] = {k: v for k, v in record.image_info.items() if k != "bytes"}
    return view


def without_image_bytes(row: dict[str, Any]) -> dict[str, Any]:
    """A curated row for the rejects table: the image's metadata (sha256 included) stays,
    its bytes go (the rejects table would otherwise hold a second copy of every image)."""
    image = row.get("image")
    if not isinstance(image, dict) or "bytes" not in image:
        return row
    return {**row, "image": {k: v for k, v in image.items() if k != "bytes"}}


def remap_text_indices(texts: list[dict[str, Any]], new_index: dict[int, int]) -> None:
    """After texts were dropped from a row, point ``anchor``/``derived_from`` at the kept
    texts' new positions (None where the referenced text was dropped)."""
    for text in texts:
        for name in ("anchor", "derived_from"):
            old = text.get(name)
            if old is not None:
                text[name] = new_index.get(old)


def _shrink(value: Any, flags: list[bool]) -> Any:
    """JSON-able copy of ``value`` with bytes summarised and long strings cut."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if len(data) > MAX_RAW_BYTES_HEAD:
            flags.append(True)
        return {
            "$bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "head_b64": base64.b64encode(data[:MAX_RAW_BYTES_HEAD]).decode(),
        }
    if isinstance(value, str):
        if len(value) > MAX_RAW_STRING:
            flags.append(True)
            return value[:MAX_RAW_STRING] + f"…[{len(value) - MAX_RAW_STRING} more chars]"
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if _has_surrogates(value) else value
    if isinstance(value, dict):
        return {_shrink(str(k), flags): _shrink(v, flags) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shrink(v, flags) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return repr(value)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def reject_row(reject: Reject) -> dict[str, Any]:
    """The ``rejects`` table row for a reject: raw payload as JSON, truncated and flagged."""
    flags: list[bool] = []
    raw = json.dumps(_shrink(reject.raw, flags), ensure_ascii=False, sort_keys=True)
    if len(raw) > MAX_RAW_JSON:
        flags.append(True)
        raw = raw[:MAX_RAW_JSON] + f"…[{len(raw) - MAX_RAW_JSON} more chars]"
    return {
        "record_id": reject.record_id,
        "source": reject.source,
        "source_id": reject.source_id,
        "stage": reject.stage,
        "reason": reject.reason,
        "level": reject.level,
        "detail": reject.detail,
        "raw": raw,
        "raw_truncated": bool(flags),
    }


def text_entry(
    text: str,
    kind: str,
    origin: str,
    lang: str,
    *,
    lang_score: float | None = None,
    declared_lang: str | None = None,
    derived_from: int | None = None,
    anchor: int | None = None,
    relevance: float | None = None,
    relevance_scorer: str | None = None,
    score: float | None = None,
    spans: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One element of a pairs row's ``texts`` list (see ``schemas.arrow.TEXT``)."""
    return {
        "text": text,
        "lang": lang,
        "lang_score": lang_score,
        "declared_lang": declared_lang,
        "kind": kind,
        "origin": origin,
        "derived_from": derived_from,
        "anchor": anchor,
        "relevance": relevance,
        "relevance_scorer": relevance_scorer,
        "score": score,
        "spans": spans,
    }
