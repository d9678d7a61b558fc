"""Input readers: every supported format -> ``RawRecord``s and read-stage ``Reject``s.

The per-format readers are plain generators, ``iter_<format>(path, source)``, testable
without Beam (``read_tabular``, ``read_webdataset``); ``ReadSource`` only wires them into a
pipeline. Reject reasons (stage ``read``): ``unreadable_file``, ``malformed_row``,
``invalid_utf8``, ``missing_column``, ``wrong_type``, ``missing_image``, ``download_failed``,
``unsafe_member``, ``member_too_large``, ``unaligned``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.pvalue import PBegin, PCollection, TaggedOutput

from curation.config import SourceConfig
from curation.progress import INTERVAL, eta, fmt_bytes, fmt_duration
from curation.read.common import Item, match_pairs, match_paths
from curation.read.tabular import iter_csv, iter_jsonl, iter_parallel_files, iter_parquet, iter_tsv
from curation.read.webdataset import iter_webdataset
from curation.stages import READ
from schemas.rows import REJECTS_TAG, Reject
from schemas.stage import StageCounters

__all__ = [
    "READERS",
    "ReadProgress",
    "ReadSource",
    "iter_csv",
    "iter_file",
    "iter_jsonl",
    "iter_parallel_files",
    "iter_parquet",
    "iter_tsv",
    "iter_webdataset",
    "match_pairs",
    "match_paths",
    "ReadProgressText",
    "source_files",
]

READERS: dict[str, Callable[[str, SourceConfig], Iterator[Item]]] = {
    "jsonl": iter_jsonl,
    "csv": iter_csv,
    "tsv": iter_tsv,
    "parquet": iter_parquet,
    "webdataset": iter_webdataset,
    "parallel_files": iter_parallel_files,
}


def iter_file(path: str, source: SourceConfig, tgt_path: str | None = None) -> Iterator[Item]:
    """Reads one input file of ``source`` with the reader of its format.

    ``tgt_path`` is the aligned target file of a ``parallel_files`` source (looked up from
    the source's globs when omitted); other formats ignore it.
    """
    if source.format == "parallel_files":
        return iter_parallel_files(path, source, tgt_path)
    return READERS[source.format](path, source)


def source_files(source: SourceConfig) -> list[tuple[str, str | None]]:
    """The elements ``ReadSource`` reads: ``(path, aligned target path | None)``, sorted."""
    if source.format == "parallel_files":
        return list(match_pairs(source))
    return [(path, None) for path in match_paths(source)]


def file_size(path: str | None) -> int:
    """Size in bytes of one input file (0 when it cannot be told)."""
    if path is None:
        return 0
    try:
        if "://" not in path:
            return os.path.getsize(path)
        return int(FileSystems.match([path])[0].metadata_list[0].size_in_bytes)
    except (OSError, IndexError, ValueError):
        return 0


TEXT_FORMATS = ("jsonl", "csv", "tsv", "parallel_files")


def expected_records(path: str, fmt: str) -> int | None:
    """About how many records a file holds, where that is cheap to tell: a local, uncompressed
    text file's line count (one pass at disk speed), a Parquet file's row count from its
    footer; None otherwise (compressed, remote, tar)."""
    if "://" in path:
        return None
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        if fmt in TEXT_FORMATS and not path.endswith((".gz", ".bz2", ".zst", ".xz", ".deflate", ".zip")):
            lines = 0
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    lines += chunk.count(b"\n")
            return max(1, lines)
    except Exception:  # an unreadable file is the reader's to report, as a reject
        return None
    return None


class ReadProgress:
    """What one ``ReadFileFn`` instance has read, for the build's progress line.

    Counts live in memory; every ``INTERVAL`` seconds at most (the clock is read once per 64
    records) they are written to ``directory/<source>-<token>.json`` by an atomic rename, and
    the build's main process sums the files (``read_progress_text``). A file per instance works
    alike for threads and worker processes on the local machine, and needs no lock.

    A file being read counts as the share of its bytes that its records so far are of
    ``expected_records`` (when that is known).

    directory: the build's progress folder. source: the source name. fmt: its format.
    """

    CHECK_EVERY = 64

    def __init__(self, directory: str, source: str, fmt: str = ""):
        self.path = os.path.join(directory, f"{source}-{uuid.uuid4().hex}.json")
        self.fmt = fmt
        self.state = {"source": source, "records": 0, "files": 0, "bytes": 0, "file_records": 0, "file_bytes": 0,
                      "file_expected": 0, "kept": 0, "passed": 0}
        self._next = 0.0
        self._since_check = 0

    def start_file(self, path: str, tgt_path: str | None) -> None:
        state = self.state
        state["file_records"], state["file_bytes"] = 0, file_size(path) + file_size(tgt_path)
        state["file_expected"] = expected_records(path, self.fmt) or 0

    def record(self, kept: bool = True) -> None:
        """One item read: a record (``kept``) or a read reject."""
        state = self.state
        state["records"] += 1
        state["file_records"] += 1
        state["kept"] += kept
        self._tick()

    def passed(self) -> None:
        """One record went on (past the reshuffle, where there is one) into image and text checks."""
        self.state["passed"] += 1
        self._tick()

    def _tick(self) -> None:
        self._since_check += 1
        if self._since_check >= self.CHECK_EVERY:
            self._since_check = 0
            if time.monotonic() >= self._next:
                self.flush()

    def end_file(self) -> None:
        state = self.state
        state["files"] += 1
        state["bytes"] += state["file_bytes"]
        state["file_records"] = state["file_bytes"] = state["file_expected"] = 0
        if time.monotonic() >= self._next:
            self.flush()

    def flush(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.state, handle)
        os.replace(tmp, self.path)
        self._next = time.monotonic() + INTERVAL


def _read_states(directory: str) -> list[dict[str, int | str]]:
    states = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as handle:
                    states.append(json.load(handle))
            except (OSError, ValueError):
                continue  # replaced while listed: the next tick reads it
    return states


def _open_file_bytes(state: dict[str, int | str], per_record: float) -> float:
    """Bytes of the file ``state`` is reading, counted as done so far."""
    records, size, expected = (int(state[k]) for k in ("file_records", "file_bytes", "file_expected"))
    guess = size * records / expected if expected else records * per_record
    return min(0.99 * size, guess)


class ReadProgressText:
    """The progress line of a build's read step, from the readers' progress files.

    While files are read: records, bytes done of the matched total, rate and ETA, per source.
    Then: how many of the records went on into the image and text checks (``passed``),
    with their own rate and ETA; then the time elapsed while the later stages run.

    directory: the progress folder. totals: source -> (files, bytes) as matched before the build.
    """

    def __init__(self, directory: str, totals: dict[str, tuple[int, int]]):
        self.directory, self.totals = directory, totals
        self.read_done_at: float | None = None

    def __call__(self, elapsed: float) -> str:
        states = _read_states(self.directory)
        per = {name: {"records": 0, "files": 0, "bytes": 0, "open_records": 0} for name in self.totals}
        for state in states:
            agg = per.setdefault(str(state["source"]), {"records": 0, "files": 0, "bytes": 0, "open_records": 0})
            for key in ("records", "files", "bytes"):
                agg[key] += int(state[key])
            agg["open_records"] += int(state["file_records"])
        records = sum(a["records"] for a in per.values())
        files, total_files = sum(a["files"] for a in per.values()), sum(f for f, _ in self.totals.values())
        if not total_files or files < total_files:
            return self._reading(states, per, records, elapsed)
        self.read_done_at = self.read_done_at or elapsed
        passed, kept = (sum(int(s.get(k, 0)) for s in states) for k in ("passed", "kept"))
        head = f"[m3curate] read all {records:,} records ({files:,} files)"
        if passed < kept:
            spent = elapsed - self.read_done_at
            rate = passed / spent if spent > 0 else 0.0
            return f"{head} · checking images and texts {passed:,}/{kept:,} · {rate:,.0f} rec/s · ETA {eta(passed, kept, spent)}"
        return f"{head} and checked them; later stages running · {fmt_duration(elapsed)}"

    def _reading(self, states: list[dict[str, int | str]], per: dict[str, dict[str, int]], records: int,
                 elapsed: float) -> str:
        done_bytes = float(sum(a["bytes"] for a in per.values()))
        for state in states:
            agg = per[str(state["source"])]
            finished = agg["records"] - agg["open_records"]
            done_bytes += _open_file_bytes(state, agg["bytes"] / finished if finished else 0.0)
        total_bytes = sum(b for _, b in self.totals.values())
        share = f" ({100 * done_bytes / total_bytes:.0f}%)" if total_bytes else ""
        sources = " · ".join(f"{name} {a['records']:,} ({a['files']}/{self.totals.get(name, (0, 0))[0]} files)"
                             for name, a in per.items())
        return (f"[m3curate] read {records:,} records · {fmt_bytes(done_bytes)}/{fmt_bytes(total_bytes)}{share} · "
                f"{records / elapsed if elapsed > 0 else 0:,.0f} rec/s · ETA {eta(done_bytes, total_bytes, elapsed)} · {sources}")


class ReadFileFn(beam.DoFn):
    """Reads one file (``(path, tgt_path | None)``) into records (main output) and rejects
    (``REJECTS_TAG``). Counters (namespace ``read``): ``files``, ``in`` (records and
    rejects read), ``kept`` (records), ``rejected_<reason>``.

    source: the SourceConfig the file belongs to. progress_dir: where to report progress
    (``ReadProgress``; None: no progress).
    """

    def __init__(self, source: SourceConfig, progress_dir: str | None = None) -> None:
        super().__init__()
        self.source = source
        self.counters = StageCounters(READ)
        self.progress_dir = progress_dir
        self.progress: ReadProgress | None = None

    def setup(self) -> None:
        if self.progress_dir and os.path.isdir(self.progress_dir):
            self.progress = ReadProgress(self.progress_dir, self.source.name, self.source.format)

    def process(self, element: tuple[str, str | None]) -> Iterator[Item | TaggedOutput]:
        path, tgt_path = element
        counters, progress = self.counters, self.progress
        counters.inc("files")
        if progress:
            progress.start_file(path, tgt_path)
        for item in iter_file(path, self.source, tgt_path):
            counters.inc("in")
            if progress:
                progress.record(not isinstance(item, Reject))
            if isinstance(item, Reject):
                counters.inc(f"rejected_{item.reason}")
                yield TaggedOutput(REJECTS_TAG, item)
            else:
                counters.inc("kept")
                yield item
        if progress:
            progress.end_file()

    def finish_bundle(self) -> None:
        if self.progress:
            self.progress.flush()


class PassedProgress(beam.DoFn):
    """Counts records as they go on to the image and text checks (progress only).

    progress_dir: the build's progress folder. source: the SourceConfig.
    """

    def __init__(self, progress_dir: str, source: SourceConfig) -> None:
        super().__init__()
        self.progress_dir, self.source = progress_dir, source
        self.progress: ReadProgress | None = None

    def setup(self) -> None:
        if os.path.isdir(self.progress_dir):
            self.progress = ReadProgress(self.progress_dir, self.source.name, self.source.format)

    def process(self, element: Item) -> Iterator[Item]:
        if self.progress:
            self.progress.passed()
        yield element

    def finish_bundle(self) -> None:
        if self.progress:
            self.progress.flush()


# Runners that run a pipeline on this machine; with one worker (``direct_num_workers``, 1 by
# default) there is nothing to spread records over.
IN_PROCESS_RUNNERS = ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner")


def spreads(pipeline: beam.Pipeline) -> bool:
    """Whether a reshuffle after reading can spread records over workers: not on a local
    runner with one worker, where it would only hold every record once more in memory
    (with the image bytes of sources that embed them) and pickle it twice."""
    runner = type(pipeline.runner).__name__
    return not (runner in IN_PROCESS_RUNNERS and pipeline.options.view_as(DirectOptions).direct_num_workers == 1)


class ReadSource(beam.PTransform):
    """Reads one configured input dataset; ``expand`` returns ``(records, rejects)``.

    The source's globs are expanded when the pipeline is built (``match_paths``; a glob that
    matches nothing raises ValueError then, not on a worker). Files are read one per element,
    and the records are reshuffled so that image decoding downstream spreads over workers
    instead of staying on the worker that happened to read a large file; on a local runner
    with one worker (``spreads``) reading and the checks after it are fused instead.

    source: the SourceConfig to read. progress_dir: passed to ``ReadFileFn``.
    """

    def __init__(self, source: SourceConfig, progress_dir: str | None = None) -> None:
        super().__init__(label=f"ReadSource[{source.name}]")
        self.source = source
        self.progress_dir = progress_dir

    def expand(self, pbegin: PBegin) -> tuple[PCollection, PCollection]:
        read = (
            pbegin
            | "Files" >> beam.Create(source_files(self.source))
            | "Read"
            >> beam.ParDo(ReadFileFn(self.source, self.progress_dir)).with_outputs(REJECTS_TAG, main="records")
        )
        records = read.records
        if spreads(pbegin.pipeline):
            records = records | "Spread" >> beam.Reshuffle()
        if self.progress_dir:
            records = records | "Progress" >> beam.ParDo(PassedProgress(self.progress_dir, self.source))
        return records, read[REJECTS_TAG]
