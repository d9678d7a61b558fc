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
