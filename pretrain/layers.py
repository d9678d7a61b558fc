"""Transformer building blocks shared by the three encoders.

Attention goes through ``F.scaled_dot_product_attention`` so that CUDA picks its flash or
memory-efficient kernel (the MFU path for ``base``); masks are boolean "may attend" masks
over the keys, which every encoder here needs (text padding, padded region slots).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None, else cross-attention."""

    def __init__(self, width: int, heads: int, context_width: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(context_width or width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        src = x if context is None else context
        b, n, w = x.shape
        h, d = self.heads, w // self.heads
        q = self.q(x).view(b, n, h, d).transpose(1, 2)
        k, v = self.kv(src).view(b, src.shape[1], 2, h, d).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, w))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: self-attention, optional cross-attention, MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float = 0.0, context_width: int | None = None):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(width), Attention(width, heads, dropout=dropout)
        self.cross = Attention(width, heads, context_width, dropout) if context_width else None
        self.ln_cross = nn.LayerNorm(width) if context_width else None
        hidden = int(width * mlp_ratio)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask=mask)
        if self.cross is not None and context is not None:  # no context: a unimodal pass
            x = x + self.cross(self.ln_cross(x), context=context, mask=context_mask)
        return x + self.mlp(self.ln2(x))


def init_weights(module: nn.Module) -> None:
    """BERT/ViT initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
