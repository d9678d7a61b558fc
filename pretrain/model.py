"""The RC3 model: ViT (patches + optional ROI features), multilingual text encoder, fusion.

``RC3Model.forward(batch)`` returns a dict whose keys are exactly the keyword arguments of
``RC3Loss.forward`` for the objectives switched on (open_clip's habit): the model never sees
a rank, and the loss owns the cross-rank gather. The only loss-related work done here is
what needs the encoders themselves: picking ITM hard negatives (they must go through the
fusion encoder; ``itm_negative_weights`` and ``draw_negatives`` are the pure selection) and
projecting the masked positions for MLM.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.config import LossConfig, ModelConfig
from pretrain.images import normalize
from pretrain.layers import Block, init_weights


class VisionEncoder(nn.Module):
    """ViT over patches; optional region features (RC3) projected and appended after them."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w, p = cfg.vision_width, cfg.patch_size
        self.patch = nn.Conv2d(3, w, kernel_size=p, stride=p)
        self.cls = nn.Parameter(torch.zeros(1, 1, w))
        self.pos = nn.Parameter(torch.zeros(1, 1 + (cfg.image_size // p) ** 2, w))
        if cfg.region_dim:
            self.region_proj = nn.Sequential(nn.LayerNorm(cfg.region_dim), nn.Linear(cfg.region_dim, w))
            self.box_proj = nn.Linear(4, w)
            self.region_type = nn.Parameter(torch.zeros(1, 1, w))
        self.blocks = nn.ModuleList(Block(w, cfg.vision_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.vision_layers))
        self.ln = nn.LayerNorm(w)
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)

    def forward(self, images: torch.Tensor, regions: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
                region_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.patch(normalize(images)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        mask = None
        if regions is not None and hasattr(self, "region_proj"):
            r = self.region_proj(regions) + self.box_proj(boxes) + self.region_type
            x = torch.cat([x, r], dim=1)
            keep = torch.ones(x.shape[0], x.shape[1] - r.shape[1], dtype=torch.bool, device=x.device)
            mask = torch.cat([keep, region_mask], dim=1)
        for block in self.blocks:
            x = block(x, mask=mask)
        return self.ln(x), mask


class TextEncoder(nn.Module):
    """Bidirectional transformer over SentencePiece ids; position 0 is [CLS]."""

    def __init__(self, cfg: ModelConfig, pad_id: int):
        super().__init__()
        self.pad_id = pad_id
        self.tok = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.pos = nn.Parameter(torch.zeros(1, cfg.max_text_len, cfg.text_width))
        self.blocks = nn.ModuleList(Block(cfg.text_width, cfg.text_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.text_layers))
        self.ln = nn.LayerNorm(cfg.text_width)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = ids != self.pad_id
        x = self.tok(ids) + self.pos[:, : ids.shape[1]]
        for block in self.blocks:
            x = block(x, mask=mask)
        return self.ln(x), mask


class FusionEncoder(nn.Module):
    """Text tokens self-attend and cross-attend to image tokens (ALBEF/CCLM fusion)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.text_width
        self.blocks = nn.ModuleList(Block(w, cfg.text_heads, cfg.mlp_ratio, cfg.dropout, context_width=cfg.vision_width)
                                    for _ in range(cfg.fusion_layers))
        self.ln = nn.LayerNorm(w)

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, image: torch.Tensor, image_mask: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            text = block(text, mask=text_mask, context=image, context_mask=image_mask)
        return self.ln(text)


class RC3Model(nn.Module):
    """Encoders, projections and the heads of the objectives that ``loss`` switches on."""

    def __init__(self, cfg: ModelConfig, loss: LossConfig, pad_id: int):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size is unset; build the model from a tokenizer (vocab_size = tokenizer.vocab_size)")
        self.cfg, self.loss_cfg = cfg, loss
        self.use_itm, self.use_mlm, self.use_ttc = loss.itm > 0, loss.mlm > 0, loss.ttc > 0
        self.use_anchor = loss.weak > 0 and loss.weak_form == "regularizer"
        self.vision, self.text = VisionEncoder(cfg), TextEncoder(cfg, pad_id)
        self.vision_proj = nn.Linear(cfg.vision_width, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.text_width, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / loss.temperature)), requires_grad=loss.learn_temperature)
        if self.use_itm or self.use_mlm:
            self.fusion = FusionEncoder(cfg)
        if self.use_itm:
            self.itm_head = nn.Linear(cfg.text_width, 2)
        if self.use_mlm:
            w = cfg.text_width
            self.mlm_transform = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.LayerNorm(w))
            self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.apply(init_weights)

    def encode_image(self, images: torch.Tensor, **regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(normalised embedding, tokens, token mask)."""
        tokens, mask = self.vision(images, regions.get("regions"), regions.get("region_boxes"), regions.get("region_mask"))
        return F.normalize(self.vision_proj(tokens[:, 0]), dim=-1), tokens, mask

    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised embedding, tokens, token mask)."""
        tokens, mask = self.text(ids)
        return F.normalize(self.text_proj(tokens[:, 0]), dim=-1), tokens, mask

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        regions = {k: batch[k] for k in ("regions", "region_boxes", "region_mask") if k in batch}
        img, img_tokens, img_mask = self.encode_image(batch["images"], **regions)
        txt, txt_tokens, txt_mask = self.encode_text(batch["text_ids"])
        out: dict[str, Any] = {"image_features": img, "text_features": txt, "logit_scale": self.logit_scale.exp().clamp(max=100),
                               "relevance": batch["relevance"], "is_weak": batch["is_weak"], "has_anchor": batch["has_anchor"]}
        if self.use_anchor:
            out["anchor_features"] = self.encode_text(batch["anchor_ids"])[0]
        if self.use_ttc and "src_ids" in batch:
            out["src_features"] = self.encode_text(batch["src_ids"])[0]
            out["tgt_features"] = self.encode_text(batch["tgt_ids"])[0]
        if self.use_mlm:
            out.update(self._mlm(batch["mlm_ids"], batch["mlm_labels"], img_tokens, img_mask))
        if self.use_itm:
            out.update(self._itm(img, txt, img_tokens, img_mask, txt_tokens, txt_mask, batch))
        return out

    def _mlm(self, ids: torch.Tensor, labels: torch.Tensor, img_tokens: torch.Tensor, img_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        tokens, mask = self.text(ids)
        fused = self.fusion(tokens, mask, img_tokens, img_mask)
        picked = labels != -100
        hidden = self.mlm_transform(fused[picked])
        logits = hidden @ self.text.tok.weight.t() + self.mlm_bias  # decoder tied to the input embedding
        return {"mlm_logits": logits, "mlm_labels": labels[picked]}

    def itm_scores(self, img_tokens: torch.Tensor, img_mask: torch.Tensor | None, txt_tokens: torch.Tensor, txt_mask: torch.Tensor) -> torch.Tensor:
        """ITM logits (N, 2) of aligned rows of image and text tokens; also used for re-ranking."""
        return self.itm_head(self.fusion(txt_tokens, txt_mask, img_tokens, img_mask)[:, 0])

    def _itm(self, img: torch.Tensor, txt: torch.Tensor, img_tokens: torch.Tensor, img_mask: torch.Tensor | None,
             txt_tokens: torch.Tensor, txt_mask: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Positives, plus one hard negative image per text and one hard negative text per image,
        drawn from this rank's temperature-scaled ITC similarities (ALBEF/CCLM). Weak positives
        are not asserted as matches, and a row left without a valid negative gets none (-100)."""
        b = img.shape[0]
        same = same_pair_content(batch["text_ids"], batch.get("image_key"))
        sim = (img @ txt.t()).detach()
        scale = self.logit_scale.detach().exp().clamp(max=100)  # 1 / temperature, as ITC uses it
        hardest = self.loss_cfg.itm_negatives == "hardest"
        neg_img, img_ok = draw_negatives(itm_negative_weights(sim.t(), scale, same), hardest)  # per text
        neg_txt, txt_ok = draw_negatives(itm_negative_weights(sim, scale, same), hardest)      # per image
        i_tok = torch.cat([img_tokens, img_tokens[neg_img], img_tokens])
        i_mask = None if img_mask is None else torch.cat([img_mask, img_mask[neg_img], img_mask])
        t_tok = torch.cat([txt_tokens, txt_tokens, txt_tokens[neg_txt]])
        t_mask = torch.cat([txt_mask, txt_mask, txt_mask[neg_txt]])
        ignored = torch.full((b,), -100, dtype=torch.long, device=img.device)
        labels = torch.cat([torch.where(batch["is_weak"], ignored, 1), torch.where(img_ok, 0, ignored),
                            torch.where(txt_ok, 0, ignored)])
        return {"itm_logits": self.itm_scores(i_tok, i_mask, t_tok, t_mask), "itm_labels": labels}


def same_pair_content(text_ids: torch.Tensor, image_key: torch.Tensor | None = None) -> torch.Tensor:
    """(B, B) bool: pairs i and j show the same text (equal token ids, padding included) or
    the same image (equal ``image_key``, the loader's digest of the image bytes; without
    one, only i == j counts as the same image: crops of one image differ in pixels)."""
    same = (text_ids[:, None, :] == text_ids[None, :, :]).all(dim=-1)
    if image_key is not None:
        same |= image_key[:, None] == image_key[None, :]
    return same | torch.eye(text_ids.shape[0], dtype=torch.bool, device=text_ids.device)


@torch.no_grad()
def itm_negative_weights(sim: torch.Tensor, logit_scale: torch.Tensor | float, excluded: torch.Tensor) -> torch.Tensor:
    """ALBEF's weights for drawing hard negatives: per query row, softmax(sim * logit_scale)
    + 1e-5 over the candidates, 0 on the row's own candidate (column i) and on ``excluded``
    ones (a candidate with the positive's text or image would be a false negative).
    ``sim``: (Q, C) cosine similarities; ``logit_scale`` = 1 / the ITC temperature."""
    weights = torch.softmax(sim.float() * logit_scale, dim=1) + 1e-5
    own = torch.eye(*sim.shape, dtype=torch.bool, device=sim.device)
    return weights.masked_fill(own | excluded, 0.0)


@torch.no_grad()
def draw_negatives(weights: torch.Tensor, hardest: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(candidate index per row, whether the row has a valid one). Drawn by ``weights``
    (torch.multinomial, ALBEF) or, with ``hardest``, the heaviest. A row whose weights are all
    0 (every other candidate shares its text or image) gets its own index and False: the
    caller ignores that negative, the same way on every run."""
    valid = weights.sum(dim=1) > 0
    own = torch.eye(*weights.shape, device=weights.device)
    safe = torch.where(valid[:, None], weights, own)
    index = safe.argmax(dim=1) if hardest else torch.multinomial(safe, 1).squeeze(1)
    return index, valid


def build_model(cfg: ModelConfig, loss: LossConfig, vocab_size: int, pad_id: int) -> RC3Model:
    """The model for a tokenizer's vocabulary (the config's vocab_size is set from it)."""
    from dataclasses import replace

    return RC3Model(replace(cfg, vocab_size=vocab_size), loss, pad_id)
