"""Reading a stage's TOML table into its config dataclass: the pieces every stage config
shares (``curation/regions``, ``curation/concepts``, ``curation/relevance``), here because
those packages may import only ``schemas``."""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any


def resolve_path(path: str, base_dir: str) -> str:
    """A config path relative to the config file's folder; empty, absolute and URL paths as given."""
    return path if not path or "://" in path or os.path.isabs(path) else os.path.join(base_dir, path)


def check_known(section: str, data: dict[str, Any], config_class: type, error: type[Exception]) -> None:
    """Raise ``error`` naming the settings of ``[section]`` that ``config_class`` does not have."""
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{section}: unknown setting(s) {unknown}; known: {sorted(known)}")
