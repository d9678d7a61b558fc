"""Sentence encoders for the ``embedding`` relevance scorer, loaded from a local directory.

Two directory formats:

1. a **sentence-transformers** model directory (it holds ``modules.json`` or
   ``config_sentence_transformers.json``; e.g. LaBSE saved with ``model.save(dir)``),
   loaded with the ``sentence-transformers`` package, which m3curate does not install:
   ``pip install sentence-transformers``. Taken as multilingual unless the directory's
   ``m3curate-encoder.json`` says ``"multilingual": false``.
2. a **fastText** directory: ``model.bin`` plus ``m3curate-encoder.json`` =
   ``{"kind": "fasttext", "model": "model.bin", "multilingual": false, "name": "..."}``;
   sentence vectors are fastText's ``get_sentence_vector`` (the mean of the L2-normalised
   word vectors). A fastText model is monolingual unless trained so that languages share
   a space (``train_fasttext_encoder`` with parallel lines joined into one: words that
   co-occur in a translation pair get close vectors); say so with "multilingual": true.

Encoders return L2-normalised float32 rows, so cosine similarity is a dot product. Models
are loaded once per process (``load_encoder``'s cache), never at import time.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MARKER = "m3curate-encoder.json"
_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


class EncoderError(ValueError):
    """The directory holds no encoder m3curate can load; the message says what to do."""


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class FastTextEncoder:
    """fastText sentence vectors (format 2 of the module docstring)."""

    def __init__(self, directory: str, meta: dict[str, Any]):
        import fasttext  # heavy: only where an encoder is used

        path = os.path.join(directory, meta.get("model", "model.bin"))
        try:
            self.ft = fasttext.load_model(path)
        except (ValueError, RuntimeError, MemoryError) as err:
            raise EncoderError(f"{path}: not a fastText model ({err})") from err
        self.name = meta.get("name") or os.path.basename(os.path.normpath(directory))
        self.multilingual = bool(meta.get("multilingual", False))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = [self.ft.get_sentence_vector(" ".join(t.lower().split())) for t in texts]
        return _normalise(np.vstack(rows)) if rows else np.zeros((0, self.ft.get_dimension()), np.float32)


class SentenceTransformerEncoder:
    """A sentence-transformers model (format 1 of the module docstring)."""

    def __init__(self, directory: str, meta: dict[str, Any], device: str, batch_size: int):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise EncoderError(f"{directory} is a sentence-transformers model: install the package with "
                               "`pip install sentence-transformers`") from err
        self.model = SentenceTransformer(directory, device=device)
        self.batch_size = batch_size
        self.name = meta.get("name") or os.path.basename(os.path.normpath(directory))
        self.multilingual = bool(meta.get("multilingual", True))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
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


def encoder_kind(directory: str) -> str:
    """"fasttext" or "sentence-transformers"; EncoderError naming what is missing otherwise."""
    if not os.path.isdir(directory):
        raise EncoderError(f"{directory}: no such encoder directory")
    kind = read_meta(directory).get("kind")
    if kind in ("fasttext", "sentence-transformers"):
        return kind
    if any(os.path.isfile(os.path.join(directory, f)) for f in ("modules.json", "config_sentence_transformers.json")):
        return "sentence-transformers"
    raise EncoderError(f"{directory}: not an encoder directory: expected a sentence-transformers model "
                       f"(modules.json) or a fastText model.bin with {MARKER} = {{\"kind\": \"fasttext\"}}")


def load_encoder(directory: str, device: str = "cpu", batch_size: int = 64) -> Any:
    """The encoder in ``directory``, loaded once per process and device."""
    key = (os.path.abspath(directory), device)
    with _LOCK:
        if key not in _CACHE:
            kind, meta = encoder_kind(directory), read_meta(directory)
            if kind == "fasttext":
                _CACHE[key] = FastTextEncoder(directory, meta)
            else:
                _CACHE[key] = SentenceTransformerEncoder(directory, meta, device, batch_size)
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
    code = "import sys; from curation.relevance_encoders import _train_unsupervised as t; t(*sys.argv[1:3], *map(int, sys.argv[3:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, str(data), str(out / "model.bin"), str(dim), str(epochs)],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"fastText encoder training failed: {done.stderr.strip().splitlines()[-1:]}")
    data.unlink()
    meta = {"kind": "fasttext", "model": "model.bin", "multilingual": multilingual, "name": name or out.name}
    (out / MARKER).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out
