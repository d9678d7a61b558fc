"""Text ↔ the space-separated pieces a fairseq dictionary indexes, exactly as fairseq does it.

With a SentencePiece model, encoding is ``" ".join(sp.encode(text, out_type=str))`` and
decoding ``pieces.replace(" ", "").replace("▁", " ").strip()``: the two lines of
fairseq's ``sentencepiece`` BPE (``fairseq/data/encoders/sentencepiece_bpe.py``), so the
engines' text equals ``fairseq-generate --bpe sentencepiece``'s ``D-`` lines. Without one,
text is taken as already tokenised (pieces separated by whitespace) and returned as the
model wrote it.
"""

from __future__ import annotations

from pathlib import Path

SPM_SPACE = "\u2581"


class Pieces:
    """Encoder/decoder for one model; ``spm_model`` None means whitespace tokens."""

    def __init__(self, spm_model: str | Path | None):
        self.spm_model = str(spm_model) if spm_model else None
        self._sp = None
        if self.spm_model:
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_file=self.spm_model)

    def encode(self, text: str) -> list[str]:
        if self._sp is None:
            return text.split()
        return self._sp.encode(text, out_type=str)

    def decode(self, pieces: list[str]) -> str:
        joined = " ".join(pieces)
        if self._sp is None:
            return joined
        return joined.replace(" ", "").replace(SPM_SPACE, " ").strip()
