"""Shared fixtures: tiny real models that tests build themselves (nothing is downloaded).

``lid_model_path``: a fastText language-ID model with lid.176-style labels
(``__label__en``) for the demo languages en, de, fr, es, trained in well under a second
on generated sentences (``curation.synth.lid_texts``), once per test session.
``lid_glot_model_path``: the same, labelled GlotLID/OpenLID-style (``__label__eng_Latn``).
``runner_buffers``: the most FnApiRunner held between fused stages while the test ran
(bytes in ListBuffers, values in GroupingBuffers, images in either), read live from a dict.
``--update-golden``: rewrite the golden build file (tests/curation/test_golden.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/curation/golden/*.json from this build (only on purpose: the "
                          "output of a build changed and the change is wanted)")


# Seeds of the LID training text: not the seeds the tests label texts with.
LID_TRAIN_SEED = 9001
LID_TRAIN_EXAMPLES = 4000
GLOT_LABELS = {"en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn"}


def _train(directory: Path, labels: dict[str, str] | None) -> str:
    from curation.demo.synth import lid_texts
    from curation.lid.tools import train_lid

    data = directory / "lid.tsv"
    with open(data, "w", encoding="utf-8") as f:
        for lang, text in lid_texts(LID_TRAIN_EXAMPLES, LID_TRAIN_SEED):
            f.write(f"{(labels or {}).get(lang, lang)}\t{text}\n")
    out = directory / "lid.bin"
    train_lid(str(data), str(out), bucket=20_000, epochs=5, threads=1, seed=0)
    return str(out)


@pytest.fixture(scope="session")
def lid_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny lid.176-style fastText LID model (labels en, de, fr, es)."""
    return _train(tmp_path_factory.mktemp("lid176"), None)


@pytest.fixture(scope="session")
def lid_glot_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny GlotLID-style model (labels eng_Latn, deu_Latn, fra_Latn, spa_Latn)."""
    return _train(tmp_path_factory.mktemp("glotlid"), GLOT_LABELS)


@pytest.fixture(scope="session")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small ``m3curate demo`` (120 images, 0.3 min of pre-training) for the session:
    the end-to-end demo test and the README's recipes read it."""
    from curation.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo-out"
    assert main(["demo", "--out", str(out), "--samples", "120", "--pretrain-minutes", "0.3"]) == 0
    return out


@pytest.fixture
def runner_buffers(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """{"list": peak bytes in live ListBuffers (whole PCollections between fused stages),
    "group": peak values in live GroupingBuffers (what waits behind a GroupByKey), "images":
    peak count of encoded images (JPEG, PNG, WebP signatures) in either}, updated after every
    bundle FnApiRunner executes while the test runs."""
    import weakref

    from apache_beam.runners.portability.fn_api_runner import execution, fn_runner

    alive = {"list": weakref.WeakSet(), "group": weakref.WeakSet()}
    for kind, cls in (("list", execution.ListBuffer), ("group", execution.GroupingBuffer)):
        def init(self, *a, _orig=cls.__init__, _kind=kind, **k):
            _orig(self, *a, **k)
            alive[_kind].add(self)
        monkeypatch.setattr(cls, "__init__", init)
    peaks = {"list": 0, "group": 0, "images": 0}
    execute = fn_runner.FnApiRunner._execute_bundle
    signatures = (b"\xff\xd8\xff", b"\x89PNG\r\n", b"WEBPVP8")

    def noted(self, context, bundle, data_input):
        result = execute(self, context, bundle, data_input)
        held = {id(x): x for b in list(alive["list"]) for x in b._inputs}  # a copy shares its bytes
        grouped = [v for b in list(alive["group"]) for vs in b._table.values() for v in vs]
        peaks["list"] = max(peaks["list"], sum(len(x) for x in held.values()))
        peaks["group"] = max(peaks["group"], len(grouped))
        blobs = [x for x in [*held.values(), *grouped] if isinstance(x, bytes | bytearray | memoryview)]
        images = sum(bytes(x).count(sig) for x in blobs for sig in signatures)
        peaks["images"] = max(peaks["images"], images)
        return result

    monkeypatch.setattr(fn_runner.FnApiRunner, "_execute_bundle", noted)
    return peaks
