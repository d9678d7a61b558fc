"""MVP's two-level inputs and multi-stage schedule, and MRC, in the loader, the model and the
trainer: concept ids and masks in the batches, every new objective training its heads, a
unimodal stage without cross-attention, MRC refused on data without detector labels, and a
run that stops inside stage 1 and resumes ending bit for bit where the straight run ends."""

from __future__ import annotations

import json

import pytest
import torch
from pretrain_helpers import CONCEPTS, micro_config, write_dataset

from pretrain.checkpoint import load_checkpoint, resolve_checkpoint
from pretrain.concepts import Vocabularies, resolve_concepts, scan_region_labels
from pretrain.config import stage_loss
from pretrain.data import build_loader
from pretrain.images import BadSample
from pretrain.losses import RC3Loss
from pretrain.model import build_model
from pretrain.shards import dataset_texts, open_dataset
from pretrain.tokenizer import train_tokenizer
from pretrain.train import run_training

torch.set_num_threads(1)

REGIONS = {"region_dim": 6, "max_regions": 4, "concepts": -1, "max_concepts": 4}
ALL = {"mrfr": 1.0, "mrc": 1.0, "tcp": 1.0, "icp": 1.0, "rca": 1.0, "wca": 1.0}
CPU = {"device": "cpu"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("mvp") / "ds", n=40, regions=True, concepts=True)
    data = open_dataset(str(root))
    tok_path = root.parent / "tok.model"
    tok = train_tokenizer(dataset_texts(data), micro_config().tokenizer, tok_path)
    return root, data, tok, tok_path


def _vocab(data) -> Vocabularies:
    return Vocabularies(list(CONCEPTS), scan_region_labels(data, "train"))


def _setup(dataset, **sections):
    _, data, tok, _ = dataset
    cfg = micro_config(**{"model": REGIONS, "loss": ALL, **sections})
    vocab = _vocab(data)
    batch, _ = next(iter(build_loader(data, cfg, tok, vocab=vocab)))
    model_cfg = cfg.model.__class__(**{**vars(cfg.model), "concepts": len(vocab.concepts), "region_classes": len(vocab.labels)})
    torch.manual_seed(0)
    return cfg, build_model(model_cfg, cfg.loss, tok.vocab_size, tok.pad_id), batch, vocab


def test_batches_carry_text_and_region_concepts_and_labels(dataset):
    cfg, _, batch, vocab = _setup(dataset)
    assert vocab.labels == ["blue box", "green box", "red box", "yellow box"]
    colours = {CONCEPTS.index(c) for c in ("red", "green", "blue", "yellow")}
    assert batch["text_concepts"].shape == (8, 4)
    for ids, weak in zip(batch["text_concepts"].tolist(), batch["is_weak"].tolist(), strict=True):
        # a caption or translation: its colour, "square", its position; a weak text has none
        assert ids[3] == -1 and (ids[:3] == [-1] * 3 if weak else (ids[0] in colours and ids[1] == CONCEPTS.index("square")))
    masked = batch["concepts_masked"]
    assert (masked.sum(1) >= 1).tolist() == (~batch["is_weak"]).tolist()  # at least one per text with concepts, none weak
    assert not (masked & (batch["text_concepts"] < 0)).any()
    # regions: the unnamed background box has neither concept nor label; padded slots neither
    assert batch["region_concepts"][:, 0].tolist() == [-1] * 8 and batch["region_concepts"][:, 2:].eq(-1).all()
    for concept, label in zip(batch["region_concepts"][:, 1].tolist(), batch["region_labels"][:, 1].tolist(), strict=True):
        assert vocab.labels[label] == f"{CONCEPTS[concept]} box"


def test_every_new_objective_trains_its_heads(dataset):
    cfg, model, batch, _ = _setup(dataset)
    out = model(batch)
    assert {"mrfr_pred", "mrc_logits", "tcp_logits", "icp_logits", "rca", "wca"} <= set(out)
    assert out["mrc_logits"].shape[1] == 4 and out["tcp_logits"].shape[1] == out["icp_logits"].shape[1] == len(CONCEPTS)
    losses = RC3Loss(cfg.loss)(**out)
    assert all(torch.isfinite(losses[k]) and losses[k] > 0 for k in ALL)
    losses["loss"].backward()
    for name in ("concepts.embed.weight", "concepts.text_head.0.weight", "concepts.image_head.0.weight",
                 "region_head.classify.3.weight", "region_head.regress.3.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    # the [MASK] row of the concept table is the only input a masked concept has
    assert model.concepts.embed.weight.grad[len(CONCEPTS)].abs().sum() > 0


def test_unimodal_stage_has_no_cross_attention(dataset):
    cfg, model, batch, _ = _setup(dataset, loss={**ALL, "mlm": 1.0})
    stage = cfg.loss.__class__(**{**vars(cfg.loss), "itc": 0.0, "weak": 0.0, "ttc": 0.0, "itm": 0.0, "rca": 0.0, "wca": 0.0})
    model.eval()
    model.set_stage(stage, unimodal=True)
    first = model(batch)
    other_images = {**batch, "images": batch["images"].flip(0)}
    other_texts = {**batch, "text_ids": batch["text_ids"].flip(0), "text_concepts": batch["text_concepts"].flip(0)}
    # MLM and text concept recovery ignore the image; the masked regions' heads ignore the text
    by_image, by_text = model(other_images), model(other_texts)
    for key in ("mlm_logits", "tcp_logits"):
        assert torch.equal(first[key], by_image[key]), key
    for key in ("mrfr_pred", "mrc_logits", "icp_logits"):
        assert torch.equal(first[key], by_text[key]), key
        assert not torch.equal(first[key], by_image[key]), key
    model.set_stage(stage, unimodal=False)  # with cross-attention, each side sees the other
    crossed = model(batch)
    assert not torch.equal(crossed["mlm_logits"], model(other_images)["mlm_logits"])
    assert not torch.equal(crossed["mrfr_pred"], model(other_texts)["mrfr_pred"])
    assert "itm_logits" not in first and "rca" not in first


def test_mrc_refuses_regions_without_labels(tmp_path, dataset):
    _, _, _, tok_path = dataset
    root = write_dataset(tmp_path / "nolabels", n=16, regions=True)
    cfg = micro_config(model={"region_dim": 6, "max_regions": 4}, loss={"mrc": 1.0},
                       train={"steps": 1, **CPU}, tokenizer={"model": str(tok_path)})
    with pytest.raises(ValueError, match="loss.mrc classifies masked regions by their detector label, and no region"):
        run_training(cfg, str(root), str(tmp_path / "run"), quiet=True)
    no_concepts = micro_config(model={"concepts": -1}, train={"steps": 1, **CPU}, tokenizer={"model": str(tok_path)})
    with pytest.raises(FileNotFoundError, match="no concepts.txt; model.concepts needs"):
        run_training(no_concepts, str(root), str(tmp_path / "run2"), quiet=True)


SCHEDULE = [{"name": "unimodal", "steps": 3, "unimodal": True, "loss": {"mlm": 1.0, "tcp": 1.0, "mrfr": 1.0, "mrc": 0.5, "icp": 1.0}},
            {"name": "crossmodal", "steps": 3, "loss": {"itc": 1.0, "weak": 1.0, "rca": 0.5, "wca": 0.5, "itm": 1.0, "mlm": 1.0}}]


def test_schedule_resumes_bit_for_bit_across_the_stage_boundary(tmp_path, dataset, capsys):
    root, _, _, tok_path = dataset
    cfg = micro_config(model=REGIONS, schedule=SCHEDULE, train={"steps": 6, "ckpt_every": 2, "keep_checkpoints": 0, **CPU},
                       data={"batch_size": 6, "parallel_batch_size": 4}, tokenizer={"model": str(tok_path)})
    straight = run_training(cfg, str(root), str(tmp_path / "a"))
    assert "stage 2/2 'crossmodal' from step 4" in capsys.readouterr().err
    first = run_training(cfg, str(root), str(tmp_path / "b"), stop_at=2, quiet=True)
    assert first["step"] == 2
    resumed = run_training(cfg, str(root), str(tmp_path / "b"), resume=True, quiet=True)
    a, b = load_checkpoint(straight["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    assert a["model"].keys() == b["model"].keys()
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert a["data"] == b["data"] and torch.equal(a["rng"][0]["cpu"], b["rng"][0]["cpu"])
    assert a["concepts"] == list(CONCEPTS) and len(a["region_labels"]) == 4
    logged = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in logged] == [0, 0, 0, 1, 1, 1]
    assert "itm" not in logged[0] and "tcp" in logged[0] and "tcp" not in logged[3] and "rca" in logged[3]
    first_stage = stage_loss(cfg, cfg.schedule[0])
    assert logged[0]["loss"] == pytest.approx(sum(logged[0][k] * getattr(first_stage, k) for k in logged[0] if k in ALL or k in
                                                  ("mlm", "itc")), rel=1e-5)


def test_concept_vocabulary_checks(tmp_path):
    (tmp_path / "concepts.txt").write_text("red\nsquare\n", encoding="utf-8")
    assert resolve_concepts(-1, str(tmp_path), None) == ["red", "square"]
    assert resolve_concepts(0, str(tmp_path), None) == []
    assert resolve_concepts(-1, str(tmp_path), ["saved"]) == ["saved"]  # a resumed run keeps its own
    with pytest.raises(ValueError, match=r"model.concepts = 3, but .*concepts.txt lists 2 concepts; set model.concepts = 2"):
        resolve_concepts(3, str(tmp_path), None)
    (tmp_path / "concepts.txt").write_text("red\nred\n", encoding="utf-8")
    with pytest.raises(ValueError, match="none empty, none repeated"):
        resolve_concepts(-1, str(tmp_path), None)
    vocab = Vocabularies(["red", "square"], ["red box"])
    assert vocab.concept_ids(["square", None, "red"]) == [1, -1, 0] and vocab.label_ids(["red box", "cat", None]) == [0, -1, -1]
    with pytest.raises(BadSample, match="concept 'cat' is not in the run's concepts.txt"):
        vocab.concept_ids(["cat"])
    assert vocab.concept_ids(["cat"], strict=False) == [-1]


def test_a_dataset_behind_a_uri_trains_with_its_concepts(tmp_path, dataset):
    """gs:// and s3:// datasets are read through pyarrow's filesystems; file:// takes the same
    path offline: the manifest, the shards and concepts.txt all come from the URI."""
    root, _, _, tok_path = dataset
    uri = root.resolve().as_uri()
    assert uri.startswith("file:///")
    assert resolve_concepts(-1, uri, None) == resolve_concepts(-1, str(root), None) == CONCEPTS
    assert resolve_concepts(-1, uri + "/", None) == CONCEPTS
    with pytest.raises(FileNotFoundError, match="no concepts.txt"):
        resolve_concepts(-1, (tmp_path / "elsewhere").as_uri(), None)
    cfg = micro_config(model=REGIONS, loss={"tcp": 1.0, "rca": 1.0}, train={"steps": 2, **CPU},
                       tokenizer={"model": str(tok_path)})
    assert run_training(cfg, uri, str(tmp_path / "run"), quiet=True)["step"] == 2
    assert load_checkpoint(resolve_checkpoint(tmp_path / "run"))["concepts"] == CONCEPTS
