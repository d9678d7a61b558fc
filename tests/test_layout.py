"""The import rules of DESIGN.md, checked on the source: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "curation", "translate", "codeswitch", "pretrain")


def imports_of(path: Path) -> set[str]:
    """The m3curate modules a file imports (at any depth: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


# folder -> the module prefixes its files may import (besides their own folder)
ALLOWED = {
    "schemas": (),
    "translate": ("schemas",),
    "codeswitch": ("schemas",),
    "pretrain": ("schemas",),
    "curation/lid": ("schemas",),
    "curation/relevance": ("schemas", "translate", "codeswitch"),
    "curation/regions": ("schemas", "codeswitch"),
    "curation/concepts": ("schemas", "codeswitch"),
}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_package_imports_follow_design(folder: str):
    own = folder.replace("/", ".")
    bad = []
    for path in files(folder):
        for name in imports_of(path):
            if not (name == own or name.startswith(own + ".") or name.split(".")[0] in ALLOWED[folder]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_only_the_demo_and_the_cli_import_the_demo():
    bad = [f"{p.relative_to(ROOT)}" for folder in PACKAGES for p in files(folder)
           if any(n.startswith("curation.demo") for n in imports_of(p))
           and "curation/demo/" not in p.as_posix() and p != ROOT / "curation" / "cli.py"]
    assert bad == []


def test_the_contract_does_not_load_beam_for_the_trainer():
    """``import schemas`` (what the trainer does) must not pull Beam in: the stage framework
    is a separate module."""
    init = (ROOT / "schemas" / "__init__.py").read_text()
    assert "schemas.stage" not in init.replace("``schemas.stage``", "")
