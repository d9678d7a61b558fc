"""The RC3 objectives as pure ``nn.Module``s that own the cross-rank gather (open_clip style).

Every loss gives, under DDP, the gradient of the *global-batch* loss:

* contrastive losses all-gather the features with gradient (``_GatherWithGrad``) and
  compute the full global loss on every rank; the gather's backward sums the W identical
  copies and DDP's average divides by W;
* per-token/per-row losses (MLM, conditional MLM, ITM, TTM, the relevance regulariser,
  masked region and patch modelling) return
  ``W * local_sum / global_count``, so DDP's average is the global mean even when ranks hold
  different numbers of masked tokens or weak texts.

So two processes with half the batch each train exactly as one process with the whole batch
(tests/pretrain/test_ddp.py), apart from ITM, whose hard negatives come from the local batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pretrain.config import LossConfig


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the sum over ranks of the gradient of its
    own slice (every rank computes the same global loss, so DDP's average then gives the
    single-process gradient). Equal slice sizes on every rank, as the loader guarantees."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather(x: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """Concatenate ``x`` from all ranks in rank order (identity on one process)."""
    if _world() == 1:
        return x
    if with_grad:
        return _GatherWithGrad.apply(x)
    src = x.to(torch.uint8) if x.dtype == torch.bool else x  # gloo has no bool all_gather
    parts = [torch.empty_like(src) for _ in range(_world())]
    dist.all_gather(parts, src.contiguous())
    return torch.cat(parts, dim=0).to(x.dtype)


def global_mean(local_sum: torch.Tensor, local_count: torch.Tensor | int) -> torch.Tensor:
    """``W * local_sum / global_count``: DDP's gradient average turns it into the global mean."""
    count = torch.as_tensor(local_count, dtype=torch.float32, device=local_sum.device)
    world = _world()
    if world > 1:
        count = count.clone()
        dist.all_reduce(count)
    return local_sum * world / count.clamp(min=1)


def soft_target_infonce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Per-pair symmetric cross-entropy against normalised soft targets: (N,). RC3 form (b).

    ``a`` are images, ``b`` texts, logits s = logit_scale * a @ b^T. Pair i's target row puts
    ``r[i]`` on its own match and (1 - r[i]) / (N - 1) on each of the N - 1 other candidates
    (the row sums to 1), and is used in both directions: image i over all texts, text i over
    all images. r = 1 is CLIP's InfoNCE; r = 0 pushes the pair apart (its own logit gets the
    gradient of a negative); in between, the optimum puts probability r on the pair.
    """
    logits = logit_scale * a.float() @ b.float().t()
    n = logits.shape[0]
    r = r.float()
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    target = torch.where(eye, r[:, None], ((1 - r) / max(n - 1, 1))[:, None])
    a2b = -(target * F.log_softmax(logits, dim=1)).sum(dim=1)
    b2a = -(target * F.log_softmax(logits.t(), dim=1)).sum(dim=1)
    return (a2b + b2a) / 2


def weighted_infonce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, mass: torch.Tensor,
                     spread: bool = False) -> torch.Tensor:
    """Per-pair symmetric InfoNCE weighted by ``mass[i]``: (N,). Not RC3's objective.

    ``a`` are images, ``b`` texts; mass = 1 is CLIP's symmetric InfoNCE. With mass r < 1 the
    pair is still pulled towards maximal similarity, only with weight r, and the remaining
    1 - r goes nowhere (r = 0 drops the row; it is never pushed away). With ``spread``, text
    query i's remaining 1 - r is spread uniformly over all N images (its own included),
    images detached: only the text side learns from that part.
    """
    logits = logit_scale * a.float() @ b.float().t()
    own = torch.arange(logits.shape[0], device=logits.device)
    a2b = -mass * F.log_softmax(logits, dim=1)[own, own]
    b2a = -mass * F.log_softmax(logits.t(), dim=1)[own, own]
    if spread:
        text_side = logit_scale * b.float() @ a.detach().float().t()
        b2a = b2a - (1 - mass) * F.log_softmax(text_side, dim=1).mean(dim=1)
    return (a2b + b2a) / 2


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE over the gathered batch (ITC on image-text, TTC on parallel text)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        a, b = gather(a), gather(b)
        return soft_target_infonce(a, b, logit_scale, torch.ones(a.shape[0], device=a.device)).mean()


class RelevanceRegularizer(nn.Module):
    """RC3 form (a): (cos(v, w) - r * cos(v, a))^2 per ``mask``ed row, summed and divided by
    all rows of the (global) batch; v image, w weak text, a its anchor (unit vectors, so a dot
    product is a cosine).

    The target r * cos(v, a) is a constant for the gradient: the anchor is the reference the
    weak text is measured against and must not be dragged towards it, and the image-anchor
    proximity is ITC's to shape. Only cos(v, w) moves (through v and w): up when it is below
    the target (r = 1: as close as the anchor), down when above (r = 0: pushed to orthogonal).
    """

    def forward(self, image: torch.Tensor, weak: torch.Tensor, anchor: torch.Tensor, relevance: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        image = image.float()
        target = (relevance * (image * anchor.float()).sum(-1)).detach()
        err = ((image * weak.float()).sum(-1) - target) ** 2
        return global_mean((err * mask).sum(), mask.numel())  # per row of the batch, like ITC


class MaskedLMLoss(nn.Module):
    """Cross-entropy over the masked positions the model projected (labels -100 elsewhere)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        valid = labels != -100
        ce = F.cross_entropy(logits.float(), labels.clamp(min=0), reduction="none") if labels.numel() else logits.sum() * 0
        return global_mean((ce * valid).sum(), valid.sum())


class ITMLoss(nn.Module):
    """Binary matching cross-entropy over positives and hard negatives (-100 = ignored)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        valid = labels != -100
        ce = F.cross_entropy(logits.float(), labels.clamp(min=0), reduction="none")
        return global_mean((ce * valid).sum(), valid.sum())


class RegionFeatureLoss(nn.Module):
    """MRFR (UNITER/M3P): squared error between the predicted and the original feature of
    each masked region, averaged over the masked regions and the feature's D dimensions
    (UNITER's ``F.mse_loss`` then mean): sum_r ||pred_r - f_r||^2 / (M * D)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        err = (pred.float() - target.float()).pow(2).sum()
        return global_mean(err, target.numel())


class MaskedPatchLoss(nn.Module):
    """MPM (SimMIM): L1 between the predicted and the target pixels of each masked patch,
    averaged over the M masked patches and a patch's D = patch * patch * 3 values (SimMIM's
    masked mean of ``F.l1_loss`` over pixels and channels): sum_p |pred_p - x_p|_1 / (M * D).
    Only masked patches are passed in, so visible ones never count."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        err = (pred.float() - target.float()).abs().sum()
        return global_mean(err, target.numel())


class RegionClassLoss(nn.Module):
    """MRC (UNITER/M3P), per masked region, averaged over the M regions: with ``labels``, the
    cross-entropy against the detector's class label (what the trainer feeds: the schema
    keeps one label and its score per region, not the class distribution); with ``probs``
    (MRC-kl), the KL divergence KL(p || softmax(logits)) = sum_c p_c (log p_c - log q_c) to
    the detector's class distribution."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor | None = None, probs: torch.Tensor | None = None) -> torch.Tensor:
        log_q = F.log_softmax(logits.float(), dim=-1)
        if probs is not None:
            p = probs.float()
            per_region = (torch.xlogy(p, p) - p * log_q).sum(dim=-1)
        elif labels is not None:
            per_region = F.nll_loss(log_q, labels, reduction="none")
        else:
            raise ValueError("RegionClassLoss needs labels (MRC) or probs (MRC-kl)")
        return global_mean(per_region.sum(), per_region.numel())


class GroundingLoss(nn.Module):
    """Fine-grained concept alignment (MVP's weakly-supervised grounding): each query q (a
    concept token, unit vector) of batch row o(q) scores every row b of the global batch by
    its best-matching key there, s(q, b) = max_t cos(q, k_bt) over b's valid keys (patches and
    regions for a text concept, words for a region concept), and is an InfoNCE query over the
    rows: ``-log softmax_b(s(q, b) / tau)[o(q)]``, averaged over the Q queries of the global
    batch. No region-level annotation is needed: the pairing of the row is the supervision."""

    def forward(self, queries: torch.Tensor, owner: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        rows = keys.shape[0]
        keys, key_mask = gather(keys), gather(key_mask, False)
        sim = torch.einsum("qe,bte->qbt", queries.float(), keys.float()).masked_fill(~key_mask[None], -2.0)
        logits = logit_scale * sim.max(dim=2).values  # a row without keys scores -2, below any cosine
        rank = dist.get_rank() if _world() > 1 else 0
        ce = F.cross_entropy(logits, owner + rank * rows, reduction="none")
        return global_mean(ce.sum(), ce.numel())


class RC3Loss(nn.Module):
    """All objectives; ``forward``'s keyword arguments are the keys of ``RC3Model.forward``.

    Image-text rows are strict (caption, translation, code-switched) or weak. With
    ``weak_form`` (formulas in pretrain/README.md):
      regularizer      weak rows with an anchor leave the InfoNCE as queries (they stay
                       negatives for the others) and get RelevanceRegularizer (RC3 form a);
                       weak rows without one get the soft target (form b);
      soft_target      weak rows join the InfoNCE with target r on the own pair and 1 - r
                       spread over the other candidates, both directions (RC3 form b);
      weighted_infonce weak rows join the InfoNCE weighted by r (``weak_spread``: the text's
                       1 - r spread over all images, text side only); not RC3's objective;
      strict           weak rows are strict rows (the "weak as strict" ablation).
    CCLM's cross view on parallel rows: ``ttm`` (matching, ITMLoss over the text-text pairs)
    and ``cmlm`` (MLM of one side conditioned on the other). Masked region modelling:
    ``mrfr`` (RegionFeatureLoss) and ``mrc`` (RegionClassLoss, detector labels). MVP's
    concepts: ``tcp``/``icp`` (masked concept recovery, cross-entropy like MLM) and
    ``rca``/``wca`` (GroundingLoss). Masked patch modelling: ``mpm`` (MaskedPatchLoss). Returns each unweighted objective computed and ``loss``,
    their weighted sum with ``cfg``'s weights (the current stage's).
    """

    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg
        self.contrastive = ContrastiveLoss()
        self.regularizer = RelevanceRegularizer()
        self.mlm = MaskedLMLoss()
        self.itm = ITMLoss()
        self.mrfr = RegionFeatureLoss()
        self.mrc = RegionClassLoss()
        self.grounding = GroundingLoss()
        self.mpm = MaskedPatchLoss()

    def _image_text(self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                    relevance: torch.Tensor, is_weak: torch.Tensor, has_anchor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(strict rows' InfoNCE, weak rows' contrastive part), each summed over its rows and
        divided by all N rows of the global batch."""
        form = self.cfg.weak_form
        weak = is_weak if form != "strict" else torch.zeros_like(is_weak)
        contrasted = weak & ~has_anchor if form == "regularizer" else weak  # the others are regularised
        mass = torch.where(contrasted, relevance.float(), torch.ones_like(relevance, dtype=torch.float32))
        img, txt = gather(image_features), gather(text_features)
        mass, weak, contrasted = gather(mass, False), gather(weak, False), gather(contrasted, False)
        if form == "weighted_infonce":
            rows = weighted_infonce(img, txt, logit_scale, mass, spread=self.cfg.weak_spread)
        else:  # strict rows have mass 1 here: CLIP's InfoNCE
            rows = soft_target_infonce(img, txt, logit_scale, mass)
        # Both sums are divided by all N rows, so every row weighs the same whatever the
        # mix of the batch (a mean over the few weak rows would weigh each ~N/n_weak times a
        # strict row). itc + weak is then CLIP's mean loss when every r is 1.
        n = rows.shape[0]
        return (rows * ~weak).sum() / n, (rows * contrasted).sum() / n

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                relevance: torch.Tensor, is_weak: torch.Tensor, has_anchor: torch.Tensor,
                anchor_features: torch.Tensor | None = None, src_features: torch.Tensor | None = None,
                tgt_features: torch.Tensor | None = None, mlm_logits: torch.Tensor | None = None,
                mlm_labels: torch.Tensor | None = None, itm_logits: torch.Tensor | None = None,
                itm_labels: torch.Tensor | None = None, ttm_logits: torch.Tensor | None = None,
                ttm_labels: torch.Tensor | None = None, cmlm_logits: torch.Tensor | None = None,
                cmlm_labels: torch.Tensor | None = None, mrfr_pred: torch.Tensor | None = None,
                mrfr_target: torch.Tensor | None = None, mrc_logits: torch.Tensor | None = None,
                mrc_labels: torch.Tensor | None = None, tcp_logits: torch.Tensor | None = None,
                tcp_labels: torch.Tensor | None = None, icp_logits: torch.Tensor | None = None,
                icp_labels: torch.Tensor | None = None, rca: tuple[torch.Tensor, ...] | None = None,
                wca: tuple[torch.Tensor, ...] | None = None, mpm_pred: torch.Tensor | None = None,
                mpm_target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        itc, weak = self._image_text(image_features, text_features, logit_scale, relevance, is_weak, has_anchor)
        out = {"itc": itc}
        if cfg.weak > 0 and cfg.weak_form != "strict":
            if cfg.weak_form == "regularizer":
                if anchor_features is None:
                    raise ValueError("weak_form = \"regularizer\" needs anchor_features (the model encodes them when loss.weak > 0)")
                reg_mask = (is_weak & has_anchor).float()
                weak = weak + self.regularizer(image_features, text_features, anchor_features, relevance, reg_mask)
            out["weak"] = weak
        if src_features is not None and tgt_features is not None:
            out["ttc"] = self.contrastive(src_features, tgt_features, logit_scale)
        for name, loss, first, second in (("mlm", self.mlm, mlm_logits, mlm_labels), ("itm", self.itm, itm_logits, itm_labels),
                                          ("ttm", self.itm, ttm_logits, ttm_labels), ("cmlm", self.mlm, cmlm_logits, cmlm_labels),
                                          ("mrfr", self.mrfr, mrfr_pred, mrfr_target), ("mrc", self.mrc, mrc_logits, mrc_labels),
                                          ("tcp", self.mlm, tcp_logits, tcp_labels), ("icp", self.mlm, icp_logits, icp_labels),
                                          ("mpm", self.mpm, mpm_pred, mpm_target)):
            if first is not None and second is not None:
                out[name] = loss(first, second)
        for name, inputs in (("rca", rca), ("wca", wca)):
            if inputs is not None:
                out[name] = self.grounding(*inputs, logit_scale)
        out["loss"] = sum(getattr(cfg, name) * value for name, value in out.items())
        return out
