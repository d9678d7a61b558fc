"""Mapping an input row's columns to record roles, and the checks each value must pass.

Rejects of a row carry ``raw = {"row": <the row as read>, "provenance": {...}}``, the same
shape ``records.raw_view`` gives later stages, so the rejects table reads alike everywhere.
"""

from __future__ import annotations

from typing import Any

from curation.config import ROLES, SourceConfig
from curation.read.common import Item, Problem, file_label, read_reject
from curation.read.paths import UnsafePath, image_root_of, resolve_image_path
from curation.read.records import RawRecord
from schemas.rows import Reject

# The text fields each kind carries in ``RawRecord.fields``.
FIELD_ROLES: dict[str, tuple[str, ...]] = {
    "pair": ("caption", "lang"),
    "weak": ("text", "lang", "anchor", "anchor_lang"),
    "parallel": ("src", "tgt", "src_lang", "tgt_lang"),
}
# Declared-language roles: an empty or absent value falls back to the source setting of the
# same name (``SourceConfig.lang`` / ``src_lang`` / ``tgt_lang``).
LANG_ROLES = ("lang", "src_lang", "tgt_lang", "anchor_lang")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _describe_surrogate(text: str, where: str) -> str | None:
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as err:
        char = text[err.start]
        offset = len(text[: err.start].encode("utf-8"))
        if "\udc80" <= char <= "\udcff":
            return f"{where}: invalid UTF-8 byte 0x{ord(char) - 0xDC00:02x} at byte {offset}"
        return f"{where}: lone surrogate U+{ord(char):04X} at byte {offset}"


def find_invalid_utf8(value: Any, where: str = "") -> str | None:
    """Where ``value`` (a row, nested) holds text that is not valid UTF-8, or None.

    Undecodable input bytes appear as lone surrogates (see ``open_text``); JSON ``\\udXXX``
    escapes produce them too. Either would fail when the row is written to Parquet.
    """
    if isinstance(value, str):
        return _describe_surrogate(value, where or "value")
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{where}[{key!r}]" if where else f"column {key!r}"
            problem = (isinstance(key, str) and _describe_surrogate(key, f"name of {here}")) or (
                find_invalid_utf8(item, here)
            )
            if problem:
                return problem
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problem = find_invalid_utf8(item, f"{where or 'value'}[{i}]")
            if problem:
                return problem
    return None


def _missing(column: str, role: str, row: dict[str, Any]) -> str:
    names = [str(name) for name in row]
    shown = names[:50] + ([f"... {len(names) - 50} more"] if len(names) > 50 else [])
    return f"no column {column!r} (role {role}); the row has {shown!r}"


def source_id_of(
    row: dict[str, Any], source: SourceConfig, fallback: str
) -> tuple[str, Problem | None]:
    """The row's id (role ``id``), else ``fallback`` (``file:row``): stable across runs.

    A configured id column that a row lacks is an error (ids would silently change); the
    default one (``key``) is used only where present. Integer ids are accepted as text.
    """
    column = source.column("id")
    if column not in row:
        problem = (
            ("missing_column", _missing(column, "id", row)) if "id" in source.columns else None
        )
        return fallback, problem
    value = row[column]
    if value is None or value == "":
        return fallback, None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return fallback, (
            "wrong_type",
            f"column {column!r} (role id) holds {_type_name(value)}, expected a string",
        )
    if isinstance(value, str) and find_invalid_utf8(value):
        return fallback, None  # the row is rejected as invalid_utf8; keep the id printable
    return str(value), None


def url_of(row: dict[str, Any], source: SourceConfig) -> str | None:
    """The row's URL for provenance only; a non-string is dropped rather than rejected."""
    value = row.get(source.column("url"))
    return value if isinstance(value, str) and value else None


def text_fields(row: dict[str, Any], source: SourceConfig) -> tuple[dict[str, Any], Problem | None]:
    """``RawRecord.fields`` of a row: required text roles must hold strings; optional ones
    may be absent, null or empty (-> None, or the source's declared language)."""
    fields: dict[str, Any] = {}
    for role in FIELD_ROLES[source.kind]:
        required = ROLES[source.kind][role]
        column = source.column(role)
        if column not in row:
            if required:
                return {}, ("missing_column", _missing(column, role, row))
            value = None
        else:
            value = row[column]
        if value is None and required:
            return {}, ("wrong_type", f"column {column!r} (role {role}) is null, expected a string")
        if value is not None and not isinstance(value, str):
            return {}, (
                "wrong_type",
                f"column {column!r} (role {role}) holds {_type_name(value)}, expected a string",
            )
        if value == "" and not required:
            value = None
        if value is None and role in LANG_ROLES:
            value = getattr(source, role)
        fields[role] = value
    return fields, None


def image_of(
    row: dict[str, Any], column: str, path: str, source: SourceConfig, *, allow_bytes: bool
) -> tuple[bytes | None, str | None, Problem | None]:
    """(image bytes, image path, problem) from a row's image column: a string is a path to
    resolve (read later by the image stage), bytes (Parquet only) are the encoded image.
    A path that leaves the source's image root is ``unsafe_path`` (``curation.read.paths``)."""
    if column not in row:
        return None, None, ("missing_column", _missing(column, "image", row))
    value = row[column]
    if value is None or value in ("", b""):
        return None, None, ("missing_image", f"column {column!r} (role image) is empty")
    if isinstance(value, str):
        try:
            return None, resolve_image_path(value, path, source), None
        except UnsafePath as err:
            return None, None, ("unsafe_path", str(err))
    if allow_bytes and isinstance(value, bytes):
        return value, None, None
    expected = "a path or image bytes" if allow_bytes else "a path"
    return (
        None,
        None,
        (
            "wrong_type",
            f"column {column!r} (role image) holds {_type_name(value)}, expected {expected}",
        ),
    )


def map_row(
    row: dict[str, Any],
    *,
    path: str,
    index: int,
    source: SourceConfig,
    image_column: str | None,
    allow_bytes: bool = False,
) -> Item:
    """One tabular row (JSONL, CSV/TSV, Parquet) -> its RawRecord, or the reject saying why not.

    ``image_column`` is None for kind ``parallel`` (no image).
    """
    provenance = {"file": path, "row": index, "url": url_of(row, source), "member": None}
    source_id, problem = source_id_of(row, source, f"{file_label(path, source)}:{index}")
    if problem is None:
        invalid = find_invalid_utf8(row)
        problem = ("invalid_utf8", invalid) if invalid else None
    fields: dict[str, Any] = {}
    if problem is None:
        fields, problem = text_fields(row, source)
    image = image_path = None
    if problem is None and image_column is not None:
        image, image_path, problem = image_of(
            row, image_column, path, source, allow_bytes=allow_bytes
        )
    if problem is not None:
        return read_reject(source, *problem, source_id, {"row": row, "provenance": provenance})
    return RawRecord(
        source=source.name,
        kind=source.kind,
        source_id=source_id,
        split=source.split,
        fields=fields,
        provenance=provenance,
        image=image,
        image_path=image_path,
        raw=row,
        image_root=_confinement(image_path, path, source),
    )


def _confinement(image_path: str | None, path: str, source: SourceConfig) -> str | None:
    """The root a record's image path must still lie in when the image stage opens it
    (None: no path, or a source that trusts its paths)."""
    if image_path is None or source.image_paths != "confined":
        return None
    return image_root_of(path, source)


def row_reject(
    source: SourceConfig, reason: str, detail: str, *, path: str, index: int, raw: dict[str, Any]
) -> Reject:
    """A reject for a row that could not be parsed into columns (no id of its own)."""
    provenance = {"file": path, "row": index, "url": None, "member": None}
    return read_reject(
        source, reason, detail, f"{file_label(path, source)}:{index}", {"row": raw, "provenance": provenance}
    )
