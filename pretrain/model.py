"""The RC3 model: ViT (patches + optional ROI features), multilingual text encoder, fusion.

``RC3Model.forward(batch)`` returns a dict whose keys are exactly the keyword arguments of
``RC3Loss.forward`` for the objectives switched on (open_clip's habit): the model never sees
a rank, and the loss owns the cross-rank gather. The only loss-related work done here is
what needs the encoders themselves: sending ITM/TTM hard negatives through the fusion
encoder (``pretrain.matching`` is the pure selection), projecting the masked positions for
MLM and conditional MLM, and predicting masked region features.

CCLM's cross view: the fusion encoder reads either image tokens or another text's tokens as
its context, so parallel rows get matching (TTM) and conditional MLM through the same
fusion layers, ITM head and MLM head as image-caption rows.
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
from pretrain.matching import (
    draw_negatives,
    itm_negative_weights,
    same_pair_content,
    same_parallel_content,
)


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
    """Text tokens self-attend and cross-attend to a context (ALBEF/CCLM fusion): image tokens,
    or (CCLM's cross view, ``text_context``) another text's tokens. The same cross-attention
    reads both; a text context is first mapped to the vision width only when the widths
    differ (``text_context``; with equal widths, as in every preset, nothing is added)."""

    def __init__(self, cfg: ModelConfig, text_context: bool = False):
        super().__init__()
        w = cfg.text_width
        self.blocks = nn.ModuleList(Block(w, cfg.text_heads, cfg.mlp_ratio, cfg.dropout, context_width=cfg.vision_width)
                                    for _ in range(cfg.fusion_layers))
        self.ln = nn.LayerNorm(w)
        if text_context and cfg.text_width != cfg.vision_width:
            self.text_context = nn.Linear(cfg.text_width, cfg.vision_width)

    def context_of_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """A text encoder's tokens as a fusion context."""
        return self.text_context(tokens) if hasattr(self, "text_context") else tokens

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            text = block(text, mask=text_mask, context=context, context_mask=context_mask)
        return self.ln(text)


class RegionHead(nn.Module):
    """Masked region feature regression (UNITER/M3P MRFR) on this two-stream model.

    The vision encoder's outputs at the region slots, behind the image's [CLS] (a key every
    row has, so a row without regions still attends somewhere), go through one block of
    self-attention and cross-attention to the row's text (UNITER and M3P predict a masked
    region with the caption in view; the text is not masked), then UNITER's regression head
    (Linear, GELU, LayerNorm, Linear to ``region_dim``) at the masked slots."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.vision_width
        self.block = Block(w, cfg.vision_heads, cfg.mlp_ratio, cfg.dropout, context_width=cfg.text_width)
        self.ln = nn.LayerNorm(w)
        self.regress = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.LayerNorm(w), nn.Linear(w, cfg.region_dim))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, masked: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> torch.Tensor:
        """(M, region_dim): the prediction for each True of ``masked`` (B, R), row-major."""
        r = masked.shape[1]
        x = torch.cat([tokens[:, :1], tokens[:, -r:]], dim=1)
        keys = torch.cat([mask[:, :1], mask[:, -r:]], dim=1)
        x = self.ln(self.block(x, mask=keys, context=text, context_mask=text_mask))
        return self.regress(x[:, 1:][masked])


class RC3Model(nn.Module):
    """Encoders, projections and the heads of the objectives that ``loss`` switches on.

    Heads are shared across the two views, as in CCLM: ITM and TTM use one matching head,
    MLM and conditional MLM one MLM head, all through one fusion encoder."""

    def __init__(self, cfg: ModelConfig, loss: LossConfig, pad_id: int):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size is unset; build the model from a tokenizer (vocab_size = tokenizer.vocab_size)")
        self.cfg, self.loss_cfg = cfg, loss
        self.use_itm, self.use_mlm, self.use_ttc = loss.itm > 0, loss.mlm > 0, loss.ttc > 0
        self.use_ttm, self.use_cmlm = loss.ttm > 0, loss.cmlm > 0
        self.use_mrfr = loss.mrfr > 0 and cfg.region_dim > 0
        self.use_anchor = loss.weak > 0 and loss.weak_form == "regularizer"
        self.vision, self.text = VisionEncoder(cfg), TextEncoder(cfg, pad_id)
        self.vision_proj = nn.Linear(cfg.vision_width, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.text_width, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / loss.temperature)), requires_grad=loss.learn_temperature)
        if self.use_itm or self.use_mlm or self.use_ttm or self.use_cmlm:
            self.fusion = FusionEncoder(cfg, text_context=self.use_ttm or self.use_cmlm)
        if self.use_itm or self.use_ttm:
            self.itm_head = nn.Linear(cfg.text_width, 2)
        if self.use_mlm or self.use_cmlm:
            w = cfg.text_width
            self.mlm_transform = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.LayerNorm(w))
            self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        if self.use_mrfr:
            self.region_head = RegionHead(cfg)
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
        if "src_ids" in batch and (self.use_ttc or self.use_ttm or self.use_cmlm):
            out.update(self._parallel(batch))
        if self.use_mlm:
            logits, labels = self._masked_lm(batch["mlm_ids"], batch["mlm_labels"], img_tokens, img_mask)
            out.update(mlm_logits=logits, mlm_labels=labels)
        if self.use_itm:
            same = same_pair_content(batch["text_ids"], batch.get("image_key"))
            ignored = torch.full_like(batch["is_weak"], -100, dtype=torch.long)
            positive = torch.where(batch["is_weak"], ignored, 1)  # a weak text is never asserted as a match
            logits, labels = self._matching(img, txt, img_tokens, img_mask, txt_tokens, txt_mask, same, positive)
            out.update(itm_logits=logits, itm_labels=labels)
        if self.use_mrfr and "region_masked" in batch:
            out.update(self._mrfr(batch, txt_tokens, txt_mask))
        return out

    def _parallel(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """TTC's features, and CCLM's cross view: per row the query side (``par_query_tgt``:
        the target, else the source) is matched against / predicted from the other side."""
        src, src_tok, src_mask = self.encode_text(batch["src_ids"])
        tgt, tgt_tok, tgt_mask = self.encode_text(batch["tgt_ids"])
        out = {"src_features": src, "tgt_features": tgt} if self.use_ttc else {}
        if not (self.use_ttm or self.use_cmlm):
            return out
        (ctx, ctx_tok, ctx_mask), (query, q_tok, q_mask) = cross_view(batch["par_query_tgt"], (src, src_tok, src_mask),
                                                                       (tgt, tgt_tok, tgt_mask))
        context = self.fusion.context_of_text(ctx_tok)
        if self.use_ttm:
            same = same_parallel_content(batch["src_ids"], batch["tgt_ids"], self.text.pad_id)
            positive = torch.ones(query.shape[0], dtype=torch.long, device=query.device)
            out["ttm_logits"], out["ttm_labels"] = self._matching(ctx, query, context, ctx_mask, q_tok, q_mask, same, positive)
        if self.use_cmlm:
            out["cmlm_logits"], out["cmlm_labels"] = self._masked_lm(batch["par_mlm_ids"], batch["par_mlm_labels"], context, ctx_mask)
        return out

    def _masked_lm(self, ids: torch.Tensor, labels: torch.Tensor, context: torch.Tensor,
                   context_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """MLM logits and labels at the masked positions of ``ids``, conditioned on ``context``
        (image tokens for MLM, the other text for conditional MLM) through fusion."""
        tokens, mask = self.text(ids)
        fused = self.fusion(tokens, mask, context, context_mask)
        picked = labels != -100
        hidden = self.mlm_transform(fused[picked])
        logits = hidden @ self.text.tok.weight.t() + self.mlm_bias  # decoder tied to the input embedding
        return logits, labels[picked]

    def itm_scores(self, img_tokens: torch.Tensor, img_mask: torch.Tensor | None, txt_tokens: torch.Tensor, txt_mask: torch.Tensor) -> torch.Tensor:
        """Matching logits (N, 2) of aligned rows of context (image, or a text mapped by
        ``fusion.context_of_text``) and text tokens; also used for re-ranking."""
        return self.itm_head(self.fusion(txt_tokens, txt_mask, img_tokens, img_mask)[:, 0])

    def _matching(self, ctx: torch.Tensor, query: torch.Tensor, ctx_tokens: torch.Tensor, ctx_mask: torch.Tensor | None,
                  q_tokens: torch.Tensor, q_mask: torch.Tensor, same: torch.Tensor,
                  positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positives (labelled ``positive``: 1, or -100 to skip), plus one hard negative context
        per query and one hard negative query per context, drawn from this rank's
        temperature-scaled similarities (ALBEF/CCLM), never a pair ``same`` marks. A row left
        without a valid negative gets none (-100). ITM: context = image, query = text."""
        sim = (ctx @ query.t()).detach()
        scale = self.logit_scale.detach().exp().clamp(max=100)  # 1 / temperature, as ITC uses it
        hardest = self.loss_cfg.itm_negatives == "hardest"
        neg_ctx, ctx_ok = draw_negatives(itm_negative_weights(sim.t(), scale, same), hardest)  # per query
        neg_q, q_ok = draw_negatives(itm_negative_weights(sim, scale, same), hardest)          # per context
        c_tok = torch.cat([ctx_tokens, ctx_tokens[neg_ctx], ctx_tokens])
        c_mask = None if ctx_mask is None else torch.cat([ctx_mask, ctx_mask[neg_ctx], ctx_mask])
        t_tok = torch.cat([q_tokens, q_tokens, q_tokens[neg_q]])
        t_mask = torch.cat([q_mask, q_mask, q_mask[neg_q]])
        ignored = torch.full_like(positive, -100)
        labels = torch.cat([positive, torch.where(ctx_ok, 0, ignored), torch.where(q_ok, 0, ignored)])
        return self.itm_scores(c_tok, c_mask, t_tok, t_mask), labels

    def _mrfr(self, batch: dict[str, torch.Tensor], txt_tokens: torch.Tensor, txt_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """A second vision pass with the masked regions' features zeroed (their boxes kept, as
        UNITER does), and the prediction of the original features at those regions."""
        masked, feats = batch["region_masked"], batch["regions"]
        tokens, mask = self.vision(batch["images"], feats.masked_fill(masked[..., None], 0.0), batch["region_boxes"],
                                   batch["region_mask"])
        return {"mrfr_pred": self.region_head(tokens, mask, masked, txt_tokens, txt_mask), "mrfr_target": feats[masked]}


View = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def cross_view(query_tgt: torch.Tensor, src: View, tgt: View) -> tuple[View, View]:
    """(context, query), each (features, tokens, mask), taken per row from the source and the
    target side: the query is the target where ``query_tgt``, else the source. Tokens and
    masks are padded to one length (padding never attended)."""
    length = max(src[1].shape[1], tgt[1].shape[1])

    def padded(view: View) -> View:
        extra = length - view[1].shape[1]
        return view[0], F.pad(view[1], (0, 0, 0, extra)), F.pad(view[2], (0, extra), value=False)

    src, tgt = padded(src), padded(tgt)
    pick = [query_tgt.view(-1, *[1] * (x.ndim - 1)) for x in src]
    context = tuple(torch.where(p, s, t) for p, s, t in zip(pick, src, tgt, strict=True))
    query = tuple(torch.where(p, t, s) for p, s, t in zip(pick, src, tgt, strict=True))
    return context, query  # type: ignore[return-value]


def build_model(cfg: ModelConfig, loss: LossConfig, vocab_size: int, pad_id: int) -> RC3Model:
    """The model for a tokenizer's vocabulary (the config's vocab_size is set from it)."""
    from dataclasses import replace

    return RC3Model(replace(cfg, vocab_size=vocab_size), loss, pad_id)
