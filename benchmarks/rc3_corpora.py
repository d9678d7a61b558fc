"""The corpora the RC3 ablation trains on (``benchmarks/ablation_rc3.py``): the corpus built by
the real pipeline, and copies of it whose weak texts carry other relevance values (a
constant, the generator's grades, an isotonic calibration fitted on the validation split),
each with its manifest's sizes and digests rewritten so the trainer accepts it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_corpus(root: Path, corpus: str, samples: int, held_out: int, validation: int, seed: int = 0) -> Path:
    """``root``/dataset built by the pipeline (kept if it is already there), with ``held_out``
    test images in inputs/heldout and ``validation`` images in inputs/validation."""
    dataset = root / "dataset"
    if (dataset / "manifest.json").exists():
        return dataset
    if corpus == "demo":
        from curation.demo.run import run_demo

        run_demo(str(root), samples=samples, seed=seed, overwrite=True, pretrain_minutes=0, held_out=held_out,
                 validation=validation)
        return dataset
    from curation.config import load_config as load_build_config
    from curation.demo.corpus import write_corpus
    from curation.demo.run import add_codeswitch, add_lid, add_relevance
    from curation.demo.synth import LANGUAGES
    from curation.pipeline import run_build

    root.mkdir(parents=True, exist_ok=True)
    toml = write_corpus(root, n=samples, seed=seed, weak_share=1.0, held_out=held_out, validation=validation)
    with toml.open("a", encoding="utf-8") as handle:
        handle.write(add_lid(root, seed) + add_codeswitch(root, LANGUAGES) + add_relevance(root))
    run_build(load_build_config(toml), str(dataset), overwrite=True)
    return dataset


def weak_truth(weak_jsonl: Path) -> dict[str, dict]:
    """source_id -> the generator's record (relevance_kind, relevance_grade) of each weak text."""
    return {rec["key"]: rec for rec in map(json.loads, weak_jsonl.read_text(encoding="utf-8").splitlines())}


def rescored_copy(dataset: Path, out: Path, relevance: Callable[[str, float | None], float | None],
                  scorer: Callable[[str | None], str | None]) -> Path:
    """A copy of ``dataset`` whose weak texts' relevance is ``relevance(source_id, built r)``
    and relevance_scorer ``scorer(built scorer id)``; other texts are untouched."""
    import pyarrow.parquet as pq
    from pyarrow.fs import LocalFileSystem

    from schemas.dataset import file_digest, load_manifest, shard_paths, validate_dataset
    from schemas.validate import validate_table

    if (out / "manifest.json").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(dataset, out.with_name(out.name + ".tmp"))
    tmp = out.with_name(out.name + ".tmp")
    for path in shard_paths(str(tmp), "pairs", load_manifest(str(tmp))):
        table = pq.read_table(path)
        rows = table.to_pylist()
        for row in rows:
            for t in row["texts"]:
                if t["kind"] == "weak":
                    t["relevance"] = relevance(row["source_id"], t["relevance"])
                    t["relevance_scorer"] = scorer(t["relevance_scorer"]) if t["relevance"] is not None else None
        new = table.from_pylist(rows, schema=table.schema)
        validate_table(new, "pairs")
        pq.write_table(new, path, row_group_size=pq.ParquetFile(path).metadata.row_group(0).num_rows, compression="zstd")
    manifest = load_manifest(str(tmp))
    for entry in manifest["files"]["pairs"]:  # the trainer checks every shard's size and sha256
        entry["size"], entry["sha256"] = file_digest(LocalFileSystem(), str(tmp / entry["path"]))
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    validate_dataset(str(tmp), ("pairs",))
    tmp.rename(out)  # only a finished copy carries the final name
    return out


def calibration(root: Path) -> Path:
    """The lexical scorer's isotonic calibration, fitted on the validation split's parallel
    pairs (aligned vs shuffled) with ``m3curate relevance calibrate``: never on test."""
    from curation.demo.writers import write_demo_pairs

    out = root / "calibration-validation.json"
    if not out.exists():
        pairs = root / "inputs" / "relevance-pairs-validation.tsv"
        write_demo_pairs(root / "inputs" / "validation" / "parallel.tsv", pairs)
        subprocess.run([sys.executable, "-c", "import sys; from curation.cli import main; sys.exit(main())",
                        "relevance", "calibrate", "--pairs", str(pairs), "--dictionaries", str(root / "inputs" / "dicts"),
                        "--method", "isotonic", "--out", str(out)], check=True, cwd=ROOT)
    return out


def dataset_for(variant: str, root: Path) -> Path:
    """The built dataset or one of its relevance variants (made once, then reused)."""
    built = root / "dataset"
    if variant == "built":
        return built
    if variant == "ones":
        return rescored_copy(built, root / "dataset-ones", lambda _s, _r: 1.0, lambda _i: "constant-1")
    if variant == "half":
        return rescored_copy(built, root / "dataset-half", lambda _s, _r: 0.5, lambda _i: "constant-0.5")
    if variant == "grades":
        truth = weak_truth(root / "inputs" / "weak.jsonl")
        return rescored_copy(built, root / "dataset-grades",
                             lambda sid, _r: truth[sid]["relevance_grade"] if sid in truth else None, lambda _i: "demo-grade")
    from curation.relevance.calibrate import Calibration

    cal = Calibration.load(calibration(root))

    def scorer_id(built_id: str | None) -> str:
        if built_id != cal.data["scorer"]:  # what CalibratedScorer refuses too
            raise ValueError(f"calibration fitted for {cal.data['scorer']!r}, the build scored with {built_id!r}")
        return f"{built_id}|{cal.id}"  # the id the [relevance] stage records with calibration_map

    return rescored_copy(built, root / "dataset-calibrated", lambda _s, r: None if r is None else cal([r])[0], scorer_id)
