"""Precomputed bottom-up-attention features (TSV and NPZ layouts) joined to rows by key."""

from __future__ import annotations

import base64
from collections import Counter

import numpy as np
import pytest
from regions_helpers import pair_row, scene_jpeg

from curation.regions.config import LXMERT_COLUMNS, RegionsConfigError, regions_config_from_dict
from curation.regions.precomputed import FeatureError, PrecomputedRegions
from curation.regions.stage import attach_regions

BOXES = np.array([[10, 20, 50, 60], [0, 0, 200, 100]], dtype=np.float32)  # pixels of a 200 x 100 image
FEATS = np.arange(2 * 6, dtype=np.float32).reshape(2, 6)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def butd_line(image_id: str, boxes=BOXES, feats=FEATS) -> str:
    """One line as peteanderson80/bottom-up-attention tools/generate_tsv.py writes it."""
    return "\t".join([image_id, "200", "100", str(len(boxes)), _b64(boxes), _b64(feats)]) + "\n"


def lxmert_line(image_id: str) -> str:
    ids, conf = np.array([3, 1], dtype=np.int64), np.array([0.9, 0.4], dtype=np.float32)
    attrs = np.zeros(2, dtype=np.int64)
    return "\t".join([image_id, "100", "200", _b64(ids), _b64(conf), _b64(attrs), _b64(conf.copy()),
                      "2", _b64(BOXES), _b64(FEATS)]) + "\n"


def _rows(n: int = 3) -> list[dict]:
    return [pair_row(i, scene_jpeg(1, i)[1]) for i in range(n)]


def _cfg(tmp_path, **kw):
    return regions_config_from_dict({"source": "precomputed", **kw}, str(tmp_path))


def test_butd_tsv_by_source_id_digits_compare_as_numbers(tmp_path):
    (tmp_path / "f.tsv").write_text(butd_line("0") + butd_line("2"))
    out = PrecomputedRegions(_cfg(tmp_path, features="f.tsv")).extract(_rows())
    assert out[1] == "no_features"
    first = out[0]
    assert np.allclose(first["boxes"], [[0.05, 0.2, 0.25, 0.6], [0, 0, 1, 1]])
    assert np.array_equal(first["features"], FEATS) and first["labels"] is None and first["label_scores"] is None
    assert first["extractor"] == "precomputed:tsv:f.tsv"


def test_lxmert_tsv_with_a_header_gives_labels_from_the_classes_file(tmp_path):
    header = "\t".join(LXMERT_COLUMNS) + "\n"
    (tmp_path / "obj36.tsv").write_text(header + lxmert_line("000001"))
    (tmp_path / "objects_vocab.txt").write_text("sky\ndog\ntree\nman\n")
    cfg = _cfg(tmp_path, features=["obj36.tsv"], classes="objects_vocab.txt", extractor="butd-vg36")
    out = PrecomputedRegions(cfg).extract(_rows(2))
    assert out[0] == "no_features"
    assert out[1]["labels"] == ["man", "dog"] and np.allclose(out[1]["label_scores"], [0.9, 0.4])
    assert out[1]["extractor"] == "butd-vg36"
    # header-less LXMERT files: the columns come from tsv_columns
    (tmp_path / "bare.tsv").write_text(lxmert_line("1"))
    cfg = _cfg(tmp_path, features="bare.tsv", tsv_columns=LXMERT_COLUMNS)
    assert PrecomputedRegions(cfg).extract(_rows(2))[1]["labels"] == ["3", "1"]


def test_npz_directory_bottom_up_attention_pytorch_layout(tmp_path):
    d = tmp_path / "npz"
    d.mkdir()
    info = {"image_id": "x", "objects_id": np.array([2, 0]), "objects_conf": np.array([0.8, 0.7])}
    np.savez_compressed(d / "000000.npz", x=FEATS, bbox=BOXES, num_bbox=2, image_h=100, image_w=200, info=info)
    np.savez_compressed(d / "1.npz", features=FEATS, norm_bb=np.hstack([BOXES / 200, np.zeros((2, 3))]),
                        cls_prob=np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]], dtype=np.float32))
    (tmp_path / "c.txt").write_text("bg\ncat\ndog\n")
    rows = _rows(3)
    plain = PrecomputedRegions(_cfg(tmp_path, features="npz")).extract(rows)
    assert plain[2] == "no_features" and plain[0]["labels"] is None  # info is pickled: not read by default
    assert np.allclose(plain[0]["boxes"][0], [0.05, 0.2, 0.25, 0.6])
    trusted = PrecomputedRegions(_cfg(tmp_path, features="npz", allow_pickle=True, classes="c.txt")).extract(rows)
    assert trusted[0]["labels"] == ["dog", "bg"] and np.allclose(trusted[0]["label_scores"], [0.8, 0.7])
    # cls_prob with one column per class name: argmax over all of them
    assert trusted[1]["labels"] == ["dog", "bg"] and np.allclose(trusted[1]["label_scores"], [0.7, 0.6])
    assert np.allclose(trusted[1]["boxes"], BOXES / 200)


def test_other_keys_and_key_regex(tmp_path):
    rows = _rows(2)
    sha = rows[1]["image"]["sha256"]
    (tmp_path / "f.tsv").write_text(butd_line(sha) + butd_line("7"))
    assert PrecomputedRegions(_cfg(tmp_path, features="f.tsv", key="image_sha256")).extract(rows)[1] != "no_features"
    rows[0]["source_id"] = "COCO_val2014_000000000007.jpg"
    out = PrecomputedRegions(_cfg(tmp_path, features="f.tsv", key_regex=r"_(\d+)\.jpg$")).extract(rows)
    assert out[0] != "no_features" and out[1] == "no_key"
    stem = PrecomputedRegions(_cfg(tmp_path, features="f.tsv", key="member_stem")).extract(rows)
    assert stem == ["no_features", "no_features"]  # members 000000/000001: no such ids


def test_missing_policy_reject_or_keep(tmp_path):
    (tmp_path / "f.tsv").write_text(butd_line("1"))
    rows = _rows(3)
    for missing, kept_n, rejected in (("reject", 1, 2), ("keep", 3, 0)):
        cfg = _cfg(tmp_path, features="f.tsv", missing=missing)
        stats: Counter[str] = Counter()
        kept, rejects = attach_regions(rows, PrecomputedRegions(cfg), cfg, stats)
        assert len(kept) == kept_n and len(rejects) == rejected
        assert stats["with_regions"] == 1 and stats["boxes"] == 2
    assert {r.reason for r in rejects} == set() and stats["missing_no_features"] == 2
    cfg = _cfg(tmp_path, features="f.tsv")
    _, rejects = attach_regions(rows, PrecomputedRegions(cfg), cfg, Counter())
    assert [r.reason for r in rejects] == ["no_features", "no_features"] and "regions.missing" in rejects[0].detail


def test_malformed_files_are_named(tmp_path):
    (tmp_path / "bad.tsv").write_text("1\t200\t100\t2\tnot-base64!\tx\n")
    with pytest.raises(FeatureError, match="bad.tsv .image 1.: column boxes"):
        PrecomputedRegions(_cfg(tmp_path, features="bad.tsv")).extract(_rows(2))
    (tmp_path / "noid.tsv").write_text("name\tnum_boxes\tboxes\tfeatures\n")
    with pytest.raises(FeatureError, match="no image_id"):
        PrecomputedRegions(_cfg(tmp_path, features="noid.tsv", tsv_columns=["name", "num_boxes", "boxes", "features"]))


def test_config_errors_name_the_setting(tmp_path):
    for data, match in ((dict(features="none.tsv"), "regions.features = .*no such file"),
                        (dict(features=""), "name the TSV"),
                        (dict(features="x", key="path"), "regions.key"),
                        (dict(features="x", key_regex="("), "not a regular expression"),
                        (dict(features="x", key_regex="a"), "needs one .group."),
                        (dict(features="x", missing="drop"), "regions.missing"),
                        (dict(features="x", min_boxes=5, max_boxes=2), "min_boxes"),
                        (dict(features="x", colour=1), "unknown setting")):
        (tmp_path / "x").write_text("")
        with pytest.raises(RegionsConfigError, match=match):
            _cfg(tmp_path, **data)
    with pytest.raises(RegionsConfigError, match="regions.model"):
        regions_config_from_dict({"source": "torchvision"}, str(tmp_path))
    assert not regions_config_from_dict(None).enabled and not regions_config_from_dict({"features": "x"}).enabled
