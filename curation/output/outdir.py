"""The output directory's life cycle: refuse or replace, stage, commit.

A build writes every shard into ``DIR/.staging-<run>/`` and only moves them into place
once the pipeline has succeeded and the counts reconcile. ``manifest.json`` is deleted
first and written last, so it doubles as the commit marker: a directory with a manifest
is a complete dataset whose shards are exactly those the manifest lists; a directory
without one is an interrupted build that the next run cleans up. Old and new shards are
never mixed. Works on any Beam filesystem (local, gs://, s3://) through FileSystems.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from typing import Any

from apache_beam.io.filesystems import FileSystems

from curation.output.manifest import shard_files
from curation.output.write import TABLES

MANIFEST = "manifest.json"
MARKER = ".m3curate"  # says "this directory is an m3curate output", so leftovers may be cleaned
STAGING_PREFIX = ".staging-"
DERIVED = ("report.html", "run.json", "README.md", "concepts.txt")  # replaced or removed by every commit


class OutputExistsError(RuntimeError):
    """The output directory holds a dataset (or foreign files) and --overwrite was not given."""


def _join(*parts: str) -> str:
    return FileSystems.join(*parts) if "://" in parts[0] else posixpath.join(*parts)


def _exists(path: str) -> bool:
    return FileSystems.exists(path)


def _children(out: str) -> list[str]:
    if "://" not in out:  # local glob skips dot-files such as the staging directories
        return sorted(os.listdir(out))
    matches = FileSystems.match([_join(out, "*")])[0].metadata_list
    return sorted(posixpath.basename(m.path.rstrip("/")) for m in matches)


def _delete(paths: list[str]) -> None:
    existing = [p for p in paths if _exists(p)]
    if existing:
        FileSystems.delete(existing)


def prepare(out: str, overwrite: bool) -> str:
    """Check the output directory and return a fresh staging directory inside it.

    Refuses (OutputExistsError) when DIR holds a finished dataset or files m3curate did
    not write, unless ``overwrite``. Leftovers of an interrupted m3curate build are removed.
    """
    if _exists(out):
        children = [c for c in _children(out) if c != MARKER]
        ours = _exists(_join(out, MARKER))
        if MANIFEST in children and not overwrite:
            raise OutputExistsError(
                f"{out} already holds a dataset (manifest.json); pass --overwrite to replace it or choose another --out"
            )
        if children and not ours and not overwrite:
            raise OutputExistsError(
                f"{out} is not empty and was not written by m3curate ({', '.join(children[:5])}); "
                "choose an empty or new --out, or pass --overwrite to replace its contents"
            )
        stale = [_join(out, c) for c in children if c.startswith(STAGING_PREFIX)]
        _delete(stale)
    FileSystems.mkdirs(out) if not _exists(out) else None
    if not _exists(_join(out, MARKER)):
        with FileSystems.create(_join(out, MARKER)) as handle:
            handle.write(b"m3curate output directory\n")
    staging = _join(out, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")
    for table in TABLES:
        if "://" not in staging:
            FileSystems.mkdirs(_join(staging, table))
    return staging


def _write_atomically(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with FileSystems.create(tmp) as handle:
        handle.write(data)
    _delete([path])
    FileSystems.rename([tmp], [path])


def commit(staging: str, out: str, manifest: dict[str, Any], extra: dict[str, bytes] | None = None) -> None:
    """Replace DIR's dataset with the staged one; manifest.json last."""
    _delete([_join(out, MANIFEST)])
    for table in TABLES:
        old = _join(out, table)
        _delete([old])
        if "://" not in out:
            FileSystems.mkdirs(old)
        staged = shard_files(staging, table)
        targets = [_join(old, posixpath.basename(p)) for p in staged]
        if staged:
            FileSystems.rename(staged, targets)
    _delete([_join(out, name) for name in DERIVED])
    for name, data in (extra or {}).items():
        _write_atomically(_join(out, name), data)
    _delete([staging])
    _write_atomically(_join(out, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n")


def abandon(staging: str) -> None:
    """Remove a staging directory after a failed build (the old dataset, if any, is untouched)."""
    _delete([staging])
