"""One validator for the data contract, called by the writer and by the trainer.

Checks are vectorised with ``pyarrow.compute`` so that the writer can run them on
every shard. Each failure names the table, the offending column (dotted path for
nested fields) and the first bad row.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import KIND_KEY, METADATA_KEY, SCHEMA_VERSION, SCHEMAS
from schemas.rows import REJECT_LEVELS, TEXT_KINDS


class SchemaError(ValueError):
    """A table does not follow the m3curate data contract."""

    def __init__(self, table: str, column: str, message: str):
        super().__init__(f"{table}: column '{column}': {message}")
        self.table = table
        self.column = column


def check_version(metadata: dict[bytes, bytes] | None, table: str) -> None:
    """Refuse data written under another major schema version."""
    found = (metadata or {}).get(METADATA_KEY)
    if found is None:
        raise SchemaError(table, "<metadata>", f"no {METADATA_KEY.decode()} in file metadata; not written by m3curate?")
    major = found.decode().split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise SchemaError(
            table,
            "<metadata>",
            f"schema version {found.decode()} is not compatible with {SCHEMA_VERSION}; "
            "rebuild the dataset with this m3curate version or install the matching one",
        )
    kind = (metadata or {}).get(KIND_KEY)
    if kind is not None and kind.decode() != table:
        raise SchemaError(table, "<metadata>", f"file holds a '{kind.decode()}' table, not '{table}'")


def _check_fields(actual: pa.DataType | pa.Schema, expected: pa.DataType | pa.Schema, table: str, prefix: str) -> None:
    for field in expected:
        name = f"{prefix}{field.name}"
        idx = actual.get_field_index(field.name) if isinstance(actual, pa.Schema) else actual.get_field_index(field.name)
        if idx < 0:
            raise SchemaError(table, name, "missing")
        got = actual.field(idx).type
        if got != field.type:
            raise SchemaError(table, name, f"has type {got}, expected {field.type}")


def _first_bad(mask: pa.Array) -> int:
    """Index of the first true value of a boolean mask (nulls count as false)."""
    return int(pc.index(pc.fill_null(mask, False), True).as_py())


def _require_non_null(arr: pa.Array, table: str, column: str, rows: pa.Array | None = None) -> None:
    if arr.null_count:
        i = _first_bad(pc.is_null(arr))
        row = int(rows[i].as_py()) if rows is not None else i
        raise SchemaError(table, column, f"null at row {row}, but the field is required")


def _require(mask_ok: pa.Array, table: str, column: str, what: str, values: pa.Array, rows: pa.Array | None = None) -> None:
    bad = pc.invert(pc.fill_null(mask_ok, True))
    if pc.any(bad).as_py():
        i = _first_bad(bad)
        row = int(rows[i].as_py()) if rows is not None else i
        raise SchemaError(table, column, f"row {row}: {values[i].as_py()!r} {what}")


def _check_not_null_recursive(arr: pa.Array, dtype: pa.DataType, table: str, column: str, rows: pa.Array | None) -> None:
    """Enforce nullable=False of nested struct fields, which Arrow does not enforce itself."""
    if pa.types.is_struct(dtype):
        for field in dtype:
            name = f"{column}.{field.name}"
            if not field.nullable:
                present = pc.is_valid(arr)
                bad = pc.and_(present, pc.is_null(arr.field(field.name)))
                if pc.any(bad).as_py():
                    i = _first_bad(bad)
                    row = int(rows[i].as_py()) if rows is not None else i
                    raise SchemaError(table, name, f"null at row {row}, but the field is required")
            _check_not_null_recursive(arr.field(field.name), field.type, table, name, rows)
    elif pa.types.is_list(dtype) or pa.types.is_fixed_size_list(dtype):
        parents = pc.list_parent_indices(arr)
        parent_rows = pc.take(rows, parents) if rows is not None else parents
        _check_not_null_recursive(pc.list_flatten(arr), dtype.value_type, table, column + "[]", parent_rows)


def _check_texts(table: pa.Table) -> None:
    texts = table.column("texts").combine_chunks()
    lengths = pc.list_value_length(texts)
    _require(pc.greater(lengths, 0), "pairs", "texts", "has no texts; a pairs row holds at least one", lengths)
    flat = pc.list_flatten(texts)
    rows = pc.list_parent_indices(texts)
    row_len = pc.take(lengths, rows)
    kind = flat.field("kind")
    _require(pc.is_in(kind, pa.array(TEXT_KINDS)), "pairs", "texts.kind", f"is not one of {TEXT_KINDS}", kind, rows)
    rel = flat.field("relevance")
    _require(pc.and_(pc.greater_equal(rel, 0), pc.less_equal(rel, 1)), "pairs", "texts.relevance", "is not in [0, 1]", rel, rows)
    score = flat.field("lang_score")
    _require(pc.and_(pc.greater_equal(score, 0), pc.less_equal(score, 1)), "pairs", "texts.lang_score", "is not in [0, 1]", score, rows)
    for ref in ("anchor", "derived_from"):
        idx = flat.field(ref)
        ok = pc.and_(pc.greater_equal(idx, 0), pc.less(idx, pc.cast(row_len, pa.int32())))
        _require(ok, "pairs", f"texts.{ref}", "is not the index of a text in the same row", idx, rows)
    empty = pc.equal(pc.utf8_length(flat.field("text")), 0)
    _require(pc.invert(empty), "pairs", "texts.text", "is empty", flat.field("text"), rows)


def _check_image(table: pa.Table) -> None:
    image = table.column("image").combine_chunks()
    for dim in ("width", "height"):
        v = image.field(dim)
        _require(pc.greater(v, 0), "pairs", f"image.{dim}", "is not positive", v)
    sha = image.field("sha256")
    _require(pc.match_substring_regex(sha, r"^[0-9a-f]{64}$"), "pairs", "image.sha256", "is not a hex sha256", sha)


# Nullable fields each minor version added, per table: a file of an older minor version
# lacks exactly these, and reads as if they were null. Any other missing field is an error.
# A dotted name is a field of a struct inside a column ("texts.concepts": a field of the
# struct that the ``texts`` list holds; "regions.labels": a field of the ``regions`` struct).
ADDED_IN: dict[str, dict[str, tuple[str, ...]]] = {
    "1.1": {"parallel": ("src_declared_lang", "tgt_declared_lang")},
    "1.2": {"pairs": ("texts.concepts", "regions.labels", "regions.label_scores", "regions.concepts")},
}


def _minor(version: str) -> int:
    parts = version.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _with_nested_nulls(arr: pa.Array, expected: pa.DataType, allowed: set[str], path: str) -> pa.Array:
    """``arr`` with every field of ``allowed`` (dotted paths) that its structs lack added as
    nulls, in ``expected``'s field order; unchanged (the same object) when none is missing.
    Lists are looked through: the struct a list holds has the list's path."""
    if pa.types.is_struct(arr.type) and pa.types.is_struct(expected):
        children, fields, changed = [], [], False
        for i in range(arr.type.num_fields):
            if expected.get_field_index(arr.type.field(i).name) < 0:
                return arr  # a field the contract lacks: left for _check_fields to name
        for want in expected:
            name = f"{path}.{want.name}"
            i = arr.type.get_field_index(want.name)
            if i >= 0:
                child = _with_nested_nulls(arr.field(i), want.type, allowed, name)
                changed |= child is not arr.field(i)
                fields.append(arr.type.field(i).with_type(child.type))
            elif name in allowed:
                child, changed = pa.nulls(len(arr), want.type), True
                fields.append(want)
            else:
                return arr  # a required field is missing: left for _check_fields to name
            children.append(child)
        if not changed:
            return arr
        return pa.StructArray.from_arrays(children, fields=fields, mask=arr.is_null() if arr.null_count else None)
    if pa.types.is_list(arr.type) and pa.types.is_list(expected):
        values = _with_nested_nulls(arr.values, expected.value_type, allowed, path)
        if values is arr.values:
            return arr
        list_type = pa.list_(arr.type.value_field.with_type(values.type))
        return pa.ListArray.from_arrays(arr.offsets, values, type=list_type, mask=arr.is_null() if arr.null_count else None)
    return arr


def _upgrade_nested(table: pa.Table, kind: str, names: list[str]) -> pa.Table:
    """Add the nested fields ``names`` ("column.field") as nulls where the table lacks them."""
    for column in sorted({n.split(".", 1)[0] for n in names}):
        idx = table.schema.get_field_index(column)
        if idx < 0:
            continue  # the column itself is missing: _check_fields names it
        expected = SCHEMAS[kind].field(column)
        allowed = {n for n in names if n.split(".", 1)[0] == column}
        old = table.column(idx).chunks or [pa.array([], type=table.column(idx).type)]
        chunks = [_with_nested_nulls(c, expected.type, allowed, column) for c in old]
        if all(new is was for new, was in zip(chunks, old, strict=True)):
            continue
        new_type = chunks[0].type
        field = table.schema.field(idx).with_type(new_type)
        table = table.set_column(idx, field, pa.chunked_array(chunks, type=new_type))
    return table


def upgrade_minor(table: pa.Table, kind: str) -> pa.Table:
    """Add, as nulls, the fields added after the table's own minor version (``ADDED_IN``):
    top-level columns and fields of nested structs alike."""
    found = (table.schema.metadata or {}).get(METADATA_KEY)
    if found is None:
        return table
    version = _minor(found.decode())
    nested: list[str] = []
    for added, tables in ADDED_IN.items():
        if version >= _minor(added):
            continue
        for name in tables.get(kind, ()):
            if "." in name:
                nested.append(name)
                continue
            field = SCHEMAS[kind].field(name)
            if table.schema.get_field_index(name) < 0:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return _upgrade_nested(table, kind, nested) if nested else table


def validate_table(table: pa.Table, kind: str, check_metadata: bool = True) -> None:
    """Raise ``SchemaError`` unless ``table`` is a valid ``kind`` table ("pairs", "parallel", "rejects")."""
    if kind not in SCHEMAS:
        raise ValueError(f"unknown table kind {kind!r}; expected one of {sorted(SCHEMAS)}")
    expected = SCHEMAS[kind]
    if check_metadata:
        check_version(table.schema.metadata, kind)
    table = upgrade_minor(table, kind)
    _check_fields(table.schema, expected, kind, "")
    for field in expected:
        col = table.column(field.name).combine_chunks()
        if not field.nullable:
            _require_non_null(col, kind, field.name)
        _check_not_null_recursive(col, field.type, kind, field.name, None)
    if kind == "pairs" and table.num_rows:
        _check_texts(table)
        _check_image(table)
    if kind == "rejects" and table.num_rows:
        level = table.column("level")
        _require(pc.is_in(level, pa.array(REJECT_LEVELS)), "rejects", "level", f"is not one of {REJECT_LEVELS}", level.combine_chunks())
    if table.num_rows:
        ids = table.column("record_id" if kind == "rejects" else "id")
        if kind != "rejects" and pc.count_distinct(ids).as_py() != table.num_rows:
            raise SchemaError(kind, "id", "has duplicate values; ids must be unique")


def validate_rows(rows: list[dict], kind: str) -> pa.Table:
    """Build a table from python rows with the declared schema, then validate it.

    A missing required field is an error; a missing nullable one is stored as null.
    Type errors from Arrow are re-raised as ``SchemaError`` naming the column.
    """
    schema = SCHEMAS[kind]
    for field in schema:
        missing = [i for i, r in enumerate(rows) if field.name not in r]
        if missing and not field.nullable:
            raise SchemaError(kind, field.name, f"missing in row {missing[0]}")
    columns = []
    for field in schema:
        try:
            # A nullable top-level field may be left out (a row made before a minor version added it).
            columns.append(pa.array([r.get(field.name) for r in rows], type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as err:
            raise SchemaError(kind, field.name, f"cannot be stored as {field.type}: {err}") from err
    table = pa.Table.from_arrays(columns, schema=schema)
    validate_table(table, kind)
    return table
