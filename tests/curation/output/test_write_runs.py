"""Sorted runs and their k-way merge (curation.output.runs), and the writer built on them:
the same shard bytes as writing all of a shard's rows at once, whatever the bundles, and
on a filesystem that is not the local one."""

from __future__ import annotations

import hashlib
import io
import os
from collections import defaultdict
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystem import FileMetadata, MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.options.pipeline_options import PipelineOptions
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.config import OutputConfig
from curation.output.runs import (
    RunWriter,
    Segment,
    decode_row,
    encode_row,
    merge_segments,
    read_segment,
)
from curation.output.write import (
    RUNS,
    WriteTable,
    remove_runs,
    row_key,
    shard_name,
    shard_of,
    write_sorted,
)
from schemas import SchemaError, validate_rows
from schemas.rows import text_entry


def pair(i: int, image: bytes | None = None) -> dict:
    data = image if image is not None else hashlib.sha256(str(i).encode()).digest() * (1 + i % 5)
    return {
        "id": f"id-{i:05d}",
        "source": "s",
        "source_id": f"k{i}",
        "split": "train",
        "provenance": {"file": "f.jsonl", "row": i, "url": None, "member": None},
        "image": {"bytes": data, "width": 8, "height": 8, "format": "JPEG", "sha256": hashlib.sha256(data).hexdigest()},
        "regions": None,
        "texts": [text_entry(f"caption {i}", "caption", "s", "en")],
    }


def write_runs(entries: list[tuple[int, str, bytes]], directory: str, bundles: list[int], budget: int
               ) -> list[tuple[int, Segment]]:
    """Entries cut into bundles of the given sizes (the rest in one more), each its own RunWriter."""
    segments, start = [], 0
    for size in [*bundles, len(entries)]:
        runs = RunWriter(directory, budget)
        for shard, key, value in entries[start:start + size]:
            segments += runs.add(shard, key, value)
        segments += runs.flush()
        start += size
    return segments


def merged_by_shard(segments: list[tuple[int, Segment]]) -> dict[int, list[tuple[str, bytes]]]:
    by_shard = defaultdict(list)
    for shard, segment in segments:
        by_shard[shard].append(segment)
    return {shard: list(merge_segments(segs)) for shard, segs in by_shard.items()}


def test_a_run_holds_one_sorted_segment_per_shard(tmp_path: Path):
    runs = RunWriter(str(tmp_path))
    for shard, key in [(1, "b"), (0, "z"), (1, "a"), (0, "c"), (1, "c")]:
        assert runs.add(shard, key, key.encode() * 3) == []
    segments = runs.flush()
    assert runs.flush() == []  # nothing left to write
    assert [(s, seg.rows, seg.first, seg.last) for s, seg in segments] == [(0, 2, "c", "z"), (1, 3, "a", "c")]
    (_, first), (_, second) = segments
    assert first.path == second.path and first.offset == 0 and second.offset == first.length
    assert second.offset + second.length == os.path.getsize(first.path)
    assert list(read_segment(second, chunk=5)) == [("a", b"aaa"), ("b", b"bbb"), ("c", b"ccc")]


def test_the_budget_cuts_runs(tmp_path: Path):
    runs = RunWriter(str(tmp_path), budget=400)
    written = [seg for i in range(10) for seg in runs.add(0, f"k{i}", b"x" * 100)] + runs.flush()
    assert len({seg.path for _, seg in written}) == len(written) == 4  # 3 entries of 166 bytes (64 of overhead) reach 400
    assert sum(seg.rows for _, seg in written) == 10


def test_a_truncated_run_is_an_error_not_fewer_rows(tmp_path: Path):
    runs = RunWriter(str(tmp_path))
    runs.add(0, "a", b"1" * 50)
    runs.add(0, "b", b"2" * 50)
    (_, segment), = runs.flush()
    with open(segment.path, "r+b") as handle:
        handle.truncate(segment.length - 10)
    with pytest.raises(OSError, match="ends inside a record"):
        list(read_segment(segment))


def test_rows_survive_the_run_encoding():
    row = pair(3)
    row["texts"][0]["text"] = "ünïcode ✓ 字"
    row["texts"][0]["score"] = 0.1 + 0.2
    assert decode_row(encode_row(row)) == row


keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from("\udcff\x1f"),
               max_size=6)


@settings(max_examples=60, deadline=None)
@given(
    entries=st.lists(st.tuples(st.integers(0, 3), keys, st.binary(max_size=40)), max_size=60),
    bundles=st.lists(st.integers(0, 20), max_size=5),
    budget=st.integers(1, 400),
)
def test_merge_is_sorted_all_rows_whatever_the_bundles(tmp_path_factory, entries, bundles, budget):
    directory = str(tmp_path_factory.mktemp("runs"))
    got = merged_by_shard(write_runs(entries, directory, bundles, budget))
    want = defaultdict(list)
    for shard, key, value in entries:
        want[shard].append((key, value))
    assert got == {shard: sorted(items) for shard, items in want.items()}
    # one bundle, one run: the same merge
    assert merged_by_shard(write_runs(entries, str(tmp_path_factory.mktemp("one")), [], 1 << 30)) == got


def old_shard_bytes(rows: list[dict], table: str, cfg: OutputConfig) -> bytes:
    """What the writer wrote before the runs: all rows in one table, one write_table."""
    sink = io.BytesIO()
    compression = None if cfg.compression == "none" else cfg.compression
    arrow = validate_rows(sorted(rows, key=lambda r: row_key(r, table)), table)
    pq.write_table(arrow, sink, row_group_size=cfg.row_group_rows, compression=compression)
    return sink.getvalue()


@pytest.mark.parametrize("n", [0, 1, 4, 5, 8, 11])
def test_written_a_row_group_at_a_time_are_the_bytes_of_one_write(tmp_path: Path, n: int):
    cfg = OutputConfig(row_group_rows=4)
    rows = [pair(i) for i in reversed(range(n))]
    path = tmp_path / "shard.parquet"
    ordered = sorted(rows, key=lambda r: r["id"])
    assert write_sorted(((r["id"], r) for r in ordered), "pairs", str(path), cfg) == n
    assert path.read_bytes() == old_shard_bytes(rows, "pairs", cfg)
    assert pq.ParquetFile(path).metadata.num_row_groups == max(1, -(-n // 4)) or n == 0


def test_equal_ids_in_neighbouring_row_groups_are_refused(tmp_path: Path):
    rows = [pair(i) for i in range(3)] + [pair(2)]
    keyed = sorted(((r["id"], r) for r in rows), key=lambda kv: kv[0])
    with pytest.raises(SchemaError, match="duplicate"):
        write_sorted(keyed, "pairs", str(tmp_path / "x.parquet"), OutputConfig(row_group_rows=3))


class PrefixFileSystem(LocalFileSystem):
    """``runtest://a/b`` is ``ROOT/a/b``: a filesystem that is not the local one, for the
    paths runs and shards take (as gs:// would be, without a network)."""

    ROOT = ""

    @classmethod
    def scheme(cls) -> str:
        return "runtest"

    def _local(self, path: str) -> str:
        assert path.startswith("runtest://"), path
        return os.path.join(self.ROOT, path[len("runtest://"):])

    def create(self, path, *args, **kwargs):
        return LocalFileSystem(None).create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return LocalFileSystem(None).open(self._local(path), *args, **kwargs)

    def exists(self, path):
        return LocalFileSystem(None).exists(self._local(path))

    def delete(self, paths):
        return LocalFileSystem(None).delete([self._local(p) for p in paths])

    def match(self, patterns, limits=None):
        results = LocalFileSystem(None).match([self._local(p) for p in patterns], limits)
        back = lambda path: "runtest://" + os.path.relpath(path, self.ROOT)  # noqa: E731
        return [MatchResult(pattern, [FileMetadata(back(m.path), m.size_in_bytes, m.last_updated_in_seconds)
                                      for m in result.metadata_list])
                for pattern, result in zip(patterns, results, strict=True)]


def build_table(rows: list[dict], directory: str, per_shard: int, run_bytes: int) -> None:
    cfg = OutputConfig(rows_per_shard=per_shard, row_group_rows=3)
    with beam.Pipeline(options=PipelineOptions([], runner="FnApiRunner")) as p:
        p | beam.Create(rows) | WriteTable("pairs", directory, cfg, run_bytes=run_bytes)


@pytest.mark.parametrize("run_bytes", [1, 1 << 20])
def test_write_table_gives_the_old_shards_then_its_runs_go(tmp_path: Path, monkeypatch, run_bytes: int):
    monkeypatch.setattr(PrefixFileSystem, "ROOT", str(tmp_path))
    rows = [pair(i) for i in range(23)]
    build_table(rows, "runtest://stage", per_shard=5, run_bytes=run_bytes)
    cfg = OutputConfig(rows_per_shard=5, row_group_rows=3)
    by_shard = defaultdict(list)
    for row in rows:
        by_shard[shard_of(row["id"], 5)].append(row)
    written = sorted(p.name for p in (tmp_path / "stage" / "pairs").iterdir())
    assert written == sorted(shard_name(i, 5) for i in by_shard)
    for index, shard_rows in by_shard.items():
        got = (tmp_path / "stage" / "pairs" / shard_name(index, 5)).read_bytes()
        assert got == old_shard_bytes(shard_rows, "pairs", cfg)
    runs = list((tmp_path / "stage" / RUNS / "pairs").iterdir())
    assert len(runs) >= (23 if run_bytes == 1 else 1)  # a run a row when every row fills the budget
    assert remove_runs("runtest://stage") == len(runs)
    assert list((tmp_path / "stage" / RUNS / "pairs").iterdir()) == []
