"""Schema-shaped pairs rows for the translation tests (``schemas.arrow.PAIRS``)."""

from __future__ import annotations

from typing import Any


def text(t: str, lang: str, kind: str = "caption", **extra: Any) -> dict[str, Any]:
    return {"text": t, "lang": lang, "lang_score": 0.9, "declared_lang": None, "kind": kind, "origin": "src",
            "derived_from": None, "anchor": None, "relevance": None, "relevance_scorer": None, "score": None,
            "spans": None, **extra}


def row(texts: list[dict[str, Any]], rid: str = "r1") -> dict[str, Any]:
    return {"id": rid, "source": "cc", "source_id": f"k-{rid}", "split": "train",
            "provenance": {"file": "f.jsonl", "row": 3, "url": None, "member": None},
            "image": {"bytes": b"x", "width": 1, "height": 1, "format": "JPEG", "sha256": "0"}, "regions": None,
            "texts": texts}


# Outputs of in-process FnApiRunner pipelines, by run and table. The collecting function
# lives in this importable module, so Beam pickles it by reference and, running in this
# process, appends to this very dict.
COLLECTED: dict[tuple[str, str], list[Any]] = {}


def collect(element: Any, run: str, table: str) -> None:
    COLLECTED.setdefault((run, table), []).append(element)
