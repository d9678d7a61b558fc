"""The language acquisition encoder (MLA) and the model that routes texts by language.

A new language gets its own SentencePiece vocabulary and a small trainable front
(``LanguageEncoder``): token embeddings for that vocabulary and ``adapter_layers`` residual
bottleneck adapters (LayerNorm, Linear(width, adapter_dim), GELU, Linear(adapter_dim, width),
Houlsby-style, the output layer zero-initialised so an adapter starts as the identity). Its
token vectors then go through the base model's *frozen* text encoder (positions, blocks,
final LayerNorm) and text projection, so the new language lands in the space the frozen
image encoder was trained against. The encoder holds only its own parameters; the frozen
base is passed in at every call, so an encoder's state dict never copies the base.

Embeddings of pieces the base vocabulary also has (names, digits, punctuation, shared
subwords) start from the base's vectors; the rest from the mean base vector plus noise
(through a truncated SVD when the table is factorised, ``embed_rank``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.layers import init_weights
from pretrain.model import RC3Model
from pretrain.tokenizer import Tokenizer


class Adapter(nn.Module):
    """x + up(gelu(down(ln(x)))): a residual bottleneck; the identity at initialisation."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.ln, self.down, self.up = nn.LayerNorm(width), nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(self.ln(x))))


class LanguageEncoder(nn.Module):
    """New-language token embeddings plus adapters, in front of the frozen text encoder.

    ``embed_rank`` > 0 factorises the embedding table (ALBERT): vocab x rank, then a linear
    map to the text width, so a vocabulary costs ``rank`` numbers a piece instead of
    ``width`` (on ``tiny`` a 1,000-piece table is 10% of the model at full width)."""

    def __init__(self, vocab_size: int, pad_id: int, width: int, adapter_layers: int, adapter_dim: int,
                 embed_rank: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.tok = nn.Embedding(vocab_size, embed_rank or width)
        self.tok_proj = nn.Linear(embed_rank, width, bias=False) if embed_rank else None
        self.adapters = nn.ModuleList(Adapter(width, adapter_dim) for _ in range(adapter_layers))
        self.apply(init_weights)
        for adapter in self.adapters:
            nn.init.zeros_(adapter.up.weight)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids)
        return x if self.tok_proj is None else self.tok_proj(x)

    @torch.no_grad()
    def set_embeddings(self, table: torch.Tensor) -> None:
        """Make ``embed`` return ``table``'s rows: exactly at full width, else the best
        rank-``embed_rank`` approximation (truncated SVD)."""
        if self.tok_proj is None:
            self.tok.weight.copy_(table)
            return
        u, s, vh = torch.linalg.svd(table, full_matrices=False)
        r = min(self.tok.weight.shape[1], s.shape[0])
        self.tok.weight.zero_()
        self.tok_proj.weight.zero_()
        self.tok.weight[:, :r] = u[:, :r] * s[:r]
        self.tok_proj.weight[:, :r] = vh[:r].t()

    def forward(self, ids: torch.Tensor, base: RC3Model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised embedding, tokens, token mask), as ``RC3Model.encode_text`` returns."""
        mask = ids != self.pad_id
        x = self.embed(ids) + base.text.pos[:, : ids.shape[1]]
        for adapter in self.adapters:
            x = adapter(x)
        for block in base.text.blocks:
            x = block(x, mask=mask)
        tokens = base.text.ln(x)
        return F.normalize(base.text_proj(tokens[:, 0]), dim=-1), tokens, mask


@torch.no_grad()
def init_from_base(encoder: LanguageEncoder, tok: Tokenizer, base: RC3Model, base_tok: Tokenizer,
                   generator: torch.Generator) -> int:
    """Copy the base's vector for every piece both vocabularies share (and the specials);
    the others get the base's mean vector plus N(0, 0.02). Returns how many were copied."""
    table = base.text.tok.weight
    mean = table[: base_tok.sp.vocab_size()].mean(0)
    weight = mean + 0.02 * torch.randn((tok.vocab_size, table.shape[1]), generator=generator)
    specials = {tok.pad_id: base_tok.pad_id, tok.cls_id: base_tok.cls_id, tok.eos_id: base_tok.eos_id,
                tok.mask_id: base_tok.mask_id}
    copied = 0
    for i in range(tok.sp.vocab_size()):
        j = specials.get(i)
        if j is None and not tok.sp.is_unknown(i) and not tok.sp.is_control(i):
            found = base_tok.sp.piece_to_id(tok.sp.id_to_piece(i))
            j = None if found == base_tok.sp.unk_id() else found
        if j is not None:
            weight[i] = table[j]
            copied += 1
    for i, j in specials.items():
        weight[i] = table[j]
    encoder.set_embeddings(weight)
    return copied


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class LanguageView:
    """One acquired language as ``evaluate.encode_texts`` sees a model: ``cfg`` and
    ``encode_text(ids)``."""

    def __init__(self, owner: AcquiredModel, lang: str):
        self.owner, self.lang, self.cfg = owner, lang, owner.cfg

    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.owner.encoders[self.lang](ids, self.owner.base)


class AcquiredModel(nn.Module):
    """The frozen base plus one ``LanguageEncoder`` per acquired language.

    Images and the base's languages go through the base unchanged (``encode_image``,
    ``encode_text`` are the base's own); ``for_language(lang)`` gives the (model, tokenizer)
    that encodes texts of ``lang``: the acquired encoder and its vocabulary, or the base."""

    def __init__(self, base: RC3Model, base_tok: Tokenizer, tokenizers: dict[str, Tokenizer], encoders: nn.ModuleDict,
                 settings: dict[str, Any]):
        super().__init__()
        self.base, self.encoders = base, encoders
        self.base_tok, self.tokenizers, self.settings = base_tok, tokenizers, settings
        self.cfg = base.cfg

    @property
    def use_itm(self) -> bool:
        """Read by ``evaluate`` only when ``--rerank`` is asked: refused with the reason."""
        raise ValueError("--rerank: not available on a checkpoint with acquired languages "
                         f"({', '.join(sorted(self.encoders))}): the fusion encoder and ITM head never saw their "
                         "encoders' tokens; evaluate without --rerank, or evaluate the base run for its languages")

    @classmethod
    def from_state(cls, base: RC3Model, base_tok: Tokenizer, state: dict[str, Any]) -> AcquiredModel:
        """Rebuild from a checkpoint's ``acquisition`` entry (weights loaded, frozen)."""
        tokenizers = {lang: Tokenizer(proto) for lang, proto in state["tokenizers"].items()}
        encoders = build_encoders(base, tokenizers, state["settings"])
        encoders.load_state_dict(state["encoders"])
        model = cls(base, base_tok, tokenizers, encoders, state["settings"])
        return model.requires_grad_(False)

    def encode_image(self, images: torch.Tensor, **regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return self.base.encode_image(images, **regions)

    def encode_text(self, ids: torch.Tensor, concepts: torch.Tensor | None = None,
                    masked: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The base's own text encoding (concept tokens included for a concept-trained base)."""
        return self.base.encode_text(ids, concepts, masked)

    @property
    def vocab(self) -> Any:
        """The base's concept and region-label vocabularies (``pretrain.evaluate`` reads them)."""
        return getattr(self.base, "vocab", None)

    def for_language(self, lang: str) -> tuple[Any, Tokenizer]:
        if lang in self.encoders:
            return LanguageView(self, lang), self.tokenizers[lang]
        return self.base, self.base_tok


def build_encoders(base: RC3Model, tokenizers: dict[str, Tokenizer], settings: dict[str, Any]) -> nn.ModuleDict:
    """One fresh encoder per language (``settings``: adapter_layers, adapter_dim, embed_rank)."""
    width = base.cfg.text_width
    return nn.ModuleDict({lang: LanguageEncoder(tok.vocab_size, tok.pad_id, width, settings["adapter_layers"],
                                                settings["adapter_dim"] or max(1, width // 4),
                                                settings.get("embed_rank", 0))
                          for lang, tok in sorted(tokenizers.items())})
