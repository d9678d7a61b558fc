"""Streaming, sharding, shuffling, resume positions, the text policy, masking (MLM, conditional
MLM on parallel text, regions), bad samples."""

from __future__ import annotations

import hashlib
import io
import random
from itertools import islice

import pyarrow.parquet as pq
import pytest
import sentencepiece as spm
import torch
from pretrain_helpers import micro_config, pair_row, parallel_row, write_dataset

from pretrain.config import DataConfig
from pretrain.data import build_loader, collate, image_key, make_sample, parallel_sample
from pretrain.images import BadSample, center_resize, decode, random_resized_crop
from pretrain.sampling import choose_text, mask_parallel, mask_regions, mask_tokens
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
    first = pair_row(0)
    rows = [first, pair_row(16, image=first["image"]["bytes"]), pair_row(1)]  # rows 0 and 16: one image
    samples = [make_sample(r, cfg, tok, random.Random(i)) for i, r in enumerate(rows)]
    batch = collate(samples, [], tok, cfg.model.max_text_len)
    keys = batch["image_key"].tolist()
    assert keys[0] == keys[1] != keys[2]
    assert keys[0] == int(hashlib.sha256(rows[0]["image"]["bytes"]).hexdigest()[:15], 16)
    assert not torch.equal(batch["images"][0], batch["images"][1])


def test_region_masking_masks_real_regions_only_and_at_least_one():
    rng = random.Random(0)
    assert mask_regions(0, 4, 0.15, rng) == [False] * 4  # no regions, nothing to mask
    for _ in range(50):  # UNITER: an image with regions always has one masked
        got = mask_regions(2, 5, 0.01, rng)
        assert sum(got) >= 1 and got[2:] == [False] * 3
    draws = [mask_regions(10, 10, 0.15, rng) for _ in range(400)]
    share = sum(map(sum, draws)) / 4000
    assert 0.12 < share < 0.19  # ~15 % (a little more: the at-least-one rule)


def test_conditional_mlm_masks_at_cclm_rate_and_cap(tok):
    ids = tok.encode("a red square on the left " * 8, 64)
    cfg = DataConfig()  # cmlm_mask_prob 0.4, cmlm_max_masks 12
    counts = []
    for seed in range(40):
        masked, labels = mask_parallel(ids, cfg, random.Random(seed), tok.mask_id, tok.vocab_size, tok.special_ids)
        chosen = [i for i, lab in enumerate(labels) if lab != -100]
        assert all(labels[i] == ids[i] for i in chosen) and labels[0] == labels[-1] == -100  # never [CLS]/[EOS]
        assert all(masked[i] == ids[i] for i in range(len(ids)) if i not in chosen)
        counts.append(len(chosen))
    assert max(counts) == 12  # 62 maskable tokens at 0.4: the cap binds
    short = tok.encode("a red square", 64)
    rates = [sum(lab != -100 for lab in mask_parallel(short, cfg, random.Random(s), tok.mask_id, tok.vocab_size,
                                                      tok.special_ids)[1]) / (len(short) - 2) for s in range(300)]
    assert 0.34 < sum(rates) / len(rates) < 0.46


def test_parallel_sample_masks_the_query_side_chosen_per_row(tok):
    cfg = micro_config(loss={"ttm": 1.0, "cmlm": 1.0})
    row = parallel_row(3)
    src, tgt = tok.encode(row["src_text"], 16), tok.encode(row["tgt_text"], 16)
    samples = [parallel_sample(row, cfg, tok, random.Random(i)) for i in range(40)]
    assert 10 < sum(s["query_tgt"] for s in samples) < 30  # CCLM: either side, with probability 1/2
    for s in samples:
        assert s["src"] == src and s["tgt"] == tgt
        query = tgt if s["query_tgt"] else src
        masked, labels = s["cmlm"]
        assert len(masked) == len(query) and all(lab in (-100, q) for lab, q in zip(labels, query, strict=True))
    assert parallel_sample(row, cfg, tok, random.Random(5)) == samples[5]  # seeded: resume replays it
    plain = parallel_sample(row, micro_config(), tok, random.Random(0))
    assert plain == {"src": src, "tgt": tgt}  # cross view off: the batch is what it was
    batch = collate([make_sample(pair_row(0), cfg, tok, random.Random(0))] * 2, samples[:3], tok, 16)
    assert batch["par_query_tgt"].tolist() == [s["query_tgt"] for s in samples[:3]]
    assert batch["par_mlm_ids"].shape == batch["par_mlm_labels"].shape and batch["par_mlm_ids"].shape[0] == 3
    assert (batch["par_mlm_labels"] != -100).any()


def test_loader_refuses_cross_view_without_parallel_rows(tmp_path, tok):
    root = write_dataset(tmp_path / "nopar", n=16, parallel=0)
    with pytest.raises(ValueError, match="loss.ttm and loss.cmlm train on parallel rows, and there are none"):
        build_loader(open_dataset(str(root)), micro_config(loss={"ttm": 1.0, "cmlm": 1.0}), tok)
