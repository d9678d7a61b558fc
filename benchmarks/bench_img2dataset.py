"""m3curate build vs img2dataset on the same local JPEGs, in the same run.

Both tools read the same few thousand photo-like JPEGs (400-640 px long side, synthetic
scenes with smooth colour fields and sensor-like noise, so that JPEG is not trivially
compressible), shrink them so the long side is at most 256 px (no upscaling), re-encode
them as JPEG q90 and write Parquet:

- img2dataset (PyPI, in its own venv: ``--img2dataset /tmp/i2d/bin/img2dataset``) with
  ``file://`` URLs, 1 process, 1 thread, ``resize_mode=keep_ratio_largest`` (long side to
  ``image_size``, as m3curate's ``max_side``), ``resize_only_if_bigger``, its default
  downscale filter (OpenCV ``INTER_AREA``), ``extract_exif=False`` (less work for it);
- ``m3curate build`` on a JSONL naming the same files, ``max_side = 256``, ``quality = 90``,
  the default local runner (one worker, in process), once per ``[image] resize_method``
  named by ``--methods`` (default: ``lanczos``, the default filter, and ``bicubic``).

Each runs as a child process tree; reported: wall seconds, CPU seconds (user + sys of
the tree), peak RSS of the tree (sum over its processes, sampled every 20 ms), images per
CPU second, and quality: PSNR of each output image against a reference made from the
original at full resolution (Pillow LANCZOS on float channels, no rounding, no JPEG), at
the output's own size. Image generation is not timed. Also printed: the resident memory
of a bare ``import apache_beam`` (the floor of every m3curate build process).

    python3.11 -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset
    .venv/bin/python benchmarks/bench_img2dataset.py --images 3000 --img2dataset /tmp/i2d/bin/img2dataset \
        --methods lanczos,bicubic,bilinear --rounds 2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
from PIL import Image

from curation.config import RESIZE_METHODS
from curation.demo.synth import caption, render, sample_rng, sample_scene

MAX_SIDE = 256
Variant = tuple[str, str | None]  # (resize_method, folder put first on PYTHONPATH or None)
QUALITY = 90


def photo(seed: int, i: int) -> Image.Image:
    """A photo-like image: a scene, smooth colour fields and per-pixel noise, 400-640 px."""
    rng = random.Random(f"{seed}:{i}")
    long = rng.randint(400, 640)
    short = int(long * rng.uniform(0.62, 1.0))
    scene = render(sample_scene(sample_rng(seed, "i2d", i)), long)
    box = (0, 0, long, short) if rng.random() < 0.5 else (0, 0, short, long)
    base = np.asarray(scene.crop(box), dtype=np.float32)
    h, w = base.shape[:2]
    nprng = np.random.default_rng(rng.getrandbits(32))
    field = Image.fromarray(nprng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    mixed = 0.6 * base + 0.4 * np.asarray(field, dtype=np.float32) + nprng.normal(0.0, 7.0, (h, w, 3))
    return Image.fromarray(np.clip(mixed + 0.5, 0, 255).astype(np.uint8))


def make_images(root: Path, n: int, seed: int) -> list[tuple[str, str]]:
    """n JPEG files (q92, as photos on the web are) under root/images; (path, caption) each."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = root / "images" / f"{i:06d}.jpg"
        photo(seed, i).save(path, "JPEG", quality=92)
        scene = sample_scene(sample_rng(seed, "i2d", i))
        items.append((str(path), f"{caption(scene, 'en')} (photo {i})"))
    return items


class Tree:
    """A child process tree: peak RSS (summed over its processes, and of its largest
    process) sampled every ``period`` seconds."""

    def __init__(self, cmd: list[str], env: dict[str, str], period: float = 0.02):
        self.peak = self.peak_one = 0
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.period = period
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        root = psutil.Process(self.proc.pid)
        while self.proc.poll() is None:
            try:
                sizes = [p.memory_info().rss for p in [root, *root.children(recursive=True)]]
            except psutil.Error:
                sizes = [0]
            self.peak = max(self.peak, sum(sizes))
            self.peak_one = max(self.peak_one, *sizes)
            time.sleep(self.period)

    def wait(self) -> str:
        out = self.proc.communicate()[0].decode(errors="replace")
        self._thread.join()
        if self.proc.returncode:
            raise RuntimeError(f"{self.proc.args[0]} exited {self.proc.returncode}:\n{out[-3000:]}")
        return out


def measured(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run cmd; wall and CPU seconds (user + sys of the whole tree), peak RSS in MB (of the
    tree, and of its largest process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    tree = Tree(cmd, env)
    tree.wait()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "rss_mb": tree.peak / 2**20, "rss_one_mb": tree.peak_one / 2**20}


def run_img2dataset(exe: str, items: list[tuple[str, str]], work: Path) -> dict[str, float]:
    listing = work / "urls.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"url": [f"file://{p}" for p, _ in items], "caption": [c for _, c in items]}), listing)
    out = work / "i2d_out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [exe, f"--url_list={listing}", "--input_format=parquet", "--url_col=url", "--caption_col=caption",
           "--output_format=parquet", f"--output_folder={out}", "--processes_count=1", "--thread_count=1",
           f"--image_size={MAX_SIDE}", "--resize_mode=keep_ratio_largest", "--resize_only_if_bigger=True",
           f"--encode_quality={QUALITY}", "--encode_format=jpg", "--extract_exif=False",
           f"--number_sample_per_shard={len(items)}", "--enable_wandb=False"]
    return measured(cmd, {**os.environ, "OMP_NUM_THREADS": "1"})


def run_m3curate(items: list[tuple[str, str]], work: Path, variant: Variant) -> dict[str, float]:
    """``m3curate build`` with ``[image] resize_method = method``, into work/<out_dir(variant)>;
    with ``pythonpath`` put first on the build's PYTHONPATH (another Pillow build there)."""
    method, pythonpath = variant
    corpus = work / "m3_in"
    corpus.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"key": Path(p).stem, "caption": c, "image": p}) for p, c in items]
    (corpus / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    toml = corpus / f"build-{method}.toml"
    toml.write_text(
        f'[[sources]]\nname = "photos"\nformat = "jsonl"\npaths = ["{corpus}/pairs.jsonl"]\nlang = "en"\n'
        f'image_paths = "any"\n\n[image]\nmax_side = {MAX_SIDE}\nquality = {QUALITY}\nmin_side = 16\n'
        f'resize_method = "{method}"\n'
    )
    exe = str(Path(sys.executable).with_name("m3curate"))
    cmd = [exe, "build", "--config", str(toml), "--out", str(work / out_dir(variant)), "--overwrite"]
    env = {**os.environ, "M3CURATE_PROGRESS": "0"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    return measured(cmd, env)


def beam_import_rss_mb() -> float:
    """Resident MB of a fresh interpreter after ``import apache_beam`` (and psutil)."""
    code = "import apache_beam, psutil; print(psutil.Process().memory_info().rss)"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout) / 2**20


def reference(original: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The original resized to ``size`` with LANCZOS on float channels (no rounding)."""
    bands = [b.convert("F").resize(size, Image.Resampling.LANCZOS) for b in original.split()]
    return np.stack([np.asarray(b, dtype=np.float64) for b in bands], axis=-1)


def psnr(out_bytes: bytes, ref: np.ndarray) -> float:
    got = np.asarray(Image.open(io.BytesIO(out_bytes)).convert("RGB"), dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"output {got.shape} vs reference {ref.shape}")
    mse = float(np.mean((got - ref) ** 2))
    return 10 * np.log10(255.0**2 / mse) if mse else float("inf")


def outputs(work: Path, variants: list[Variant]) -> dict[str, dict[str, bytes]]:
    """tool -> original file's stem -> output JPEG bytes."""
    i2d: dict[str, bytes] = {}
    for shard in sorted((work / "i2d_out").glob("*.parquet")):
        for row in pq.read_table(shard, columns=["url", "jpg", "status"]).to_pylist():
            if row["status"] == "success":
                i2d[Path(row["url"]).stem] = row["jpg"]
    outs = {"img2dataset": i2d}
    for variant in variants:
        m3 = outs[m3_name(variant)] = {}
        for shard in sorted((work / out_dir(variant) / "pairs").glob("*.parquet")):
            for row in pq.read_table(shard, columns=["image", "source_id"]).to_pylist():
                m3[row["source_id"]] = row["image"]["bytes"]
    return outs


def m3_name(variant: Variant) -> str:
    return f"m3curate {variant[0]}" + (", Pillow-SIMD" if variant[1] else "")


def out_dir(variant: Variant) -> str:
    return f"m3_out_{variant[0]}" + ("_simd" if variant[1] else "")


def quality(items: list[tuple[str, str]], outs: dict[str, dict[str, bytes]], sample: int) -> dict[str, dict[str, float]]:
    """Mean per-image PSNR (dB) of each tool's outputs on the first ``sample`` images."""
    scores: dict[str, list[float]] = {tool: [] for tool in outs}
    sizes_differ = 0
    for path, _ in items[:sample]:
        original = Image.open(path).convert("RGB")
        refs: dict[tuple[int, int], np.ndarray] = {}
        dims = set()
        for tool, got in outs.items():
            data = got[Path(path).stem]
            size = Image.open(io.BytesIO(data)).size
            dims.add(size)
            if size not in refs:
                refs[size] = reference(original, size)
            scores[tool].append(psnr(data, refs[size]))
        sizes_differ += len(dims) > 1
    return {tool: {"psnr": float(np.mean(v)), "min": float(np.min(v)), "n": len(v), "sizes_differ": sizes_differ}
            for tool, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--img2dataset", default="/tmp/i2d/bin/img2dataset", help="img2dataset's console script")
    parser.add_argument("--psnr-sample", type=int, default=500, help="images scored for PSNR")
    parser.add_argument("--workdir", default="/tmp/m3curate-bench-i2d")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the tools this many times")
    parser.add_argument("--methods", default="lanczos,bicubic",
                        help=f"m3curate [image] resize_method values to run, comma-separated ({', '.join(RESIZE_METHODS)})")
    parser.add_argument("--simd-pythonpath", help="also run each method with this folder first on PYTHONPATH: one "
                        "holding a Pillow-SIMD build's PIL package (see curation/clean/README.md)")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in RESIZE_METHODS for m in methods):
        parser.error(f"--methods {args.methods!r}: use values from {RESIZE_METHODS}")
    work = Path(args.workdir)
    marker = work / f"images-{args.images}-{args.seed}.json"
    if marker.exists():
        items = [tuple(x) for x in json.loads(marker.read_text())]
    else:
        shutil.rmtree(work, ignore_errors=True)
        items = make_images(work, args.images, args.seed)
        marker.write_text(json.dumps(items))
    load = os.getloadavg()
    variants: list[Variant] = [(m, None) for m in methods]
    if args.simd_pythonpath:
        variants += [(m, args.simd_pythonpath) for m in methods]
    runs: dict[str, list[dict[str, float]]] = {"img2dataset": [], **{m3_name(v): [] for v in variants}}
    for _ in range(args.rounds):
        runs["img2dataset"].append(run_img2dataset(args.img2dataset, items, work))
        for variant in variants:
            runs[m3_name(variant)].append(run_m3curate(items, work, variant))
    outs = outputs(work, variants)
    for tool, got in outs.items():
        if len(got) != len(items):
            raise SystemExit(f"{tool} wrote {len(got)} of {len(items)} images")
    q = quality(items, outs, args.psnr_sample)
    report(args, items, runs, q, (load, os.getloadavg()))
    print(f"RSS of a bare `import apache_beam`: {beam_import_rss_mb():.0f} MB")


def report(args, items, runs, q, loads) -> None:
    n = len(items)
    load, end = loads
    print(f"\n{n} JPEGs 400-640 px -> long side {MAX_SIDE}, JPEG q{QUALITY}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}; best of {args.rounds} round(s) by CPU")
    print("| tool | wall s | CPU s | peak RSS MB, tree (largest process) | images / CPU s | PSNR dB (mean, min) |")
    print("|---|---|---|---|---|---|")
    best = {tool: min(r, key=lambda x: x["cpu"]) for tool, r in runs.items()}
    for tool, r in best.items():
        print(f"| {tool} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss_mb']:.0f} ({r['rss_one_mb']:.0f}) | {n / r['cpu']:.0f} | "
              f"{q[tool]['psnr']:.2f}, {q[tool]['min']:.2f} |")
    i2d = best["img2dataset"]
    print()
    for tool, m3 in best.items():
        if tool != "img2dataset":
            print(f"{tool} vs img2dataset: throughput per core {i2d['cpu'] / m3['cpu']:.2f}x, wall {m3['wall'] / i2d['wall']:.2f}x, "
                  f"peak RSS {m3['rss_mb'] / i2d['rss_mb']:.2f}x of its tree, {m3['rss_mb'] / i2d['rss_one_mb']:.2f}x of its "
                  f"largest process, PSNR {q[tool]['psnr'] - q['img2dataset']['psnr']:+.2f} dB "
                  f"({q[tool]['n']} images scored; output sizes differ on {q[tool]['sizes_differ']})")
    print("all rounds:", json.dumps({t: [{k: round(v, 2) for k, v in r.items()} for r in rs] for t, rs in runs.items()}))


if __name__ == "__main__":
    main()
