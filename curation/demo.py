"""``m3curate demo``: the embedded default, offline on a 2-core CPU.

It generates a synthetic multilingual corpus (``curation.synth``) in every input format
(``curation.demo_corpus``), then runs the real ``build`` on it, so the demo exercises the
same readers, stages and writer as a user's data. Later stages (language ID, translation,
code-switching, relevance, pre-training) add themselves here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from curation.config import load_config
from curation.pipeline import log, run_build
from curation.summary import print_summary


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace an earlier demo there")
        if not (out / "build.toml").exists() and not (out / "inputs").exists():
            raise FileExistsError(f"{out} does not look like an m3curate demo directory; refusing to delete it")
        for child in ("inputs", "build.toml", "models"):
            path = out / child
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def check_planted(manifest: dict, expected_path: Path) -> list[str]:
    """The bad inputs the generator planted, each matched against the reject counts."""
    if not expected_path.exists():
        return []
    expected = json.loads(expected_path.read_text())
    rejected = manifest["counts"]["rejected_by_reason"]
    missing = []
    for reason, n in expected.get("rejects", {}).items():
        if rejected.get(reason, 0) < n:
            missing.append(f"{reason}: expected at least {n}, got {rejected.get(reason, 0)}")
    return missing


def add_codeswitch(root: Path, langs: tuple[str, ...]) -> str:
    """MUSE dictionaries for the demo vocabulary (from the caption grammar's lexicon)."""
    from codeswitch.dictionary import write_muse_dictionaries
    from curation.synth import lexicon_pairs

    pairs = {("en", t): lexicon_pairs("en", t) for t in langs if t != "en"}
    write_muse_dictionaries(root / "inputs" / "dicts", pairs)
    return '\n[codeswitch]\ndictionaries = "inputs/dicts"\nmode = "single"\nvariants = 1\n'


def add_lid(root: Path, seed: int) -> str:
    """Train the demo's fastText LID model on generated sentences (not the captions it labels)."""
    from curation.lid_tools import evaluate_lid, train_lid, write_lid_training_data

    models = root / "models"
    models.mkdir(exist_ok=True)
    train, heldout = models / "lid-train.tsv", models / "lid-heldout.tsv"
    write_lid_training_data(str(train), 4000, seed + 101)
    write_lid_training_data(str(heldout), 800, seed + 202)
    info = train_lid(str(train), str(models / "lid.bin"), seed=seed)
    report = evaluate_lid(info["model"], str(heldout))
    log(f"trained LID model on {info['examples']} sentences: held-out accuracy {report['accuracy']:.3f}")
    return '\n[lid]\nmodel = "models/lid.bin"\nthreshold = 0.5\nlow_confidence = "reject"\nmismatch = "flag"\n'


def run_demo(out: str, samples: int = 600, seed: int = 0, overwrite: bool = False, beam_args: list[str] | None = None) -> dict:
    """Generate the corpus under OUT/inputs, build it into OUT/dataset; returns the manifest."""
    from curation.demo_corpus import write_corpus

    root = Path(out)
    _prepare(root, overwrite)
    log(f"generating {samples} synthetic images with captions (seed {seed}) in {root / 'inputs'}")
    toml = write_corpus(root, n=samples, seed=seed)
    from curation.synth import LANGUAGES

    stages = add_lid(root, seed) + add_codeswitch(root, LANGUAGES)
    with toml.open("a", encoding="utf-8") as handle:
        handle.write(stages)
    cfg = load_config(toml)
    dataset = str(root / "dataset")
    manifest = run_build(cfg, dataset, beam_args, overwrite=True)
    print_summary(manifest, dataset)
    missing = check_planted(manifest, root / "inputs" / "expected.json")
    if missing:
        raise RuntimeError("planted bad inputs were not rejected as expected: " + "; ".join(missing))
    from curation.report import write_report

    print(f"demo: all planted bad inputs were rejected with their expected reasons; dataset in {dataset}")
    print(f"demo: report in {write_report(dataset)}")
    return manifest
