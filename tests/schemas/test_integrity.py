"""Integrity of a written dataset (issue 13.5): the manifest records each shard's size and
sha256, and ``m3curate validate`` names every missing, truncated, altered or extra shard."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from curation.cli import main
from curation.config import OutputConfig
from curation.output import manifest as manifest_lib
from curation.output import outdir
from curation.output.summary import validate_dataset as validate_and_note
from curation.output.write import shard_name, write_shard
from schemas.dataset import (
    DatasetError,
    check_shards,
    load_manifest,
    unrecorded_digests,
    validate_dataset,
)
from schemas.rows import Reject, reject_row, text_entry


def row(i: int) -> dict:
    data = f"image {i}".encode() * 40
    return {
        "id": f"s-{i:04d}", "source": "s", "source_id": f"k{i:04d}", "split": "train",
        "provenance": {"file": "f.jsonl", "row": i, "url": None, "member": None},
        "image": {"bytes": data, "width": 8, "height": 8, "format": "JPEG", "sha256": hashlib.sha256(data).hexdigest()},
        "regions": None, "texts": [text_entry(f"a red circle number {i}", "caption", "s", "en")],
    }


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Two pairs shards and one rejects shard, committed with their manifest."""
    out = str(tmp_path / "ds")
    staging = outdir.prepare(out, overwrite=False)
    for s in range(2):
        write_shard([row(i) for i in range(s * 6, s * 6 + 6)], "pairs", f"{staging}/pairs/{shard_name(s, 2)}",
                    OutputConfig())
    reject = reject_row(Reject("read", "malformed_row", "not JSON", "s", "k9", {"line": "{"}, "r9"))
    write_shard([reject], "rejects", f"{staging}/rejects/{shard_name(0, 1)}", OutputConfig())
    outdir.commit(staging, out, manifest_lib.build_manifest({}, staging))
    return tmp_path / "ds"


def shard(ds: Path, index: int = 0) -> Path:
    return ds / "pairs" / shard_name(index, 2)


def test_manifest_records_size_and_sha256_of_every_shard(dataset: Path) -> None:
    files = json.loads((dataset / "manifest.json").read_text())["files"]
    entries = files["pairs"] + files["rejects"]
    assert len(entries) == 3
    for entry in entries:
        data = (dataset / entry["path"]).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert validate_dataset(str(dataset))["counts"]["pairs_rows"] == 12


def test_truncated_shard_is_named_not_a_pyarrow_footer_error(dataset: Path) -> None:
    path = shard(dataset)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 2])
    with pytest.raises(DatasetError) as info:
        validate_dataset(str(dataset))
    message = str(info.value)
    assert f"pairs/{path.name}: truncated: {size // 2} bytes, the manifest says {size}" in message
    assert "magic bytes" not in message


def test_altered_shard_of_the_same_size_is_named(dataset: Path) -> None:
    path = shard(dataset, 1)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=rf"pairs/{path.name}: altered: sha256 [0-9a-f]{{16}}…, the manifest says"):
        validate_dataset(str(dataset))
    manifest = load_manifest(str(dataset))
    check_shards(str(dataset), manifest, ("pairs",))  # sizes alone cannot see it: the trainer's default
    with pytest.raises(DatasetError, match="altered"):
        check_shards(str(dataset), manifest, ("pairs",), digests=True)


def test_every_bad_shard_is_named_at_once(dataset: Path) -> None:
    shutil.copy(shard(dataset, 1), dataset / "pairs" / "stray.parquet")
    shard(dataset, 0).unlink()
    rejects = dataset / "rejects" / shard_name(0, 1)
    rejects.write_bytes(rejects.read_bytes() + b"more")
    with pytest.raises(DatasetError) as info:
        validate_dataset(str(dataset))
    message = str(info.value)
    assert "3 bad shards" in message
    assert f"pairs/{shard_name(0, 2)}: missing" in message
    assert "pairs/stray.parquet: extra: not listed in manifest.json" in message
    assert f"rejects/{rejects.name}: altered: {rejects.stat().st_size} bytes" in message


def test_validate_cli_names_the_shard_in_one_line(dataset: Path, capsys) -> None:
    path = shard(dataset)
    path.write_bytes(path.read_bytes()[:-100])
    assert main(["validate", str(dataset)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pairs/{path.name}: truncated" in err


def strip_digests(ds: Path) -> None:
    manifest = json.loads((ds / "manifest.json").read_text())
    for entries in manifest["files"].values():
        for entry in entries:
            entry.pop("size"), entry.pop("sha256")
    (ds / "manifest.json").write_text(json.dumps(manifest))


def test_old_manifest_without_digests_is_read_and_says_so(dataset: Path, capsys) -> None:
    strip_digests(dataset)
    manifest = validate_and_note(str(dataset))
    assert unrecorded_digests(manifest) == 3
    err = capsys.readouterr().err
    assert "records no size/sha256 for 3 of 3 shards" in err
    assert main(["validate", str(dataset)]) == 0
    path = shard(dataset)
    path.write_bytes(path.read_bytes()[:-100])  # no size to compare: still named, as unreadable Parquet
    with pytest.raises(DatasetError, match=rf"pairs/{path.name}: not readable as Parquet"):
        validate_dataset(str(dataset))


def test_altered_rows_say_both_what_changed_and_how(dataset: Path) -> None:
    write_shard([row(i) for i in range(2)], "pairs", str(shard(dataset)), OutputConfig())
    with pytest.raises(DatasetError, match=r"altered: \d+ bytes, the manifest says \d+ \(2 rows, manifest says 6\)"):
        validate_dataset(str(dataset))


def test_validate_checks_the_concepts_vocabulary(tmp_path: Path) -> None:
    """concepts.txt is listed like a shard: an altered vocabulary is named, an intact one passes."""
    out = str(tmp_path / "cv")
    staging = outdir.prepare(out, overwrite=False)
    write_shard([row(0)], "pairs", f"{staging}/pairs/{shard_name(0, 1)}", OutputConfig())
    manifest = manifest_lib.build_manifest({}, staging)
    data = b"circle\nred\n"
    manifest["files"]["concepts"] = [{"path": "concepts.txt", "rows": 2, "size": len(data),
                                      "sha256": hashlib.sha256(data).hexdigest()}]
    outdir.commit(staging, out, manifest, extra={"concepts.txt": data})
    validate_dataset(out)
    (tmp_path / "cv" / "concepts.txt").write_bytes(b"circle\nrad\n")
    with pytest.raises(DatasetError, match=r"concepts\.txt: altered"):
        validate_dataset(out)
