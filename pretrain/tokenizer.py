"""SentencePiece tokeniser: trained on the curated text, or loaded from an existing model.

One multilingual vocabulary serves every language of the dataset (as XLM-R's does). The
special tokens the model needs ([PAD], [CLS], [EOS], [MASK]) are taken from the model when it
defines them and appended after its vocabulary otherwise, so any SentencePiece model (XLM-R's
``sentencepiece.bpe.model`` included) loads without conversion. The model's serialised bytes
travel inside each checkpoint, so evaluation never depends on a file next to it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece as spm

from pretrain.config import TokenizerConfig

MASK_PIECE = "<mask>"


class Tokenizer:
    """Wraps a SentencePiece model with fixed special ids and [CLS] text [EOS] framing."""

    def __init__(self, model_proto: bytes):
        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        n = self.sp.vocab_size()
        extra: list[str] = []

        def special(found: int, name: str) -> int:
            if found >= 0:
                return found
            extra.append(name)
            return n + len(extra) - 1

        self.pad_id = special(self.sp.pad_id(), "[PAD]")
        self.cls_id = special(self.sp.bos_id(), "[CLS]")
        self.eos_id = special(self.sp.eos_id(), "[EOS]")
        mask = self.sp.piece_to_id(MASK_PIECE)
        self.mask_id = special(mask if mask != self.sp.unk_id() else -1, "[MASK]")
        self.vocab_size = n + len(extra)
        self.special_ids = frozenset({self.pad_id, self.cls_id, self.eos_id, self.mask_id})

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"tokenizer model {p} does not exist; train one with `m3curate pretrain tokenizer`")
        return cls(p.read_bytes())

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.model_proto)

    def _frame(self, ids: Sequence[int], max_len: int) -> list[int]:
        return [self.cls_id, *ids[: max_len - 2], self.eos_id]

    def encode(self, text: str, max_len: int) -> list[int]:
        """[CLS] pieces [EOS], cut to ``max_len`` tokens."""
        return self._frame(self.sp.encode(text), max_len)

    def encode_batch(self, texts: list[str], max_len: int) -> list[list[int]]:
        return [self._frame(ids, max_len) for ids in self.sp.encode(texts)]

    def encode_with_spans(self, text: str, spans: Sequence[tuple[int, int]], max_len: int) -> tuple[list[int], list[bool]]:
        """Ids plus, per token, whether it overlaps one of the character ``spans``.

        SentencePiece reports byte offsets; spans are characters (the schema's unit), so the
        spans are converted through the UTF-8 length of their prefixes.
        """
        proto = self.sp.encode(text, return_type="proto")
        byte_spans = [(len(text[:s].encode()), len(text[:e].encode())) for s, e in spans]
        ids, flags = [], []
        for piece in proto.pieces:
            ids.append(piece.id)
            flags.append(any(piece.begin < e and piece.end > s for s, e in byte_spans))
        ids = self._frame(ids, max_len)
        flags = [False, *flags[: max_len - 2], False]
        return ids, flags

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i for i in ids if i < self.sp.vocab_size() and i not in self.special_ids])


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, out_path: str | Path | None = None,
                    seed: int = 0) -> Tokenizer:
    """Train a SentencePiece model on ``texts`` (deterministic for the same texts and config).

    The vocabulary limit is soft: the demo's few hundred distinct words cannot fill a
    4,000-piece vocabulary, and a hard limit would make training fail on small data.
    """
    buffer = io.BytesIO()
    sentences = _non_empty(texts)
    spm.set_random_generator_seed(seed)  # sentence sampling on large corpora is then reproducible
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences, model_writer=buffer, vocab_size=cfg.vocab_size,
            model_type=cfg.model_type, character_coverage=cfg.character_coverage,
            input_sentence_size=cfg.max_sentences, shuffle_input_sentence=True, hard_vocab_limit=False,
            pad_id=0, unk_id=1, bos_id=2, eos_id=3, user_defined_symbols=[MASK_PIECE], minloglevel=2,
            num_threads=1, seed_sentencepiece_size=100_000,
        )
    except RuntimeError as err:
        raise ValueError(f"SentencePiece training failed: {err}") from err
    tok = Tokenizer(buffer.getvalue())
    if out_path:
        tok.save(out_path)
    return tok


def _non_empty(texts: Iterable[str]) -> Iterator[str]:
    count = 0
    for text in texts:
        if text:
            count += 1
            yield text
    if count == 0:
        raise ValueError("no texts to train the tokenizer on; is the dataset (split) empty?")
