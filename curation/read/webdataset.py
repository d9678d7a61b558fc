"""Reader of WebDataset tar shards as img2dataset writes them.

A sample is a run of adjacent members sharing a KEY (the member path up to the first "." of
its basename): ``KEY.jpg`` (or .jpeg/.png/.webp), ``KEY.txt`` (caption) and/or ``KEY.json``
(``caption``, ``key``, ``url``...). The shard is streamed (``r|*``), one sample in memory at
a time, and nothing is ever extracted to disk. Members that could escape the shard (absolute
names, ``..``, links, devices) reject their sample as ``unsafe_member`` without being read.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from curation.config import SourceConfig
from curation.read.common import Item, Problem, file_label, guarded, open_binary, read_reject
from curation.read.fields import find_invalid_utf8, source_id_of, text_fields, url_of
from curation.read.records import RawRecord

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # in order of preference
WANTED_EXTENSIONS = (*IMAGE_EXTENSIONS, "txt", "json")
# A member larger than this is not read into memory (a corrupt or hostile shard).
MAX_MEMBER_BYTES = 256 << 20


@dataclass
class _Sample:
    """The members of one sample as read: their names, wanted contents and problems."""

    key: str
    names: list[str] = field(default_factory=list)
    data: dict[str, bytes] = field(default_factory=dict)  # extension -> content
    member_of: dict[str, str] = field(default_factory=dict)  # extension -> member name
    problems: list[Problem] = field(default_factory=list)

    def add(self, member: tarfile.TarInfo, ext: str, tar: tarfile.TarFile) -> None:
        self.names.append(member.name)
        unsafe = _unsafe(member)
        if unsafe:
            self.problems.append(("unsafe_member", f"{member.name!r}: {unsafe}"))
        elif ext in WANTED_EXTENSIONS and ext not in self.data:
            if member.size > MAX_MEMBER_BYTES:
                self.problems.append(
                    (
                        "member_too_large",
                        f"{member.name!r}: {member.size} bytes > {MAX_MEMBER_BYTES}",
                    )
                )
                return
            handle = tar.extractfile(member)
            self.data[ext] = handle.read() if handle is not None else b""
            self.member_of[ext] = member.name


def _unsafe_name(name: str) -> str | None:
    if name.startswith("/"):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' path component"
    return None


def _unsafe(member: tarfile.TarInfo) -> str | None:
    """Why a member could escape the shard if extracted, or None for a plain relative file."""
    unsafe_name = _unsafe_name(member.name)
    if unsafe_name:
        return unsafe_name
    if member.issym() or member.islnk():
        return f"{'symlink' if member.issym() else 'hardlink'} to {member.linkname!r}"
    if member.isdir():
        return "directory"
    if not member.isfile():
        return "device or special file"
    return None


def split_member_name(name: str) -> tuple[str, str]:
    """(KEY, extension): the path up to the first "." of the basename, and the rest (lower)."""
    directory, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    key = posixpath.join(directory, stem)
    while key.startswith("./"):
        key = key[2:]
    return key, ext.lower()


def _samples(tar: tarfile.TarFile) -> Iterator[_Sample]:
    sample: _Sample | None = None
    for member in tar:
        tar.members = []  # streaming: do not keep every TarInfo of a large shard
        if member.isdir() and _unsafe_name(member.name) is None:
            continue  # a plain directory entry is not a sample
        key, ext = split_member_name(member.name)
        if sample is None or key != sample.key:
            if sample is not None:
                yield sample
            sample = _Sample(key)
        sample.add(member, ext, tar)
    if sample is not None:
        yield sample


@guarded
def iter_webdataset(path: str, source: SourceConfig) -> Iterator[Item]:
    """One ``RawRecord`` (image bytes + caption or weak text) or ``Reject`` per sample."""
    with open_binary(path) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
        for index, sample in enumerate(_samples(tar)):
            yield _sample_item(sample, path, index, source)


def _parse_json(data: bytes, name: str) -> tuple[dict[str, Any] | None, Problem | None]:
    try:
        meta = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        return None, ("invalid_utf8", f"{name!r}: invalid UTF-8 at byte {err.start}")
    except ValueError as err:
        return None, ("malformed_row", f"{name!r}: not JSON: {err}")
    if not isinstance(meta, dict):
        return None, (
            "malformed_row",
            f"{name!r} holds a JSON {type(meta).__name__}, not an object",
        )
    return meta, None


def _decode_members(sample: _Sample) -> tuple[dict[str, Any] | None, str | None, Problem | None]:
    """(parsed .json, decoded .txt, problem); a .txt must be valid UTF-8 as it is."""
    meta = text = None
    if "json" in sample.data:
        meta, problem = _parse_json(sample.data["json"], sample.member_of["json"])
        if problem:
            return None, None, problem
    if "txt" in sample.data:
        try:
            text = sample.data["txt"].decode("utf-8")
        except UnicodeDecodeError as err:
            detail = f"{sample.member_of['txt']!r}: invalid UTF-8 at byte {err.start}"
            return meta, None, ("invalid_utf8", detail)
    return meta, text, None


def _sample_item(sample: _Sample, path: str, index: int, source: SourceConfig) -> Item:
    fallback = f"{file_label(path, source)}:{index}" if find_invalid_utf8(sample.key) else sample.key
    provenance: dict[str, Any] = {"file": path, "row": index, "url": None, "member": None}
    raw: dict[str, Any] = {"key": sample.key, "members": sample.names}

    def reject(problem: Problem, source_id: str = fallback) -> Item:
        return read_reject(source, *problem, source_id, {"row": raw, "provenance": provenance})

    if sample.problems:
        return reject(sample.problems[0])
    image_ext = next((ext for ext in IMAGE_EXTENSIONS if ext in sample.data), None)
    if image_ext is None:
        wanted = "/".join(f".{ext}" for ext in IMAGE_EXTENSIONS)
        detail = f"sample {sample.key!r} has no {wanted} member; it has {sample.names}"
        return reject(("missing_image", detail))
    provenance["member"] = sample.member_of[image_ext]
    meta, text, problem = _decode_members(sample)
    raw.update(json=meta, txt=text)
    if problem:
        return reject(problem)
    text_column = source.column("caption" if source.kind == "pair" else "text")
    row = dict(meta or {})
    if text is not None:
        row[text_column] = text
    source_id, problem = source_id_of(row, source, fallback)
    provenance["url"] = url_of(row, source)
    invalid = find_invalid_utf8(row)
    if problem is None and invalid:
        problem = ("invalid_utf8", f"{sample.member_of.get('json', sample.key)!r} {invalid}")
    if problem is None and text_column not in row:
        problem = (
            "missing_column",
            f"sample {sample.key!r} has no .txt member and its .json has no {text_column!r}",
        )
    fields: dict[str, Any] = {}
    if problem is None:
        fields, problem = text_fields(row, source)
    if problem:
        return reject(problem, source_id)
    return RawRecord(
        source=source.name,
        kind=source.kind,
        source_id=source_id,
        split=source.split,
        fields=fields,
        provenance=provenance,
        image=sample.data[image_ext],
        raw=raw,
    )
