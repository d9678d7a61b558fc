"""``m3curate mt``: translate a file, score it, convert the model; every parser has examples."""

from __future__ import annotations

import argparse
import json

import pytest

from translate.cli import register


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="m3curate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args, [])


def test_help_of_every_command_has_examples(capsys):
    for argv in (["mt"], ["mt", "translate"], ["mt", "eval"], ["mt", "convert"], ["mt", "train-demo"]):
        with pytest.raises(SystemExit):
            run([*argv, "--help"])
        assert "example:" in capsys.readouterr().out


def test_translate_a_file_then_score_it(tiny_mt, tmp_path, capsys):
    pairs = tiny_mt.test["de"][:30]
    src, ref, hyp = tmp_path / "in.en", tmp_path / "ref.de", tmp_path / "new" / "out.de"  # folder made
    src.write_text("".join(f"{s}\n" for s, _ in pairs) + "\n", encoding="utf-8")  # + an empty line
    ref.write_text("".join(f"{t}\n" for _, t in pairs) + "\n", encoding="utf-8")
    assert run(["mt", "translate", "--model", str(tiny_mt.model_dir), "--src", "en", "--tgt", "de", "--beam", "1",
                "--threads", "1", "--input", str(src), "--output", str(hyp), "--scores", str(tmp_path / "scores" / "s")]) == 0
    lines = hyp.read_text(encoding="utf-8").split("\n")
    assert len(lines) == len(pairs) + 2 and lines[-2] == "", "one output line per input line, empty stays empty"
    assert "1 line(s) left empty" in capsys.readouterr().err
    assert run(["mt", "eval", "--hyp", str(hyp), "--ref", str(ref)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sentences"] == len(pairs) + 1 and result["bleu"] > 80 and result["chrf"] > 90


def test_eval_on_known_input(tmp_path, capsys):
    from translate.evaluate import score

    same = score(["the cat sat on the mat", "a red circle"], [["the cat sat on the mat", "a red circle"]])
    assert same["bleu"] == 100.0 and same["chrf"] == 100.0 and "nrefs:1" in same["bleu_signature"]
    assert score(["xyz qqq"], [["the cat sat on the mat"]])["bleu"] == 0.0
    (tmp_path / "h").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "r").write_text("a\n", encoding="utf-8")
    with pytest.raises(ValueError, match="r has 1 lines but .*h has 2"):
        run(["mt", "eval", "--hyp", str(tmp_path / "h"), "--ref", str(tmp_path / "r")])


def test_convert_int8_and_translate_with_ctranslate2(tiny_mt, tmp_path, capsys):
    out = tmp_path / "ct2"
    assert run(["mt", "convert", "--model", str(tiny_mt.model_dir), "--out", str(out), "--quantization", "int8"]) == 0
    assert (out / "model.bin").is_file() and (out / "m3curate_mt.json").is_file()
    src = tmp_path / "in.en"
    src.write_text("a small red circle on the left\n", encoding="utf-8")
    assert run(["mt", "translate", "--model", str(out), "--engine", "ctranslate2", "--src", "en", "--tgt", "fr",
                "--input", str(src), "--output", str(tmp_path / "o"), "--beam", "1"]) == 0
    assert (tmp_path / "o").read_text(encoding="utf-8") == "un petit cercle rouge à gauche\n"


def test_long_files_log_progress_and_keep_the_order(monkeypatch, capsys):
    """mt translate logs lines done, rate and ETA on long files (issue 17, point 4)."""
    import time

    from translate import cli as mt_cli

    class Echo:
        def translate(self, lines, src, tgt):
            time.sleep(0.02)
            return [f"{tgt}:{line}" for line in lines]

    monkeypatch.setattr(mt_cli, "CHUNK", 3)
    monkeypatch.setattr(mt_cli, "PROGRESS_EVERY", 0.01)
    lines = [f"s{i}" for i in range(10)]
    assert mt_cli.translate_with_progress(Echo(), lines, "en", "de") == [f"de:{line}" for line in lines]
    err = capsys.readouterr().err
    assert "lines/s" in err and "/10 lines" in err
