"""``[image] resize_method``: each filter gives the target size, a picture close to a
full-resolution reference, the same bytes on every run; wrong settings are refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps
from test_images_resample import jpeg, photo, psnr, reference

from curation.clean.images import ValidateImagesFn, process_image, resampling, target_size
from curation.config import RESIZE_METHODS, ConfigError, ImageConfig, config_from_dict

# Drafted (long side >= 2x max_side) and full-decode sizes, odd sides included.
SIZES = [(601, 457), (457, 601), (1023, 767), (480, 333), (400, 300), (777, 521)]


def scores(method: str) -> list[float]:
    """PSNR of each image's output against LANCZOS of the decoded original, in float."""
    cfg = ImageConfig(max_side=256, quality=90, min_side=16, resize_method=method)
    out = []
    for seed, (w, h) in enumerate(SIZES):
        data = jpeg(photo(w, h, seed))
        got = process_image(data, cfg)
        size = target_size(w, h, cfg.max_side)
        assert (got["width"], got["height"]) == size
        out.append(psnr(got["bytes"], reference(Image.open(io.BytesIO(data)).convert("RGB"), size)))
    return out


@pytest.fixture(scope="module")
def psnrs() -> dict[str, list[float]]:
    return {method: scores(method) for method in RESIZE_METHODS}


def test_every_method_is_close_to_the_reference(psnrs):
    # Here every method scores 34.1-37.4 dB per image, 35.7-35.9 on average; NEAREST
    # scores 31.7-33.9 (32.4 on average), LANCZOS shifted by one source pixel 27.3-35.1 (32.1).
    for method, values in psnrs.items():
        assert min(values) >= 33.9, (method, values)
        assert np.mean(values) >= 35.2, (method, values)


def test_softer_filters_cost_a_little_quality(psnrs):
    lanczos, bicubic, bilinear = (np.mean(psnrs[m]) for m in ("lanczos", "bicubic", "bilinear"))
    # On these hard-edged pictures bicubic and lanczos score alike (lanczos rings at the
    # edges); on the benchmark's photos lanczos is 0.09 dB ahead, bilinear 0.5 dB behind.
    assert abs(lanczos - bicubic) <= 0.4, psnrs
    assert bilinear < min(lanczos, bicubic) - 0.1, psnrs
    assert lanczos - bilinear <= 1.5, psnrs


def test_the_default_is_lanczos():
    assert ImageConfig().resize_method == "lanczos"
    data = jpeg(photo(601, 457, seed=1))
    default = process_image(data, ImageConfig(max_side=256, min_side=16))
    assert default == process_image(data, ImageConfig(max_side=256, min_side=16, resize_method="lanczos"))
    assert default != process_image(data, ImageConfig(max_side=256, min_side=16, resize_method="bicubic"))


@pytest.mark.parametrize("method", RESIZE_METHODS)
def test_each_method_is_deterministic(method):
    data = jpeg(photo(777, 521, seed=5))
    cfg = ImageConfig(max_side=200, min_side=16, resize_method=method)
    first = process_image(data, cfg)
    assert process_image(bytes(data), cfg) == first
    assert first["sha256"] == process_image(data, ImageConfig(max_side=200, min_side=16, resize_method=method))["sha256"]


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
def test_exif_orientation_holds_for_the_faster_filters(method):
    shown = photo(777, 521, seed=6)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; displayed upright after a 270 degree turn
    data = jpeg(shown.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())
    cfg = ImageConfig(max_side=256, min_side=16, resize_method=method)
    out = process_image(data, cfg)
    size = target_size(*shown.size, cfg.max_side)
    assert (out["width"], out["height"]) == size
    ref = reference(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"), size)
    assert psnr(out["bytes"], ref) >= psnr(process_image(jpeg(shown), cfg)["bytes"], ref) - 0.5


def test_images_within_max_side_are_untouched_by_the_method():
    data = jpeg(photo(200, 150, seed=7))
    outs = {m: process_image(data, ImageConfig(max_side=256, min_side=16, resize_method=m))["bytes"] for m in RESIZE_METHODS}
    assert len(set(outs.values())) == 1


def test_every_method_has_a_filter():
    assert [resampling(m) for m in RESIZE_METHODS] == [
        Image.Resampling.LANCZOS, Image.Resampling.BICUBIC, Image.Resampling.BILINEAR,
    ]


@pytest.mark.parametrize("value", ["nearest", "LANCZOS", "", 3, None])
def test_a_wrong_resize_method_is_a_config_error(value):
    data = {"sources": [{"name": "s", "format": "jsonl", "paths": ["x.jsonl"]}], "image": {"resize_method": value}}
    with pytest.raises(ConfigError, match=r"image\.resize_method .*lanczos.*bicubic.*bilinear"):
        config_from_dict(data)


def test_a_valid_resize_method_loads():
    data = {"sources": [{"name": "s", "format": "jsonl", "paths": ["x.jsonl"]}], "image": {"resize_method": "bicubic"}}
    assert config_from_dict(data).image.resize_method == "bicubic"


def test_the_stage_refuses_a_wrong_method_when_built():
    with pytest.raises(ValueError, match="resize_method = 'area'"):
        ValidateImagesFn(ImageConfig(resize_method="area"))
    with pytest.raises(ValueError, match="resize_method"):
        process_image(jpeg(photo(601, 457, seed=2)), ImageConfig(max_side=256, min_side=16, resize_method="area"))
