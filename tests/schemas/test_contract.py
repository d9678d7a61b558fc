"""Write-then-read round trips of every table, and the validator naming what is wrong."""

from __future__ import annotations

import copy
import hashlib

import pyarrow.parquet as pq
import pytest

from schemas import PAIRS, SCHEMA_VERSION, SchemaError, validate_rows, validate_table
from schemas.validate import check_version


def text(t: str, kind: str = "caption", **kw):
    base = {
        "text": t, "lang": "en", "lang_score": None, "declared_lang": None, "kind": kind, "origin": "cc3m",
        "derived_from": None, "anchor": None, "relevance": None, "relevance_scorer": None, "score": None, "spans": None,
        "concepts": None,
    }
    return {**base, **kw}


def pair_row(i: int = 0) -> dict:
    data = b"\xff\xd8fake-jpeg" + bytes([i])
    return {
        "id": f"id{i}",
        "source": "cc3m",
        "source_id": f"k{i}",
        "split": "train",
        "provenance": {"file": "a.jsonl", "row": i, "url": "http://x/y.jpg", "member": None},
        "image": {"bytes": data, "width": 64, "height": 48, "format": "JPEG", "sha256": hashlib.sha256(data).hexdigest()},
        "regions": {"boxes": [[0.0, 0.0, 1.0, 1.0], [0.25, 0.5, 0.75, 1.0]], "features": [[0.5, 0.25], [0.0, 1.0]],
                    "extractor": "toy", "labels": ["circle", "blob"], "label_scores": [0.75, 0.5],
                    "concepts": ["circle", None]},
        "texts": [
            text("a red circle", concepts=["red", "circle"]),
            text("ein roter Kreis", "translation", lang="de", origin="m2m100", derived_from=0, score=-0.25),
            text("a rot circle", "codeswitch", derived_from=0,
                 spans=[{"src_start": 2, "src_end": 5, "start": 2, "end": 5, "lang": "de"}]),
            text("Kreis Foto", "weak", lang="de", anchor=0, relevance=0.375, relevance_scorer="lexical"),
        ],
    }


def parallel_row(i: int = 0) -> dict:
    return {
        "id": f"p{i}", "source": "wmt", "source_id": f"l{i}", "split": "train",
        "provenance": {"file": "p.tsv", "row": i, "url": None, "member": None},
        "src_text": "a red circle", "src_lang": "en", "src_lang_score": 0.75,
        "tgt_text": "ein roter Kreis", "tgt_lang": "de", "tgt_lang_score": None,
        "src_declared_lang": "en", "tgt_declared_lang": None,
        "origin": "wmt", "score": None, "pair_id": None,
    }


def reject_row(i: int = 0) -> dict:
    return {
        "record_id": None, "source": "cc3m", "source_id": None, "stage": "read", "reason": "unreadable_file",
        "level": "record", "detail": "truncated gzip", "raw": "{}", "raw_truncated": False,
    }


@pytest.mark.parametrize("kind,make", [("pairs", pair_row), ("parallel", parallel_row), ("rejects", reject_row)])
def test_round_trip_through_parquet(tmp_path, kind, make):
    rows = [make(i) for i in range(3)] if kind != "rejects" else [make(0)]
    table = validate_rows(rows, kind)
    path = tmp_path / f"{kind}.parquet"
    pq.write_table(table, path)
    back = pq.read_table(path)
    check_version(back.schema.metadata, kind)
    validate_table(back, kind)
    assert back.to_pylist() == rows
    assert back.schema.metadata[b"m3curate.schema_version"] == SCHEMA_VERSION.encode()


def bad(mutate) -> SchemaError:
    row = pair_row()
    mutate(row)
    with pytest.raises(SchemaError) as info:
        validate_rows([row], "pairs")
    return info.value


def test_errors_name_the_column():
    assert bad(lambda r: r["texts"][3].update(relevance=1.5)).column == "texts.relevance"
    assert bad(lambda r: r["texts"][3].update(anchor=9)).column == "texts.anchor"
    assert bad(lambda r: r["texts"][1].update(derived_from=-1)).column == "texts.derived_from"
    assert bad(lambda r: r["texts"][0].update(kind="alt")).column == "texts.kind"
    assert bad(lambda r: r["texts"][0].update(text="")).column == "texts.text"
    assert bad(lambda r: r["texts"][0].update(lang=None)).column == "texts[].lang"
    assert bad(lambda r: r.update(texts=[])).column == "texts"
    assert bad(lambda r: r["image"].update(sha256="nothex")).column == "image.sha256"
    assert bad(lambda r: r["image"].update(width=0)).column == "image.width"
    assert bad(lambda r: r["image"].update(width="wide")).column == "image"
    assert bad(lambda r: r.pop("split")).column == "split"
    assert bad(lambda r: r.update(id=None)).column == "id"


def test_duplicate_ids_are_refused():
    with pytest.raises(SchemaError, match="duplicate"):
        validate_rows([pair_row(0), pair_row(0)], "pairs")


def test_regions_are_optional_and_validated():
    row = pair_row()
    row["regions"] = None
    validate_rows([row], "pairs")
    row = copy.deepcopy(pair_row())
    row["regions"]["boxes"] = [[0.0, 1.0]]
    with pytest.raises(SchemaError, match="regions"):
        validate_rows([row], "pairs")


def test_incompatible_version_and_wrong_table_are_refused():
    with pytest.raises(SchemaError, match="not compatible"):
        check_version({b"m3curate.schema_version": b"2.0"}, "pairs")
    with pytest.raises(SchemaError, match="no m3curate.schema_version"):
        check_version({}, "pairs")
    with pytest.raises(SchemaError, match="holds a 'parallel' table"):
        check_version(validate_rows([parallel_row()], "parallel").schema.metadata, "pairs")


def test_type_mismatch_in_file_is_named(tmp_path):
    table = validate_rows([pair_row()], "pairs")
    renamed = table.rename_columns(["id", "source", "source_id", "split", "provenance", "image", "regions", "captions"])
    with pytest.raises(SchemaError, match="'texts': missing"):
        validate_table(renamed, "pairs", check_metadata=False)
    assert PAIRS.field("texts").type == table.schema.field("texts").type


def test_missing_nullable_fields_are_null_but_required_ones_are_errors():
    row = parallel_row()
    del row["src_declared_lang"]
    assert validate_rows([row], "parallel").column("src_declared_lang").to_pylist() == [None]
    del row["tgt_text"]
    with pytest.raises(SchemaError, match="'tgt_text': missing"):
        validate_rows([row], "parallel")


def test_tables_of_an_older_minor_version_are_readable():
    table = validate_rows([parallel_row()], "parallel").drop_columns(["src_declared_lang", "tgt_declared_lang"])
    meta = dict(table.schema.metadata)
    meta[b"m3curate.schema_version"] = b"1.0"
    validate_table(table.replace_schema_metadata(meta), "parallel")
    with pytest.raises(SchemaError, match="'tgt_text': missing"):
        validate_table(table.drop_columns(["tgt_text"]).replace_schema_metadata(meta), "parallel")


def test_only_fields_added_after_the_files_version_may_be_missing():
    table = validate_rows([parallel_row()], "parallel").drop_columns(["src_declared_lang", "tgt_declared_lang"])
    with pytest.raises(SchemaError, match="'src_declared_lang': missing"):
        validate_table(table, "parallel")  # written as 1.1: the field must be there
    pairs = validate_rows([pair_row()], "pairs")
    meta = dict(pairs.schema.metadata)
    meta[b"m3curate.schema_version"] = b"1.0"
    with pytest.raises(SchemaError, match="'regions': missing"):
        validate_table(pairs.drop_columns(["regions"]).replace_schema_metadata(meta), "pairs")


def _as_version(table, version: bytes):
    meta = dict(table.schema.metadata)
    meta[b"m3curate.schema_version"] = version
    return table.replace_schema_metadata(meta)


def _pairs_1_1(rows: list[dict]):
    """A pairs table as schema 1.1 wrote it: no texts.concepts, no regions.labels/label_scores/concepts."""
    import pyarrow as pa

    from schemas.arrow import PAIRS

    text_type = pa.struct([f for f in PAIRS.field("texts").type.value_type if f.name != "concepts"])
    region_type = pa.struct([f for f in PAIRS.field("regions").type if f.name in ("boxes", "features", "extractor")])
    old = [PAIRS.field(n) for n in PAIRS.names]
    old[PAIRS.get_field_index("texts")] = pa.field("texts", pa.list_(text_type), nullable=False)
    old[PAIRS.get_field_index("regions")] = pa.field("regions", region_type)
    schema = pa.schema(old, metadata={**PAIRS.metadata, b"m3curate.schema_version": b"1.1"})
    return pa.Table.from_pylist(rows, schema=schema)


def test_a_1_1_pairs_table_reads_with_the_nested_1_2_fields_as_null(tmp_path):
    rows = [pair_row(i) for i in range(3)]
    rows[1]["regions"] = None
    for r in rows:
        r["texts"] = [{k: v for k, v in t.items() if k != "concepts"} for t in r["texts"]]
        if r["regions"]:
            r["regions"] = {k: r["regions"][k] for k in ("boxes", "features", "extractor")}
    pq.write_table(_pairs_1_1(rows), tmp_path / "old.parquet")
    old = pq.read_table(tmp_path / "old.parquet")
    from schemas.validate import upgrade_minor

    validate_table(old, "pairs")
    up = upgrade_minor(old, "pairs")
    assert up.schema.equals(PAIRS, check_metadata=False)
    back = up.to_pylist()
    assert [r["regions"] is None for r in back] == [False, True, False]
    assert back[0]["regions"]["labels"] is None and back[0]["regions"]["boxes"] == rows[0]["regions"]["boxes"]
    assert all(t["concepts"] is None for r in back for t in r["texts"])
    assert [t["text"] for t in back[2]["texts"]] == [t["text"] for t in rows[2]["texts"]]
    # a slice (offsets not at 0) upgrades the same way
    assert upgrade_minor(old.slice(1, 2), "pairs").to_pylist() == back[1:]
    # an empty table (the trainer checks the schema of an empty one) upgrades too
    validate_table(old.schema.empty_table(), "pairs")
    # written as 1.2, the nested fields must be there
    with pytest.raises(SchemaError, match="'regions': has type"):
        validate_table(_as_version(old, b"1.2"), "pairs")


def test_a_missing_nested_field_older_than_the_file_is_still_an_error():
    rows = [pair_row(0)]
    rows[0]["texts"] = [{k: v for k, v in t.items() if k != "concepts"} for t in rows[0]["texts"]]
    rows[0]["regions"] = {k: rows[0]["regions"][k] for k in ("boxes", "features", "extractor")}
    old = _pairs_1_1(rows)
    bad = old.set_column(old.schema.get_field_index("texts"), "texts",
                         old.column("texts").cast(_drop_text_field(old, "score")))
    with pytest.raises(SchemaError, match="'texts': has type"):
        validate_table(bad, "pairs")


def _drop_text_field(table, name):
    import pyarrow as pa

    value = table.schema.field("texts").type.value_type
    return pa.list_(pa.struct([f for f in value if f.name != name]))
