"""Progress on long local work: one throttled line on stderr, only on a terminal (or when
forced), that never changes what a build writes."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from curation.config import load_config
from curation.demo.corpus import write_corpus
from curation.pipeline import run_build
from curation.progress import Counter, ProgressLine, eta, progress_enabled
from curation.read.source import (
    ReadFileFn,
    ReadProgress,
    ReadProgressText,
    expected_records,
    source_files,
)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_is_shown_on_a_terminal_only_unless_forced(monkeypatch):
    monkeypatch.delenv("M3CURATE_PROGRESS", raising=False)
    assert progress_enabled(Tty()) and not progress_enabled(io.StringIO())
    monkeypatch.setenv("M3CURATE_PROGRESS", "0")
    assert not progress_enabled(Tty())
    monkeypatch.setenv("M3CURATE_PROGRESS", "1")
    assert progress_enabled(io.StringIO())


def test_redraws_are_throttled_and_the_last_state_stays():
    stream = Tty()
    counter = Counter("export", 1_000_000, line=ProgressLine(stream, enabled=True, interval=0.2))
    start = time.monotonic()
    while time.monotonic() - start < 0.5:
        counter.add()
    counter.close()
    text = stream.getvalue()
    assert 2 <= text.count("\r") <= 5 and text.endswith("\n")  # one redraw per interval, not per item
    assert f"export: {counter.done:,} rows in 0:00" in text.splitlines()[-1]
    assert eta(0, 10, 1.0) == "?" and eta(5, 10, 10.0) == "0:10"


def test_read_progress_counts_records_and_estimates_the_open_file(tmp_path):
    data = tmp_path / "a.jsonl"
    data.write_text("".join(f'{{"i": {i}}}\n' for i in range(100)))
    assert expected_records(str(data), "jsonl") == 100
    folder = tmp_path / "progress"
    folder.mkdir()
    reader = ReadProgress(str(folder), "cc", "jsonl")
    reader.start_file(str(data), None)
    for _ in range(25):
        reader.record()
    reader.flush()
    size = data.stat().st_size
    text = ReadProgressText(str(folder), {"cc": (2, 2 * size)})(10.0)
    assert "read 25 records" in text and "(12%)" in text and "cc 25 (0/2 files)" in text
    assert "ETA 1:10" in text  # 1/8 of the bytes in 10 s: 70 s to go
    reader.end_file()
    reader.start_file(str(data), None)
    for _ in range(100):
        reader.record()
    reader.end_file()
    reader.flush()
    show = ReadProgressText(str(folder), {"cc": (2, 2 * size)})
    assert show(20.0).startswith("[m3curate] read all 125 records (2 files) · checking images and texts 0/125")


def test_the_reader_reports_what_it_read(tmp_path):
    toml = write_corpus(tmp_path, n=12, seed=3)
    source = next(s for s in load_config(toml).sources if s.format == "jsonl")
    folder = tmp_path / "progress"
    folder.mkdir()
    fn = ReadFileFn(source, str(folder))
    fn.setup()
    items = [item for element in source_files(source) for item in fn.process(element)]
    fn.finish_bundle()
    (state,) = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    assert state["records"] == len(items) and state["files"] == len(source_files(source))
    assert state["bytes"] == sum(Path(p).stat().st_size for p, _ in source_files(source))


@pytest.mark.slow
def test_a_build_draws_progress_when_asked_and_writes_the_same_bytes(tmp_path, capsys):
    toml = write_corpus(tmp_path, n=24, seed=5)
    cfg = load_config(toml)
    run_build(cfg, str(tmp_path / "quiet"))  # stderr captured: not a terminal, so no line
    quiet_err = capsys.readouterr().err
    assert "\r" not in quiet_err
    run_build(cfg, str(tmp_path / "shown"), progress=True)
    shown_err = capsys.readouterr().err
    assert "\r[m3curate] read " in shown_err and "later stages running" in shown_err
    for table in ("pairs", "parallel", "rejects"):
        quiet = sorted((tmp_path / "quiet" / table).glob("*.parquet"))
        shown = sorted((tmp_path / "shown" / table).glob("*.parquet"))
        assert [p.read_bytes() for p in quiet] == [p.read_bytes() for p in shown]
    assert (tmp_path / "quiet" / "manifest.json").read_bytes() == (tmp_path / "shown" / "manifest.json").read_bytes()
