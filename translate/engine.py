"""The one interface every translation engine implements, and the decoding settings they share.

A ``Translator`` turns a batch of sentences in one language into hypotheses in another.
The engines (``FairseqTranslator``, ``CT2Translator``) differ in speed, never in what the
caller sees: a list of ``Hypothesis`` in input order, one per sentence, where a sentence
the model cannot take (too long, empty) carries an ``error`` instead of raising, so one
bad caption never costs its batch-mates their translations.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Hypothesis:
    """The best hypothesis for one sentence.

    text: the detokenised translation ("" when ``error`` is set).
    score: fairseq's hypothesis score: the sum of the token log-probabilities (natural
        log; EOS and the forced target-language token included) divided by
        ``length ** lenpen``, i.e. the average log-prob per token at lenpen 1.
        ``fairseq-generate`` prints the same number divided by ln 2 (base 2).
    error: why there is no translation, for people (``source has 1200 tokens; ...``).
    reason: the same for machines: ``too_long`` or ``empty_source`` (None on success).
    """

    text: str
    score: float | None
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Decoding:
    """Decoding settings, with fairseq-generate's names and defaults where it has them.

    beam: beam size (1 = greedy). lenpen: length penalty (scores are divided by
    length ** lenpen). max_len_a, max_len_b: generate at most ``a * src_len + b`` tokens
    (fairseq takes ``src_len`` as the longest source of the batch; see README).
    no_repeat_ngram_size: forbid repeating n-grams of this size (0 = off).
    min_len: generate at least this many tokens before EOS (fairseq's --min-len).
    max_tokens: token budget of one model batch (padded source tokens).
    max_sentences: at most this many sentences per model batch (0 = no limit).
    same_length: model batches hold sources of one token length only (no padding), so a
    sentence's translation and score do not depend on its batch-mates: the same output
    bytes however requests are grouped (runners batch differently). Costs more, smaller
    batches. The pipeline's ``[mt]`` turns it on (``same_length_batches``).
    """

    beam: int = 4
    lenpen: float = 1.0
    max_len_a: float = 0.0
    max_len_b: int = 200
    no_repeat_ngram_size: int = 0
    max_tokens: int = 4096
    max_sentences: int = 0
    min_len: int = 1
    same_length: bool = False

    def check(self) -> None:
        """Raise ValueError naming the setting that is out of range."""
        if self.beam < 1:
            raise ValueError(f"beam = {self.beam}: use 1 (greedy) or more")
        if self.max_tokens < 1 or self.max_sentences < 0:
            raise ValueError("max_tokens must be >= 1 and max_sentences >= 0 (0 = no limit)")
        if self.max_len_a < 0 or self.max_len_b < 1:
            raise ValueError("max_len_a must be >= 0 and max_len_b >= 1")
        if self.min_len < 1:
            raise ValueError(f"min_len = {self.min_len}: use 1 or more")
        if self.no_repeat_ngram_size < 0:
            raise ValueError("no_repeat_ngram_size must be >= 0 (0 = off)")


class Translator(abc.ABC):
    """A loaded translation model.

    Implementations load in ``__init__`` (heavy) and are then called many times; they
    are not thread-safe (Beam's RunInference calls one model from one thread at a time).
    """

    #: the model id recorded as ``origin`` of every translation (set by the loader)
    model_id: str = ""

    @abc.abstractmethod
    def translate(self, sentences: Sequence[str], src_lang: str, tgt_lang: str) -> list[Hypothesis]:
        """One hypothesis per sentence, in input order. ``src_lang``/``tgt_lang`` are the
        model's own language codes (e.g. ``en`` for M2M-100, ``eng_Latn`` for NLLB).
        Raises ValueError for a language pair the model does not translate."""

    @abc.abstractmethod
    def supports(self, src_lang: str, tgt_lang: str) -> bool:
        """Whether this model translates ``src_lang`` into ``tgt_lang``."""
