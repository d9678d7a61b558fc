"""``m3curate codeswitch``: a text file in, JSONL with spans out (the same for the same
seed), coverage statistics per language, and help with examples."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from cs_helpers import check_spans, demo_dictionaries

from codeswitch.cli import register
from codeswitch.switch import Span, Switched

LINES = ["A small red triangle on the left.", "Zzz qqq", "", "A LARGE BLUE STAR, a square and a green diamond!"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="m3curate")
    register(parser.add_subparsers(dest="command"))
    args, rest = parser.parse_known_args(argv)
    assert rest == []
    return args.func(args, rest)


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "in.txt").write_text("\n".join(LINES) + "\n")
    return demo_dictionaries(tmp_path), tmp_path / "in.txt"


def test_switches_a_file_to_jsonl_with_spans(files, tmp_path: Path):
    dicts, src = files
    out = tmp_path / "out.jsonl"
    argv = ["codeswitch", "--dict", str(dicts), "--mode", "multi", "--ratio", "0.7", "--variants", "2",
            "--seed", "4", "--out", str(out), str(src)]
    assert main(argv) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["line"], r["variant"]) for r in records] == [(i, v) for i in range(1, 5) for v in range(2)]
    for r in records:
        assert r["source"] == LINES[r["line"] - 1] and r["lang"] == "en"
        check_spans(r["source"], Switched(r["text"], [Span(**s) for s in r["spans"]], []))
    assert all(r["spans"] for r in records if r["line"] in (1, 4))
    assert all(not r["spans"] and r["text"] == r["source"] for r in records if r["line"] in (2, 3))
    first = out.read_text()
    assert main(argv) == 0 and out.read_text() == first  # same seed, same bytes
    assert main([*argv[:-4], "5", *argv[-3:]]) == 0 and out.read_text() != first


def test_stats_reports_coverage_per_language(files, capsys):
    dicts, src = files
    assert main(["codeswitch", "stats", "--json", "--dict", str(dicts), "--langs", "de,fr", str(src)]) == 0
    report = json.loads(capsys.readouterr().out)
    # words: 7 + 2 + 0 + 10; covered: a small red triangle left (not "on the") + all 10 of line 4
    assert (report["texts"], report["words"], report["covered_words"], report["texts_without_coverage"]) == (4, 19, 15, 2)
    assert report["langs"]["de"] == {"covered_words": 15, "coverage": round(15 / 19, 4), "texts_without_coverage": 2}
    assert report["langs"]["fr"]["covered_words"] == 14  # en-fr "triangle triangle" switches nothing: dropped
    assert report["dictionaries"]["en-de"]["entries"] > 40
    assert main(["codeswitch", "stats", "--dict", str(dicts), str(src)]) == 0
    assert "coverage" in capsys.readouterr().out


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["codeswitch", "--help"])
    assert "example:" in capsys.readouterr().out


def test_bad_arguments_are_one_clear_error(files):
    dicts, src = files
    with pytest.raises(ValueError, match="--dict: give one directory, or one or more PAIR=FILE"):
        main(["codeswitch", "--dict", str(dicts), "--dict", "en-de=x.txt", str(src)])
    with pytest.raises(ValueError, match="codeswitch.word_ratio = 2.0"):
        main(["codeswitch", "--dict", str(dicts), "--ratio", "2", str(src)])
    with pytest.raises(ValueError, match=r"no \{src\}-\{tgt\}.txt dictionary for the configured source_langs \['fr'\]"):
        main(["codeswitch", "--dict", str(dicts), "--source-lang", "fr", str(src)])


def test_stats_help_is_its_own(capsys: pytest.CaptureFixture[str]):
    from curation.cli import main as cli

    with pytest.raises(SystemExit) as done:
        cli(["codeswitch", "stats", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: m3curate codeswitch stats FILE") and "--json" in out and "example:" in out


def test_a_closed_pipe_ends_quietly(files, tmp_path: Path):
    """``m3curate codeswitch ... | head -1``: no BrokenPipeError, exit 0."""
    import subprocess
    import sys

    dicts, _ = files
    big = tmp_path / "big.txt"
    big.write_text((LINES[0] + "\n") * 20000)
    cmd = [sys.executable, "-m", "curation.cli", "codeswitch", "--dict", str(dicts), str(big)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"{")
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"BrokenPipe" not in err and b"error" not in err


def test_out_folder_is_made(files, tmp_path: Path):
    dicts, text = files
    out = tmp_path / "x" / "y" / "cs.jsonl"
    assert main(["codeswitch", "--dict", str(dicts), "--out", str(out), str(text)]) == 0
    assert len(out.read_text().splitlines()) == len(LINES)
