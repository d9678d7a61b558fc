"""Streaming, sharding, shuffling, resume positions, the text policy, masking, bad samples."""

from __future__ import annotations

import hashlib
import io
import random
from itertools import islice

import pyarrow.parquet as pq
import pytest
import sentencepiece as spm
import torch
from pretrain_helpers import micro_config, pair_row, write_dataset

from pretrain.config import DataConfig
from pretrain.data import build_loader, collate, image_key, make_sample
from pretrain.images import BadSample, center_resize, decode, random_resized_crop
from pretrain.sampling import choose_text, mask_tokens
from pretrain.shards import PAIR_COLUMNS, RowStream, StreamPosition, dataset_texts, open_dataset
from pretrain.tokenizer import Tokenizer, train_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return open_dataset(str(write_dataset(tmp_path_factory.mktemp("d") / "ds", n=48)))


@pytest.fixture(scope="module")
def tok(data):
    return train_tokenizer(dataset_texts(data), micro_config().tokenizer)


def _epoch_ids(units, consumer, consumers, epoch=0, buffer=8):
    stream = RowStream(units, PAIR_COLUMNS, "train", 7, consumer, consumers, buffer, StreamPosition(epoch, 0))
    ids = []
    for row, pos in stream:
        if pos.epoch != epoch:
            break
        ids.append(row["id"])
    return ids


@pytest.mark.parametrize("consumers", [3, 20])  # fewer and more consumers than the 6 row groups
def test_consumers_split_an_epoch_disjointly_and_completely(data, consumers):
    parts = [_epoch_ids(data.pairs, c, consumers) for c in range(consumers)]
    flat = [i for p in parts for i in p]
    assert len(flat) == len(set(flat)) == 48
    assert all(parts[:6])  # every consumer that can have rows has some


def test_shuffle_is_seeded_by_epoch_and_a_resumed_stream_continues_exactly(data):
    assert _epoch_ids(data.pairs, 0, 1, epoch=0) == _epoch_ids(data.pairs, 0, 1, epoch=0)
    assert _epoch_ids(data.pairs, 0, 1, epoch=0) != _epoch_ids(data.pairs, 0, 1, epoch=1)
    full = RowStream(data.pairs, PAIR_COLUMNS, "train", 7, 0, 1, 8)
    straight = [row["id"] for row, _ in islice(full, 70)]
    part = RowStream(data.pairs, PAIR_COLUMNS, "train", 7, 0, 1, 8)
    first = [row["id"] for row, _ in islice(part, 30)]
    resumed = RowStream(data.pairs, PAIR_COLUMNS, "train", 7, 0, 1, 8, part.position)
    assert first + [row["id"] for row, _ in islice(resumed, 40)] == straight


def test_text_policy_by_kind_language_and_relevance():
    row = pair_row(6)  # caption, translation (de), codeswitch, weak with anchor and relevance null
    rng = random.Random(0)
    only_de = DataConfig(lang_weights={"en": 0})
    assert {choose_text(row["texts"], only_de, rng).lang for _ in range(30)} == {"de"}
    weak_only = {"caption": 0, "translation": 0, "codeswitch": 0, "weak": 1}
    only_weak = DataConfig(kind_weights=weak_only, null_relevance=0.25)
    weak = choose_text(row["texts"], only_weak, rng)
    assert weak.is_weak and weak.relevance == 0.25 and weak.anchor == row["texts"][0]["text"]
    assert choose_text(row["texts"], DataConfig(kind_weights=weak_only), rng) is None  # null relevance: skip
    scored = pair_row(9)["texts"]  # relevance 1.0, no anchor
    got = choose_text(scored, DataConfig(kind_weights=weak_only), rng)
    assert got.relevance == 1.0 and got.anchor is None
    cs = choose_text(row["texts"], DataConfig(kind_weights={"caption": 0, "translation": 0, "weak": 0}), rng)
    assert cs.kind == "codeswitch" and cs.spans == [(2, 6)]



def test_back_translation_of_a_weak_text_is_weak():
    """mt.back_translate makes a ``translation`` derived from a weak text: it is drawn with the
    weak kind's weight and carries the weak text's relevance and anchor, never as a strict pair."""
    texts = pair_row(6)["texts"]
    weak_i = next(i for i, t in enumerate(texts) if t["kind"] == "weak")
    texts[weak_i] = {**texts[weak_i], "relevance": 0.2}
    back = {**texts[0], "kind": "translation", "text": "a back-translated alt-text", "derived_from": weak_i}
    texts = [*texts, back]
    rng = random.Random(0)
    strict_only = DataConfig(kind_weights={"weak": 0}, lang_weights={"de": 0})
    assert all(choose_text(texts, strict_only, rng).text != back["text"] for _ in range(50))
    only_en_weak = DataConfig(kind_weights={"caption": 0, "translation": 0, "codeswitch": 0}, lang_weights={"de": 0})
    got = {choose_text(texts, only_en_weak, rng).text for _ in range(30)}
    assert back["text"] in got
    picked = next(c for c in (choose_text(texts, only_en_weak, rng) for _ in range(50)) if c.text == back["text"])
    assert picked.is_weak and picked.relevance == 0.2 and picked.anchor == texts[0]["text"]


def test_masking_prefers_code_switched_tokens(tok):
    ids, flags = tok.encode_with_spans("a rotes square on the left", [(2, 7)], 16)
    assert any(flags) and not flags[0] and not flags[-1]
    assert tok.decode([i for i, f in zip(ids, flags, strict=True) if f]).strip() == "rotes"
    cfg = DataConfig(mask_prob=0.0, span_mask_prob=0.999)
    masked, labels = mask_tokens(ids, flags, cfg, random.Random(1), tok.mask_id, tok.vocab_size, tok.special_ids)
    assert [i for i, lab in enumerate(labels) if lab != -100] == [i for i, f in enumerate(flags) if f]
    assert all(lab == -100 or lab == ids[i] for i, lab in enumerate(labels))


def test_tokenizer_adds_missing_special_tokens():
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["a red square", "ein rotes Quadrat"] * 20), model_writer=model,
                                   vocab_size=30, hard_vocab_limit=False, minloglevel=2)  # no pad, no <mask>
    tok = Tokenizer(model.getvalue())
    n = tok.sp.vocab_size()
    assert tok.pad_id == n and tok.mask_id == n + 1 and tok.vocab_size == n + 2
    assert tok.encode("a red square", 4)[0] == tok.cls_id and len(tok.encode("a red square on the left", 4)) == 4


def test_augmentation_is_torch_only_and_deterministic():
    img = decode(pair_row(0)["image"]["bytes"], 32)
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32)
    a = random_resized_crop(img, 24, (0.5, 1.0), random.Random(3), hflip=True)
    b = random_resized_crop(img, 24, (0.5, 1.0), random.Random(3), hflip=True)
    assert a.shape == (3, 24, 24) and torch.equal(a, b)
    assert center_resize(img, 16).shape == (3, 16, 16)
    with pytest.raises(BadSample, match="sha256"):
        decode(b"\xff\xd8junk", 32, sha256="0" * 64)


def test_bad_samples_are_skipped_and_counted(tmp_path, tok):
    junk = b"\xff\xd8\xff\xe0 truncated jpeg"
    root = write_dataset(tmp_path / "bad", n=24, bad_rows={0: junk, 5: junk, 7: b"GIF89a nothing"})
    cfg = micro_config(data={"batch_size": 8})
    seen = 0
    for batch, meta in build_loader(open_dataset(str(root)), cfg, tok):
        seen += len(batch["images"])
        if meta["state"]["pairs"][0] >= 1:
            break
    stats = meta["state"]["stats"]
    assert stats["skipped/image_undecodable"] == 3
    assert stats["samples"] == seen and seen >= 21
    # the bad rows are stored with their true digests, so the loader skipped them for what
    # they are (undecodable), not for a digest mismatch
    stored = {r["id"]: r["image"] for r in pq.read_table(root / "pairs", columns=["id", "image"]).to_pylist()}
    for rid, data in (("r0000", junk), ("r0005", junk), ("r0007", b"GIF89a nothing")):
        assert stored[rid]["bytes"] == data and stored[rid]["sha256"] == hashlib.sha256(data).hexdigest()
    assert "skipped/image_sha256_mismatch" not in stats


def test_samples_carry_their_image_identity(tok):
    """ITM tells copies of one image from other images by ``image_key``, the first 60 bits of
    the image's sha256: augmented crops of one image differ in pixels."""
    assert image_key("0123456789abcdef" + "0" * 48) == 0x0123456789ABCDE
    cfg = micro_config()
    rows = [pair_row(0), pair_row(16), pair_row(1)]  # rows 0 and 16 hold the same image
    samples = [make_sample(r, cfg, tok, random.Random(i)) for i, r in enumerate(rows)]
    batch = collate(samples, [], tok, cfg.model.max_text_len)
    keys = batch["image_key"].tolist()
    assert keys[0] == keys[1] != keys[2]
    assert keys[0] == int(hashlib.sha256(rows[0]["image"]["bytes"]).hexdigest()[:15], 16)
    assert not torch.equal(batch["images"][0], batch["images"][1])
