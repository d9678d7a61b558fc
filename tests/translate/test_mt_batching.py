"""Token-budget batching: length-sorted, within budget, every sentence once, order restored."""

from __future__ import annotations

import random

import pytest

from translate.batching import restore_order, token_budget_batches


def test_batches_respect_the_budget_and_cover_every_sentence_once():
    rng = random.Random(3)
    lengths = [rng.randint(1, 60) for _ in range(500)]
    batches = token_budget_batches(lengths, max_tokens=256)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 256
    longest = [max(lengths[i] for i in b) for b in batches]
    assert longest == sorted(longest), "batches go from short to long sentences"


def test_sentence_limit_ties_and_oversized_sentences():
    lengths = [5, 5, 5, 5, 500, 5]
    batches = token_budget_batches(lengths, max_tokens=100, max_sentences=2)
    assert batches == [[0, 1], [2, 3], [5], [4]], "stable: equal lengths keep input order; 500 > budget alone"
    with pytest.raises(ValueError):
        token_budget_batches([1], max_tokens=0)


def test_restore_order_puts_results_back():
    lengths = [9, 1, 5, 3, 7]
    batches = token_budget_batches(lengths, max_tokens=10)
    results = [[f"out{i}" for i in b] for b in batches]
    assert restore_order(batches, results) == [f"out{i}" for i in range(5)]
    with pytest.raises(ValueError, match="came back with"):
        restore_order(batches, [r[:-1] for r in results])
    with pytest.raises(ValueError, match="two batches"):
        restore_order([[0], [0]], [["a"], ["b"]])


def test_same_length_batches_are_never_padded():
    rng = random.Random(5)
    lengths = [rng.randint(3, 12) for _ in range(300)]
    batches = token_budget_batches(lengths, max_tokens=64, max_sentences=8, same_length=True)
    assert sorted(i for b in batches for i in b) == list(range(300))
    for b in batches:
        assert len({lengths[i] for i in b}) == 1, "a batch mixes source lengths"
        assert len(b) <= 8 and len(b) * lengths[b[0]] <= 64
    padded = token_budget_batches(lengths, max_tokens=64, max_sentences=8)
    assert any(len({lengths[i] for i in b}) > 1 for b in padded), "the default packs mixed lengths"
    assert len(batches) > len(padded)
