"""The RC3 model: ViT (patches + optional ROI features), multilingual text encoder, fusion.

``RC3Model.forward(batch)`` returns a dict whose keys are exactly the keyword arguments of
``RC3Loss.forward`` for the objectives switched on (open_clip's habit): the model never sees
a rank, and the loss owns the cross-rank gather. The only loss-related work done here is
what needs the encoders themselves: sending ITM/TTM hard negatives through the fusion
encoder (``pretrain.matching`` is the pure selection), projecting the masked positions for
MLM and conditional MLM, and predicting masked region features and masked patches.

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
from pretrain.mpm import MaskedPatchHead
from pretrain.mvp import ConceptLevel, RegionHead, grounding_inputs
from pretrain.stages import OBJECTIVES


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

    def embed(self, images: torch.Tensor, patch_masked: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """[CLS] and patch embeddings plus positions; ``patch_masked``: ((B, N) bool, [MASK]
        embedding (1, 1, width)), which replaces the embeddings of those patches before the
        positions are added (SimMIM: a masked patch keeps its position)."""
        x = self.patch(normalize(images)).flatten(2).transpose(1, 2)
        if patch_masked is not None:
            x = torch.where(patch_masked[0][..., None], patch_masked[1].to(x.dtype), x)
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos

    def forward(self, images: torch.Tensor, regions: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
                region_mask: torch.Tensor | None = None, extra: tuple[torch.Tensor, torch.Tensor] | None = None,
                patch_masked: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens [CLS, patches, regions, extra] and their mask (None when all are real);
        ``extra``: (tokens, mask) appended last (MVP's region-concept tokens);
        ``patch_masked``: masked patch modelling's masked patches and [MASK] (``embed``)."""
        x = self.embed(images, patch_masked)
        mask = None
        if regions is not None and hasattr(self, "region_proj"):
            r = self.region_proj(regions) + self.box_proj(boxes) + self.region_type
            x = torch.cat([x, r], dim=1)
            keep = torch.ones(x.shape[0], x.shape[1] - r.shape[1], dtype=torch.bool, device=x.device)
            mask = torch.cat([keep, region_mask], dim=1)
        if extra is not None:
            x, mask = _append(x, mask, extra)
        for block in self.blocks:
            x = block(x, mask=mask)
        return self.ln(x), mask


def _append(x: torch.Tensor, mask: torch.Tensor | None, extra: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask
    return torch.cat([x, extra[0]], dim=1), torch.cat([keep, extra[1]], dim=1)


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

    def forward(self, ids: torch.Tensor, extra: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and mask; ``extra``: (tokens, mask) appended after the words (MVP's concepts)."""
        mask = ids != self.pad_id
        x = self.tok(ids) + self.pos[:, : ids.shape[1]]
        if extra is not None:
            x, mask = _append(x, mask, extra)
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


class RC3Model(nn.Module):
    """Encoders, projections and the heads of the objectives that ``loss`` switches on.

    Heads are shared across the two views, as in CCLM: ITM and TTM use one matching head,
    MLM and conditional MLM one MLM head, all through one fusion encoder. ``loss`` decides
    which heads exist (with a schedule: every objective of any stage); ``set_stage`` decides
    which objectives ``forward`` computes (the current stage's) and whether it is unimodal."""

    def __init__(self, cfg: ModelConfig, loss: LossConfig, pad_id: int):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size is unset; build the model from a tokenizer (vocab_size = tokenizer.vocab_size)")
        if cfg.concepts < 0 or (loss.mrc > 0 and cfg.region_dim > 0 and cfg.region_classes <= 0):
            raise ValueError("model.concepts / model.region_classes are unresolved; build the model with the run's "
                             "vocabularies (pretrain.train.setup does)")
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
        if cfg.region_dim > 0 and (loss.mrfr > 0 or loss.mrc > 0 or (loss.icp > 0 and cfg.concepts > 0)):
            self.region_head = RegionHead(cfg, loss)
        if cfg.concepts > 0:
            self.concepts = ConceptLevel(cfg, loss)
        if loss.mpm > 0:
            self.mpm = MaskedPatchHead(cfg)
        self.apply(init_weights)
        self.set_stage(loss)

    def set_stage(self, loss: LossConfig, unimodal: bool = False) -> None:
        """Compute the objectives ``loss`` weighs above 0 (a subset of those the model has
        heads for); ``unimodal``: MLM and masked region modelling without cross-attention."""
        self.active = {name: getattr(loss, name) > 0 for name in OBJECTIVES}
        self.unimodal = unimodal

    def on(self, name: str) -> bool:
        return self.active[name]

    def encode_image(self, images: torch.Tensor, **regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(normalised embedding, tokens, token mask). ``regions``: regions, region_boxes,
        region_mask and, for a model with concepts, region_concepts (-1 = none)."""
        tokens, mask = self._vision(images, regions)
        return F.normalize(self.vision_proj(tokens[:, 0]), dim=-1), tokens, mask

    def _vision(self, images: torch.Tensor, regions: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        extra = None
        if "region_concepts" in regions and hasattr(self, "concepts") and hasattr(self.vision, "box_proj"):
            extra = self.concepts.image_tokens(regions["region_concepts"], self.vision.box_proj(regions["region_boxes"]),
                                               regions["region_mask"], regions.get("concepts_masked"))
        return self.vision(images, regions.get("regions"), regions.get("region_boxes"), regions.get("region_mask"), extra)

    def encode_text(self, ids: torch.Tensor, concepts: torch.Tensor | None = None,
                    masked: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised embedding, tokens, token mask); ``concepts`` (B, K) ids, -1 = none, for
        a model with concepts (``masked``: those replaced by [MASK])."""
        extra = self.concepts.text_tokens(concepts, masked) if concepts is not None and hasattr(self, "concepts") else None
        tokens, mask = self.text(ids, extra)
        return F.normalize(self.text_proj(tokens[:, 0]), dim=-1), tokens, mask

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        regions = {k: batch[k] for k in ("regions", "region_boxes", "region_mask", "region_concepts") if k in batch}
        img, img_tokens, img_mask = self.encode_image(batch["images"], **regions)
        txt, txt_tokens, txt_mask = self.encode_text(batch["text_ids"], batch.get("text_concepts"))
        out: dict[str, Any] = {"image_features": img, "text_features": txt, "logit_scale": self.logit_scale.exp().clamp(max=100),
                               "relevance": batch["relevance"], "is_weak": batch["is_weak"], "has_anchor": batch["has_anchor"]}
        if self.use_anchor and self.on("weak"):
            out["anchor_features"] = self.encode_text(batch["anchor_ids"])[0]
        if "src_ids" in batch and (self.on("ttc") or self.on("ttm") or self.on("cmlm")):
            out.update(self._parallel(batch))
        if self.on("mlm") or self.on("tcp"):
            out.update(self._masked_text(batch, None if self.unimodal else (img_tokens, img_mask)))
        if self.on("itm"):
            same = same_pair_content(batch["text_ids"], batch.get("image_key"))
            ignored = torch.full_like(batch["is_weak"], -100, dtype=torch.long)
            positive = torch.where(batch["is_weak"], ignored, 1)  # a weak text is never asserted as a match
            logits, labels = self._matching(img, txt, img_tokens, img_mask, txt_tokens, txt_mask, same, positive)
            out.update(itm_logits=logits, itm_labels=labels)
        if hasattr(self, "region_head") and "region_masked" in batch and any(self.on(n) for n in ("mrfr", "mrc", "icp")):
            out.update(self._masked_regions(batch, None if self.unimodal else (txt_tokens, txt_mask)))
        if self.on("rca") or self.on("wca"):
            out.update(self._grounding(batch, img_tokens, img_mask, txt_tokens, txt_mask))
        if hasattr(self, "mpm") and "patch_masked" in batch and self.on("mpm"):  # its own pass: ITC never sees it
            out["mpm_pred"], out["mpm_target"] = self.mpm(self.vision, batch["images"], batch["patch_masked"],
                                                          self.loss_cfg.mpm_norm_pix)
        return out

    def _parallel(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """TTC's features, and CCLM's cross view: per row the query side (``par_query_tgt``:
        the target, else the source) is matched against / predicted from the other side."""
        src, src_tok, src_mask = self.encode_text(batch["src_ids"])
        tgt, tgt_tok, tgt_mask = self.encode_text(batch["tgt_ids"])
        out = {"src_features": src, "tgt_features": tgt} if self.on("ttc") else {}
        if not (self.on("ttm") or self.on("cmlm")):
            return out
        (ctx, ctx_tok, ctx_mask), (query, q_tok, q_mask) = cross_view(batch["par_query_tgt"], (src, src_tok, src_mask),
                                                                       (tgt, tgt_tok, tgt_mask))
        context = self.fusion.context_of_text(ctx_tok)
        if self.on("ttm"):
            same = same_parallel_content(batch["src_ids"], batch["tgt_ids"], self.text.pad_id)
            positive = torch.ones(query.shape[0], dtype=torch.long, device=query.device)
            out["ttm_logits"], out["ttm_labels"] = self._matching(ctx, query, context, ctx_mask, q_tok, q_mask, same, positive)
        if self.on("cmlm"):
            out["cmlm_logits"], out["cmlm_labels"] = self._masked_lm(batch["par_mlm_ids"], batch["par_mlm_labels"], context, ctx_mask)[:2]
        return out

    def _masked_text(self, batch: dict[str, torch.Tensor], context: tuple[torch.Tensor, torch.Tensor | None] | None) -> dict[str, Any]:
        """MLM (conditioned on the image through fusion, or on nothing in a unimodal stage)
        and text concept recovery, from one pass over the masked text and masked concepts."""
        concepts = batch.get("text_concepts")
        extra = None
        if concepts is not None and hasattr(self, "concepts"):
            extra = self.concepts.text_tokens(concepts, batch.get("concepts_masked") if self.on("tcp") else None)
        ctx, ctx_mask = context if context is not None else (None, None)
        logits, labels, tokens = self._masked_lm(batch["mlm_ids"], batch["mlm_labels"], ctx, ctx_mask, extra)
        out = {"mlm_logits": logits, "mlm_labels": labels} if self.on("mlm") else {}
        if self.on("tcp"):
            picked = batch["concepts_masked"] & (concepts >= 0)
            hidden = tokens[:, batch["mlm_ids"].shape[1]:][picked]
            out.update(tcp_logits=self.concepts.predict(self.concepts.text_head, hidden), tcp_labels=concepts[picked])
        return out

    def _masked_lm(self, ids: torch.Tensor, labels: torch.Tensor, context: torch.Tensor | None,
                   context_mask: torch.Tensor | None, extra: tuple[torch.Tensor, torch.Tensor] | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MLM logits and labels at the masked positions of ``ids``, conditioned on ``context``
        through fusion (image tokens for MLM, the other text for conditional MLM; None: the
        text encoder alone), and the text encoder's tokens."""
        tokens, mask = self.text(ids, extra)
        hidden = tokens if context is None else self.fusion(tokens, mask, context, context_mask)
        if hidden.shape[1] != labels.shape[1]:
            hidden = hidden[:, : labels.shape[1]]  # the words, not the concept tokens after them
        picked = labels != -100
        if not hasattr(self, "mlm_transform"):
            return hidden[:0, 0], labels[picked], tokens
        logits = self.mlm_transform(hidden[picked]) @ self.text.tok.weight.t() + self.mlm_bias  # decoder tied to the input embedding
        return logits, labels[picked], tokens

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

    def _masked_regions(self, batch: dict[str, torch.Tensor], text: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """A second vision pass with the masked regions' features zeroed (their boxes kept, as
        UNITER does) and their concept tokens [MASK]ed; then, at the masked regions, their
        features (MRFR), detector labels (MRC) and concepts (image concept recovery)."""
        masked, feats = batch["region_masked"], batch["regions"]
        regions = {"regions": feats.masked_fill(masked[..., None], 0.0), "region_boxes": batch["region_boxes"],
                   "region_mask": batch["region_mask"]}
        if "region_concepts" in batch:
            regions.update(region_concepts=batch["region_concepts"], concepts_masked=masked)
        tokens, mask = self._vision(batch["images"], regions)
        r = masked.shape[1]
        slots = 2 * r if "region_concepts" in regions and hasattr(self, "concepts") else r
        hidden = self.region_head(tokens, mask, slots, *(text or (None, None)))
        out = {}
        if self.on("mrfr"):
            out.update(mrfr_pred=self.region_head.regress(hidden[:, :r][masked]), mrfr_target=feats[masked])
        if self.on("mrc"):
            picked = masked & (batch["region_labels"] >= 0)
            out.update(mrc_logits=self.region_head.classify(hidden[:, :r][picked]), mrc_labels=batch["region_labels"][picked])
        if self.on("icp") and slots > r:
            picked = masked & (batch["region_concepts"] >= 0)
            out.update(icp_logits=self.concepts.predict(self.concepts.image_head, hidden[:, r:][picked]),
                       icp_labels=batch["region_concepts"][picked])
        return out

    def _grounding(self, batch: dict[str, torch.Tensor], img_tokens: torch.Tensor, img_mask: torch.Tensor | None,
                   txt_tokens: torch.Tensor, txt_mask: torch.Tensor) -> dict[str, Any]:
        """Fine-grained concept alignment inputs (GroundingLoss): rca, each text concept token
        against the image's patches and regions; wca, each region-concept token against the
        text's words. Weak rows ask no query (their pairing is loose); [CLS] is no key."""
        words = batch["text_ids"].shape[1]
        strict = ~batch["is_weak"]
        n_patch = self.vision.pos.shape[1]
        n_reg = batch["regions"].shape[1] if "regions" in batch and hasattr(self.vision, "region_proj") else 0
        keys_mask = img_mask if img_mask is not None else torch.ones(img_tokens.shape[:2], dtype=torch.bool, device=img_tokens.device)
        out = {}
        if self.on("rca") and "text_concepts" in batch:
            queries = self.text_proj(txt_tokens[:, words:])
            keys = self.vision_proj(img_tokens[:, 1 : n_patch + n_reg])
            out["rca"] = grounding_inputs(queries, (batch["text_concepts"] >= 0) & strict[:, None], keys,
                                          keys_mask[:, 1 : n_patch + n_reg])
        if self.on("wca") and "region_concepts" in batch and n_reg:
            queries = self.vision_proj(img_tokens[:, n_patch + n_reg :])
            keys = self.text_proj(txt_tokens[:, 1:words])
            out["wca"] = grounding_inputs(queries, keys_mask[:, n_patch + n_reg :] & strict[:, None], keys, txt_mask[:, 1:words],
                                          self.cfg.max_text_len - 1)
        return out


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
