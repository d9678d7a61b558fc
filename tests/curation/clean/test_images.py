"""Image validation: every reject reason, orientation, transparency, downscaling, determinism."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from curation.clean.images import (
    ImageRejected,
    ValidateImages,
    ValidateImagesFn,
    load_image_bytes,
    process_image,
    target_size,
)
from curation.config import ImageConfig
from curation.read.records import RawRecord
from schemas.rows import REJECTS_TAG


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype("uint8"))


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR is patched to claim width x height (the pixels are not there)."""
    data = encode(Image.new("L", (1, 1)), "PNG")
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + data[33:]


def rejected(data: bytes, cfg: ImageConfig | None = None) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        process_image(data, cfg or ImageConfig())
    return info.value


def record(source_id: str, image: bytes | None = None, path: str | None = None, kind: str = "pair") -> RawRecord:
    return RawRecord("src", kind, source_id, "train", {"caption": "a cat"}, {"file": "f", "row": 0}, image=image, image_path=path)


def test_empty_and_non_image_bytes_are_rejected():
    assert rejected(b"").reason == "empty"
    err = rejected(b"hello, this is text")
    assert err.reason == "not_an_image"
    assert "19 bytes" in err.detail


def test_truncated_jpeg_is_rejected():
    data = encode(noise(300, 200), "JPEG")
    assert rejected(data[: len(data) // 2]).reason == "truncated"


def test_corrupt_pixel_data_is_a_decode_error():
    data = encode(noise(100, 100), "PNG")
    i = data.index(b"IDAT")
    n = struct.unpack(">I", data[i - 4 : i])[0]
    payload = bytes(255 - b for b in data[i + 4 : i + 4 + n])  # not zlib any more, CRC still right
    bad = data[: i + 4] + payload + struct.pack(">I", zlib.crc32(b"IDAT" + payload)) + data[i + 8 + n :]
    assert rejected(bad).reason == "decode_error"


def test_decompression_bomb_is_refused_from_the_header():
    saved = Image.MAX_IMAGE_PIXELS
    err = rejected(png_claiming(20_000, 20_000))  # 400 Mpx, over twice the default limit
    assert err.reason == "decompression_bomb"
    assert saved == Image.MAX_IMAGE_PIXELS  # the global is restored
    # Between the limit and twice it Pillow only warns; the warning is an error here.
    small_limit = ImageConfig(bomb_pixels=10_000)
    assert rejected(encode(noise(110, 100), "PNG"), small_limit).reason == "decompression_bomb"
    assert rejected(encode(noise(300, 300), "PNG"), small_limit).reason == "decompression_bomb"


def test_size_checks_use_the_header_before_decoding():
    # 48 Mpx claimed, no pixel data: the size check must fire, not a decode failure.
    err = rejected(png_claiming(8000, 6000))
    assert (err.reason, err.detail) == ("too_many_pixels", "8000x6000 = 48000000 pixels, max 40000000")
    assert rejected(png_claiming(20, 500)).reason == "too_small"
    err = rejected(png_claiming(1000, 200))
    assert (err.reason, err.detail) == ("aspect_ratio", "1000x200 (ratio 5.00), max 4.0")


def test_real_small_and_elongated_images():
    assert rejected(encode(noise(20, 40), "PNG")).reason == "too_small"
    assert rejected(encode(noise(500, 100), "JPEG")).reason == "aspect_ratio"


def test_min_side_is_rechecked_after_downscaling():
    cfg = ImageConfig(min_side=200, max_side=512)
    err = rejected(encode(noise(1500, 450), "JPEG"), cfg)  # passes the header, 512x154 after
    assert err.reason == "too_small"
    assert "512x154" in err.detail


def test_downscale_keeps_aspect_and_struct_is_consistent():
    data = encode(noise(2000, 1000), "PNG")
    out = process_image(data, ImageConfig(max_side=512))
    assert (out["width"], out["height"], out["format"]) == (512, 256, "JPEG")
    assert out["sha256"] == hashlib.sha256(out["bytes"]).hexdigest()
    with Image.open(io.BytesIO(out["bytes"])) as img:
        assert (img.format, img.size, img.mode) == ("JPEG", (512, 256), "RGB")
        assert "exif" not in img.info and "icc_profile" not in img.info


def test_large_jpeg_is_drafted_to_exact_target():
    out = process_image(encode(noise(3000, 2000), "JPEG"), ImageConfig(max_side=300))
    assert (out["width"], out["height"]) == (300, 200)


def test_target_size_rounds_half_up_and_never_reaches_zero():
    assert target_size(1000, 333, 100) == (100, 33)
    assert target_size(1000, 335, 100) == (100, 34)  # 33.5 rounds up
    assert target_size(100, 50, 512) == (100, 50)
    assert target_size(100_000, 1, 10) == (10, 1)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    img.paste((0, 0, 255), (100, 0, 200, 100))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    out = process_image(encode(img, "JPEG", exif=exif.tobytes()), ImageConfig())
    assert (out["width"], out["height"]) == (100, 200)
    with Image.open(io.BytesIO(out["bytes"])) as shown:
        top, bottom = shown.getpixel((50, 20)), shown.getpixel((50, 180))
        assert "exif" not in shown.info
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_transparency_is_composited_onto_white():
    img = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    img.paste((0, 0, 0, 255), (0, 0, 32, 64))
    out = process_image(encode(img, "PNG"), ImageConfig(format="PNG"))
    with Image.open(io.BytesIO(out["bytes"])) as shown:
        assert shown.mode == "RGB"
        assert shown.getpixel((48, 10)) == (255, 255, 255)
        assert shown.getpixel((10, 10)) == (0, 0, 0)
    palette = Image.new("P", (64, 64), 0)
    gif = encode(palette, "GIF", transparency=0)
    out = process_image(gif, ImageConfig(format="PNG"))
    with Image.open(io.BytesIO(out["bytes"])) as shown:
        assert shown.getpixel((5, 5)) == (255, 255, 255)


def test_16_bit_greyscale_is_scaled_not_clipped():
    img = Image.fromarray(np.full((64, 64), 32768, dtype=np.uint16))
    out = process_image(encode(img, "PNG"), ImageConfig(format="PNG"))
    with Image.open(io.BytesIO(out["bytes"])) as shown:
        assert shown.getpixel((5, 5)) == (128, 128, 128)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_output_is_deterministic_in_each_format(fmt):
    data = encode(noise(700, 400, seed=3), "PNG")
    cfg = ImageConfig(format=fmt)
    first, second = process_image(data, cfg), process_image(data, cfg)
    assert first == second
    with Image.open(io.BytesIO(first["bytes"])) as img:
        assert img.format == fmt


def test_if_needed_keeps_conforming_bytes_only():
    cfg = ImageConfig(reencode="if_needed")
    jpeg = encode(noise(300, 200), "JPEG", quality=75)
    kept = process_image(jpeg, cfg)
    assert kept["bytes"] == jpeg and (kept["width"], kept["height"]) == (300, 200)
    assert process_image(jpeg, ImageConfig())["bytes"] != jpeg  # "always" re-encodes
    png = encode(noise(300, 200), "PNG")
    assert process_image(png, cfg)["format"] == "JPEG"  # wrong format
    assert process_image(encode(noise(900, 600), "JPEG"), cfg)["width"] == 512  # too large
    assert process_image(encode(noise(1024, 768), "JPEG"), cfg)["width"] == 512  # drafted to 512
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = encode(noise(300, 200), "JPEG", exif=exif.tobytes())
    out = process_image(rotated, cfg)
    assert out["bytes"] != rotated and (out["width"], out["height"]) == (200, 300)


def test_load_image_bytes(tmp_path):
    data = encode(noise(50, 50), "PNG")
    (tmp_path / "a.png").write_bytes(data)
    assert load_image_bytes(record("1", image=b"inline")) == b"inline"
    assert load_image_bytes(record("1", path=str(tmp_path / "a.png"))) == data
    with pytest.raises(ImageRejected) as info:
        load_image_bytes(record("1", path=str(tmp_path / "missing.png")))
    assert info.value.reason == "missing_file"
    with pytest.raises(ImageRejected) as info:
        load_image_bytes(record("1"))
    assert info.value.reason == "missing_image"
    with pytest.raises(ImageRejected) as info:
        load_image_bytes(record("1", path=str(tmp_path)))
    assert info.value.reason == "read_error"


def test_dofn_frees_bytes_and_rejects_keep_the_original():
    fn = ValidateImagesFn(ImageConfig())
    fn.setup()
    good = record("good", image=encode(noise(100, 80), "JPEG"), path="gs://bucket/good.jpg")
    (out,) = fn.process(good)
    assert out.image is None and out.image_path == "gs://bucket/good.jpg"
    assert out.image_info["width"] == 100
    assert good.image is not None and good.image_info is None  # the input is not mutated
    bad_bytes = b"not an image at all"
    (tagged,) = fn.process(record("bad", image=bad_bytes))
    assert tagged.tag == REJECTS_TAG
    reject = tagged.value
    assert (reject.stage, reject.reason, reject.level) == ("image", "not_an_image", "record")
    assert reject.raw["image"] == bad_bytes and reject.record_id == record("bad").id
    parallel = record("p", kind="parallel")
    assert list(fn.process(parallel)) == [parallel]


def test_validate_images_transform():
    truncated = encode(noise(300, 200), "JPEG")
    records = [
        record("ok", image=encode(noise(1024, 768), "PNG")),
        record("cut", image=truncated[:-500]),
        record("tiny", image=encode(noise(8, 8), "PNG")),
        record("par", kind="parallel"),
    ]
    pipeline = BeamTestPipeline(runner="FnApiRunner")
    kept, rejects = pipeline | beam.Create(records) | ValidateImages(ImageConfig())
    sizes = kept | "Sizes" >> beam.Map(lambda r: (r.source_id, r.image_info and (r.image_info["width"], r.image_info["height"])))
    assert_that(sizes, equal_to([("ok", (512, 384)), ("par", None)]), label="kept")
    reasons = rejects | "Reasons" >> beam.Map(lambda r: (r.source_id, r.stage, r.reason))
    assert_that(reasons, equal_to([("cut", "image", "truncated"), ("tiny", "image", "too_small")]), label="rejects")
    result = pipeline.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter().with_namespace("image"))["counters"]}
    # in = kept + rejected; parallel records pass the image stage, kept
    assert counters == {"in": 4, "kept": 2, "rejected_truncated": 1, "rejected_too_small": 1}

