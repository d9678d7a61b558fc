"""Reading one pairs row's ``texts`` by the contract's index fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def back_translated_from(texts: Sequence[dict[str, Any]], text: dict[str, Any]) -> int | None:
    """The index of the weak text that ``text`` translates (the mt stage's back-translation,
    ``derived_from`` pointing at a ``weak`` text), else None."""
    d = text.get("derived_from")
    if text["kind"] == "translation" and d is not None and 0 <= d < len(texts) and texts[d]["kind"] == "weak":
        return d
    return None
