"""What the build's progress line costs: the same local build with and without it, in one run.

Builds alternate (off, on, off, on, ...) on one generated corpus, so drift of a shared
machine hits both sides alike; the line is forced on (as on a terminal) and drawn into a
buffer. Each build is timed in wall-clock seconds and in CPU seconds of this process (the
local runner with one worker runs in-process, so CPU time leaves out the waits a busy
machine adds). Wall time is still noisy on a shared machine, so the script also times the
progress work alone on the same records (per-record counting in the reader and after the
reshuffle, the file sizes and line count taken at the start, the progress files written
every 0.5 s and the line drawn), plus what the one extra ParDo after the reshuffle costs
per element in the same runner, which bounds the cost without the noise.

    python benchmarks/bench_progress.py --pairs 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from bench_spine import config, make_corpus  # noqa: E402

from curation.pipeline import run_build  # noqa: E402
from curation.progress import INTERVAL, ProgressLine  # noqa: E402
from curation.read.source import ReadProgress, ReadProgressText, expected_records, file_size  # noqa: E402


def build_seconds(cfg, out: Path, progress: bool) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (this process, all threads) and stderr of one build."""
    err = io.StringIO()
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stderr(err):
        run_build(cfg, str(out), ["--direct_num_workers=1"], overwrite=True, progress=progress)
    return time.perf_counter() - start, time.process_time() - cpu, err.getvalue()


def progress_work_seconds(corpus: Path, records: int, build_s: float) -> float:
    """The progress work of one build, done alone: start-up sizes and line count, two counts per
    record, one progress-file write and one redraw per INTERVAL of the build."""
    folder = tempfile.mkdtemp(prefix="bench-progress-")
    try:
        start = time.perf_counter()
        totals = {"bench": (1, file_size(str(corpus)))}
        reader, tap = ReadProgress(folder, "bench", "jsonl"), ReadProgress(folder, "bench", "jsonl")
        reader.start_file(str(corpus), None)
        expected_records(str(corpus), "jsonl")
        for _ in range(records):
            reader.record()
            tap.passed()
        reader.end_file()
        text, line = ReadProgressText(folder, totals), ProgressLine(io.StringIO(), enabled=True)
        for _ in range(int(build_s / INTERVAL) + 1):
            reader.flush()
            line.show(text(1.0))
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Identity(beam.DoFn):
    def process(self, element):
        yield element


def extra_pardo_seconds(n: int, repeats: int = 3) -> float:
    """CPU seconds one more identity ParDo after a Reshuffle adds to n elements on FnApiRunner
    (the place of ``PassedProgress``); medians of ``repeats`` pipelines with and without."""

    def run(extra: bool) -> float:
        cpu = time.process_time()
        with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
            records = p | beam.Create(range(n)) | beam.Reshuffle()
            if extra:
                records = records | beam.ParDo(_Identity())
            records | beam.Map(lambda _: None)
        return time.process_time() - cpu

    run(False)
    without = statistics.median(run(False) for _ in range(repeats))
    with_pardo = statistics.median(run(True) for _ in range(repeats))
    return max(0.0, with_pardo - without)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="builds with and without the line, alternating")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workdir", default="/tmp/m3curate-bench-progress")
    args = parser.parse_args()
    root = Path(args.workdir)
    shutil.rmtree(root, ignore_errors=True)
    corpus = make_corpus(root / "corpus", args.pairs, 0, args.image_size)
    cfg = config(corpus, 96)
    build_seconds(cfg, root / "warm", False)  # imports and caches, untimed
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    lines = ""
    for _ in range(args.rounds):
        for progress in (False, True):
            wall, cpu, err = build_seconds(cfg, root / f"out-{progress}", progress)
            runs[progress].append((wall, cpu))
            lines = err if progress else lines
    assert "[m3curate] read" in lines, "the progress line was not drawn"
    med = {p: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r)) for p, r in runs.items()}
    alone = progress_work_seconds(corpus, args.pairs, med[True][0])
    pardo = extra_pardo_seconds(max(args.pairs, 50_000)) * args.pairs / max(args.pairs, 50_000)
    print(f"\n{args.pairs} input pairs, {args.rounds} builds each way, {platform.processor() or platform.machine()}")
    print("| builds | median wall s | median CPU s | all runs, wall/CPU s |")
    print("|---|---|---|---|")
    for progress, label in ((False, "without the progress line"), (True, "with the progress line")):
        every = ", ".join(f"{w:.1f}/{c:.1f}" for w, c in runs[progress])
        print(f"| {label} | {med[progress][0]:.2f} | {med[progress][1]:.2f} | {every} |")
    (w0, c0), (w1, c1) = med[False], med[True]
    print(f"\nwith the line: wall {100 * (w1 - w0) / w0:+.1f}%, CPU {100 * (c1 - c0) / c0:+.1f}% (medians)")
    print(f"progress work alone: {alone * 1000:.1f} ms counting and drawing ({lines.count(chr(13))} redraws in the last "
          f"build) + {pardo * 1000:.1f} ms for the extra ParDo = {100 * (alone + pardo) / c0:.2f}% of a build's CPU time")


if __name__ == "__main__":
    main()
