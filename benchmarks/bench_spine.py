"""Spine benchmark: read → validate → dedup → write, as a Beam pipeline and as a plain loop.

Both paths run the very same functions (``iter_jsonl``, ``load_image_bytes``,
``process_image``, ``pair_row``, ``pair_key``, and the writer's: rows encoded into sorted
runs by ``RunWriter``, each shard a ``merge_segments`` of its runs written by
``write_sorted``) on the same generated corpus, in the same run, so the ratio measures what
Beam itself costs: the rows spilled to runs by id and streamed back once the id checks,
dedup and splits are decided on their key records (grouped on disk), then written
straight into the writer's runs by shard (this build has no row stage; the shard count
comes from the key records dedup kept), the rejects table, the manifest's reconciliation.
Corpus generation is not timed. CPU seconds are this process's and its children's (user +
sys): on a shared machine they move less than wall seconds.

    python benchmarks/bench_spine.py --pairs 20000
    python benchmarks/bench_spine.py --pairs 20000 --repeat 3   # each path's least CPU of 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import time
from collections import defaultdict
from pathlib import Path

from curation.clean.dedup import pair_key
from curation.clean.images import load_image_bytes, process_image
from curation.clean.texts import pair_row
from curation.config import BuildConfig, SourceConfig, config_from_dict
from curation.demo.synth import caption, encode_jpeg, render, sample_rng, sample_scene
from curation.output.runs import RunWriter, decode_row, delete_runs, encode_row, merge_segments
from curation.output.write import row_key, shard_name, shard_of, shards_for, write_sorted
from curation.pipeline import run_build
from curation.read.records import RawRecord
from curation.read.tabular import iter_jsonl


def make_corpus(root: Path, n: int, seed: int, size: int) -> Path:
    """n JPEG files and one captions.jsonl naming them (10% exact duplicates of a row)."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        src = i - 1 if i % 10 == 9 else i  # every tenth row repeats the previous image and caption
        scene = sample_scene(sample_rng(seed, "bench", src))
        path = images / f"{src:07d}.jpg"
        if src == i:
            path.write_bytes(encode_jpeg(render(scene, size)))
        lines.append(json.dumps({"key": f"k{i:07d}", "caption": caption(scene, "en"), "image": f"images/{src:07d}.jpg"}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root / "captions.jsonl"


def config(corpus: Path, max_side: int) -> BuildConfig:
    return config_from_dict(
        {
            "sources": [{"name": "bench", "format": "jsonl", "paths": [str(corpus)], "lang": "en"}],
            "image": {"max_side": max_side, "min_side": 16},
            "output": {"rows_per_shard": 5000},
        }
    )


def plain_loop(cfg: BuildConfig, out: Path) -> dict[str, int]:
    """The same functions, one process, no Beam."""
    source: SourceConfig = cfg.sources[0]
    kept: dict[str, dict] = {}
    rejected = 0
    for item in iter_jsonl(source.paths[0], source):
        if not isinstance(item, RawRecord):
            rejected += 1
            continue
        info = process_image(load_image_bytes(item), cfg.image)
        row, _ = pair_row(dataclasses.replace(item, image=None, image_info=info), cfg.text)
        key = pair_key(row, cfg.dedup.key)
        if key in kept:
            kept[key] = min(kept[key], row, key=lambda r: (r["source"], r["source_id"], r["id"]))
            rejected += 1
        else:
            kept[key] = row
    n_shards = shards_for(len(kept), cfg.output.rows_per_shard)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs = RunWriter(str(out / "runs"))
    segments: dict[int, list] = defaultdict(list)
    for row in kept.values():
        key = row_key(row, "pairs")
        for index, segment in runs.add(shard_of(key, n_shards), key, encode_row(row)):
            segments[index].append(segment)
    for index, segment in runs.flush():
        segments[index].append(segment)
    (out / "pairs").mkdir(parents=True, exist_ok=True)
    for index, parts in segments.items():
        keyed = ((key, decode_row(value)) for key, value in merge_segments(parts))
        write_sorted(keyed, "pairs", str(out / "pairs" / shard_name(index, n_shards)), cfg.output)
    delete_runs({s.path for parts in segments.values() for s in parts})
    return {"output": len(kept), "rejected": rejected}


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "pairs").glob("*.parquet"))}


def cpu_seconds() -> float:
    """User + sys seconds of this process and its waited-for children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, *args):
    """(wall seconds, CPU seconds, result) of fn(*args)."""
    start, cpu = time.perf_counter(), cpu_seconds()
    result = fn(*args)
    return time.perf_counter() - start, cpu_seconds() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128, help="generated image side")
    parser.add_argument("--max-side", type=int, default=96, help="image.max_side: generated images are downscaled")
    parser.add_argument("--workdir", default="/tmp/m3curate-bench-spine")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every path this many times, alternating, and report each path's least CPU "
                             "(on a shared machine contention only ever adds time)")
    args = parser.parse_args()
    root = Path(args.workdir)
    shutil.rmtree(root, ignore_errors=True)
    corpus = make_corpus(root / "corpus", args.pairs, args.seed, args.image_size)
    cfg = config(corpus, args.max_side)
    load = os.getloadavg()
    runs: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        shutil.rmtree(root / "loop", ignore_errors=True)
        loop_s, loop_cpu, loop = timed(plain_loop, cfg, root / "loop")
        runs["plain loop"] = min(runs.get("plain loop", (loop_s, loop_cpu)), (loop_s, loop_cpu), key=lambda r: r[1])
        for label, beam_args in (
            ("beam FnApiRunner, 1 worker", ["--direct_num_workers=1"]),
            ("beam FnApiRunner, 2 processes", ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]),
        ):
            out = root / label.replace(" ", "_").replace(",", "")
            seconds, cpu, manifest = timed(run_build, cfg, str(out), beam_args, True)
            assert manifest["counts"]["output_records"] == loop["output"], "Beam and the loop disagree"
            assert shard_bytes(out) == shard_bytes(root / "loop"), "shards differ"
            runs[label] = min(runs.get(label, (seconds, cpu)), (seconds, cpu), key=lambda r: r[1])
    loop_s, loop_cpu = runs["plain loop"]
    best = f", least CPU of {args.repeat} runs each" if args.repeat > 1 else ""
    print(f"\n{args.pairs} input pairs ({args.image_size}px JPEG → max_side {args.max_side}), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{best}")
    print("| path | seconds | CPU seconds | pairs/s (input) | time vs plain loop | CPU vs plain loop | CPU ms per pair over the loop |")
    print("|---|---|---|---|---|---|---|")
    for label, (seconds, cpu) in runs.items():
        print(f"| {label} | {seconds:.1f} | {cpu:.1f} | {args.pairs / seconds:,.0f} | {seconds / loop_s:.2f}× | "
              f"{cpu / loop_cpu:.2f}× | {1000 * (cpu - loop_cpu) / args.pairs:.2f} |")

if __name__ == "__main__":
    main()
