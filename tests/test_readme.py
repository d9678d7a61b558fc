"""The docs run: every fenced block a README marks ``<!-- runnable -->`` works as written.

``bash`` blocks run in a fresh folder holding ``demo-out`` (one demo build with a short
pre-training run, shared by the session: the ``demo_out`` fixture) and ``.venv`` (this
checkout's), with ``bash -euo pipefail``. ``toml`` blocks must load as a build config (a
section alone is checked with a stand-in ``[[sources]]``). So the recipes cannot drift
from the code again.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from curation.config import ConfigError, config_from_dict

ROOT = Path(__file__).resolve().parents[1]
READMES = ["README.md", "schemas/README.md", "curation/README.md", "translate/README.md", "codeswitch/README.md",
           "pretrain/README.md"]
BLOCK = re.compile(r"^<!-- runnable -->\n```(\w+)\n(.*?)^```", re.M | re.S)
STAND_IN = {"name": "s", "format": "jsonl", "paths": ["x.jsonl"]}


def blocks() -> list[tuple[str, str, str]]:
    found = []
    for name in READMES:
        text = (ROOT / name).read_text(encoding="utf-8")
        for i, match in enumerate(BLOCK.finditer(text)):
            found.append((f"{name}#{i}", match.group(1), match.group(2)))
    return found


def _ids(value: object) -> str:
    return value if isinstance(value, str) and re.fullmatch(r"[\w/]+\.md#\d+", value) else ""


def test_the_readme_marks_its_recipes():
    kinds = [kind for _, kind, _ in blocks()]
    assert kinds.count("bash") >= 2 and kinds.count("toml") >= 4


@pytest.mark.parametrize(("where", "kind", "code"), [b for b in blocks() if b[1] == "toml"], ids=_ids)
def test_toml_recipe_loads(where: str, kind: str, code: str, tmp_path: Path):
    """Every setting exists and has a valid value; the files it names are the user's, so a
    missing one is the only error allowed."""
    data = tomllib.loads(code)
    data.setdefault("sources", [STAND_IN])
    try:
        config_from_dict(data, tmp_path)
    except ConfigError as err:
        if not re.search(r"no such (file|directory)|is not a directory|does not exist", str(err)):
            raise


@pytest.mark.slow
@pytest.mark.parametrize(("where", "kind", "code"), [b for b in blocks() if b[1] == "bash"], ids=_ids)
def test_bash_recipe_runs(where: str, kind: str, code: str, tmp_path: Path, demo_out: Path):
    (tmp_path / "demo-out").symlink_to(demo_out)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{where} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
