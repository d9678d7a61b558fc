"""The CLI end to end: bad inputs land in rejects with the right reason, nothing is lost,
re-runs refuse or replace cleanly, and output bytes do not depend on the runner setup."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.cli import main
from schemas.dataset import validate_dataset


def jpeg(colour: tuple[int, int, int], size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def bomb_png() -> bytes:
    """A small file whose header promises 400 megapixels."""
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")
    return buf.getvalue()


EXPECTED = {
    "image/truncated": 1,
    "image/decompression_bomb": 1,
    "image/not_an_image": 1,
    "text/empty": 1,
    "text/too_long": 1,
    "read/missing_column": 2,
    "read/invalid_utf8": 1,
    "read/malformed_row": 1,
    "dedup/duplicate": 1,
}


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    images = root / "images"
    images.mkdir()
    good = [jpeg((200, 30 * i, 10)) for i in range(4)]
    for i, data in enumerate(good):
        (images / f"good{i}.jpg").write_bytes(data)
    (images / "truncated.jpg").write_bytes(good[0][: len(good[0]) // 2])
    (images / "bomb.png").write_bytes(bomb_png())
    (images / "notes.jpg").write_bytes(b"<html>not an image</html>")
    lines = [json.dumps({"key": f"good{i}", "caption": f"a red square number {i}", "image": f"images/good{i}.jpg"}) for i in range(4)]
    lines += [
        json.dumps({"key": "dup", "caption": "a red square number 0", "image": "images/good0.jpg"}),
        json.dumps({"key": "trunc", "caption": "a truncated picture", "image": "images/truncated.jpg"}),
        json.dumps({"key": "bomb", "caption": "a decompression bomb", "image": "images/bomb.png"}),
        json.dumps({"key": "html", "caption": "not an image at all", "image": "images/notes.jpg"}),
        json.dumps({"key": "empty", "caption": "   ", "image": "images/good1.jpg"}),
        json.dumps({"key": "huge", "caption": "word " * 2000, "image": "images/good2.jpg"}),
        json.dumps({"key": "nocap", "image": "images/good3.jpg"}),
        json.dumps({"key": "noimg", "caption": "where is the image"}),
        '{"key": "broken", "caption": ',
    ]
    data = "\n".join(lines).encode() + b'\n{"key": "utf8", "caption": "caf\xe9 latin-1", "image": "images/good1.jpg"}\n'
    (root / "captions.jsonl").write_bytes(data)
    (root / "build.toml").write_text(
        """
[[sources]]
name = "bad"
format = "jsonl"
paths = ["captions.jsonl"]
lang = "en"

[text]
max_chars = 1000

[output]
rows_per_shard = 2
"""
    )
    return root


def build(root: Path, out: Path, *extra: str) -> int:
    return main(["build", "--config", str(root / "build.toml"), "--out", str(out), *extra])


def test_bad_inputs_are_rejected_with_reasons_and_nothing_is_lost(bad_inputs, tmp_path, capsys):
    out = tmp_path / "ds"
    assert build(bad_inputs, out) == 0
    manifest = validate_dataset(str(out))
    counts = manifest["counts"]
    assert counts["rejected_by_reason"] == EXPECTED
    assert counts["input_records"] == 14
    assert counts["output_records"] == 4
    assert counts["input_records"] == counts["output_records"] + counts["rejected_records"]
    assert counts["reconciled"]
    rejects = pq.read_table(out / "rejects").to_pylist()
    assert len(rejects) == 10
    by_id = {r["source_id"]: r for r in rejects}
    assert by_id["huge"]["raw_truncated"] and "max 1000" in by_id["huge"]["detail"]
    assert json.loads(by_id["trunc"]["raw"])["row"]["caption"] == "a truncated picture"
    assert "\\udce9" in by_id["utf8"]["raw"] or "\\xe9" in by_id["utf8"]["raw"]
    # the smallest source_id of the duplicates is kept, whatever the order rows arrive in
    assert by_id["good0"]["reason"] == "duplicate" and "bad:dup" in by_id["good0"]["detail"]
    printed = capsys.readouterr().out
    assert "reconciled: True" in printed and "image/decompression_bomb" in printed


def test_rerun_refuses_then_overwrites_with_identical_bytes(bad_inputs, tmp_path, capsys):
    out = tmp_path / "ds"
    assert build(bad_inputs, out) == 0
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.parquet")}
    first_manifest = (out / "manifest.json").read_bytes()
    assert build(bad_inputs, out) == 1
    assert "already holds a dataset" in capsys.readouterr().err
    assert build(bad_inputs, out, "--overwrite", "--direct_num_workers", "2", "--direct_running_mode", "multi_threading") == 0
    second = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.parquet")}
    assert first == second
    assert (out / "manifest.json").read_bytes() == first_manifest
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_bad_config_fails_before_the_pipeline_with_a_clear_message(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[sources]]\nname = "x"\nformat = "jsonl"\npaths = ["nothing-*.jsonl"]\n[image]\nformat = "GIF"\n')
    assert main(["build", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "image.format = 'GIF'" in err and "JPEG" in err
    cfg.write_text('[[sources]]\nname = "x"\nformat = "jsonl"\npaths = ["nothing-*.jsonl"]\n')
    assert main(["build", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 1
    assert "no file matches" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_help_has_examples(capsys):
    for command in ("build", "demo", "validate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "example:" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_end_to_end(demo_out):
    manifest = validate_dataset(str(demo_out / "dataset"))
    assert manifest["counts"]["reconciled"]
    assert set(manifest["languages"]) >= {"en", "de", "fr", "es"}
    assert (demo_out / "dataset" / "report.html").exists() and (demo_out / "pretrain").is_dir()


def test_report_shows_counts_rejects_and_samples(bad_inputs, tmp_path):
    out = tmp_path / "ds"
    assert build(bad_inputs, out) == 0
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "reconciled: <b>True</b>" in page and "image/decompression_bomb" in page
    assert page.count("data:image/jpeg;base64,") == 4 and "<svg" in page
