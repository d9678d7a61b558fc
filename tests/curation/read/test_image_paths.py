"""Confined image paths (issue 13.1): a row cannot make the build read a file outside its
source's image root, on the local filesystem and on a second Beam filesystem (``memtest://``).

Each escape becomes one ``read/unsafe_path`` reject whose detail quotes the path and never
the bytes of the file it names; ``image_paths = "any"`` trusts the data and opens it all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import memfs  # noqa: F401  (registers memtest://)
import pyarrow.parquet as pq
import pytest
from memfs import MemFileSystem
from read_helpers import image_bytes, source, write_jsonl

from curation.clean.images import ImageRejected, load_image_bytes
from curation.cli import main
from curation.config import ConfigError, config_from_dict
from curation.read.records import RawRecord
from curation.read.source import iter_file
from schemas.dataset import validate_dataset
from schemas.rows import Reject, reject_row

SECRET = b"root:x:0:0:root:/root:/bin/bash\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """data/ (the file's folder) with images/, a private/ folder beside it, and links."""
    data, private = tmp_path / "data", tmp_path / "private"
    (data / "images").mkdir(parents=True)
    private.mkdir()
    (data / "images" / "a.png").write_bytes(image_bytes())
    (private / "passwd").write_bytes(SECRET)
    os.symlink(private / "passwd", data / "images" / "link.jpg")
    os.symlink(data / "images" / "a.png", data / "images" / "inner.png")
    os.symlink(private, data / "outdir")
    return tmp_path


def read_rows(tmp_path: Path, images: list[str], **settings: object) -> list[RawRecord | Reject]:
    path = write_jsonl(tmp_path / "data" / "c.jsonl", [{"caption": "a cat", "image": i} for i in images])
    return list(iter_file(str(path), source(path, "jsonl", **settings)))


def assert_unsafe(item: RawRecord | Reject, value: str, why: str) -> None:
    assert isinstance(item, Reject), item
    assert (item.stage, item.reason) == ("read", "unsafe_path")
    assert repr(value) in item.detail and why in item.detail
    row = reject_row(item)
    for text in (row["detail"], row["raw"]):
        assert "root:x" not in text and "cm9vdDp4" not in text  # nor its base64


def test_relative_paths_inside_the_files_folder_are_read(tree: Path) -> None:
    items = read_rows(tree, ["images/a.png", "images/../images/a.png", "./images/inner.png"])
    assert all(isinstance(i, RawRecord) for i in items)
    assert items[0].image_path == str(tree / "data" / "images" / "a.png")
    assert items[0].image_root == str(tree / "data")
    assert load_image_bytes(items[2]) == image_bytes()  # a symlink that stays inside is fine


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("../private/passwd", "through '..'"),
        ("images/../../private/passwd", "through '..'"),
        ("../../../../../../etc/hostname", "through '..'"),
        ("/etc/hostname", "absolute path outside"),
        ("gs://other-bucket/x.jpg", "another filesystem (gs://)"),
        ("https://example.com/x.jpg", "download the images first"),
        ("images/link.jpg", "resolves (through a symlink)"),
        ("outdir/passwd", "resolves (through a symlink)"),
        ("outdir/../private/passwd", "resolves (through a symlink)"),  # .. of a link, physically
        ("images/a\x00.png", "NUL character"),
    ],
)
def test_paths_leaving_the_root_are_rejected_unread(tree: Path, value: str, why: str) -> None:
    (item,) = read_rows(tree, [value])
    assert_unsafe(item, value, why)


def test_absolute_path_inside_the_root_is_accepted(tree: Path) -> None:
    inside = str(tree / "data" / "images" / "a.png")
    (item,) = read_rows(tree, [inside])
    assert isinstance(item, RawRecord) and item.image_path == inside


def test_image_root_confines_instead_of_the_files_folder(tree: Path) -> None:
    root = str(tree / "data" / "images")
    ok, out = read_rows(tree, ["a.png", "../c.jsonl"], image_root=root)
    assert isinstance(ok, RawRecord) and ok.image_path == f"{root}/a.png" and ok.image_root == root
    assert_unsafe(out, "../c.jsonl", "through '..'")


def test_any_trusts_the_data(tree: Path) -> None:
    items = read_rows(tree, ["../private/passwd", "images/link.jpg", "/etc/hostname"], image_paths="any")
    assert all(isinstance(i, RawRecord) and i.image_root is None for i in items)
    assert load_image_bytes(items[1]) == SECRET  # the user said the data is trusted
    (nul,) = read_rows(tree, ["a\x00b.png"], image_paths="any")
    assert isinstance(nul, Reject) and nul.reason == "unsafe_path"  # no filesystem opens it


def test_a_link_swapped_in_after_the_read_is_refused_where_the_file_is_opened(tree: Path) -> None:
    (item,) = read_rows(tree, ["images/b.png"])
    assert isinstance(item, RawRecord)
    os.symlink(tree / "private" / "passwd", tree / "data" / "images" / "b.png")
    with pytest.raises(ImageRejected) as info:
        load_image_bytes(item)
    assert info.value.reason == "unsafe_path" and "root:x" not in info.value.detail
    assert "images/b.png" in info.value.detail


def test_devices_and_folders_are_not_read(tree: Path) -> None:
    (item,) = read_rows(tree, ["/dev/zero"], image_paths="any")
    with pytest.raises(ImageRejected, match="not a regular file") as info:
        load_image_bytes(item)
    assert info.value.reason == "read_error"
    (folder,) = read_rows(tree, ["images"])
    with pytest.raises(ImageRejected, match="not a regular file"):
        load_image_bytes(folder)


def test_unknown_scheme_under_any_is_a_reject_not_a_crash(tree: Path) -> None:
    (item,) = read_rows(tree, ["nosuchfs://b/x.jpg"], image_paths="any")
    with pytest.raises(ImageRejected) as info:
        load_image_bytes(item)
    assert info.value.reason == "read_error"


def test_config_refuses_an_unknown_policy() -> None:
    src = {"name": "s", "format": "jsonl", "paths": ["x.jsonl"], "image_paths": "trusted"}
    with pytest.raises(ConfigError, match=r"sources\[0\] \('s'\)\.image_paths = 'trusted'"):
        config_from_dict({"sources": [src]})
    assert config_from_dict({"sources": [{**src, "image_paths": "any"}]}).sources[0].image_paths == "any"
    assert config_from_dict({"sources": [{**src, "image_paths": "confined"}]}).sources[0].image_paths == "confined"


# --- a second Beam filesystem ------------------------------------------------------------


@pytest.fixture
def bucket() -> str:
    MemFileSystem.files.clear()
    MemFileSystem.files["memtest://bkt/data/img/a.png"] = image_bytes()
    MemFileSystem.files["memtest://bkt/secret/key.png"] = SECRET
    yield "memtest://bkt"
    MemFileSystem.files.clear()


def mem_rows(bucket: str, images: list[str], **settings: object) -> list[RawRecord | Reject]:
    path = f"{bucket}/data/c.jsonl"
    MemFileSystem.files[path] = "".join(json.dumps({"caption": "a cat", "image": i}) + "\n" for i in images).encode()
    return list(iter_file(path, source(path, "jsonl", **settings)))


def test_memory_filesystem_paths_resolve_and_open(bucket: str) -> None:
    rel, full = mem_rows(bucket, ["img/a.png", f"{bucket}/data/img/a.png"])
    assert isinstance(rel, RawRecord) and rel.image_path == f"{bucket}/data/img/a.png"
    assert isinstance(full, RawRecord) and full.image_path == rel.image_path
    assert load_image_bytes(rel) == image_bytes()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("../secret/key.png", "through '..'"),
        ("img/../../secret/key.png", "through '..'"),
        ("memtest://bkt/secret/key.png", "absolute path outside"),
        ("memtest://bkt/data/../secret/key.png", "through '..'"),
        ("memtest://other/data/img/a.png", "another bucket ('other')"),
        ("gs://bkt/data/img/a.png", "another scheme (gs://)"),
        ("/etc/hostname", "absolute local path"),
    ],
)
def test_memory_filesystem_escapes_are_rejected(bucket: str, value: str, why: str) -> None:
    (item,) = mem_rows(bucket, [value])
    assert_unsafe(item, value, why)
    assert "cm9vdDp4" not in reject_row(item)["raw"]


def test_memory_filesystem_image_root_and_any(bucket: str) -> None:
    (ok,) = mem_rows(bucket, ["a.png"], image_root=f"{bucket}/data/img")
    assert isinstance(ok, RawRecord) and load_image_bytes(ok) == image_bytes()
    (trusted,) = mem_rows(bucket, ["memtest://bkt/secret/key.png"], image_paths="any")
    assert isinstance(trusted, RawRecord) and load_image_bytes(trusted) == SECRET


# --- a whole build ------------------------------------------------------------------------


def test_build_rejects_unsafe_paths_and_reconciles(tree: Path, bucket: str, capsys) -> None:
    """One build over a local source and a memtest:// source: the escapes are counted as
    read/unsafe_path, the good images are kept, and input = output + rejected."""
    (tree / "data" / "images" / "big.jpg").write_bytes(image_bytes("JPEG", size=64))
    MemFileSystem.files["memtest://bkt/data/img/big.jpg"] = image_bytes("JPEG", size=64, color=(1, 2, 3))
    write_jsonl(tree / "data" / "c.jsonl", [
        {"key": "ok", "caption": "a red square", "image": "images/big.jpg"},
        {"key": "up", "caption": "a secret", "image": "../private/passwd"},
        {"key": "link", "caption": "a secret", "image": "images/link.jpg"},
        {"key": "abs", "caption": "a secret", "image": "/etc/hostname"},
    ])
    mem_rows(bucket, ["img/big.jpg", "../secret/key.png", "memtest://other/x.jpg"])
    (tree / "b.toml").write_text(f"""
[[sources]]
name = "local"
format = "jsonl"
paths = ["data/c.jsonl"]
lang = "en"

[[sources]]
name = "mem"
format = "jsonl"
paths = ["{bucket}/data/c.jsonl"]
lang = "en"
""")
    assert main(["build", "--config", str(tree / "b.toml"), "--out", str(tree / "ds")]) == 0
    counts = validate_dataset(str(tree / "ds"))["counts"]
    assert counts["rejected_by_reason"] == {"read/unsafe_path": 5}
    assert (counts["input_records"], counts["output_records"], counts["reconciled"]) == (7, 2, True)
    rows = [r for p in sorted((tree / "ds" / "rejects").iterdir()) for r in pq.read_table(p).to_pylist()]
    assert len(rows) == 5 and not [r for r in rows if "root:x" in r["detail"] + r["raw"]]
