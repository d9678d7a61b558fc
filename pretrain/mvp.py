"""MVP's concept level in the model: concept tokens on both sides, their prediction heads,
the fine-grained grounding inputs, and the region head of masked region modelling.

Two-level inputs (MVP/MVPTR, Li et al. 2022; its code appends a text's phrase concepts after
its words and an image's object tags after its regions, Oscar style):

* text: the text's concepts (``texts[].concepts``, at most ``model.max_concepts``) are extra
  tokens after the words: concept embedding + a text-concept type embedding, no position (a
  set, not a sequence). They are not added to the words they cover: the schema gives no span
  per concept, and extra tokens let a word and its concept attend to each other.
* image: each region's concept (``regions.concepts``) is a token beside the region: concept
  embedding + the region's box embedding + an image-concept type embedding, masked where the
  region has no concept. One embedding table serves both sides (the concepts are the shared,
  language-independent level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.config import LossConfig, ModelConfig
from pretrain.layers import Block


def _head(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, out), nn.GELU(), nn.LayerNorm(out))


class ConceptLevel(nn.Module):
    """Concept embeddings (row ``concepts`` is [MASK]) and the masked concept recovery heads
    (decoder tied to the embedding, as the MLM head is to the token embedding)."""

    def __init__(self, cfg: ModelConfig, loss: LossConfig):
        super().__init__()
        w, vw = cfg.text_width, cfg.vision_width
        self.count = cfg.concepts
        self.embed = nn.Embedding(cfg.concepts + 1, w)
        self.text_type = nn.Parameter(torch.zeros(1, 1, w))
        self.image_type = nn.Parameter(torch.zeros(1, 1, vw))
        if vw != w:
            self.to_vision = nn.Linear(w, vw)
        if loss.tcp > 0:
            self.text_head = _head(w, w)
        if loss.icp > 0:
            self.image_head = _head(vw, w)
        if loss.tcp > 0 or loss.icp > 0:
            self.bias = nn.Parameter(torch.zeros(cfg.concepts))

    def _embed(self, ids: torch.Tensor, masked: torch.Tensor | None) -> torch.Tensor:
        if masked is not None:
            ids = torch.where(masked, torch.full_like(ids, self.count), ids)
        return self.embed(ids.clamp(min=0))

    def text_tokens(self, ids: torch.Tensor, masked: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, text width) concept tokens of texts and their mask (ids -1 = none)."""
        return self._embed(ids, masked) + self.text_type, ids >= 0

    def image_tokens(self, ids: torch.Tensor, boxes: torch.Tensor, region_mask: torch.Tensor,
                     masked: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, R, vision width) concept tokens beside the regions (``boxes``: the regions' box
        embeddings) and their mask."""
        x = self._embed(ids, masked)
        x = self.to_vision(x) if hasattr(self, "to_vision") else x
        return x + boxes + self.image_type, (ids >= 0) & region_mask

    def predict(self, head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the concept vocabulary (the [MASK] row excluded)."""
        return head(hidden) @ self.embed.weight[: self.count].t() + self.bias


class RegionHead(nn.Module):
    """Masked region modelling (UNITER/M3P MRFR and MRC, MVP's image concept recovery) on this
    two-stream model.

    The vision encoder's outputs behind the image's [CLS] (a key every row has, so a row
    without regions still attends somewhere): the region slots and, with concepts, the
    region-concept slots, go through one block of self-attention and cross-attention to the
    row's text (UNITER and M3P predict a masked region with the caption in view; the text is
    not masked; a unimodal stage passes no text and the block skips its cross-attention).
    Then UNITER's regression head (Linear, GELU, LayerNorm, Linear to ``region_dim``) at the
    masked regions, and with ``mrc`` a classifier over the detector labels (UNITER's
    ``RegionClassification``: Linear, GELU, LayerNorm, Linear)."""

    def __init__(self, cfg: ModelConfig, loss: LossConfig):
        super().__init__()
        w = cfg.vision_width
        self.block = Block(w, cfg.vision_heads, cfg.mlp_ratio, cfg.dropout, context_width=cfg.text_width)
        self.ln = nn.LayerNorm(w)
        if loss.mrfr > 0:
            self.regress = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.LayerNorm(w), nn.Linear(w, cfg.region_dim))
        if loss.mrc > 0:
            self.classify = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.LayerNorm(w), nn.Linear(w, cfg.region_classes))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, slots: int, text: torch.Tensor | None,
                text_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, slots, width): the block's outputs at the last ``slots`` vision tokens."""
        x = torch.cat([tokens[:, :1], tokens[:, -slots:]], dim=1)
        keys = torch.cat([mask[:, :1], mask[:, -slots:]], dim=1)
        return self.ln(self.block(x, mask=keys, context=text, context_mask=text_mask))[:, 1:]


def grounding_inputs(queries: torch.Tensor, query_mask: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor,
                     width: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What ``GroundingLoss`` takes: the valid queries (Q, E) normalised, the batch row each
    belongs to (Q,), and every row's keys (B, T, E) normalised with their mask (B, T), the
    keys padded to ``width`` tokens (equal shapes on every rank for the gather)."""
    owner = torch.arange(queries.shape[0], device=queries.device)[:, None].expand(query_mask.shape)[query_mask]
    extra = max(0, width - keys.shape[1])
    keys, key_mask = F.pad(keys, (0, 0, 0, extra)), F.pad(key_mask, (0, extra), value=False)
    return F.normalize(queries[query_mask], dim=-1), owner, F.normalize(keys, dim=-1), key_mask
