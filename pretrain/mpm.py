"""Masked patch modelling (MPM): SimMIM on the ViT, the image side's masked modelling for
datasets without regions (MVP's uni-modal stage: "image masked-patch or region modeling").

SimMIM (Xie et al. 2022, microsoft/SimMIM ``models/simmim.py``): a share of the patches is
masked (``pretrain.sampling.mask_patches``, drawn per sample in the loader); their patch
embeddings are replaced by one learned [MASK] embedding *before* the position embeddings
are added (so a masked patch still says where it is), the encoder runs over the whole
sequence, and a light head (one linear layer) predicts each masked patch's pixels from the
encoder's output there. The target is the image the model sees: the loader's augmented crop,
normalised with the model's MEAN/STD; with ``loss.mpm_norm_pix`` each patch's target is
standardised by its own mean and variance (MAE's ``norm_pix_loss``). The loss is SimMIM's L1,
over the masked patches only (``pretrain.losses.MaskedPatchLoss``).

This runs as a second vision pass (the first, unmasked pass serves ITC, ITM and MLM, which
never see a masked image), over the patches alone: no region features, no text (SimMIM is a
pure image objective, so its prediction is the same in a unimodal and a cross-modal stage).
"""

from __future__ import annotations

import torch
from torch import nn

from pretrain.config import ModelConfig
from pretrain.images import normalize

NORM_PIX_EPS = 1e-6  # MAE's: (target - mean) / (var + 1e-6) ** 0.5


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch * patch * C): patches row major (the ViT's token order),
    each flattened as (row, column, channel), as MAE's ``patchify``."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def patch_targets(images: torch.Tensor, patch: int, norm_pix: bool = False) -> torch.Tensor:
    """(B, N, patch * patch * 3) regression targets of uint8 ``images``: the pixels the model
    sees (``normalize``), with ``norm_pix`` standardised per patch (unbiased variance, MAE)."""
    target = patchify(normalize(images), patch)
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + NORM_PIX_EPS) ** 0.5
    return target


class MaskedPatchHead(nn.Module):
    """The [MASK] embedding (an embedding table of one row: initialised N(0, 0.02) as
    SimMIM's ``mask_token``, and, like this model's other embeddings and [CLS], left without
    weight decay; SimMIM's Swin encoder excludes ``mask_token`` from weight decay, its ViT
    encoder does not) and SimMIM's prediction head: one linear layer from the vision width to
    a patch's pixels (SimMIM's 1x1 convolution to ``stride^2 * 3`` channels, then
    PixelShuffle, computed here at the masked patches only)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.patch = cfg.patch_size
        self.embed = nn.Embedding(1, cfg.vision_width)
        self.predict = nn.Linear(cfg.vision_width, cfg.patch_size * cfg.patch_size * 3)

    @property
    def mask_token(self) -> torch.Tensor:
        return self.embed.weight[None]  # (1, 1, width)

    def forward(self, vision: nn.Module, images: torch.Tensor, masked: torch.Tensor,
                norm_pix: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, targets), each (M, patch * patch * 3) over the M masked patches of
        the batch (``masked``: (B, N) bool, row major), from a vision pass over the patches
        alone with the masked ones replaced by [MASK]."""
        tokens, _ = vision(images, patch_masked=(masked, self.mask_token))
        hidden = tokens[:, 1 : 1 + masked.shape[1]][masked]
        return self.predict(hidden), patch_targets(images, self.patch, norm_pix)[masked]
