"""The one definition of a row's parts, that every stage builds rows with.

``schemas/arrow.py`` declares the tables; this module holds what stages need to fill them
the same way: the text entry (one element of a ``pairs`` row's ``texts``), the one
``Reject`` form and its table row, the shared constants and the one ``lang_key``.
``curation``, ``translate``, ``codeswitch`` and ``pretrain`` import these from here; none
keeps a copy.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A language that is not known (nothing declared and nothing detected with confidence).
UNDETERMINED = "und"
# The values of a text entry's ``kind``.
TEXT_KINDS = ("caption", "translation", "codeswitch", "weak")
# A reject drops a whole record, or one text variant of a kept row.
REJECT_LEVELS = ("record", "text")
# Where a stage sends what it drops (the Beam tagged-output name).
REJECTS_TAG = "rejects"

# Raw values larger than these are cut in the rejects table (and the row flagged).
MAX_RAW_STRING = 2048
MAX_RAW_BYTES_HEAD = 64
MAX_RAW_JSON = 16384

# Languages compared as one (Norwegian Bokmål and Nynorsk as Norwegian).
_COMPARE_AS = {"nb": "no", "nn": "no"}


def lang_key(code: str) -> str:
    """What languages are compared on: the primary subtag, lower-cased, script and region
    dropped, Norwegian folded (``zh_Hant`` -> ``zh``, ``en-US`` -> ``en``, ``nb`` -> ``no``)."""
    base = code.strip().replace("-", "_").split("_", 1)[0].lower()
    return _COMPARE_AS.get(base, base)


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
    concepts: list[str] | None = None,
) -> dict[str, Any]:
    """One element of a pairs row's ``texts`` list (``schemas.arrow.TEXT``, field order kept)."""
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
        "concepts": concepts,
    }


@dataclass
class Reject:
    """A dropped record (level "record") or a dropped text variant (level "text").

    ``stage`` is filled in by the stage framework (``schemas.stage``) from the registry's
    name when a stage's logic leaves it empty, so stage names are written once.
    ``raw`` is any JSON-able value (bytes allowed): ``reject_row`` shrinks it.
    """

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
    def of(cls, record: Any, stage: str, reason: str, detail: str, level: str = "record") -> Reject:
        """The reject of an input record (anything with ``source``, ``source_id``, ``id``
        and ``raw_view()``, such as ``curation.read.records.RawRecord``)."""
        return cls(stage, reason, detail, record.source, record.source_id, record.raw_view(), record.id, level)

    @classmethod
    def of_row(cls, row: dict[str, Any], reason: str, detail: str, raw: Any = None, level: str = "record",
               stage: str = "") -> Reject:
        """The reject of a curated row (``level`` "record": ``raw`` defaults to the row
        without its image bytes) or of one of its texts (``level`` "text", ``raw`` given)."""
        payload = without_image_bytes(row) if raw is None else raw
        return cls(stage, reason, detail, row["source"], row["source_id"], payload, row["id"], level)


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


def back_translated_from(texts: Sequence[dict[str, Any]], text: dict[str, Any]) -> int | None:
    """The index of the weak text that ``text`` translates (the mt stage's back-translation,
    ``derived_from`` pointing at a ``weak`` text), else None."""
    d = text.get("derived_from")
    if text["kind"] == "translation" and d is not None and 0 <= d < len(texts) and texts[d]["kind"] == "weak":
        return d
    return None


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
    """The ``rejects`` table row of a reject: raw payload as JSON, cut and flagged."""
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
