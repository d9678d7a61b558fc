"""Input globs and the file names in fallback ids (``curation.read.common``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.config import SourceConfig
from curation.read.common import expand_braces, file_label
from curation.read.source import iter_file, match_paths


def source(*paths: str) -> SourceConfig:
    return SourceConfig(name="s", format="jsonl", kind="pair", paths=list(paths), lang="en")


@pytest.mark.parametrize(("paths", "path", "label"), [
    (["/d/captions.jsonl"], "/d/captions.jsonl", "captions.jsonl"),
    (["/d/a.jsonl", "/d/b.jsonl"], "/d/b.jsonl", "b.jsonl"),
    (["/d/*/00000.parquet"], "/d/train/00000.parquet", "train/00000.parquet"),
    (["/d/train/c.jsonl", "/d/val/c.jsonl"], "/d/val/c.jsonl", "val/c.jsonl"),
    (["gs://b/cc3m/{00000..00009}.tar"], "gs://b/cc3m/00003.tar", "00003.tar"),
    (["a/c.jsonl", "b/c.jsonl"], "b/c.jsonl", "b/c.jsonl"),
    (["./*/c.jsonl"], "b/c.jsonl", "b/c.jsonl"),
    (["configs/../data/*/c.jsonl"], "data/b/c.jsonl", "b/c.jsonl"),
    (["/d/x/../y/*.jsonl"], "/d/y/c.jsonl", "c.jsonl"),
])
def test_file_label_is_the_path_below_the_shared_folder(paths, path, label) -> None:
    assert file_label(path, source(*paths)) == label


def test_same_file_names_in_two_folders_get_distinct_ids(tmp_path: Path, monkeypatch) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "c.jsonl").write_text(json.dumps({"caption": f"from {folder}", "image": "x.jpg"}) + "\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    for pattern in ("*/c.jsonl", "./*/c.jsonl", "configs/../*/c.jsonl"):  # Beam alone matches nothing for the first
        src = source(pattern)
        files = match_paths(src)
        assert files == ["a/c.jsonl", "b/c.jsonl"]
        ids = [item.source_id for path in files for item in iter_file(path, src)]
        assert ids == ["a/c.jsonl:0", "b/c.jsonl:0"], pattern


@pytest.mark.parametrize(("pattern", "expanded"), [
    ("data/{00000..00002}.tar", ["data/00000.tar", "data/00001.tar", "data/00002.tar"]),
    ("gs://b/{train,val}/{8..10}.tar", ["gs://b/train/8.tar", "gs://b/train/9.tar", "gs://b/train/10.tar",
                                         "gs://b/val/8.tar", "gs://b/val/9.tar", "gs://b/val/10.tar"]),
    ("{a,{b,c}}.jsonl", ["a.jsonl", "b.jsonl", "c.jsonl"]),
    ("{2..0}", ["2", "1", "0"]),
    ("x{y}.tar", ["x{y}.tar"]),  # neither a list nor a range: kept as written
    ("a,b.jsonl", ["a,b.jsonl"]),
])
def test_brace_ranges_and_lists_expand_like_a_shell(pattern: str, expanded: list[str]) -> None:
    assert expand_braces(pattern) == expanded


def test_brace_paths_match_for_every_format(tmp_path: Path) -> None:
    """The README's WebDataset recipe: ``{00000..00001}.tar``; and ``{a,b}`` in any format."""
    for name in ("00000.tar", "00001.tar", "00002.tar", "a.jsonl", "b.jsonl", "c.jsonl"):
        (tmp_path / name).write_bytes(b"")
    shards = SourceConfig(name="w", format="webdataset", paths=[str(tmp_path / "{00000..00001}.tar")])
    assert match_paths(shards) == [str(tmp_path / "00000.tar"), str(tmp_path / "00001.tar")]
    assert match_paths(source(str(tmp_path / "{a,b}.jsonl"))) == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    with pytest.raises(ValueError, match=r"no file matches .*00003\.tar"):
        match_paths(SourceConfig(name="w", format="webdataset", paths=[str(tmp_path / "{00002..00003}.tar")]))
