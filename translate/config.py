"""The ``[mt]`` settings: which model, which languages, how to decode, where to run.

``translate_config_from_dict(data, base_dir)`` builds a ``TranslateConfig`` from the
parsed TOML table and validates it, raising ``TranslateConfigError`` (a ValueError)
whose message names the setting (``mt.beam = 0: ...``). Relative paths resolve against
``base_dir`` (the config file's directory). An empty ``model`` means the stage is off.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from schemas.rows import TEXT_KINDS
from translate.engine import Decoding
from translate.pieces import REMOVE_BPE

ENGINES = ("fairseq", "ctranslate2")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float16", "bfloat16")
GPU_COMPUTE_TYPES = ("float16", "bfloat16", "int8_float16", "int8_bfloat16")  # CTranslate2: CUDA only
DEFAULT_GPU_HINT = "type:nvidia-l4;count:1;install-nvidia-driver"


class TranslateConfigError(ValueError):
    """An ``[mt]`` setting is wrong; the message names it and says what to change."""


@dataclass
class TranslateConfig:
    """Machine translation of captions (the ``mt`` stage); off when ``model`` is empty.

    engine: ``fairseq`` (a checkpoint directory) or ``ctranslate2`` (a directory written
        by ``m3curate mt convert``).
    model: the model directory. checkpoint: file name in it (default model.pt,
        checkpoint_best.pt or checkpoint_last.pt). spm_model: SentencePiece model (default:
        sentencepiece.bpe.model / spm.model in the model directory, else none: the model
        reads whitespace-tokenised text).
    model_id: recorded as ``origin`` of every translation (default ``<engine>:<dir name>``).
    targets: target languages, in the order their translations are appended.
    source_kinds: text kinds that get translated (default captions only).
    source_langs: only texts in these languages are translated (empty: any the model has).
    lang_codes: pipeline code → the model's code, e.g. {en = "eng_Latn"} for NLLB.
    back_translate: also translate each weak text into its anchor's language (stored
        as a ``translation`` text derived from the weak text; no parallel row).
    beam, lenpen, max_len_a, max_len_b, no_repeat_ngram_size: decoding, as fairseq-generate.
    max_tokens, max_sentences: the engine's batch budget (padded source tokens; sentences).
    same_length_batches: model batches of one source token length only (default true): no
        padding, so translations and their scores are the same bytes however the runner
        groups requests (DESIGN: same inputs and config, same output bytes). false: padded
        batches, fewer and fuller, whose scores vary in the last float32 bits with their
        batch-mates (translate/README.md, Batching).
    device: cpu | cuda. dtype: float32 | float16 | bfloat16 (the last two on CUDA only).
    compute_type: CTranslate2's (default: as converted). cpu_threads: 0 = library default.
    accelerator: the Beam accelerator resource hint of the inference step. Empty: on
        ``device = "cuda"`` DEFAULT_GPU_HINT, on CPU none; "none": never a hint (e.g. when
        every worker has a GPU through --dataflow_service_options).
    model_copies: models per worker machine, shared across its processes (Beam
        ``model_copies``); 0 = automatic: 1 on CUDA, one per process on CPU.
    batch_size: requests per RunInference batch (the last of each length bucket may be
        smaller). batch_seconds: how long Beam may buffer a partial batch; 0 (batch
        pipelines) flushes partial batches only at the end of their window. Streaming
        pipelines need > 0. bucket_boundaries: source lengths (in characters) at which
        length buckets split.
    trusted_globals: extra pickle globals allowed when loading the checkpoint, by name.
    remove_bpe: ``auto`` | ``subword_nmt`` | ``none``: remove subword-nmt/fastBPE ``@@ ``
        markers from the output as ``fairseq-generate --remove-bpe`` does; ``auto`` does
        when the model's target vocabulary has ``@@`` pieces and no SentencePiece model is
        used. The input must then be segmented already (``apply_bpe``).

    A bilingual checkpoint that records no languages (fairseq's canonical recipe) is taken
    to translate ``source_langs[0]`` → ``targets[0]`` (one of each must be set).
    """

    model: str = ""
    engine: str = "fairseq"
    checkpoint: str | None = None
    spm_model: str | None = None
    model_id: str | None = None
    targets: list[str] = field(default_factory=list)
    source_kinds: list[str] = field(default_factory=lambda: ["caption"])
    source_langs: list[str] = field(default_factory=list)
    lang_codes: dict[str, str] = field(default_factory=dict)
    back_translate: bool = False
    # Decoding settings: their defaults are Decoding's, declared once in translate/engine.py.
    beam: int = Decoding.beam
    lenpen: float = Decoding.lenpen
    max_len_a: float = Decoding.max_len_a
    max_len_b: int = Decoding.max_len_b
    no_repeat_ngram_size: int = Decoding.no_repeat_ngram_size
    max_tokens: int = Decoding.max_tokens
    max_sentences: int = Decoding.max_sentences
    same_length_batches: bool = True
    device: str = "cpu"
    dtype: str = "float32"
    compute_type: str = "default"
    cpu_threads: int = 0
    accelerator: str = ""
    model_copies: int = 0
    batch_size: int = 256
    batch_seconds: int = 0
    bucket_boundaries: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    trusted_globals: list[str] = field(default_factory=list)
    remove_bpe: str = "auto"

    @property
    def enabled(self) -> bool:
        return bool(self.model)

    def decoding(self) -> Decoding:
        return Decoding(beam=self.beam, lenpen=self.lenpen, max_len_a=self.max_len_a, max_len_b=self.max_len_b,
                        no_repeat_ngram_size=self.no_repeat_ngram_size, max_tokens=self.max_tokens,
                        max_sentences=self.max_sentences, same_length=self.same_length_batches)

    def model_code(self, lang: str) -> str:
        """The model's code for pipeline language ``lang``."""
        return self.lang_codes.get(lang, lang)

    def language_pair(self) -> tuple[str, str] | None:
        """(source, target) in the model's codes when exactly one of each is set: what a
        bilingual checkpoint that records no languages is taken to translate."""
        if len(self.source_langs) == 1 and len(self.targets) == 1:
            return self.model_code(self.source_langs[0]), self.model_code(self.targets[0])
        return None

    def resolved_model_id(self) -> str:
        return self.model_id or f"{self.engine}:{Path(self.model).name}"

    def resource_hint(self) -> str | None:
        """The accelerator hint for the inference step, or None."""
        if self.accelerator == "none":
            return None
        if self.accelerator:
            return self.accelerator
        return DEFAULT_GPU_HINT if self.device == "cuda" else None

    def copies(self) -> int | None:
        """Beam's ``model_copies``: None keeps one model per process."""
        if self.model_copies > 0:
            return self.model_copies
        return 1 if self.device == "cuda" else None


def _fail(name: str, value: Any, fix: str) -> TranslateConfigError:
    return TranslateConfigError(f"mt.{name} = {value!r}: {fix}")


def _check_types(cfg: TranslateConfig) -> None:
    for name in ("beam", "max_len_b", "no_repeat_ngram_size", "max_tokens", "max_sentences", "cpu_threads",
                 "model_copies", "batch_size", "batch_seconds"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(name, value, "expected an integer")
    for name in ("lenpen", "max_len_a"):
        if not isinstance(getattr(cfg, name), int | float) or isinstance(getattr(cfg, name), bool):
            raise _fail(name, getattr(cfg, name), "expected a number")
    for name in ("targets", "source_kinds", "source_langs", "trusted_globals", "bucket_boundaries"):
        if not isinstance(getattr(cfg, name), list):
            raise _fail(name, getattr(cfg, name), "expected a list")
    if not isinstance(cfg.lang_codes, dict):
        raise _fail("lang_codes", cfg.lang_codes, "expected a table {pipeline code = model code}")
    for name in ("back_translate", "same_length_batches"):
        if not isinstance(getattr(cfg, name), bool):
            raise _fail(name, getattr(cfg, name), "expected true or false")


def validate(cfg: TranslateConfig) -> TranslateConfig:
    """Cross-field checks; raises TranslateConfigError naming the setting."""
    _check_types(cfg)
    if not cfg.enabled:
        return cfg
    if cfg.engine not in ENGINES:
        raise _fail("engine", cfg.engine, f"use one of {ENGINES}")
    if not cfg.targets:
        raise _fail("targets", cfg.targets, "list at least one target language, e.g. [\"de\", \"fr\"]")
    if len(set(cfg.targets)) != len(cfg.targets):
        raise _fail("targets", cfg.targets, "a language is listed twice")
    bad_kinds = [k for k in cfg.source_kinds if k not in TEXT_KINDS]
    if bad_kinds or not cfg.source_kinds:
        raise _fail("source_kinds", cfg.source_kinds, f"use kinds from {TEXT_KINDS}")
    if cfg.device not in DEVICES:
        raise _fail("device", cfg.device, f"use one of {DEVICES}")
    if cfg.dtype not in DTYPES:
        raise _fail("dtype", cfg.dtype, f"use one of {DTYPES}")
    if cfg.remove_bpe not in REMOVE_BPE:
        raise _fail("remove_bpe", cfg.remove_bpe, f"use one of {REMOVE_BPE}")
    if cfg.engine == "ctranslate2" and cfg.device == "cpu" and cfg.compute_type in GPU_COMPUTE_TYPES:
        raise _fail("compute_type", cfg.compute_type, "CTranslate2 has no 16-bit computation on CPU: use "
                    "\"default\", \"int8\" or \"float32\" (--compute-type), or device = \"cuda\"")
    if cfg.dtype != "float32" and cfg.device != "cuda":
        raise _fail("dtype", cfg.dtype, "float16/bfloat16 need device = \"cuda\"; use float32 on CPU")
    try:
        cfg.decoding().check()
    except ValueError as err:
        raise TranslateConfigError(f"mt: {err}") from err
    if cfg.batch_size < 1:
        raise _fail("batch_size", cfg.batch_size, "must be >= 1")
    if cfg.batch_seconds < 0:
        raise _fail("batch_seconds", cfg.batch_seconds, "must be >= 0 (0: flush partial batches at window end)")
    b = cfg.bucket_boundaries
    if not b or any(not isinstance(x, int) or x <= 0 for x in b) or b != sorted(b):
        raise _fail("bucket_boundaries", b, "use a non-empty increasing list of positive integers")
    if cfg.model_copies < 0 or cfg.cpu_threads < 0:
        raise _fail("model_copies" if cfg.model_copies < 0 else "cpu_threads",
                    min(cfg.model_copies, cfg.cpu_threads), "must be >= 0")
    return cfg


def _resolve(path: str, base: Path) -> str:
    if not path or "://" in path or Path(path).is_absolute():
        return path
    return str(base / path)


def translate_config_from_dict(data: dict[str, Any] | None, base_dir: str | Path = ".") -> TranslateConfig:
    """The ``[mt]`` table as a validated TranslateConfig; paths resolved against base_dir."""
    data = dict(data or {})
    known = {f.name for f in fields(TranslateConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TranslateConfigError(f"mt: unknown setting(s) {unknown}; known: {sorted(known)}")
    base = Path(base_dir)
    for key in ("model", "spm_model"):
        if isinstance(data.get(key), str):
            data[key] = _resolve(data[key], base)
    try:
        cfg = TranslateConfig(**data)
    except TypeError as err:
        raise TranslateConfigError(f"mt: {err}") from err
    return validate(cfg)
