"""Opening a built dataset: manifest first, then exactly the shards it lists.

The trainer and ``m3curate validate`` both come through here, so a dataset is trusted
only when its manifest exists (the build's commit marker), its schema version matches,
and every shard it lists is present, has the listed row count and passes the validator.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from schemas.arrow import SCHEMA_VERSION
from schemas.validate import SchemaError, check_version, validate_table


class DatasetError(ValueError):
    """The directory is not a complete m3curate dataset."""


def _fs(directory: str) -> tuple[pafs.FileSystem, str]:
    if "://" in directory:
        return pafs.FileSystem.from_uri(directory)
    return pafs.LocalFileSystem(), directory


def load_manifest(directory: str) -> dict[str, Any]:
    """Read DIR/manifest.json and refuse an incompatible schema version."""
    fs, root = _fs(directory)
    path = posixpath.join(root, "manifest.json")
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise DatasetError(f"{directory}: no manifest.json; not an m3curate dataset, or its build did not finish")
    with fs.open_input_stream(path) as handle:
        manifest = json.loads(handle.read().decode())
    found = str(manifest.get("schema_version", "?"))
    if found.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise DatasetError(
            f"{directory}: schema version {found}, this m3curate reads {SCHEMA_VERSION}; rebuild the dataset or "
            "install the m3curate version that wrote it"
        )
    return manifest


def shard_paths(directory: str, table: str, manifest: dict[str, Any] | None = None) -> list[str]:
    """Full paths of the shards of ``table`` that the manifest lists."""
    manifest = manifest or load_manifest(directory)
    return [posixpath.join(directory, f["path"]) for f in manifest["files"].get(table, [])]


def validate_dataset(directory: str, tables: tuple[str, ...] = ("pairs", "parallel", "rejects")) -> dict[str, Any]:
    """Validate every listed shard; raises DatasetError/SchemaError naming file and column."""
    manifest = load_manifest(directory)
    fs, root = _fs(directory)
    for table in tables:
        for entry in manifest["files"].get(table, []):
            path = posixpath.join(root, entry["path"])
            if fs.get_file_info(path).type == pafs.FileType.NotFound:
                raise DatasetError(f"{directory}: manifest lists {entry['path']} but the file is missing")
            with fs.open_input_file(path) as handle:
                data = pq.read_table(handle)
            try:
                check_version(data.schema.metadata, table)
                validate_table(data, table)
            except SchemaError as err:
                raise SchemaError(err.table, err.column, f"in {entry['path']}: {str(err).split(': ', 2)[-1]}") from err
            if data.num_rows != entry["rows"]:
                raise DatasetError(f"{entry['path']}: {data.num_rows} rows, manifest says {entry['rows']}")
    return manifest
