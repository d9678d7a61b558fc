"""``m3curate export``: round trips through the real readers (webdataset, datasets, CCLM's
line format) on the session's demo build; counts, ids, image bytes and texts must be equal.

Tests that need ``webdataset`` or ``datasets`` skip, naming the package, when it is missing
(they are in the ``export`` extra).
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.cli import main
from curation.output.export import ExportConfig, ExportError, chosen_text, run_export, select_texts
from schemas.dataset import shard_paths

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub


def rows_of(ds: Path, table: str) -> list[dict[str, Any]]:
    return [r for p in shard_paths(str(ds), table) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def ds(demo_out: Path) -> Path:
    return demo_out / "dataset"


@pytest.fixture(scope="module")
def pairs(ds: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows_of(ds, "pairs")}


def test_text_selection_keeps_order_and_repoints_indices():
    texts = [{"text": "a", "lang": "en", "kind": "caption", "derived_from": None, "anchor": None},
             {"text": "b", "lang": "de", "kind": "weak", "derived_from": None, "anchor": 0},
             {"text": "c", "lang": "de", "kind": "translation", "derived_from": 0, "anchor": None},
             {"text": "d", "lang": "zh_Hant", "kind": "translation", "derived_from": 2, "anchor": None}]
    cfg = ExportConfig("webdataset", langs=("zh", "de"), kinds=("translation", "weak"))
    got = select_texts(texts, cfg)
    assert [t["text"] for t in got] == ["b", "c", "d"]
    assert [t["anchor"] for t in got] == [None, None, None] and [t["derived_from"] for t in got] == [None, None, 1]
    assert got[chosen_text(got, cfg)]["text"] == "d"  # translation before weak, then zh before de
    with pytest.raises(ExportError, match="choose from"):
        ExportConfig("hf", kinds=("captions",))


@pytest.mark.slow
def test_webdataset_round_trip_with_the_webdataset_package(ds, pairs, tmp_path):
    wds = pytest.importorskip("webdataset", reason="webdataset is not installed (pip install -e '.[export]')")
    out = tmp_path / "wds"
    record = run_export(str(ds), str(out), ExportConfig("webdataset", shard_size=50))
    seen = {}
    for split_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        urls = sorted(str(p) for p in split_dir.glob("*.tar"))
        sizes = json.loads((split_dir / "sizes.json").read_text())
        assert sorted(sizes) == [Path(u).name for u in urls]
        n = 0
        for sample in wds.WebDataset(urls, shardshuffle=False):
            row, meta = pairs[sample["__key__"]], json.loads(sample["json"])
            assert meta["split"] == row["split"] == split_dir.name
            assert sample["jpg"] == row["image"]["bytes"]
            assert meta["texts"] == row["texts"] and meta["image"]["sha256"] == row["image"]["sha256"]
            assert sample["txt"].decode() == row["texts"][meta["text_index"]]["text"]
            assert row["texts"][meta["text_index"]]["kind"] == "caption"  # the default preference
            seen[sample["__key__"]] = n = n + 1
        assert n == sum(sizes.values()) == record["counts"][f"samples/{split_dir.name}"]
    assert sorted(seen) == sorted(pairs)


@pytest.mark.slow
def test_webdataset_per_text_through_open_clips_pipeline_stages(ds, pairs, tmp_path):
    """The stages open_clip's ``get_wds_dataset`` chains for evaluation (split_by_worker,
    tarfile_to_samples, select image+txt, rename image="jpg;png;jpeg;webp" text="txt",
    decode to RGB) read every German text with its image."""
    wds = pytest.importorskip("webdataset", reason="webdataset is not installed (pip install -e '.[export]')")
    out = tmp_path / "wds"
    run_export(str(ds), str(out), ExportConfig("webdataset", langs=("de",), per="text", splits=("train",)))
    urls = sorted(str(p) for p in (out / "train").glob("*.tar"))
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(urls), wds.split_by_worker, wds.tarfile_to_samples(),
        wds.select(lambda s: "txt" in s and any(k in s for k in ("jpg", "png", "jpeg", "webp"))),
        wds.rename(image="jpg;png;jpeg;webp", text="txt", key="__key__", keep=False),
        wds.map_dict(image=lambda b: Image.open(io.BytesIO(b)).convert("RGB"), text=bytes.decode),
        wds.to_tuple("key", "image", "text"))
    got = Counter()
    for key, image, text in pipeline:
        row = pairs[key.rsplit("_", 1)[0]]
        assert image.size == (row["image"]["width"], row["image"]["height"])
        assert text in {t["text"] for t in row["texts"] if t["lang"] == "de"}
        got[row["id"]] += 1
    want = Counter({r["id"]: sum(t["lang"] == "de" for t in r["texts"]) for r in pairs.values() if r["split"] == "train"})
    assert got == +want


@pytest.mark.slow
def test_webdataset_reads_with_open_clip_itself(ds, tmp_path):
    try:
        from open_clip_train.data import get_dataset_size
    except Exception as err:  # not installed, or torchvision that does not load with this torch
        pytest.skip(f"open_clip's data pipeline does not import here: {type(err).__name__}: {err}")
    out = tmp_path / "wds"
    record = run_export(str(ds), str(out), ExportConfig("webdataset", shard_size=40))
    urls = "::".join(str(p) for p in sorted((out / "train").glob("*.tar")))
    assert get_dataset_size(urls)[0] == record["counts"]["samples/train"]


@pytest.mark.slow
def test_cclm_lines_read_as_cclm_reads_them(ds, pairs, tmp_path):
    out = tmp_path / "cclm"
    run_export(str(ds), str(out), ExportConfig("cclm"))
    lines = [json.loads(line) for f in sorted(out.glob("*/image_text/*.jsonl")) for line in f.open()]
    assert sorted(x["id"] for x in lines) == sorted(pairs)
    for ann in lines:  # ImageMultiTextDataset: Image.open(BytesIO(b64decode(ann["binary"]))), caption {lang: text}
        row = pairs[ann["id"]]
        assert base64.b64decode(ann["binary"]) == row["image"]["bytes"]
        Image.open(io.BytesIO(base64.b64decode(ann["binary"]))).convert("RGB")
        assert set(ann["caption"]) == {t["lang"] for t in row["texts"]}
        captions = [t["text"] for t in row["texts"] if t["kind"] == "caption"]
        assert ann["caption"][row["texts"][0]["lang"]] in captions
    para = [json.loads(line) for f in sorted(out.glob("*/parallel_text/*.jsonl")) for line in f.open()]
    want = {r["id"]: r for r in rows_of(ds, "parallel")}
    assert len(para) == len(want)
    for ann in para:  # ParaTextDataset: ann[source_key], ann[target_key]
        assert (ann["source_text"], ann["target_text"]) == (want[ann["id"]]["src_text"], want[ann["id"]]["tgt_text"])
    config = (out / "cclm.yaml").read_text()
    assert "source_key: source_text" in config and str((out / "train" / "image_text").resolve()) in config


@pytest.mark.slow
def test_cclm_image_files_and_one_line_per_text(ds, pairs, tmp_path):
    out = tmp_path / "cclm"
    run_export(str(ds), str(out), ExportConfig("cclm", per="text", images="files", kinds=("translation",)))
    lines = [json.loads(line) for f in sorted(out.glob("*/image_text/*.jsonl")) for line in f.open()]
    assert len(lines) == sum(t["kind"] == "translation" for r in pairs.values() for t in r["texts"])
    for ann in lines:  # ImageMonoTextDataset with is_image_rpath: Image.open(ann["image"])
        assert Path(ann["image"]).is_absolute() and Path(ann["image"]).read_bytes() == pairs[ann["id"]]["image"]["bytes"]
        assert isinstance(ann["caption"], str) and ann["kind"] == "translation" and ann["language"] != "en"


@pytest.mark.slow
def test_hf_export_round_trip_with_load_from_disk(ds, pairs, tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install -e '.[export]')")
    out = tmp_path / "hf"
    run_export(str(ds), str(out), ExportConfig("hf"))
    loaded = datasets.load_from_disk(str(out))
    assert sorted(loaded) == sorted({r["split"] for r in pairs.values()})
    assert sum(len(d) for d in loaded.values()) == len(pairs)
    for split, data in loaded.items():
        first = data[0]["image"]
        assert first.size == (data[0]["image_width"], data[0]["image_height"])  # decodes to PIL
        for row in data.cast_column("image", datasets.Image(decode=False)):
            want = pairs[row["id"]]
            assert row["split"] == want["split"] == split and row["image"]["bytes"] == want["image"]["bytes"]
            assert row["texts"] == want["texts"] and row["image_sha256"] == want["image"]["sha256"]
    out2 = tmp_path / "hf-parallel"
    run_export(str(ds), str(out2), ExportConfig("hf", table="parallel", langs=("en", "de")))
    para = datasets.load_from_disk(str(out2))
    want = [r for r in rows_of(ds, "parallel") if {r["src_lang"], r["tgt_lang"]} <= {"en", "de"}]
    assert sorted(r["id"] for d in para.values() for r in d) == sorted(r["id"] for r in want)


@pytest.mark.slow
def test_build_folder_loads_with_datasets_parquet_and_its_card(ds, pairs, tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install -e '.[export]')")
    raw = datasets.load_dataset("parquet", data_dir=str(ds / "pairs"), cache_dir=str(tmp_path / "c1"))["train"]
    assert sorted(raw["id"]) == sorted(pairs)
    for row in raw.select(range(5)):
        assert row["image"]["bytes"] == pairs[row["id"]]["image"]["bytes"] and row["texts"] == pairs[row["id"]]["texts"]
    card = (ds / "README.md").read_text()
    assert card.startswith("---\n") and "config_name: parallel" in card
    carded = datasets.load_dataset(str(ds), "pairs", cache_dir=str(tmp_path / "c2"))
    assert list(carded) == ["all_splits"] and sorted(carded["all_splits"]["id"]) == sorted(pairs)
    para = datasets.load_dataset(str(ds), "parallel", cache_dir=str(tmp_path / "c3"))["all_splits"]
    assert len(para) == len(rows_of(ds, "parallel"))


def test_card_features_are_what_datasets_derives_from_the_schemas():
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install -e '.[export]')")
    from curation.output.card import features
    from schemas import SCHEMAS

    for table in ("pairs", "parallel"):
        assert features(table) == datasets.Features.from_arrow_schema(SCHEMAS[table])._to_yaml_list()
        assert datasets.Features._from_yaml_list(features(table)) == datasets.Features.from_arrow_schema(SCHEMAS[table])


@pytest.mark.slow
def test_export_cli_filters_refuses_foreign_folders_and_overwrites_its_own(ds, pairs, tmp_path, capsys):
    out = tmp_path / "wds"
    args = ["export", str(ds), "--format", "webdataset", "--out", str(out), "--langs", "fr", "--kinds", "translation"]
    assert main(args) == 0
    record = json.loads((out / "export.json").read_text())
    fr = sum(any(t["lang"] == "fr" and t["kind"] == "translation" for t in r["texts"]) for r in pairs.values())
    assert sum(v for k, v in record["counts"].items() if k.startswith("samples/")) == fr
    assert record["counts"].get("rows_without_selected_texts", 0) == len(pairs) - fr
    assert main(args) == 1 and "already holds an export" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["export", str(ds), "--format", "cclm", "--out", str(foreign), "--overwrite"]) == 1
    assert "not an m3curate export" in capsys.readouterr().err and (foreign / "notes.txt").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "examples:" in capsys.readouterr().out
