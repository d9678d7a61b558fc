"""Scale benchmark: `m3curate build` (FnApiRunner, one worker) at growing sizes, wall time,
time per pair and peak RSS of the build process and its children.

Issue 12.1's targets: peak RSS at the largest size within 1.3x of the smallest's, time per
pair within 1.2x across sizes. The corpus is JSONL pairs naming real JPEG files: a pool of
distinct rendered scenes (``curation.demo.synth``), reused by many rows, each row with its
own key and caption; every tenth row repeats the previous row's image and caption, so
dedup has work. Generation is not timed (a corpus is kept in --workdir and reused).

Each variant is a checkout run with this script's Python: ``new=/work/main`` runs the
build from that tree, ``old=/tmp/old`` from another commit's tree (e.g. ``git archive``),
so a before/after is measured in one run on one corpus. RSS is the sum over the process
tree, polled every --poll seconds with psutil.

    python benchmarks/bench_scale.py --sizes 10000 100000 --variants new=. old=/tmp/old \\
        --json /tmp/scale.json --md /tmp/scale.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import psutil

from curation.demo.synth import caption, encode_jpeg, render, sample_rng, sample_scene

FILE_ROWS = 50_000  # rows per generated JSONL file


def make_corpus(root: Path, n: int, pool: int, size: int, seed: int) -> Path:
    """``n`` rows in JSONL files under root, naming ``pool`` JPEG files; returns the glob."""
    done = root / f".done-{n}-{pool}-{size}-{seed}"
    if done.exists():
        return root / "*.jsonl"
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    scenes = [sample_scene(sample_rng(seed, "scale", i)) for i in range(pool)]
    for i, scene in enumerate(scenes):
        (images / f"{i:05d}.jpg").write_bytes(encode_jpeg(render(scene, size)))
    for old in root.glob("*.jsonl"):
        old.unlink()
    for start in range(0, n, FILE_ROWS):
        lines = []
        for i in range(start, min(n, start + FILE_ROWS)):
            src = i - 1 if i % 10 == 9 else i  # every tenth row repeats the previous row's image and caption
            text = f"{caption(scenes[src % pool], 'en')} (picture {src})"
            lines.append(json.dumps({"key": f"k{i:08d}", "caption": text, "image": f"images/{src % pool:05d}.jpg"}))
        (root / f"pairs-{start // FILE_ROWS:04d}.jsonl").write_text("\n".join(lines) + "\n")
    done.touch()
    return root / "*.jsonl"


def write_config(root: Path, corpus: Path, max_side: int) -> Path:
    toml = root / "build.toml"
    toml.write_text(f"""[[sources]]
name = "scale"
format = "jsonl"
kind = "pair"
paths = ["{corpus}"]
image_root = "{corpus.parent}"
lang = "en"

[image]
max_side = {max_side}
min_side = 16
""")
    return toml


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a child may exit between the listing and the read
            total += p.memory_info().rss
    return total


def measure(cmd: list[str], env: dict[str, str], cwd: str, poll: float, log: Path, limit_mb: float
            ) -> dict[str, float]:
    """Run cmd; wall seconds, CPU seconds (children) and peak RSS of its process tree. A
    tree over ``limit_mb`` is killed (a shared machine's other work needs its memory too)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        ps, peak, killed, trace = psutil.Process(proc.pid), 0, False, []
        while proc.poll() is None:
            rss = tree_rss(ps)
            peak = max(peak, rss)
            if not trace or time.perf_counter() - start >= trace[-1][0] + 30:
                trace.append((round(time.perf_counter() - start), round(rss / 2**20)))
                log.with_suffix(".rss").write_text(json.dumps(trace))  # how far a long build got
            if peak > limit_mb * 2**20 and not killed:
                for child in [*ps.children(recursive=True), ps]:
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                killed = True
            time.sleep(poll)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if killed:
        raise MemoryError(f"killed after {wall:.0f} s at {peak / 2**20:,.0f} MB RSS (over --max-rss-mb); see {log}")
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak / 2**20, 1),
            "maxrss_mb": round(after.ru_maxrss / 1024, 1)}


def build_once(checkout: str, toml: Path, out: Path, poll: float, limit_mb: float) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve()), M3CURATE_PROGRESS="0")
    cmd = [sys.executable, "-c", "import sys; from curation.cli import main; sys.exit(main())",
           "build", "--config", str(toml), "--out", str(out), "--overwrite"]
    result = measure(cmd, env, str(Path(checkout).resolve()), poll, out.with_suffix(".log"), limit_mb)
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    result.update(output_records=counts["output_records"], rejected_records=counts["rejected_records"])
    return result


def probe(toml: Path, out: Path) -> list[dict]:
    """One build in this process, FnApiRunner patched to note after every stage the bytes its
    ListBuffers (the encoded PCollections held between fused stages) and GroupingBuffers
    (shuffles, counted in elements) hold, and this process's RSS."""
    import weakref

    from apache_beam.runners.portability.fn_api_runner import execution, fn_runner

    from curation.config import load_config
    from curation.pipeline import run_build

    alive: dict[str, weakref.WeakSet] = {"list": weakref.WeakSet(), "group": weakref.WeakSet()}
    for kind, cls in (("list", execution.ListBuffer), ("group", execution.GroupingBuffer)):
        def init(self, *a, _orig=cls.__init__, _kind=kind, **k):
            _orig(self, *a, **k)
            alive[_kind].add(self)
        cls.__init__ = init
    notes: list[dict] = []
    execute = fn_runner.FnApiRunner._execute_bundle

    def noted(self, context, bundle, data_input):
        result = execute(self, context, bundle, data_input)
        held = [{id(x): len(x) for x in b._inputs} for b in list(alive["list"])]  # a copy shares the bytes
        unique = {k: v for h in held for k, v in h.items()}
        grouped = sum(len(v) for b in list(alive["group"]) for v in b._table.values())
        notes.append({"stage": bundle.stage.name[:90], "list_buffers_mb": round(sum(unique.values()) / 2**20, 1),
                      "largest_mb": round(max((sum(h.values()) for h in held), default=0) / 2**20, 1),
                      "grouped_values": grouped,
                      "rss_mb": round(psutil.Process().memory_info().rss / 2**20)})
        return result

    fn_runner.FnApiRunner._execute_bundle = noted
    run_build(load_config(toml), str(out), ["--runner=FnApiRunner"], overwrite=True, progress=False)
    return notes


def table(results: list[dict]) -> str:
    lines = ["| variant | pairs | wall s | CPU s | wall ms / pair | CPU ms / pair | peak RSS MB | RSS vs smallest "
             "| wall/pair vs smallest | CPU/pair vs smallest | load before |", "|---|" + "---|" * 10]
    for r in results:
        lines.append(f"| {r['variant']} | {r['pairs']:,} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['ms_per_pair']:.3f} "
                     f"| {r['cpu_ms_per_pair']:.3f} | {r['peak_rss_mb']:,.0f} | {r['rss_ratio']:.2f}x "
                     f"| {r['time_ratio']:.2f}x | {r['cpu_ratio']:.2f}x | {r['load_before']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--variants", nargs="+", default=["new=."], help="label=checkout, run in this order per size")
    parser.add_argument("--pool", type=int, default=2000, help="distinct images")
    parser.add_argument("--image-size", type=int, default=80, help="generated image side (px)")
    parser.add_argument("--max-side", type=int, default=96, help="image.max_side of the build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--poll", type=float, default=0.2, help="RSS polling interval (s)")
    parser.add_argument("--max-rss-mb", type=float, default=12_000, help="kill a build whose tree grows past this")
    parser.add_argument("--workdir", default="/tmp/m3curate-bench-scale")
    parser.add_argument("--json", default="/tmp/m3curate-bench-scale/scale.json")
    parser.add_argument("--md", default="/tmp/m3curate-bench-scale/scale.md")
    parser.add_argument("--probe", type=int, metavar="N", help="instead: one in-process build of N pairs with "
                        "FnApiRunner's buffers noted after every stage (JSON lines on stdout)")
    args = parser.parse_args()
    root = Path(args.workdir)
    if args.probe:
        corpus = make_corpus(root / f"corpus-{args.probe}", args.probe, args.pool, args.image_size, args.seed)
        toml = write_config(root / f"corpus-{args.probe}", corpus, args.max_side)
        for note in probe(toml, root / f"probe-{args.probe}"):
            print(json.dumps(note))
        return
    variants = [v.split("=", 1) for v in args.variants]
    results: list[dict] = []
    for n in sorted(args.sizes):
        corpus = make_corpus(root / f"corpus-{n}", n, args.pool, args.image_size, args.seed)
        toml = write_config(root / f"corpus-{n}", corpus, args.max_side)
        for label, checkout in variants:
            load = os.getloadavg()[0]
            try:
                r = build_once(checkout, toml, root / f"out-{label}-{n}", args.poll, args.max_rss_mb)
            except MemoryError as err:
                print(json.dumps({"variant": label, "pairs": n, "error": str(err)}), flush=True)
                continue
            r.update(variant=label, pairs=n, ms_per_pair=1000 * r["wall_s"] / n, cpu_ms_per_pair=1000 * r["cpu_s"] / n,
                     load_before=round(load, 2))
            base = next((b for b in results if b["variant"] == label), r)
            r.update(rss_ratio=r["peak_rss_mb"] / base["peak_rss_mb"], time_ratio=r["ms_per_pair"] / base["ms_per_pair"],
                     cpu_ratio=r["cpu_ms_per_pair"] / base["cpu_ms_per_pair"])
            results.append(r)
            print(json.dumps(r), flush=True)
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                                                   "args": vars(args), "results": results}, indent=1))
            Path(args.md).write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
