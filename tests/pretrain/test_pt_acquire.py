"""MLA language acquisition (``pretrain.acquire``): a language the base never saw, learned on
a frozen model.

The base is the micro model trained on English captions only (its tokenizer never saw an
Italian word). Acquisition trains an Italian encoder from a second dataset of the same
scenes, with Italian translations and en-it parallel text. The scenes are those of
test_pt_learns: a square of one of 8 colours at one of 4 places, drawn at a random offset,
so the 32 test images were never seen in training.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import torch
from pretrain_helpers import _text, _write, micro_config, scene_jpeg

from pretrain.acquire import AcquireConfig, run_acquisition
from pretrain.checkpoint import load_checkpoint, step_checkpoints
from pretrain.demo import chance_r_mean
from pretrain.evaluate import evaluate, load_model
from pretrain.train import run_training
from schemas import SCHEMA_VERSION

COLOURS = {"red": ((220, 30, 30), "rosso"), "green": ((30, 170, 30), "verde"), "blue": ((30, 60, 220), "blu"),
           "yellow": ((230, 200, 20), "giallo"), "purple": ((130, 40, 160), "viola"), "cyan": ((40, 200, 210), "ciano"),
           "orange": ((240, 130, 20), "arancione"), "black": ((20, 20, 20), "nero")}
PLACES = {"top left": ((1, 1), "in alto a sinistra"), "top right": ((17, 1), "in alto a destra"),
          "bottom left": ((1, 17), "in basso a sinistra"), "bottom right": ((17, 17), "in basso a destra")}
GERMAN = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "lila", "cyan": "türkis",
          "orange": "orange", "black": "schwarz", "top left": "oben links", "top right": "oben rechts",
          "bottom left": "unten links", "bottom right": "unten rechts"}
SCENES = [(c, p) for c in COLOURS for p in PLACES]
BASE_STEPS = 50


def _italian(colour: str, place: str) -> str:
    return f"{COLOURS[colour][1]} {PLACES[place][1]}"


def _row(i: int, colour: str, place: str, split: str, rng: random.Random, italian: bool) -> dict:
    data = scene_jpeg(COLOURS[colour][0], PLACES[place][0], rng, i)
    texts = [_text(f"{colour} {place}")]
    if italian:
        texts.append(_text(_italian(colour, place), "translation", "it", derived_from=0))
        texts.append(_text(f"{GERMAN[colour]} {GERMAN[place]}", "translation", "de", derived_from=0))
    return {"id": f"s{i:04d}", "source": "scenes", "source_id": str(i), "split": split,
            "provenance": {"file": "x", "row": i, "url": None, "member": None},
            "image": {"bytes": data, "width": 32, "height": 32, "format": "JPEG", "sha256": hashlib.sha256(data).hexdigest()},
            "regions": None, "texts": texts}


def _parallel(i: int, en: str, it: str, lang: str = "it") -> dict:
    return {"id": f"p{i:04d}", "source": "par", "source_id": str(i), "split": "train",
            "provenance": {"file": "p", "row": i, "url": None, "member": None}, "src_text": en, "src_lang": "en",
            "src_lang_score": None, "tgt_text": it, "tgt_lang": lang, "tgt_lang_score": None, "origin": "par",
            "score": None, "pair_id": None}


def write_scenes(root: Path, italian: bool, repeats: int = 6) -> Path:
    """English-only scenes (the base's data), or the same scenes with Italian and German
    translations and en-it, en-de parallel rows (the acquisition's data: scene sentences,
    colours, places)."""
    rng = random.Random(0)
    rows = [_row(i, *SCENES[i % 32], "train", rng, italian) for i in range(32 * repeats)]
    rows += [_row(len(rows) + i, c, p, "test", rng, italian) for i, (c, p) in enumerate(SCENES)]
    files: dict[str, list] = {"pairs": [], "parallel": [], "rejects": []}
    _write(root, "pairs", "pairs/part-0.parquet", rows, files)
    if italian:
        pairs = [(f"{c} {p}", _italian(c, p)) for c, p in SCENES]
        pairs += [(c, it) for c, (_, it) in COLOURS.items()] + [(p, it) for p, (_, it) in PLACES.items()]
        par = [_parallel(i, en, it) for i, (en, it) in enumerate(pairs)]
        par += [_parallel(len(par) + i, en, " ".join(GERMAN[w] for w in _split(en)), "de") for i, (en, _) in enumerate(pairs)]
        _write(root, "parallel", "parallel/part-0.parquet", par, files)
    (root / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "files": files, "counts": {}}))
    return root


def _split(en: str) -> list[str]:
    """An English scene text as GERMAN's keys: "red top left" -> ["red", "top left"]."""
    words = en.split(" ")
    return [words[0], " ".join(words[1:])] if len(words) == 3 else [en]


def train_base(tmp: Path, steps: int = BASE_STEPS) -> Path:
    data = write_scenes(tmp / "base_data", italian=False)
    cfg = micro_config(data={"batch_size": 32, "parallel_batch_size": 0, "shuffle_buffer": 64},
                       train={"steps": steps, "warmup_steps": 5, "lr": 2e-3, "ckpt_every": steps, "log_every": 10})
    run_training(cfg, str(data), str(tmp / "base"), quiet=True)
    return tmp / "base"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return train_base(tmp_path_factory.mktemp("acquire"))


@pytest.fixture(scope="module")
def acq_data(base_run: Path) -> Path:
    return write_scenes(base_run.parent / "acq_data", italian=True)


def _same(a: object, b: object, where: str = "") -> list[str]:
    """Paths at which two checkpoint values differ (tensors compared bit for bit)."""
    if isinstance(a, torch.Tensor):
        return [] if isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b) else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} keys"]
        return [d for k in a for d in _same(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{where} length"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _same(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


@pytest.mark.slow
def test_acquired_language_retrieves_while_the_base_is_untouched(base_run, acq_data, tmp_path):
    """24 acquisition steps (16 NLT + 8 LE, half the base's 50) teach Italian, which the base
    never saw, to retrieve held-out images far above chance (seeds 0-3: r_mean 48-61, chance
    16.7, the base itself 18.2); the base's weights and its English embeddings stay bit for
    bit, and the encoder is a small share of the model."""
    base_file = step_checkpoints(base_run)[-1][1]
    base_bytes = base_file.read_bytes()
    cfg = AcquireConfig(langs=["it"], nlt_steps=16, le_steps=8, batch_size=32, lr=3e-3, adapter_layers=1, vocab_size=60)
    result = run_acquisition(str(base_run), str(acq_data), str(tmp_path / "acq"), cfg, quiet=True)
    assert result["step"] == 24 and result["trainable_share"] <= 0.10, result

    assert base_file.read_bytes() == base_bytes
    base_state, acquired = load_checkpoint(base_file), load_checkpoint(result["checkpoint"])
    assert not _same(base_state["model"], acquired["model"]), "the frozen base changed"
    assert acquired["tokenizer"] == base_state["tokenizer"]

    base_model, base_tok = load_model(base_run, torch.device("cpu"))
    routed, _ = load_model(result["checkpoint"], torch.device("cpu"))
    en = [f"{c} {p}" for c, p in SCENES]
    ids = torch.tensor([i + [base_tok.pad_id] * (16 - len(i)) for i in base_tok.encode_batch(en, 16)])
    with torch.no_grad():
        assert torch.equal(base_model.encode_text(ids)[0], routed.for_language("en")[0].encode_text(ids)[0])

    chance = chance_r_mean(32)
    after = evaluate(result["checkpoint"], str(acq_data), split="test", device="cpu")["languages"]
    before = evaluate(str(base_run), str(acq_data), split="test", device="cpu")["languages"]
    assert after["en"] == before["en"]
    assert after["it"]["r_mean"] > 2 * chance, f"it: held-out r_mean {after['it']['r_mean']} (chance {chance:.1f})"
    assert after["it"]["r_mean"] > before["it"]["r_mean"] + 20, (before["it"], after["it"])


def _small(**kw) -> AcquireConfig:
    return AcquireConfig(**{"langs": ["it"], "nlt_steps": 4, "le_steps": 3, "batch_size": 8, "adapter_layers": 1,
                            "vocab_size": 60, "ckpt_every": 100, **kw})


def test_stopping_after_nlt_and_resuming_ends_bit_for_bit(base_run, acq_data, tmp_path):
    """4 NLT + 3 LE steps straight equal 4 (stopped at the stage boundary) + 1 (stopped inside
    LE) + 2: encoders, optimiser, RNG and stream positions; two languages, factorised
    embeddings."""
    two = {"langs": ["it", "de"], "embed_rank": 8}
    straight = run_acquisition(str(base_run), str(acq_data), str(tmp_path / "a"), _small(**two), quiet=True)
    first = run_acquisition(str(base_run), str(acq_data), str(tmp_path / "b"), _small(**two), stop_at=4, quiet=True)
    assert first["step"] == 4
    middle = run_acquisition(str(base_run), str(acq_data), str(tmp_path / "b"), _small(**two), resume=True, stop_at=5,
                             quiet=True)
    assert middle["step"] == 5  # stopped inside Language Exposure too
    resumed = run_acquisition(str(base_run), str(acq_data), str(tmp_path / "b"), _small(ckpt_every=2, **two),
                              resume=True, quiet=True)
    assert resumed["step"] == straight["step"] == 7
    a, b = load_checkpoint(straight["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    a["acquisition"]["config"].pop("ckpt_every")
    b["acquisition"]["config"].pop("ckpt_every")
    assert not _same(a, b), _same(a, b)
    assert set(a["acquisition"]["streams"]["it"]) == set(a["acquisition"]["streams"]["de"]) == {"nlt", "le"}
    assert a["acquisition"]["encoders"]["it.tok.weight"].shape[1] == 8
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "acquire_metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_refusals_name_the_problem(base_run, acq_data, tmp_path):
    with pytest.raises(ValueError, match="pivot"):
        run_acquisition(str(base_run), str(acq_data), str(tmp_path / "x"), _small(langs=["en"]), quiet=True)
    with pytest.raises(ValueError, match="no parallel rows pair 'en' with 'fr'"):
        run_acquisition(str(base_run), str(acq_data), str(tmp_path / "x"), _small(langs=["fr"]), quiet=True)
    with pytest.raises(ValueError, match="max_trainable_share"):
        run_acquisition(str(base_run), str(acq_data), str(tmp_path / "x"), _small(max_trainable_share=0.001), quiet=True)
    run_acquisition(str(base_run), str(acq_data), str(tmp_path / "y"), _small(nlt_steps=1, le_steps=0), quiet=True)
    with pytest.raises(FileExistsError):
        run_acquisition(str(base_run), str(acq_data), str(tmp_path / "y"), _small(nlt_steps=1, le_steps=0), quiet=True)
    with pytest.raises(ValueError, match="batch_size = 4 differs"):
        run_acquisition(str(base_run), str(acq_data), str(tmp_path / "y"), _small(nlt_steps=1, le_steps=0, batch_size=4),
                        resume=True, quiet=True)
    with pytest.raises(ValueError, match="already holds acquired languages"):
        run_acquisition(str(tmp_path / "y"), str(acq_data), str(tmp_path / "z"), _small(), quiet=True)


def test_cli_acquires_extends_and_evaluate_routes(base_run, acq_data, tmp_path, capsys):
    """``m3curate pretrain acquire`` end to end, a resumed extension of LE, then ``evaluate``
    reporting the acquired language through its encoder."""
    from pretrain.cli import main

    out = str(tmp_path / "run")
    common = ["pretrain", "acquire", "--checkpoint", str(base_run), "--data", str(acq_data), "--langs", "it", "--out", out]
    assert main([*common, "--nlt-steps", "2", "--le-steps", "1", "--batch-size", "8", "--adapter-layers", "1",
                 "--vocab-size", "60"]) == 0
    assert main([*common, "--resume", "--le-steps", "2"]) == 0
    assert "acquire: step 4," in capsys.readouterr().out
    assert load_checkpoint(out)["acquisition"]["config"]["batch_size"] == 8
    assert main(["evaluate", "--checkpoint", out, "--data", str(acq_data), "--langs", "en,it", "--format", "json",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["languages"]) == {"en", "it"} and result["languages"]["it"]["images"] == 32
    with pytest.raises(ValueError, match="--rerank: not available on a checkpoint with acquired languages"):
        evaluate(out, str(acq_data), split="test", rerank=4, device="cpu")


def test_a_language_trains_alike_alone_or_with_others(base_run, acq_data, tmp_path):
    """Each encoder has its own init seed, gradient clipping and stream: acquiring it and de
    together gives the Italian encoder of acquiring it alone, bit for bit."""
    alone = run_acquisition(str(base_run), str(acq_data), str(tmp_path / "a"), _small(nlt_steps=2, le_steps=1), quiet=True)
    both = run_acquisition(str(base_run), str(acq_data), str(tmp_path / "b"), _small(langs=["it", "de"], nlt_steps=2,
                                                                                       le_steps=1), quiet=True)
    a, b = (load_checkpoint(r["checkpoint"])["acquisition"]["encoders"] for r in (alone, both))
    assert not _same(a, {k: v for k, v in b.items() if k.startswith("it.")})


def test_an_encoder_given_the_base_vocabulary_starts_as_the_base(base_run):
    """Adapters start as the identity and shared pieces copy the base's vectors: an encoder
    over the base's own vocabulary encodes exactly as the base does (and, factorised to a
    lower rank, closely)."""
    from pretrain.acquisition.encoder import LanguageEncoder, init_from_base

    base, tok = load_model(base_run, torch.device("cpu"))
    ids = torch.tensor([i + [tok.pad_id] * (16 - len(i)) for i in tok.encode_batch([f"{c} {p}" for c, p in SCENES], 16)])
    with torch.no_grad():
        want = base.encode_text(ids)[0]
        for rank in (0, 24):
            enc = LanguageEncoder(tok.vocab_size, tok.pad_id, base.cfg.text_width, 2, 8, rank)
            init_from_base(enc, tok, base, tok, torch.Generator().manual_seed(0))
            got = enc(ids, base)[0]
            assert torch.equal(got, want) if rank == 0 else (got * want).sum(-1).min() > 0.98
