"""fairseq checkpoints as users have them: trained by fairseq's canonical recipe.

``recipe_mt`` (conftest, ``fairseq_recipe``): subword-nmt BPE, ``fairseq-preprocess
--source-lang en --target-lang de``, ``fairseq-train data-bin`` with no language flags
(the checkpoint records none), a model directory of ``checkpoint_best.pt`` and
``dict.{en,de}.txt`` only. The languages come from ``--src/--tgt`` (or ``mt.source_langs``
and ``mt.targets``), and the engine's output equals ``fairseq-generate --remove-bpe``'s.
"""

from __future__ import annotations

import argparse
import shutil

import pytest

from translate.checkpoint import ModelDirError, model_info, safe_load
from translate.engine import Decoding
from translate.fairseq_engine import FairseqTranslator


def run_cli(argv: list[str]) -> int:
    from translate.cli import register

    parser = argparse.ArgumentParser(prog="m3curate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args, [])


def engine(model_dir, beam: int = 4, **kwargs) -> FairseqTranslator:
    kwargs.setdefault("languages", ("en", "de"))
    return FairseqTranslator(model_dir, Decoding(beam=beam, max_tokens=300), cpu_threads=1, **kwargs)


def test_the_recipe_checkpoint_records_no_languages(recipe_mt):
    assert sorted(p.name for p in recipe_mt.model_dir.iterdir()) == ["checkpoint_best.pt", "dict.de.txt",
                                                                     "dict.en.txt"]
    state = safe_load(recipe_mt.model_dir / "checkpoint_best.pt")
    with pytest.raises(ModelDirError, match=r"does not record its languages.*--src/--tgt.*mt\.source_langs"):
        model_info(state)
    assert model_info(state, ("en", "de")).pairs == (("en", "de"),)


@pytest.mark.parametrize("beam", [1, 4])
def test_engine_equals_fairseq_generate_remove_bpe(recipe_mt, recipe_generate_runs, beam):
    ours = engine(recipe_mt.model_dir, beam)
    assert ours.pieces.remove_bpe == "subword_nmt", "detected from the @@ pieces of dict.de.txt"
    sources = [src for src, _ in recipe_mt.test]
    hyps, theirs = ours.translate(sources, "en", "de"), recipe_generate_runs[beam]
    assert len(theirs) == len(sources) == 60
    assert [h.text for h in hyps] == [h.text for h in theirs]
    assert [h.score for h in hyps] == pytest.approx([h.score for h in theirs], abs=1e-5)
    assert not any("@@" in h.text for h in hyps)
    # the markers were there: without removal the same hypotheses keep them
    kept = engine(recipe_mt.model_dir, beam, remove_bpe="none").translate(sources, "en", "de")
    assert sum("@@ " in h.text for h in kept) >= len(sources) // 2
    assert [(h.text + " ").replace("@@ ", "").rstrip() for h in kept] == [h.text for h in theirs]
    refs = [tgt.replace("@@ ", "") for _, tgt in recipe_mt.test]
    assert sum(h.text == r for h, r in zip(hyps, refs, strict=True)) >= 0.4 * len(refs), "a trained model (35/60 measured)"


def test_mt_translate_takes_the_languages_from_src_and_tgt(recipe_mt, recipe_generate_runs, tmp_path):
    src, out = tmp_path / "in.bpe.en", tmp_path / "out.de"
    src.write_text("".join(f"{s}\n" for s, _ in recipe_mt.test), encoding="utf-8")
    assert run_cli(["mt", "translate", "--model", str(recipe_mt.model_dir), "--src", "en", "--tgt", "de",
                    "--threads", "1", "--input", str(src), "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == [h.text for h in recipe_generate_runs[4]]


def test_a_build_takes_them_from_source_langs_and_targets(recipe_mt):
    from translate.config import TranslateConfig, TranslateConfigError
    from translate.loading import check_model

    model = str(recipe_mt.model_dir)
    assert check_model(TranslateConfig(model=model, source_langs=["en"], targets=["de"])).pairs == (("en", "de"),)
    mapped = TranslateConfig(model=model, source_langs=["eng"], targets=["deu"], lang_codes={"eng": "en", "deu": "de"})
    assert check_model(mapped).pairs == (("en", "de"),)
    with pytest.raises(TranslateConfigError, match="does not record its languages.*mt.source_langs and mt.targets"):
        check_model(TranslateConfig(model=model, targets=["de"]))


def test_a_missing_or_wrong_dictionary_is_named(recipe_mt, tmp_path):
    md = recipe_mt.model_dir
    with pytest.raises(ModelDirError, match=r"no dict\.fr\.txt: the checkpoint translates en->fr \(the languages "
                                            r"given.*has dict\.de\.txt, dict\.en\.txt$"):
        engine(md, languages=("en", "fr"))
    # fairseq-train's --save-dir: checkpoints, no dictionaries
    with pytest.raises(ModelDirError, match=r"no dict\.en\.txt and dict\.de\.txt.*--destdir.*no dictionary$"):
        engine(recipe_mt.checkpoints)
    sizes = {lang: len((md / f"dict.{lang}.txt").read_text(encoding="utf-8").splitlines()) for lang in ("en", "de")}
    assert sizes["en"] != sizes["de"]
    with pytest.raises(ModelDirError, match=r"translates en->de, not de->en.*swap the languages"):
        engine(md, languages=("de", "en"))
    one = tmp_path / "one"
    shutil.copytree(md, one)
    (one / "dict.de.txt").unlink()  # separate dictionaries: the other one cannot stand in
    with pytest.raises(ModelDirError, match=r"no dict\.de\.txt"):
        engine(one)
    shutil.copyfile(md / "dict.en.txt", one / "dict.de.txt")
    with pytest.raises(ModelDirError, match=r"dict\.en\.txt holds \d+ tokens and dict\.de\.txt \d+, but .* not the "):
        engine(one)


def test_the_checkpoint_is_found_by_its_training_name(recipe_mt, tmp_path):
    for name in ("checkpoint_last.pt", "checkpoint3.pt"):
        other = tmp_path / name.split(".")[0]
        other.mkdir()
        for f in ("dict.en.txt", "dict.de.txt"):
            shutil.copyfile(recipe_mt.model_dir / f, other / f)
        shutil.copyfile(recipe_mt.checkpoints / "checkpoint_best.pt", other / name)
        if name == "checkpoint3.pt":
            with pytest.raises(ModelDirError, match="no checkpoint model.pt or checkpoint_best.pt or checkpoint_last"):
                engine(other)
            assert engine(other, beam=1, checkpoint=name).supports("en", "de")
        else:
            assert engine(other, beam=1).translate(["a red circle"], "en", "de")[0].text


@pytest.mark.parametrize("beam", [1, 4])
def test_joined_dictionary_engine_equals_fairseq_generate(recipe_joined_mt, joined_generate_runs, beam):
    md = recipe_joined_mt.model_dir
    assert (md / "dict.en.txt").read_bytes() == (md / "dict.de.txt").read_bytes()
    ours = engine(md, beam)
    assert ours.src_dict == ours.tgt_dict
    sources = [src for src, _ in recipe_joined_mt.test]
    hyps, theirs = ours.translate(sources, "en", "de"), joined_generate_runs[beam]
    assert [h.text for h in hyps] == [h.text for h in theirs]
    assert [h.score for h in hyps] == pytest.approx([h.score for h in theirs], abs=1e-5)


def test_a_joined_dictionary_under_one_name_serves_both_sides(recipe_joined_mt, joined_generate_runs, tmp_path):
    sources = [src for src, _ in recipe_joined_mt.test][:20]
    expected = [h.text for h in joined_generate_runs[4]][:20]
    for keep, name in (("dict.en.txt", "dict.en.txt"), ("dict.de.txt", "dict.de.txt"), ("dict.en.txt", "dict.txt")):
        one = tmp_path / f"{keep}-as-{name}"
        one.mkdir()
        shutil.copyfile(recipe_joined_mt.model_dir / "checkpoint_best.pt", one / "checkpoint_best.pt")
        shutil.copyfile(recipe_joined_mt.model_dir / keep, one / name)
        assert [h.text for h in engine(one).translate(sources, "en", "de")] == expected, name


def test_ctranslate2_on_the_recipe_checkpoint(recipe_mt, recipe_ct2, recipe_joined_mt, tmp_path):
    from translate.ct2_engine import CT2Translator, convert_checkpoint

    sources = [src for src, _ in recipe_mt.test]
    fs = engine(recipe_mt.model_dir, beam=1).translate(sources, "en", "de")
    ct = CT2Translator(recipe_ct2, Decoding(beam=1), cpu_threads=1)
    assert ct.pieces.remove_bpe == "subword_nmt" and ct.supports("en", "de")
    hyps = ct.translate(sources, "en", "de")
    assert sum(a.text == b.text for a, b in zip(fs, hyps, strict=True)) >= 0.95 * len(sources)
    with pytest.raises(ModelDirError, match="does not record its languages"):
        convert_checkpoint(recipe_mt.model_dir, tmp_path / "x")
    one = tmp_path / "joined-one-dict"
    one.mkdir()
    for f in ("checkpoint_best.pt", "dict.en.txt"):
        shutil.copyfile(recipe_joined_mt.model_dir / f, one / f)
    assert run_cli(["mt", "convert", "--model", str(one), "--out", str(tmp_path / "jct2"), "--src", "en",
                    "--tgt", "de"]) == 0
    joined = CT2Translator(tmp_path / "jct2", Decoding(beam=1), cpu_threads=1).translate(sources[:5], "en", "de")
    assert all(h.text and "@@" not in h.text for h in joined)
