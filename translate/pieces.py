"""Text ↔ the space-separated pieces a fairseq dictionary indexes, exactly as fairseq does it.

With a SentencePiece model, encoding is ``" ".join(sp.encode(text, out_type=str))`` and
decoding ``pieces.replace(" ", "").replace("▁", " ").strip()``: the two lines of
fairseq's ``sentencepiece`` BPE (``fairseq/data/encoders/sentencepiece_bpe.py``), so the
engines' text equals ``fairseq-generate --bpe sentencepiece``'s ``D-`` lines. Without one,
text is taken as already tokenised (pieces separated by whitespace: for a subword-nmt or
fastBPE model, already segmented with ``apply_bpe``) and returned as the model wrote it,
except that with ``remove_bpe = "subword_nmt"`` the ``@@ `` continuation markers are
removed by fairseq's own rule (``data_utils.post_process``:
``(text + " ").replace("@@ ", "").rstrip()``), so the text equals
``fairseq-generate --remove-bpe``'s.

``remove_bpe``: ``auto`` (the default) removes them when the model's target vocabulary
has ``@@`` pieces and there is no SentencePiece model; ``subword_nmt`` always; ``none``
never (the output keeps the markers, as fairseq-generate's without --remove-bpe).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SPM_SPACE = "\u2581"
BPE_MARKER = "@@ "
REMOVE_BPE = ("auto", "subword_nmt", "none")


def resolve_remove_bpe(option: str, has_spm: bool, target_symbols: Sequence[str]) -> str | None:
    """``subword_nmt`` when ``@@ `` markers are to be removed, else None (see the module docstring).
    Raises ValueError for an unknown option, or ``subword_nmt`` beside a SentencePiece model."""
    if option not in REMOVE_BPE:
        raise ValueError(f"remove_bpe = {option!r}: use one of {REMOVE_BPE}")
    if has_spm:
        if option == "subword_nmt":
            raise ValueError("remove_bpe = 'subword_nmt', but the model has a SentencePiece model, whose pieces are "
                             "joined by SentencePiece's rule: leave remove_bpe at 'auto'")
        return None
    if option == "auto":
        return "subword_nmt" if any(s.endswith("@@") and len(s) > 2 for s in target_symbols) else None
    return "subword_nmt" if option == "subword_nmt" else None


class Pieces:
    """Encoder/decoder for one model; ``spm_model`` None means whitespace tokens.
    remove_bpe: ``subword_nmt`` to join ``@@ ``-marked pieces on output (whitespace tokens only)."""

    def __init__(self, spm_model: str | Path | None, remove_bpe: str | None = None):
        self.spm_model = str(spm_model) if spm_model else None
        self.remove_bpe = remove_bpe
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
        if self._sp is not None:
            return joined.replace(" ", "").replace(SPM_SPACE, " ").strip()
        if self.remove_bpe == "subword_nmt":
            return (joined + " ").replace(BPE_MARKER, "").rstrip()
        return joined
