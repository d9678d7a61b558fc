"""A torchvision detection model as a region extractor (``source = "torchvision"``).

The model is built with the configured ``architecture`` (a builder of
``torchvision.models.detection``, randomly initialised, no download: ``weights=None,
weights_backbone=None``), its class count read from the weights file, then loaded from it
(``torch.load(..., weights_only=True)``: a state_dict, not a pickled model). Per image:

1. the model's own transform (resize, normalise), its backbone (the FPN maps), RPN and
   ROI heads give the detections: boxes, labels, scores (after its own score threshold
   and NMS);
2. boxes under ``score_threshold`` are dropped, but the ``min_boxes`` best are kept, and at
   most ``max_boxes``;
3. each kept box's feature comes from RoIAlign over the FPN maps (the model's own
   ``roi_heads.box_roi_pool``, a ``torchvision.ops.MultiScaleRoIAlign``, 7 x 7): with
   ``pooling = "box_head"`` through the model's box head (the same representation its
   classifier reads: 1024 floats for fasterrcnn_resnet50_fpn), with ``"mean"`` averaged
   over the 7 x 7 cells (one float per FPN channel, 256);
4. boxes are mapped back to the image and normalised by its size; labels are class names
   (``classes`` file, else torchvision's COCO names for a 91-class model, else the id).

torchvision is an optional extra (``pip install -e ".[detect]"``); it is imported only
when this source is used, and its absence is an error naming the extra.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from curation.regions.common import NO_BOXES, ClassNames, normalise_boxes, regions_value
from curation.regions.config import RegionsConfig

EXTRA = "detect"


class DetectorError(RuntimeError):
    """The detector cannot be loaded; the message says what to install or change."""


def import_torchvision() -> Any:
    """torchvision, or a DetectorError naming the extra to install."""
    try:
        import torchvision
        from torchvision.models import detection  # noqa: F401 (fails where torchvision's ops do not load)
    except (ImportError, RuntimeError) as err:
        raise DetectorError(
            f"[regions] source = \"torchvision\" needs torchvision, which does not import here ({err}); "
            f"install the '{EXTRA}' extra with a torch it matches: pip install -e \".[{EXTRA}]\" "
            "(see curation/regions/README.md)") from err
    return torchvision


def weights_digest(path: str) -> str:
    from codeswitch.dictionary import read_bytes

    return hashlib.sha256(read_bytes(path)).hexdigest()[:12]


def _num_classes(state: dict[str, Any], path: str) -> int:
    for key in ("roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias"):
        if key in state:
            return int(state[key].shape[0])
    raise DetectorError(f"{path}: no roi_heads.box_predictor.cls_score in the state_dict; "
                        "is it a torchvision Faster R-CNN's?")


def build_detector(cfg: RegionsConfig) -> tuple[Any, int]:
    """(the model in eval mode on cfg.device, its class count) from cfg.model."""
    import torch

    tv = import_torchvision()
    builder = getattr(tv.models.detection, cfg.architecture, None)
    if builder is None or not callable(builder):
        raise DetectorError(f"regions.architecture = {cfg.architecture!r}: not a builder of torchvision.models.detection")
    from codeswitch.dictionary import read_bytes

    state = torch.load(io.BytesIO(read_bytes(cfg.model)), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # torchvision's reference training scripts save {"model": ...}
    classes = _num_classes(state, cfg.model)
    model = builder(weights=None, weights_backbone=None, num_classes=classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DetectorError(f"{cfg.model}: does not fit {cfg.architecture}: {str(err)[:300]}") from err
    if cfg.device == "cpu" and cfg.threads:
        torch.set_num_threads(cfg.threads)
    return model.eval().to(cfg.device), classes


def coco_names(tv: Any) -> list[str]:
    """torchvision's COCO category names (91, with "__background__" and "N/A" gaps)."""
    weights = tv.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1
    return list(weights.meta["categories"])


def keep_boxes(scores: np.ndarray, threshold: float, min_boxes: int, max_boxes: int) -> np.ndarray:
    """Indices of the boxes to keep (step 2), best first; ``scores`` as the model sorts them."""
    order = np.argsort(-scores, kind="stable")
    n = max(int((scores >= threshold).sum()), min(min_boxes, len(scores)))
    return order[:min(n, max_boxes)]


class TorchvisionRegions:
    """The stage's model for ``source = "torchvision"``: rows -> regions or a reason."""

    def __init__(self, cfg: RegionsConfig):
        self.cfg = cfg
        self.model, classes = build_detector(cfg)
        tv = import_torchvision()
        self.names = ClassNames(cfg.classes, coco_names(tv) if classes == 91 and not cfg.classes else None)
        self.extractor = cfg.extractor or (
            f"torchvision:{cfg.architecture}:{os.path.basename(cfg.model)}@{weights_digest(cfg.model)}:{cfg.pooling}")

    def _regions(self, images: list[Image.Image]) -> list[tuple[Any, Any, Any, Any]]:
        """(boxes in original pixels, labels, scores, features) per image (steps 1 and 3)."""
        import torch

        model = self.model
        tensors = [torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
                   .to(self.cfg.device) for im in images]
        sizes = [tuple(t.shape[-2:]) for t in tensors]
        with torch.inference_mode():
            batch, _ = model.transform(tensors)
            maps = model.backbone(batch.tensors)
            proposals, _ = model.rpn(batch, maps)
            detections, _ = model.roi_heads(maps, proposals, batch.image_sizes)
            pooled = model.roi_heads.box_roi_pool(maps, [d["boxes"] for d in detections], batch.image_sizes)
            vectors = model.roi_heads.box_head(pooled) if self.cfg.pooling == "box_head" else pooled.mean(dim=(2, 3))
            detections = model.transform.postprocess(detections, batch.image_sizes, sizes)
        out, start = [], 0
        for d in detections:
            n = len(d["boxes"])
            out.append((d["boxes"].cpu().numpy(), d["labels"].cpu().numpy(), d["scores"].cpu().numpy(),
                        vectors[start:start + n].cpu().numpy()))
            start += n
        return out

    def extract(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any] | str]:
        images = [Image.open(io.BytesIO(row["image"]["bytes"])) for row in rows]
        try:
            found = self._regions(images)
        finally:
            for im in images:
                im.close()
        out: list[dict[str, Any] | str] = []
        cfg = self.cfg
        for image, (boxes, labels, scores, features) in zip(images, found, strict=True):
            keep = keep_boxes(scores, cfg.score_threshold, cfg.min_boxes, cfg.max_boxes)
            if not len(keep):
                out.append(NO_BOXES)
                continue
            width, height = image.size
            out.append(regions_value(normalise_boxes(boxes[keep], width, height), features[keep], self.extractor,
                                     [self.names(i) for i in labels[keep]], scores[keep]))
        return out
