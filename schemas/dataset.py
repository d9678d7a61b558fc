"""Opening a built dataset: manifest first, then exactly the shards it lists.

The trainer and ``m3curate validate`` both come through here, so a dataset is trusted
only when its manifest exists (the build's commit marker), its schema version matches,
and every shard it lists is present, has the listed row count and passes the validator.

The manifest records each shard's ``size`` (bytes) and ``sha256`` (since the build wrote
them; older manifests have neither). ``check_shards`` compares the files with them and
names every bad shard: ``missing``, ``truncated`` (shorter, its Parquet footer gone),
``altered`` (another size or digest), and, for ``validate_dataset``, ``extra`` (a shard in
a table folder that the manifest does not list). Sizes cost one stat per shard; digests
read every byte, so the trainer checks them only when asked (``--verify``).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from schemas.arrow import SCHEMA_VERSION
from schemas.splits import KEY_COLUMNS, check_split_leaks
from schemas.validate import SchemaError, check_version, validate_table

PARQUET_MAGIC = b"PAR1"
_CHUNK = 8 << 20


class DatasetError(ValueError):
    """The directory is not a complete m3curate dataset."""


def _fs(directory: str) -> tuple[pafs.FileSystem, str]:
    if "://" in directory:
        return pafs.FileSystem.from_uri(directory)
    return pafs.LocalFileSystem(), directory


def read_dataset_text(directory: str, name: str) -> str | None:
    """The text of the file ``name`` at the dataset root (local or any URI pyarrow opens:
    ``gs://``, ``s3://``, ``file://``), or None when it is not there."""
    fs, root = _fs(directory)
    path = posixpath.join(root, name)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as handle:
        return handle.read().decode("utf-8")


def load_manifest(directory: str) -> dict[str, Any]:
    """Read DIR/manifest.json and refuse an incompatible schema version."""
    text = read_dataset_text(directory, "manifest.json")
    if text is None:
        raise DatasetError(f"{directory}: no manifest.json; not an m3curate dataset, or its build did not finish")
    manifest = json.loads(text)
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


# --- integrity ----------------------------------------------------------------------------


def file_digest(fs: pafs.FileSystem, path: str) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of one file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with fs.open_input_stream(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _ends_like_parquet(fs: pafs.FileSystem, path: str, size: int) -> bool:
    if size < len(PARQUET_MAGIC):
        return False
    with fs.open_input_file(path) as handle:
        return handle.read_at(len(PARQUET_MAGIC), size - len(PARQUET_MAGIC)) == PARQUET_MAGIC


def shard_problem(fs: pafs.FileSystem, root: str, entry: dict[str, Any], digests: bool) -> str | None:
    """What is wrong with one listed shard (``missing``, ``truncated``, ``altered``), or
    None. Without a recorded size/sha256 (an older manifest) only presence is checked."""
    path = posixpath.join(root, entry["path"])
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return "missing"
    if info.type != pafs.FileType.File:
        return "altered: not a file"
    want = entry.get("size")
    if want is not None and info.size != want:
        if info.size < want and not _ends_like_parquet(fs, path, info.size):
            return f"truncated: {info.size} bytes, the manifest says {want}"
        return f"altered: {info.size} bytes, the manifest says {want}"
    if digests and entry.get("sha256"):
        _, got = file_digest(fs, path)
        if got != entry["sha256"]:
            return f"altered: sha256 {got[:16]}…, the manifest says {entry['sha256'][:16]}…"
    return None


def extra_shards(fs: pafs.FileSystem, root: str, table: str, manifest: dict[str, Any]) -> list[str]:
    """``table/NAME.parquet`` files in the table's folder that the manifest does not list."""
    folder = posixpath.join(root, table)
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    listed = {f["path"] for f in manifest["files"].get(table, [])}
    found = fs.get_file_info(pafs.FileSelector(folder))
    names = sorted(f"{table}/{info.base_name}" for info in found if info.base_name.endswith(".parquet"))
    return [name for name in names if name not in listed]


def check_shards(directory: str, manifest: dict[str, Any], tables: tuple[str, ...], digests: bool = False) -> None:
    """Raise DatasetError naming every listed shard of ``tables`` that is missing, truncated
    or altered (sizes always, sha256 digests when ``digests``); the trainer's check."""
    fs, root = _fs(directory)
    problems = [f"{entry['path']}: {problem}" for table in tables for entry in manifest["files"].get(table, [])
                if (problem := shard_problem(fs, root, entry, digests))]
    _raise(directory, problems)


def _raise(directory: str, problems: list[str]) -> None:
    if problems:
        many = f"{len(problems)} bad shards: " if len(problems) > 1 else ""
        raise DatasetError(f"{directory}: {many}{'; '.join(problems)}; rebuild the dataset or restore those files")


def unrecorded_digests(manifest: dict[str, Any], tables: tuple[str, ...] = ("pairs", "parallel", "rejects")) -> int:
    """How many listed shards have no recorded size or sha256 (an older manifest)."""
    return sum(1 for t in tables for f in manifest["files"].get(t, []) if not f.get("size") or not f.get("sha256"))


# --- validation ---------------------------------------------------------------------------


def _content_problem(fs: pafs.FileSystem, root: str, entry: dict[str, Any], table: str) -> str | None:
    """Read one shard whole: its schema and values (SchemaError, naming file and column) and
    its row count against the manifest; an unreadable file is a problem, not a crash."""
    path = posixpath.join(root, entry["path"])
    try:
        with fs.open_input_file(path) as handle:
            data = pq.read_table(handle)
    except (pa.ArrowException, OSError) as err:
        return f"not readable as Parquet ({err})"
    try:
        check_version(data.schema.metadata, table)
        validate_table(data, table)
    except SchemaError as err:
        raise SchemaError(err.table, err.column, f"in {entry['path']}: {str(err).split(': ', 2)[-1]}") from err
    if data.num_rows != entry["rows"]:
        return f"{data.num_rows} rows, manifest says {entry['rows']}"
    return None


def validate_dataset(directory: str, tables: tuple[str, ...] = ("pairs", "parallel", "rejects"),
                     digests: bool = True) -> dict[str, Any]:
    """Check every listed shard (presence, size, sha256 when ``digests``, schema, values, row
    count) and that no unlisted shard sits beside them. Raises DatasetError naming every bad
    shard, or SchemaError naming the file and column of the first bad value."""
    manifest = load_manifest(directory)
    fs, root = _fs(directory)
    problems: list[str] = []
    for table in tables:
        problems += [f"{name}: extra: not listed in manifest.json" for name in extra_shards(fs, root, table, manifest)]
        for entry in manifest["files"].get(table, []):
            integrity = shard_problem(fs, root, entry, digests)
            if integrity == "missing" or (integrity or "").startswith("truncated"):
                problems.append(f"{entry['path']}: {integrity}")
                continue
            try:
                content = _content_problem(fs, root, entry, table)
            except SchemaError as err:
                if integrity is None:
                    raise
                content = str(err)
            if integrity and content:
                problems.append(f"{entry['path']}: {integrity} ({content})")
            elif integrity or content:
                problems.append(f"{entry['path']}: {integrity or content}")
    # files that are not tables (the concepts stage's concepts.txt): presence, size, sha256
    problems += [f"{entry['path']}: {problem}" for entry in manifest["files"].get("concepts", [])
                 if (problem := shard_problem(fs, root, entry, digests))]
    _raise(directory, problems)
    if "pairs" in tables:
        check_dataset_splits(directory, manifest)
    return manifest


def check_dataset_splits(directory: str, manifest: dict[str, Any]) -> None:
    """Refuse a dataset whose splits share an image (``schemas.splits``), naming the rows;
    reads only the ids, splits and image digests of the pairs shards. A shard that cannot
    be read is left to the integrity and schema checks, which name it."""
    fs, root = _fs(directory)

    def keys() -> Any:
        for entry in manifest["files"].get("pairs", []):
            try:
                with fs.open_input_file(posixpath.join(root, entry["path"])) as handle:
                    table = pq.read_table(handle, columns=KEY_COLUMNS)
            except (pa.ArrowException, OSError):
                continue
            yield table

    check_split_leaks(keys(), directory)
