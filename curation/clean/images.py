"""Image validation: decode safely, check, orient, downscale and re-encode each image.

``process_image`` is the pure function; ``ValidateImages`` wires it into the pipeline and
turns every failure into a ``Reject`` with stage ``image`` and one of these reasons:

  empty               the image bytes are empty
  missing_image       the record has neither image bytes nor an image path
  missing_file        the image path does not exist
  read_error          the image path exists but cannot be read (a directory, no permission,
                      a scheme with no Beam filesystem installed)
  unsafe_path         a confined image path now resolves outside its image root (a symlink
                      swapped in after the read stage checked it; see ``curation.read.paths``)
  not_an_image        Pillow cannot identify the bytes as one of ``INPUT_FORMATS``
  decompression_bomb  the header claims more than ``bomb_pixels`` pixels
  too_many_pixels     width * height > ``max_pixels``
  too_small           the short side is below ``min_side`` (also re-checked after downscaling)
  aspect_ratio        long side / short side > ``max_aspect_ratio``
  truncated           the data ends before the image does
  decode_error        any other failure to decode

Size checks read the header only, so oversized images are refused before any pixel is
decoded.

Pillow's bomb guard reads the process-wide ``PIL.Image.MAX_IMAGE_PIXELS`` when a file is
opened. ``_open`` sets it to the configured limit for the duration of ``Image.open`` only,
under a module lock (with the warnings filter that turns ``DecompressionBombWarning``
into an error, which is process-wide state too), and restores it afterwards. The
header check against ``bomb_pixels`` is repeated explicitly, so the configured limit holds
even for code that changes the global between calls. ``ImageFile.LOAD_TRUNCATED_IMAGES``
must stay False: ``ValidateImagesFn.setup`` refuses to run otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from curation.config import RESIZE_METHODS, ImageConfig
from curation.read.paths import UnsafePath, open_target
from curation.read.records import RawRecord
from curation.stages import IMAGE
from schemas.rows import REJECTS_TAG, Reject
from schemas.stage import StageCounters

# Formats accepted as input. An allow-list: Pillow can also open formats whose loaders
# shell out (EPS runs Ghostscript) or matter little for web images. JPEG includes MPO
# (multi-picture JPEG from cameras), which Pillow opens through its JPEG factory.
INPUT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# JPEG draft decoding (DCT scaling by 1/2, 1/4, 1/8) is used from this downscaling factor on.
_DRAFT_MIN_FACTOR = 2
_EXIF_ORIENTATION = 0x0112
# [image] resize_method -> Pillow filter. All keep the region box and the DCT-scaled decode.
_RESAMPLING = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}
_WHITE = (255, 255, 255, 255)

_PIL_GLOBALS_LOCK = threading.Lock()


class ImageRejected(Exception):
    """An image failed validation; ``reason`` is the reject reason, ``detail`` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def process_image(data: bytes, cfg: ImageConfig) -> dict[str, Any]:
    """Validate and re-encode one image; returns the schema's ``image`` struct as a dict.

    Raises ``ImageRejected`` for any image that cannot be kept. The output depends only
    on ``data`` and ``cfg``, so re-runs produce the same bytes.
    """
    if not data:
        raise ImageRejected("empty", "0 bytes")
    data = bytes(data)
    img = _open(data, cfg.bomb_pixels)
    width, height = img.size
    _check_header(width, height, cfg)
    target = target_size(width, height, cfg.max_side)
    box = _decode(img, target)
    orientation = _orientation(img)
    fmt = cfg.format.upper()
    if cfg.reencode == "if_needed" and max(width, height) <= cfg.max_side and _conforms(img, fmt, orientation):
        return _image_struct(data, width, height, fmt)
    if orientation >= 5:  # these orientations swap width and height
        target = (target[1], target[0])
    img = _oriented_rgb(img, orientation, target, box, resampling(cfg.resize_method))
    if min(img.size) < cfg.min_side:
        raise ImageRejected(
            "too_small", f"{width}x{height} is {img.width}x{img.height} after downscaling to max side {cfg.max_side}, min side {cfg.min_side}"
        )
    return _image_struct(encode(img, fmt, cfg.quality), img.width, img.height, fmt)


def _image_struct(data: bytes, width: int, height: int, fmt: str) -> dict[str, Any]:
    return {"bytes": data, "width": width, "height": height, "format": fmt, "sha256": hashlib.sha256(data).hexdigest()}


def _open(data: bytes, bomb_pixels: int) -> Image.Image:
    """Open (parse the header of) ``data`` under Pillow's bomb guard set to ``bomb_pixels``."""
    with _PIL_GLOBALS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = bomb_pixels
        try:
            return Image.open(io.BytesIO(data), formats=INPUT_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageRejected("decompression_bomb", str(err)) from None
        except UnidentifiedImageError:
            head = data[:8].hex(" ")
            raise ImageRejected("not_an_image", f"not a {'/'.join(INPUT_FORMATS)} image ({len(data)} bytes, starting {head})") from None
        except Exception as err:  # malformed headers raise whatever the plugin hits
            raise _decode_failure(err, data) from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def resampling(method: str) -> Image.Resampling:
    """The Pillow filter for ``[image] resize_method``; ValueError names the choices."""
    try:
        return _RESAMPLING[method]
    except (KeyError, TypeError):
        raise ValueError(f"image.resize_method = {method!r}: use one of {RESIZE_METHODS}") from None


def _check_header(width: int, height: int, cfg: ImageConfig) -> None:
    """Size checks from the header alone, before any pixel is decoded."""
    pixels = width * height
    size = f"{width}x{height}"
    if pixels > cfg.bomb_pixels:
        raise ImageRejected("decompression_bomb", f"{size} = {pixels} pixels, limit {cfg.bomb_pixels}")
    if pixels > cfg.max_pixels:
        raise ImageRejected("too_many_pixels", f"{size} = {pixels} pixels, max {cfg.max_pixels}")
    short, long = min(width, height), max(width, height)
    if short < cfg.min_side:
        raise ImageRejected("too_small", f"{size}, min side {cfg.min_side}")
    if long > cfg.max_aspect_ratio * short:
        raise ImageRejected("aspect_ratio", f"{size} (ratio {long / short:.2f}), max {cfg.max_aspect_ratio}")


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size with the long side at most ``max_side``, aspect kept, rounded half up."""
    long = max(width, height)
    if long <= max_side:
        return width, height
    # Integer arithmetic: the same size on every platform, no float rounding surprises.
    return tuple(max(1, (2 * side * max_side + long) // (2 * long)) for side in (width, height))  # type: ignore[return-value]


Box = tuple[float, float, float, float]


def _decode(img: Image.Image, target: tuple[int, int]) -> Box | None:
    """Decode the pixels, at reduced JPEG scale when the target is much smaller.

    Returns the region of the decoded pixels that the original covers, or None for all of
    them: a JPEG decoded at 1/s scale is ``ceil(side / s)`` pixels wide, its last column
    only partly covered (resizing the whole of it would shift the picture by up to half a
    reduced pixel, which costs about 0.5 dB PSNR on photos).
    """
    try:
        drafted = None
        if img.format in ("JPEG", "MPO") and img.width >= _DRAFT_MIN_FACTOR * target[0]:
            drafted = img.draft(None, target)  # DCT scaling: still at least ``target`` in both sides
        img.load()
    except Image.DecompressionBombError as err:
        raise ImageRejected("decompression_bomb", str(err)) from None
    except Exception as err:  # decoders of malformed data raise various errors
        raise _decode_failure(err, None) from None
    if drafted is None or tuple(drafted[1]) == (0, 0, *img.size):
        return None
    return tuple(float(v) for v in drafted[1])  # type: ignore[return-value]


def _oriented_box(box: Box, orientation: int, size: tuple[int, int]) -> Box:
    """``box`` (in an image of ``size``) where ``ImageOps.exif_transpose`` puts it."""
    w, h = size
    x0, y0, x1, y1 = box
    move = {
        2: lambda x, y: (w - x, y),  # mirrored left-right
        3: lambda x, y: (w - x, h - y),  # rotated 180
        4: lambda x, y: (x, h - y),  # mirrored top-bottom
        5: lambda x, y: (y, x),  # transposed
        6: lambda x, y: (h - y, x),  # rotated 270 (clockwise 90)
        7: lambda x, y: (h - y, w - x),  # transversed
        8: lambda x, y: (y, w - x),  # rotated 90
    }.get(orientation, lambda x, y: (x, y))
    (ax, ay), (bx, by) = move(x0, y0), move(x1, y1)
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def _decode_failure(err: Exception, data: bytes | None) -> ImageRejected:
    """Classify a Pillow failure as ``truncated`` or ``decode_error``."""
    if isinstance(err, EOFError) or "truncated" in str(err).lower():
        return ImageRejected("truncated", str(err) or "unexpected end of data")
    if data is not None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        # libwebp only says "could not create decoder object"; the RIFF size says why.
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            return ImageRejected("truncated", f"WEBP data is {len(data)} bytes, its header says {declared}")
    return ImageRejected("decode_error", f"{type(err).__name__}: {err}")


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 to 8), or 1 where absent or unreadable."""
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a corrupt EXIF block is no reason to refuse the pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented_rgb(
    img: Image.Image,
    orientation: int,
    target: tuple[int, int],
    box: Box | None = None,
    filt: Image.Resampling = Image.Resampling.LANCZOS,
) -> Image.Image:
    """Apply the EXIF orientation, convert to RGB and resize the region ``box`` (of the
    decoded pixels, see ``_decode``; None: all of them) to ``target`` (display order)
    with the filter ``filt``."""
    try:
        if box is not None and orientation != 1:
            box = _oriented_box(box, orientation, img.size)
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        img = to_rgb(img)
        if img.size != target or box is not None:
            img = img.resize(target, filt, box=box, reducing_gap=3.0)
    except Exception as err:  # e.g. a mode Pillow cannot convert to RGB
        raise ImageRejected("decode_error", f"{type(err).__name__}: {err}") from None
    return img


def _conforms(img: Image.Image, fmt: str, orientation: int) -> bool:
    """Whether the original bytes of an image small enough can be stored as they are."""
    return (
        img.format == fmt
        and img.mode == "RGB"
        and "transparency" not in img.info
        and not getattr(img, "is_animated", False)
        and orientation == 1
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert to RGB; transparent images are composited onto white."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping everything to white.
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif img.mode == "RGB" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    """Encode with fixed settings and no metadata (no EXIF, ICC or text chunks)."""
    img.info = {}  # PNG's encoder copies an ICC profile from ``info``; store none.
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality, optimize=False, progressive=False)
    elif fmt == "PNG":
        img.save(buf, "PNG", optimize=False, compress_level=6)
    elif fmt == "WEBP":
        img.save(buf, "WEBP", quality=quality, method=4)
    else:
        raise ValueError(f"image format {fmt!r}: use JPEG, PNG or WEBP")
    return buf.getvalue()


def load_image_bytes(record: RawRecord) -> bytes:
    """The record's encoded image: its bytes, or the file at ``image_path`` (any Beam filesystem).

    A confined local path (``record.image_root`` set) is checked where it is opened: its
    real location must lie inside the root, and that real location is what is opened, so
    nothing outside the root is ever read (``unsafe_path``, the detail names paths only).
    Transient storage errors are re-raised so that the runner retries the bundle; only
    a file that does not exist or cannot be read becomes a reject.
    """
    if record.image is not None:
        return record.image
    path = record.image_path
    if not path:
        raise ImageRejected("missing_image", "the record has neither image bytes nor an image path")
    try:
        target = open_target(path, record.image_root)
        if "://" not in target and not stat.S_ISREG(os.stat(target).st_mode):
            # a FIFO or device (/dev/zero) would block or never end; a folder is no image
            raise ImageRejected("read_error", f"{path} is not a regular file")
        with FileSystems.open(target, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return f.read()
    except UnsafePath as err:
        raise ImageRejected("unsafe_path", str(err)) from None
    except (FileNotFoundError, NotADirectoryError):
        raise ImageRejected("missing_file", f"{path} does not exist") from None
    except (IsADirectoryError, PermissionError) as err:
        raise ImageRejected("read_error", f"{path}: {type(err).__name__}: {err}") from None
    except ValueError as err:  # no filesystem for the scheme, a NUL in the path
        raise ImageRejected("read_error", f"{path!r}: {err}") from None
    except OSError:
        if not FileSystems.exists(path):
            raise ImageRejected("missing_file", f"{path} does not exist") from None
        raise


class ValidateImagesFn(beam.DoFn):
    """RawRecord -> RawRecord with ``image_info`` set, or a Reject on the rejects tag.

    cfg: the ``[image]`` settings. Records of kind "parallel" have no image and pass
    through untouched. Output records drop ``image`` (the bytes live on in
    ``image_info``) and keep ``image_path``. Counters (namespace ``image``): ``in``,
    ``kept`` and ``rejected_<reason>``, over every record (parallel ones pass, kept).
    """

    def __init__(self, cfg: ImageConfig):
        resampling(cfg.resize_method)  # a wrong setting fails when the pipeline is built
        self.cfg = cfg
        self.counters = StageCounters(IMAGE)

    def setup(self) -> None:
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; truncated images would pass validation")

    def process(self, record: RawRecord) -> Iterator[Any]:
        counters = self.counters
        counters.inc("in")
        if record.kind == "parallel":
            counters.inc("kept")
            yield record
            return
        try:
            info = process_image(load_image_bytes(record), self.cfg)
        except ImageRejected as err:
            counters.inc(f"rejected_{err.reason}")
            # Reject.of sees the input record, so the raw keeps the original bytes.
            yield beam.pvalue.TaggedOutput(REJECTS_TAG, Reject.of(record, IMAGE, err.reason, err.detail))
            return
        counters.inc("kept")
        # A copy: Beam elements must not be mutated, the input may be shared.
        yield dataclasses.replace(record, image=None, image_info=info)


class ValidateImages(beam.PTransform):
    """Validates and re-encodes images; returns ``(records, rejects)``.

    cfg: the ``[image]`` settings (see ``ValidateImagesFn``).
    """

    def __init__(self, cfg: ImageConfig, label: str | None = None):
        super().__init__(label)
        self.cfg = cfg

    def expand(self, records: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        out = records | "Validate" >> beam.ParDo(ValidateImagesFn(self.cfg)).with_outputs(REJECTS_TAG, main="main")
        return out["main"], out[REJECTS_TAG]
