"""The input record: what a reader makes of one input row, before validation.

A reader turns each input row into a ``RawRecord`` (or a ``schemas.rows.Reject``);
``curation.clean`` turns a ``RawRecord`` into a schema-shaped dict (a ``pairs`` or
``parallel`` row, see ``schemas/arrow.py``). Every stage yields either its output or a
``Reject``, so that ``input = output + rejected`` holds by construction and is checked in
the manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

RECORD_KINDS = ("pair", "weak", "parallel")


def record_id(source: str, source_id: str) -> str:
    """Stable id of an input record: the same source and key give the same id on any runner."""
    return hashlib.blake2b(f"{source}\x00{source_id}".encode(), digest_size=12).hexdigest()


@dataclass
class RawRecord:
    """One input record after column mapping, before validation.

    ``fields`` holds the mapped text fields by role: ``caption`` (pair), ``text``,
    ``lang``, ``anchor`` (weak), ``src``, ``tgt``, ``src_lang``, ``tgt_lang`` (parallel).
    ``image`` holds encoded bytes, or ``image_path`` a local or remote path to read them.
    ``raw`` is the input row as read, kept for the rejects table. ``image_root`` is the
    folder ``image_path`` must still lie in when the image stage opens it (symlinks
    resolved; ``curation.read.paths``), or None when the source trusts its paths.
    """

    source: str
    kind: str
    source_id: str
    split: str
    fields: dict[str, Any]
    provenance: dict[str, Any]
    image: bytes | None = None
    image_path: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    image_info: dict[str, Any] | None = None  # the schema's ``image`` struct, set by ValidateImages
    image_root: str | None = None

    @property
    def id(self) -> str:
        return record_id(self.source, self.source_id)

    def raw_view(self) -> dict[str, Any]:
        """What the rejects table keeps of this record: the input row plus where it came from."""
        view: dict[str, Any] = {"row": self.raw, "provenance": self.provenance}
        if self.image is not None:
            view["image"] = self.image
        if self.image_path is not None:
            view["image_path"] = self.image_path
        if self.image_info is not None:
            view["image_info"] = {k: v for k, v in self.image_info.items() if k != "bytes"}
        return view
