"""Typed build configuration, loaded from TOML and validated once before any work starts.

``load_config(path)`` returns a ``BuildConfig`` or raises ``ConfigError`` whose message
names the setting and says what to change. The annotated example is
``curation/example_build.toml``.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from codeswitch.config import CodeSwitchConfig, codeswitch_config_from_dict
from curation.concepts.config import ConceptsConfig, concepts_config_from_dict, resolve_concepts
from curation.lid.config import LidConfig, LidConfigError, lid_config_from_dict
from curation.lid.config import validate as validate_lid
from curation.regions.config import RegionsConfig, regions_config_from_dict
from curation.relevance.config import RelevanceConfig, relevance_config_from_dict, resolve_relevance
from translate.config import TranslateConfig, translate_config_from_dict

FORMATS = ("jsonl", "csv", "tsv", "parquet", "webdataset", "parallel_files")
KINDS = ("pair", "weak", "parallel")
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")
# [image] resize_method: Pillow's resampling filter for downscaling (see ImageConfig).
RESIZE_METHODS = ("lanczos", "bicubic", "bilinear")
DEDUP_KEYS = ("image+caption", "image", "caption", "none")
IMAGE_PATH_POLICIES = ("confined", "any")

# Column roles each record kind reads, and which of them are required.
ROLES: dict[str, dict[str, bool]] = {
    "pair": {"id": False, "caption": True, "image": True, "url": False, "lang": False},
    "weak": {"id": False, "text": True, "image": True, "url": False, "lang": False, "anchor": False, "anchor_lang": False},
    "parallel": {"id": False, "src": True, "tgt": True, "src_lang": False, "tgt_lang": False},
}
# Default column names per role (img2dataset's where it has one).
DEFAULT_COLUMNS = {
    "id": "key",
    "caption": "caption",
    "text": "text",
    "image": "image",
    "url": "url",
    "lang": "lang",
    "anchor": "anchor",
    "anchor_lang": "anchor_lang",
    "src": "src",
    "tgt": "tgt",
    "src_lang": "src_lang",
    "tgt_lang": "tgt_lang",
}


class ConfigError(ValueError):
    """The configuration is wrong; the message says which setting and what to change."""


@dataclass
class SourceConfig:
    """One input dataset.

    name: short name, recorded as ``source`` on every row and reject.
    format: jsonl | csv | tsv | parquet | webdataset | parallel_files.
    kind: pair (image + caption) | weak (image + weakly-aligned text) | parallel (text-text).
    paths: files or globs (local or any Beam filesystem); relative to the config file.
    columns: role -> column name, overriding DEFAULT_COLUMNS (e.g. ``caption = "alt"``).
    image_root: directory that relative image paths are resolved against (default: the
        directory of the file that names them).
    image_paths: "confined" (default) or "any". Confined: an image path must stay inside
        the image root; ``..`` escapes, absolute paths and URLs outside it, another scheme or
        bucket, and symlinks whose target lies outside it are rejected as
        ``read/unsafe_path`` without being opened, so a row cannot copy a private file into
        the dataset. "any" trusts the data: rows may name any file the worker can read.
    lang / src_lang / tgt_lang / anchor_lang: declared language for every row (of the
        caption or weak text, the parallel sides, a weak text's anchor), where rows have none.
    split: written to the ``split`` column (train, val, test...).
    tgt_paths: for ``parallel_files``, the target-side files aligned line by line with paths.
    """

    name: str
    format: str
    paths: list[str]
    kind: str = "pair"
    columns: dict[str, str] = field(default_factory=dict)
    image_root: str | None = None
    image_paths: str = "confined"
    lang: str | None = None
    src_lang: str | None = None
    tgt_lang: str | None = None
    anchor_lang: str | None = None
    split: str = "train"
    tgt_paths: list[str] = field(default_factory=list)

    def column(self, role: str) -> str:
        return self.columns.get(role, DEFAULT_COLUMNS[role])


@dataclass
class ImageConfig:
    """Image validation and re-encoding.

    min_side: smallest allowed side in pixels. max_aspect_ratio: long side / short side.
    max_pixels: largest allowed width*height. bomb_pixels: Pillow's decompression-bomb
    limit (images over it are refused before decoding). format: JPEG | PNG | WEBP.
    max_side: images are downscaled so their long side is at most this. quality: JPEG/WEBP.
    reencode: "always" (strips metadata, uniform format) or "if_needed" (keeps the
    original bytes when format, size and orientation already conform).
    resize_method: the downscaling filter, one of RESIZE_METHODS. "lanczos" (default)
    scores highest against a full-resolution reference; "bicubic" takes about 17 % less
    CPU in the image stage for about 0.1 dB PSNR (level with img2dataset's OpenCV
    INTER_AREA); "bilinear" about 30 % less for about 0.5 dB. Measured in
    curation/clean/README.md.
    """

    min_side: int = 32
    max_aspect_ratio: float = 4.0
    max_pixels: int = 40_000_000
    bomb_pixels: int = 89_478_485
    format: str = "JPEG"
    max_side: int = 512
    quality: int = 90
    reencode: str = "always"
    resize_method: str = "lanczos"


@dataclass
class TextConfig:
    """Text normalisation bounds, in characters and whitespace-separated words.

    Word bounds mean little for scripts written without spaces (zh, ja, th): use the
    character bounds there.
    """

    min_chars: int = 2
    max_chars: int = 1000
    min_words: int = 1
    max_words: int = 200
    strip_markup: bool = True


@dataclass
class DedupConfig:
    """Exact deduplication. key: image+caption | image | caption | none.

    Among duplicates, the record with the smallest (source, source_id) is kept, so the
    choice does not depend on the runner; the others are rejected as dedup/duplicate.
    """

    key: str = "image+caption"


@dataclass
class OutputConfig:
    """rows_per_shard: target rows in one Parquet shard. compression: Parquet codec.
    row_group_rows: rows per Parquet row group (the trainer reads row groups)."""

    rows_per_shard: int = 5000
    compression: str = "zstd"
    row_group_rows: int = 512


@dataclass
class BuildConfig:
    """The whole build. ``seed`` seeds every random choice together with the record id."""

    sources: list[SourceConfig]
    image: ImageConfig = field(default_factory=ImageConfig)
    text: TextConfig = field(default_factory=TextConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    lid: LidConfig = field(default_factory=LidConfig)
    mt: TranslateConfig = field(default_factory=TranslateConfig)
    codeswitch: CodeSwitchConfig = field(default_factory=CodeSwitchConfig)
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    regions: RegionsConfig = field(default_factory=RegionsConfig)
    concepts: ConceptsConfig = field(default_factory=ConceptsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    seed: int = 0
    base_dir: str = "."

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, as recorded in manifest.json."""
        return asdict(self)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err


def _check_type(where: str, name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{where}.{name} = {value!r}: expected {getattr(kind, '__name__', kind)}")


_SOURCE_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "format": (str,), "kind": (str,), "split": (str,), "image_paths": (str,),
    "image_root": (str, type(None)), "lang": (str, type(None)), "src_lang": (str, type(None)),
    "tgt_lang": (str, type(None)), "anchor_lang": (str, type(None)),
}


def _check_source_types(src: SourceConfig, i: int) -> None:
    """Every setting of a source has its TOML type (checked before paths are resolved)."""
    where = f"sources[{i}]"
    for name, kinds in _SOURCE_TYPES.items():
        value = getattr(src, name)
        if not isinstance(value, kinds):
            raise ConfigError(f"{where}.{name} = {value!r}: expected a string")
    for name in ("paths", "tgt_paths"):
        value = getattr(src, name)
        if not isinstance(value, str) and not (isinstance(value, list) and all(isinstance(p, str) for p in value)):
            raise ConfigError(f"{where}.{name} = {value!r}: expected a file or glob, or a list of them")
    columns = src.columns
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        raise ConfigError(f"{where}.columns = {columns!r}: expected a table of role = \"column name\"")


def _validate_source(src: SourceConfig, i: int) -> None:
    where = f"sources[{i}] ({src.name!r})"
    if src.format not in FORMATS:
        raise ConfigError(f"{where}.format = {src.format!r}: use one of {FORMATS}")
    if src.kind not in KINDS:
        raise ConfigError(f"{where}.kind = {src.kind!r}: use one of {KINDS}")
    if not src.paths:
        raise ConfigError(f"{where}.paths is empty: list the input files or globs")
    unknown_roles = sorted(set(src.columns) - set(ROLES[src.kind]))
    if unknown_roles:
        raise ConfigError(f"{where}.columns: {unknown_roles} are not roles of kind {src.kind!r}; roles: {sorted(ROLES[src.kind])}")
    if src.format == "parallel_files":
        if src.kind != "parallel":
            raise ConfigError(f"{where}: format 'parallel_files' needs kind = 'parallel'")
        if len(src.tgt_paths) != len(src.paths):
            raise ConfigError(f"{where}.tgt_paths must list one target file per source file ({len(src.paths)})")
    if src.kind == "parallel" and src.format in ("webdataset",):
        raise ConfigError(f"{where}: kind 'parallel' reads jsonl, csv, tsv, parquet or parallel_files")
    if src.kind != "parallel" and src.format == "parallel_files":
        raise ConfigError(f"{where}: format 'parallel_files' is only for kind 'parallel'")
    if src.image_paths not in IMAGE_PATH_POLICIES:
        raise ConfigError(
            f"{where}.image_paths = {src.image_paths!r}: use \"confined\" (image paths stay inside "
            "image_root) or \"any\" (trust the data: rows may name any readable file)"
        )


def validate(cfg: BuildConfig) -> BuildConfig:
    """Cross-field checks; raises ConfigError naming the setting."""
    if not cfg.sources:
        raise ConfigError("no [[sources]]: add at least one input dataset")
    names = [s.name for s in cfg.sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"sources: names must be unique, got {names}")
    for i, src in enumerate(cfg.sources):
        _validate_source(src, i)
    im = cfg.image
    for name in ("min_side", "max_pixels", "bomb_pixels", "max_side", "quality"):
        _check_type("image", name, getattr(im, name), int)
        if getattr(im, name) <= 0:
            raise ConfigError(f"image.{name} must be positive")
    if im.format.upper() not in IMAGE_FORMATS:
        raise ConfigError(f"image.format = {im.format!r}: use one of {IMAGE_FORMATS}")
    im.format = im.format.upper()
    if im.max_aspect_ratio < 1:
        raise ConfigError("image.max_aspect_ratio must be >= 1 (long side / short side)")
    if im.max_side < im.min_side:
        raise ConfigError(f"image.max_side ({im.max_side}) is below image.min_side ({im.min_side})")
    if im.reencode not in ("always", "if_needed"):
        raise ConfigError(f"image.reencode = {im.reencode!r}: use 'always' or 'if_needed'")
    if im.resize_method not in RESIZE_METHODS:
        raise ConfigError(
            f"image.resize_method = {im.resize_method!r}: use one of {RESIZE_METHODS} "
            "(lanczos: best quality; bicubic, bilinear: faster, slightly softer)"
        )
    tx = cfg.text
    if not 0 <= tx.min_chars <= tx.max_chars or not 0 <= tx.min_words <= tx.max_words:
        raise ConfigError("text: need 0 <= min_chars <= max_chars and 0 <= min_words <= max_words")
    if cfg.dedup.key not in DEDUP_KEYS:
        raise ConfigError(f"dedup.key = {cfg.dedup.key!r}: use one of {DEDUP_KEYS}")
    if cfg.output.rows_per_shard <= 0 or cfg.output.row_group_rows <= 0:
        raise ConfigError("output.rows_per_shard and output.row_group_rows must be positive")
    if cfg.output.compression not in ("zstd", "snappy", "gzip", "none", "lz4", "brotli"):
        raise ConfigError(f"output.compression = {cfg.output.compression!r}: use zstd, snappy, gzip, lz4, brotli or none")
    try:
        validate_lid(cfg.lid)
    except LidConfigError as err:
        raise ConfigError(str(err)) from err
    return cfg


def _resolve(path: str, base: Path) -> str:
    if "://" in path or Path(path).is_absolute():
        return path
    return str(base / path)


def config_from_dict(data: dict[str, Any], base_dir: str | Path = ".") -> BuildConfig:
    """Build and validate a config from parsed TOML; relative paths resolve against base_dir."""
    base = Path(base_dir)
    data = dict(data)
    raw_sources = data.pop("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError("sources must be an array of tables: write [[sources]]")
    sources = []
    for i, raw in enumerate(raw_sources):
        if not isinstance(raw, dict):
            raise ConfigError(f"sources[{i}] = {raw!r}: each source must be a table ([[sources]] with name, format, paths)")
        src = _build(SourceConfig, raw, f"sources[{i}]")
        _check_source_types(src, i)
        if isinstance(src.paths, str):
            src.paths = [src.paths]
        if isinstance(src.tgt_paths, str):
            src.tgt_paths = [src.tgt_paths]
        src.paths = [_resolve(p, base) for p in src.paths]
        src.tgt_paths = [_resolve(p, base) for p in src.tgt_paths]
        if src.image_root:
            src.image_root = _resolve(src.image_root, base)
        sources.append(src)
    sections = {"image": ImageConfig, "text": TextConfig, "dedup": DedupConfig, "output": OutputConfig}
    kwargs: dict[str, Any] = {name: _build(cls, data.pop(name, {}), name) for name, cls in sections.items()}
    try:  # the stage packages own their sections and say which setting is wrong
        kwargs["lid"] = lid_config_from_dict(data.pop("lid", {}), str(base))
        kwargs["mt"] = translate_config_from_dict(data.pop("mt", {}), str(base))
        kwargs["codeswitch"] = codeswitch_config_from_dict(data.pop("codeswitch", {}), str(base))
        relevance = relevance_config_from_dict(data.pop("relevance", None), str(base))
        kwargs["relevance"] = resolve_relevance(relevance, kwargs["codeswitch"].dictionaries)
        kwargs["regions"] = regions_config_from_dict(data.pop("regions", None), str(base))
        concepts = concepts_config_from_dict(data.pop("concepts", None), str(base))
        kwargs["concepts"] = resolve_concepts(concepts, kwargs["codeswitch"].dictionaries)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    seed = data.pop("seed", 0)
    if data:
        raise ConfigError(
            f"unknown top-level setting(s) {sorted(data)}; known: sources, seed, {', '.join(sections)}, lid, mt, codeswitch, relevance, regions, concepts"
        )
    _check_type("", "seed", seed, int)
    return validate(BuildConfig(sources=sources, seed=seed, base_dir=str(base), **kwargs))


def load_config(path: str | Path) -> BuildConfig:
    """Read a TOML build config; raises ConfigError with the file name on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    try:
        return config_from_dict(data, path.parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
