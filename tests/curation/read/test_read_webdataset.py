"""WebDataset shards: samples, confinement of member paths, truncation."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

# --- helpers ---------------------------------------------------------------------------
from read_helpers import (  # noqa: E402
    build_shard,
    image_bytes,
    source,
)

from curation.read import webdataset as read_webdataset
from curation.read.records import RawRecord
from curation.read.source import (
    iter_webdataset,
)
from schemas.rows import Reject


def test_webdataset_samples_and_rejects(tmp_path: Path) -> None:
    jpg, png = image_bytes("JPEG"), image_bytes("PNG")
    meta = json.dumps({"key": "k0", "caption": "from json", "url": "http://x/0"}).encode()
    path = build_shard(
        tmp_path / "shard.tar",
        [
            ("00000", b"", {"type": tarfile.DIRTYPE}),  # plain directory entry: not a sample
            ("00000/000.jpg", jpg, {}),
            ("00000/000.txt", b"from txt", {}),
            ("00000/000.json", meta, {}),
            ("00000/001.png", png, {}),
            ("00000/001.json", b'{"caption": "json only"}', {}),
            ("../evil.jpg", jpg, {}),
            ("../evil.txt", b"x", {}),
            ("/abs.jpg", jpg, {}),
            ("link.jpg", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),
            ("002.txt", b"no image", {}),
            ("003.jpg", jpg, {}),
            ("003.json", b'{"url": "http://x/3"}', {}),
            ("004.jpg", jpg, {}),
            ("004.txt", b"bad \xff", {}),
            ("005.jpg", jpg, {}),
            ("005.json", b"{not json", {}),
            ("hard.jpg", b"", {"type": tarfile.LNKTYPE, "linkname": "003.jpg"}),
            ("dev.jpg", b"", {"type": tarfile.CHRTYPE}),
        ],
    )
    items = list(iter_webdataset(str(path), source(path, "webdataset", lang="en")))
    got = [(i.source_id, getattr(i, "reason", "ok")) for i in items]
    assert got == [
        ("k0", "ok"),
        ("00000/001", "ok"),
        ("../evil", "unsafe_member"),
        ("/abs", "unsafe_member"),
        ("link", "unsafe_member"),
        ("002", "missing_image"),
        ("003", "missing_column"),
        ("004", "invalid_utf8"),
        ("005", "malformed_row"),
        ("hard", "unsafe_member"),
        ("dev", "unsafe_member"),
    ]
    first, second = items[0], items[1]
    assert first.fields == {"caption": "from txt", "lang": "en"} and first.image == jpg
    assert first.provenance == {
        "file": str(path),
        "row": 0,
        "url": "http://x/0",
        "member": "00000/000.jpg",
    }
    assert second.fields["caption"] == "json only" and second.image == png
    assert "symlink" in items[4].detail and "'..'" in items[2].detail
    assert items[2].raw["row"]["members"] == ["../evil.jpg", "../evil.txt"]


def test_webdataset_weak_text_from_json(tmp_path: Path) -> None:
    meta = json.dumps({"text": "ein Hund", "lang": "de", "anchor": "a dog"}).encode()
    path = build_shard(
        tmp_path / "w.tar", [("a.webp", image_bytes("WEBP"), {}), ("a.json", meta, {})]
    )
    (item,) = iter_webdataset(str(path), source(path, "webdataset", kind="weak"))
    assert isinstance(item, RawRecord) and item.fields == {
        "text": "ein Hund",
        "lang": "de",
        "anchor": "a dog",
        "anchor_lang": None,
    }


def test_webdataset_refuses_oversized_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_webdataset, "MAX_MEMBER_BYTES", 100)
    path = build_shard(tmp_path / "big.tar", [("a.jpg", b"x" * 101, {}), ("a.txt", b"c", {})])
    (item,) = iter_webdataset(str(path), source(path, "webdataset"))
    assert isinstance(item, Reject) and item.reason == "member_too_large"


def test_truncated_tar_keeps_earlier_samples(tmp_path: Path) -> None:
    big = os.urandom(20000)
    path = build_shard(
        tmp_path / "cut.tar",
        [("a.jpg", big, {}), ("a.txt", b"first", {}), ("b.jpg", big, {}), ("b.txt", b"second", {})],
    )
    path.write_bytes(path.read_bytes()[:30000])
    items = list(iter_webdataset(str(path), source(path, "webdataset")))
    assert [getattr(i, "reason", i.source_id) for i in items] == ["a", "unreadable_file"]


# --- parallel text files ---------------------------------------------------------------


