"""``m3curate demo``: the embedded default, offline on a 2-core CPU.

It generates a synthetic multilingual corpus (``curation.demo.synth``) in every input format
(``curation.demo.corpus``), then runs the real ``build`` on it, so the demo exercises the
same readers, stages and writer as a user's data. Later stages (language ID, translation,
code-switching, relevance, pre-training) add themselves here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curation.config import load_config
from curation.demo.lexicon import LANGUAGES
from curation.output.summary import print_summary
from curation.pipeline import log, run_build


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace an earlier demo there")
        if not (out / "build.toml").exists() and not (out / "inputs").exists():
            raise FileExistsError(f"{out} does not look like an m3curate demo directory; refusing to delete it")
        for child in ("inputs", "build.toml", "models", "pretrain"):
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
    """MUSE dictionaries en -> each other language of ``langs`` for the demo vocabulary (from
    the caption grammar's lexicon) in inputs/dicts, and the [codeswitch] stage that reads them."""
    from curation.demo.writers import write_demo_dictionaries

    write_demo_dictionaries(root / "inputs" / "dicts", langs)
    return '\n[codeswitch]\ndictionaries = "inputs/dicts"\nmode = "single"\nvariants = 1\n'


def add_lid(root: Path, seed: int, langs: Sequence[str] = LANGUAGES) -> str:
    """Train the demo's fastText LID model on generated sentences of ``langs`` (not the
    captions it labels)."""
    from curation.demo.writers import write_lid_training_data
    from curation.lid.tools import evaluate_lid, train_lid

    models = root / "models"
    models.mkdir(exist_ok=True)
    train, heldout = models / "lid-train.tsv", models / "lid-heldout.tsv"
    write_lid_training_data(str(train), 4000, seed + 101, langs)
    write_lid_training_data(str(heldout), 800, seed + 202, langs)
    info = train_lid(str(train), str(models / "lid.bin"), seed=seed)
    report = evaluate_lid(info["model"], str(heldout))
    log(f"trained LID model on {info['examples']} sentences: held-out accuracy {report['accuracy']:.3f}")
    return '\n[lid]\nmodel = "models/lid.bin"\nthreshold = 0.5\nlow_confidence = "reject"\nmismatch = "flag"\n'


MT_TARGETS = ("de", "fr", "es")


def add_mt(root: Path, seed: int, targets: Sequence[str] = MT_TARGETS) -> str:
    """Train the demo's tiny multilingual fairseq transformer (en → each of ``targets``,
    by default de, fr, es) on generated parallel captions, with fairseq-train; about a
    minute on 2 cores. The model is trained here, so any language of the lexicon can be a
    target (Italian too)."""
    from curation.demo.synth import parallel_captions
    from translate.demo_model import train_demo_model

    log(f"training the demo's tiny fairseq transformer (en -> {', '.join(targets)})")
    pairs = {lang: parallel_captions(800, seed + 7, "en", lang) for lang in targets}
    model = train_demo_model(root / "models" / "mt", pairs, log=log)
    rel = model.relative_to(root)
    listed = ", ".join(f'"{t}"' for t in targets)
    return (f'\n[mt]\nmodel = "{rel}"\ntargets = [{listed}]\nsource_langs = ["en"]\nbeam = 4\n'
            'cpu_threads = 1\nmodel_id = "fairseq:demo-tiny"\n')


def evaluate_mt(root: Path, cfg: Any) -> dict[str, dict[str, float]]:
    """BLEU and chrF of the demo model on held-out captions (English sides never trained on)."""
    import csv

    from translate.evaluate import score
    from translate.loading import load_translator

    with (root / "inputs" / "heldout" / "parallel.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    model = load_translator(cfg.mt)
    results = {}
    for lang in cfg.mt.targets:
        pairs = [(r["src"], r["tgt"]) for r in rows if r["tgt_lang"] == lang][:200]
        hyps = model.translate([src for src, _ in pairs], "en", lang)
        metrics = score([h.text for h in hyps], [[tgt for _, tgt in pairs]])
        results[lang] = {"sentences": len(pairs), "bleu": round(metrics["bleu"], 1), "chrf": round(metrics["chrf"], 1)}
    return results


def add_relevance(root: Path) -> str:
    """RC3 relevance of the weak texts with the lexical scorer (the [codeswitch]
    dictionaries), and the two files ``m3curate relevance eval`` takes: the held-out
    parallel captions as aligned pairs, and the weak texts with their constructed grades
    (curation/demo/weak.py)."""
    from curation.demo.writers import write_demo_graded, write_demo_pairs

    write_demo_pairs(root / "inputs" / "heldout" / "parallel.tsv", root / "inputs" / "relevance-pairs.tsv")
    write_demo_graded(root / "inputs" / "weak.jsonl", root / "inputs" / "relevance-graded.tsv")
    return '\n[relevance]\nscorer = "lexical"\nno_anchor = "reject"\nthreshold = 0.0\n'


def add_regions_concepts(root: Path) -> str:
    """The [regions] stage with the demo's shape detector (every image gets its shapes'
    boxes, labels and features; an image where none is found is kept without regions) and
    the [concepts] stage with the generator's words as the concept vocabulary
    (inputs/concepts.txt), reached from other languages through the [codeswitch]
    dictionaries."""
    from curation.concepts.vocab import demo_vocabulary, write_vocabulary
    from curation.demo import synth

    write_vocabulary(str(root / "inputs" / "concepts.txt"), demo_vocabulary(synth))
    return '\n[regions]\nsource = "shapes"\nmissing = "keep"\n\n[concepts]\nvocabulary = "inputs/concepts.txt"\n'


def evaluate_relevance(root: Path, cfg: Any) -> list[dict[str, Any]]:
    """What ``m3curate relevance eval --graded`` says on the demo, for the lexical scorer
    and the translate scorer (the demo's en -> xx [mt] model, translating the anchor)."""
    import dataclasses

    from curation.relevance.build import build_scorer
    from curation.relevance.eval import score_report

    inputs = root / "inputs"
    out = []
    for name in ("lexical", "translate"):
        scorer = build_scorer(dataclasses.replace(cfg.relevance, scorer=name), cfg.mt)
        out.append(score_report(scorer, inputs / "relevance-pairs.tsv", inputs / "relevance-graded.tsv"))
    return out


def run_demo(out: str, samples: int = 600, seed: int = 0, overwrite: bool = False, beam_args: list[str] | None = None,
             pretrain_minutes: float = 3.0, langs: Sequence[str] = LANGUAGES, held_out: int | float = 0.1,
             validation: int | float = 0) -> dict:
    """Generate the corpus under OUT/inputs, build it into OUT/dataset; returns the manifest.

    ``langs``: caption languages ("en" first; add "it" for Italian): the LID model, the MT
    targets and the code-switching dictionaries follow them. ``held_out`` / ``validation``:
    test (inputs/heldout) and validation (inputs/validation) images, each a count or a
    fraction of ``samples`` (``curation.demo.corpus.write_corpus``); the pre-training
    demo evaluates on the test set."""
    from curation.demo.corpus import write_corpus

    targets = tuple(lang for lang in langs if lang != "en")
    if "en" not in langs or not targets:
        raise ValueError(f"langs = {list(langs)}: give 'en' and at least one other language, e.g. en,de,fr,es,it")
    root = Path(out)
    _prepare(root, overwrite)
    log(f"generating {samples} synthetic images with captions (seed {seed}) in {root / 'inputs'}")
    toml = write_corpus(root, n=samples, seed=seed, langs=langs, held_out=held_out,
                        validation=validation)
    stages = add_lid(root, seed, langs) + add_mt(root, seed, targets) + add_codeswitch(root, tuple(langs))
    stages += add_relevance(root) + add_regions_concepts(root)
    with toml.open("a", encoding="utf-8") as handle:
        handle.write(stages)
    cfg = load_config(toml)
    dataset = str(root / "dataset")
    manifest = run_build(cfg, dataset, beam_args, overwrite=True)
    print_summary(manifest, dataset)
    mt_scores = evaluate_mt(root, cfg)
    print("mt eval on held-out captions (en -> xx): " + ", ".join(
        f"{lang}: BLEU {m['bleu']}, chrF {m['chrf']} ({m['sentences']} sentences)" for lang, m in mt_scores.items()))
    manifest["mt_eval"] = mt_scores
    manifest["relevance_eval"] = evaluate_relevance(root, cfg)
    for rel in manifest["relevance_eval"]:
        print(f"relevance eval ({rel['scorer']}): AUC aligned vs shuffled {rel['auc']}, Spearman vs constructed "
              f"grades {rel['spearman']}; mean score by grade {rel['mean_by_grade']}")
    missing = check_planted(manifest, root / "inputs" / "expected.json")
    if missing:
        raise RuntimeError("planted bad inputs were not rejected as expected: " + "; ".join(missing))
    from curation.output.report import write_report

    print(f"demo: all planted bad inputs were rejected with their expected reasons; dataset in {dataset}")
    print(f"demo: report in {write_report(dataset)}")
    if pretrain_minutes > 0:
        from pretrain.demo import run_demo_training

        log(f"pre-training the tiny RC3 model for about {pretrain_minutes} minutes on CPU")
        result = run_demo_training(dataset, str(root / "pretrain"), minutes=pretrain_minutes,
                                   heldout=str(root / "inputs" / "heldout"))
        print(f"demo: held-out retrieval (chance mean recall {result['chance_r_mean']:.1f}); run in {root / 'pretrain'}")
        manifest["pretrain_eval"] = result["eval"]
    return manifest
