"""What the build's progress line costs: the same local build with and without it, in one run.

Builds alternate (off, on, off, on, ...) on one generated corpus, so drift of a shared
machine hits both sides alike; the line is forced on (as on a terminal) and drawn into a
buffer. The end-to-end difference is noisy on a busy machine, so the script also times the
progress work alone on the same records (per-record counting in the reader and after the
reshuffle, the file sizes and line count taken at the start, the progress files written
every 0.5 s and the line drawn), which bounds the cost from above without the noise.

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

from bench_spine import config, make_corpus  # noqa: E402

from curation.pipeline import run_build  # noqa: E402
from curation.progress import INTERVAL, ProgressLine  # noqa: E402
from curation.read.source import ReadProgress, ReadProgressText, expected_records, file_size  # noqa: E402


def build_seconds(cfg, out: Path, progress: bool) -> tuple[float, str]:
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err):
        run_build(cfg, str(out), ["--direct_num_workers=1"], overwrite=True, progress=progress)
    return time.perf_counter() - start, err.getvalue()


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
    off, on, lines = [], [], ""
    for _ in range(args.rounds):
        off.append(build_seconds(cfg, root / "off", False)[0])
        seconds, lines = build_seconds(cfg, root / "on", True)
        on.append(seconds)
    assert "[m3curate] read" in lines, "the progress line was not drawn"
    base, with_line = statistics.median(off), statistics.median(on)
    alone = progress_work_seconds(corpus, args.pairs, with_line)
    print(f"\n{args.pairs} input pairs, {args.rounds} builds each way, {platform.processor() or platform.machine()}")
    print("| builds | median s | all runs (s) |")
    print("|---|---|---|")
    print(f"| without the progress line | {base:.2f} | {', '.join(f'{s:.2f}' for s in off)} |")
    print(f"| with the progress line | {with_line:.2f} | {', '.join(f'{s:.2f}' for s in on)} |")
    print(f"\nend to end: {100 * (with_line - base) / base:+.1f}% (noise of a shared machine included)")
    print(f"progress work alone: {alone * 1000:.1f} ms = {100 * alone / base:.2f}% of a build "
          f"({lines.count(chr(13))} redraws in the last build)")


if __name__ == "__main__":
    main()
