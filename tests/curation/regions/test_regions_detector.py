"""The torchvision source: a randomly initialised Faster R-CNN saved as a state_dict, run
through the stage's detector code. Runs where torchvision imports (the ``detect`` extra);
elsewhere only the error that names the extra is checked."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from regions_helpers import pair_row, scene_jpeg

from curation.regions.config import regions_config_from_dict
from curation.regions.detector import DetectorError, import_torchvision, keep_boxes


def _torchvision_imports() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import_torchvision()
    except DetectorError:
        return False
    return True


HAS_TORCHVISION = _torchvision_imports()


def test_keep_boxes_threshold_min_and_max():
    scores = np.array([0.9, 0.1, 0.5, 0.05])
    assert keep_boxes(scores, 0.4, 1, 36).tolist() == [0, 2]
    assert keep_boxes(scores, 0.95, 3, 36).tolist() == [0, 2, 1]
    assert keep_boxes(scores, 0.0, 0, 2).tolist() == [0, 2]
    assert keep_boxes(np.array([]), 0.2, 1, 36).tolist() == []


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision imports here: the missing-extra error cannot happen")
def test_missing_torchvision_is_an_error_naming_the_extra(tmp_path):
    from curation.regions.stage import ExtractRegions

    (tmp_path / "w.pt").write_bytes(b"")
    cfg = regions_config_from_dict({"source": "torchvision", "model": "w.pt"}, str(tmp_path))
    with pytest.raises(DetectorError, match=r"install the 'detect' extra.*\.\[detect\]"):
        ExtractRegions(cfg, "regions")


@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision does not import here (the 'detect' extra: "
                    "curation/regions/README.md); this test runs in a venv that has it")
@pytest.mark.parametrize("pooling,dim", [("box_head", 1024), ("mean", 256)])
def test_random_fasterrcnn_state_dict_gives_boxes_labels_and_roi_features(tmp_path, pooling, dim):
    import torch
    import torchvision

    from curation.regions.detector import TorchvisionRegions

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)
    torch.save(model.state_dict(), tmp_path / "frcnn.pt")
    (tmp_path / "classes.txt").write_text("__background__\nshape\nblob\n")
    cfg = regions_config_from_dict({"source": "torchvision", "model": "frcnn.pt", "classes": "classes.txt",
                                    "pooling": pooling, "score_threshold": 0.0, "max_boxes": 5, "min_boxes": 1,
                                    "threads": 2}, str(tmp_path))
    source = TorchvisionRegions(cfg)
    rows = [pair_row(i, scene_jpeg(2, i)[1]) for i in range(2)]
    out = source.extract(rows)
    assert source.extractor.startswith("torchvision:fasterrcnn_resnet50_fpn:frcnn.pt@") and source.extractor.endswith(pooling)
    for regions in out:
        assert isinstance(regions, dict), regions
        n = len(regions["boxes"])
        assert 1 <= n <= 5 and len(regions["labels"]) == len(regions["label_scores"]) == n
        assert all(len(f) == dim for f in regions["features"])
        assert set(regions["labels"]) <= {"shape", "blob"}
        assert all(0 <= v <= 1 for box in regions["boxes"] for v in box)
        assert all(box[0] <= box[2] and box[1] <= box[3] for box in regions["boxes"])
        scores = regions["label_scores"]
        assert scores == sorted(scores, reverse=True)
    assert source.extract(rows) == out  # deterministic in eval mode
