"""LID benchmark: ``DetectLanguage`` inside a Beam pipeline vs raw fastText ``model.predict``.

Same texts, same model, same run. What is timed:

* **raw**: ``model.predict(texts)`` of the fasttext package on the whole list (its batch
  API: one C++ call after a Python pass over the lines), best of ``--repeat``.
* **stage**: the ``lid`` stage inside a Beam pipeline (FnApiRunner, one worker,
  in-memory): pairs rows, one text each, go through ``DetectLanguage`` (default
  ``[lid]`` settings but ``batch_size``, timed at each ``--batch-sizes``) into a
  counting sink. Its cost is the pipeline's
  time minus that of the same pipeline without the stage (source → sink), both best of
  ``--repeat``, run alternately. So it includes everything the stage does to rows
  (batching, the fastText calls, the policy, new row dicts, emitting rows, counters) and
  excludes building the source rows, runner start-up and the sink. The model is loaded
  before timing (workers share the process' cached model); the load is reported apart.

Both wall-clock and process CPU time are reported; on a busy shared machine CPU time is
the steadier. Models: "demo", trained like the demo's (``train_lid`` defaults on
generated sentences of en/de/fr/es), labelling held-out generated captions; and
"lid176-shape", lid.176.bin's shape (dim 16, char n-grams 2-4, 2M buckets, 126 MB,
hierarchical softmax) over 176 pseudo-languages with their own vocabularies, labelling
sentences of 5-15 words: lid.176 itself cannot be downloaded here. ``--model`` adds any
model file (lid.176.bin, GlotLID), labelling the pseudo-language texts.

    python benchmarks/bench_lid.py --texts 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from curation.demo.synth import lid_texts
from curation.demo.writers import write_lid_training_data
from curation.lid.config import LidConfig
from curation.lid.model import load_lid_model
from curation.lid.stage import DetectLanguage
from curation.lid.tools import train_lid
from schemas.rows import text_entry

CHUNK = 5000
IMAGE = {"bytes": b"", "width": 1, "height": 1, "format": "JPEG", "sha256": "0" * 64}
SCRIPTS = ("abcdefghijklmnopqrstuvwxyzáéíóúàèçñöüäß", "абвгдежзийклмнопрстуфхцчшщыэюя", "αβγδεζηθικλμνξοπρστυφχψω")


def pseudo_language(j: int) -> tuple[list[str], list[float]]:
    """Language j: its own letters and syllables, a 3,000-word Zipfian lexicon."""
    rng = random.Random(f"lang:{j}")
    letters = rng.sample(SCRIPTS[0 if j % 6 < 4 else j % 6 - 3], 16)
    vowels, consonants = letters[:5], letters[5:]
    syllables = [rng.choice(consonants) + rng.choice(vowels) + rng.choice(["", *consonants]) for _ in range(60)]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(3000)]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    return words, weights


def pseudo_texts(n: int, langs: int, seed: int) -> list[tuple[str, str]]:
    """n (label, sentence) pairs over ``langs`` pseudo-languages, round-robin."""
    lexicons = [pseudo_language(j) for j in range(langs)]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words, weights = lexicons[i % langs]
        out.append((f"l{i % langs:03d}", " ".join(rng.choices(words, weights, k=rng.randint(5, 15)))))
    return out


def build_models(work: Path, n_texts: int) -> dict[str, tuple[str, list[str]]]:
    """{name: (model path, texts to label)}; the training texts differ from the labelled ones."""
    demo_data = work / "demo.tsv"
    write_lid_training_data(str(demo_data), 20_000, seed=101)
    train_lid(str(demo_data), str(work / "demo.bin"))
    big_data = work / "pseudo.tsv"
    with open(big_data, "w", encoding="utf-8") as f:
        for label, text in pseudo_texts(176 * 300, 176, seed=1):
            f.write(f"{label}\t{text}\n")
    train_lid(str(big_data), str(work / "lid176.bin"), bucket=2_000_000, loss="hs", epochs=5, lr=0.5)
    pseudo = [text for _, text in pseudo_texts(n_texts, 176, seed=2)]
    return {
        "demo": (str(work / "demo.bin"), [text for _, text in lid_texts(n_texts, seed=7)]),
        "lid176-shape": (str(work / "lid176.bin"), pseudo),
    }


class MakeRows(beam.DoFn):
    """Chunk number -> pairs rows of one text each, texts read from a file in setup()."""

    def __init__(self, path: str):
        self.path = path

    def setup(self) -> None:
        self.texts = Path(self.path).read_text(encoding="utf-8").split("\n")

    def process(self, chunk: int) -> Iterator[dict[str, Any]]:
        prov = {"file": "bench", "row": 0, "url": None, "member": None}
        for i in range(chunk * CHUNK, min(len(self.texts), (chunk + 1) * CHUNK)):
            yield {"id": f"r{i}", "source": "bench", "source_id": str(i), "split": "train", "provenance": prov,
                   "image": IMAGE, "regions": None, "texts": [text_entry(self.texts[i], "caption", "bench", "und")]}


class CountRows(beam.DoFn):
    """The sink: counts what reaches it (checked against the number of texts)."""

    def __init__(self, name: str):
        self.counter = Metrics.counter("bench", name)

    def process(self, row: Any) -> None:
        self.counter.inc()


def run_pipeline(texts_path: str, n: int, cfg: LidConfig | None) -> tuple[float, float, dict[str, int]]:
    """(wall s, CPU s, counters) of source -> [DetectLanguage] -> sink."""
    options = PipelineOptions(runner="FnApiRunner", direct_num_workers=1, direct_running_mode="in_memory")
    wall, cpu = time.perf_counter(), time.process_time()
    p = beam.Pipeline(options=options)
    rows = p | "Chunks" >> beam.Create(list(range((n + CHUNK - 1) // CHUNK))) | "Rows" >> beam.ParDo(MakeRows(texts_path))
    if cfg is not None:
        tables, rejects = {"pairs": rows, "parallel": p | "NoParallel" >> beam.Create([])} | DetectLanguage(cfg, "lid")
        rows = tables["pairs"]
        rejects | "CountRejects" >> beam.ParDo(CountRows("rejects"))
    rows | "CountRows" >> beam.ParDo(CountRows("rows"))
    result = p.run()
    result.wait_until_finish()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    counts = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"] if c.key.metric.namespace == "bench"}
    return wall, cpu, counts


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Best wall and best CPU seconds of ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def bench_model(name: str, path: str, texts: list[str], work: Path, repeat: int, sizes: list[int]) -> dict[str, Any]:
    """Raw predict, then the pipeline without and with the stage (per batch size), alternately."""
    n = len(texts)
    started = time.perf_counter()
    model = load_lid_model(path)
    load_s = time.perf_counter() - started
    raw_wall, raw_cpu = best(lambda: model.ft.predict(texts), repeat)
    wrapped_wall, _ = best(lambda: [model.predict(texts[i:i + 128], 1000) for i in range(0, n, 128)], repeat)
    texts_path = work / f"{name}.texts"
    texts_path.write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    base: list[tuple[float, float]] = []
    stage: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    for _ in range(repeat):  # alternate, so that all see the same machine load
        base.append(run_pipeline(str(texts_path), n, None)[:2])
        for size in sizes:
            wall, cpu, counts = run_pipeline(str(texts_path), n, LidConfig(model=path, batch_size=size))
            assert counts.get("rows", 0) + counts.get("rejects", 0) == n, counts
            stage[size].append((wall, cpu))
    base_wall, base_cpu = min(w for w, _ in base), min(c for _, c in base)
    out: dict[str, Any] = {
        "model": name, "file_mb": round(os.path.getsize(path) / 2**20, 1), "labels": len(model.labels),
        "texts": n, "mean_chars": round(sum(map(len, texts)) / n, 1), "load_s": round(load_s, 2),
        "raw_texts_per_s": round(n / raw_wall), "raw_cpu_texts_per_s": round(n / raw_cpu),
        "lidmodel_predict_texts_per_s": round(n / wrapped_wall), "pipeline_without_stage_s": round(base_wall, 2),
        "kept_rows": counts.get("rows", 0), "stage": {},
    }
    for size, runs in stage.items():
        wall = min(w for w, _ in runs) - base_wall
        cpu = min(c for _, c in runs) - base_cpu
        out["stage"][size] = {"pipeline_s": round(wall + base_wall, 2), "stage_s": round(wall, 3),
                              "texts_per_s": round(n / wall), "cpu_texts_per_s": round(n / cpu),
                              "ratio_wall": round(raw_wall / wall, 2), "ratio_cpu": round(raw_cpu / cpu, 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch-sizes", default="128,1024", help="lid.batch_size values to time (texts per batch)")
    parser.add_argument("--model", help="also benchmark this fastText LID model file (e.g. lid.176.bin)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lid-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        models = build_models(work, args.texts)
        print(f"models trained in {time.perf_counter() - started:.1f}s", flush=True)
        if args.model:
            models["given"] = (args.model, models["lid176-shape"][1])
        results = []
        for name, (path, texts) in models.items():
            sizes = [int(x) for x in args.batch_sizes.split(",")]
            results.append(bench_model(name, path, texts, work, args.repeat, sizes))
            print(json.dumps(results[-1]), flush=True)
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"apache-beam {beam.__version__}")
    print("| model | batch_size | raw predict texts/s | stage in Beam texts/s | ratio (wall) | ratio (CPU) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        for size, s in r["stage"].items():
            print(f"| {r['model']} | {size} | {r['raw_texts_per_s']:,} | {s['texts_per_s']:,} | "
                  f"{s['ratio_wall']:.2f}x | {s['ratio_cpu']:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
