"""The golden build: a small build's every row, as JSON, must equal a committed file.

It keeps refactors honest: readers, image and text cleaning, dedup, LID, code-switching,
relevance and the writer together must give the same rows as when the file was written.
Rows are dumped table by table in file order (shards sorted by name), image bytes as their
sha256, floats rounded to 5 decimals (LID scores come from a model the session trains),
and the build's temporary folder written as ``<root>``. MT is left out: its tiny fairseq
model is trained per session and its decoding is not guaranteed to be bit-stable across
CPUs; tests/translate checks it against fairseq-generate instead.

Regenerate only on purpose (the output of a build changed and the change is wanted):
``.venv/bin/python -m pytest tests/curation/test_golden.py --update-golden``, then review
the diff of ``tests/curation/golden/build.json`` before committing it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from curation.config import load_config
from curation.demo.corpus import write_corpus
from curation.demo.run import add_codeswitch, add_relevance
from curation.demo.synth import LANGUAGES
from curation.output.manifest import shard_files
from curation.output.write import TABLES
from curation.pipeline import run_build

GOLDEN = Path(__file__).parent / "golden" / "build.json"


def _plain(value: Any, root: str) -> Any:
    """A JSON-able, machine-independent copy of a value read from a shard."""
    if isinstance(value, bytes):
        return {"sha256": hashlib.sha256(value).hexdigest(), "size": len(value)}
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, str):
        return value.replace(root, "<root>")
    if isinstance(value, dict):
        return {k: _plain(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, root) for v in value]
    return value


def dump_build(directory: Path, root: Path) -> dict[str, Any]:
    """Every row of a build, table by table, and the manifest's counts and languages."""
    out: dict[str, Any] = {}
    for table in TABLES:
        rows = []
        for path in shard_files(str(directory), table):
            rows.append({"shard": Path(path).name, "rows": pq.read_table(path).to_pylist()})
        out[table] = _plain(rows, str(root))
    manifest = json.loads((directory / "manifest.json").read_text())
    out["manifest"] = _plain({k: manifest[k] for k in ("schema_version", "counts", "languages")}, str(root))
    return out


@pytest.mark.slow
def test_small_build_equals_the_golden_file(tmp_path: Path, lid_model_path: str, request: pytest.FixtureRequest):
    toml = write_corpus(tmp_path, n=48, seed=11)
    stages = f'\n[lid]\nmodel = "{lid_model_path}"\nlow_confidence = "und"\n'
    stages += add_codeswitch(tmp_path, LANGUAGES) + add_relevance(tmp_path)
    with toml.open("a", encoding="utf-8") as handle:
        handle.write(stages)
    run_build(load_config(toml), str(tmp_path / "dataset"))
    got = dump_build(tmp_path / "dataset", tmp_path)
    text = json.dumps(got, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if request.config.getoption("--update-golden"):
        GOLDEN.write_text(text, encoding="utf-8")
        pytest.skip(f"rewrote {GOLDEN}; review its diff before committing it")
    assert GOLDEN.exists(), f"no golden file: run this test once with --update-golden ({GOLDEN})"
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    for table in (*TABLES, "manifest"):  # one table at a time, for a readable failure
        assert got[table] == want[table], f"the build's {table} changed (see the module docstring)"
