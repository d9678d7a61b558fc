"""Multilingual image-text retrieval: R@1/5/10 both ways and mean recall, per language.

The protocol is UC2's and CCLM's ``itm_eval``: image->text ranks an image's captions among
all captions of the language and counts the best-ranked of its own; text->image ranks all
images for each caption. Mean recall (``r_mean``) is the average of the six recalls. Scores
are ITC cosine similarities; with ``rerank=k`` the top k candidates of each query are
re-scored by the ITM head through the fusion encoder, ALBEF/CCLM style (ITM log-odds + ITC);
re-ranking only reorders those k, the rest keep their ITC order below them (R@n for n >= k is
ITC's).
Ties are broken against the model (a constant scorer gets no credit).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrain.checkpoint import load_checkpoint, resolve_checkpoint
from pretrain.concepts import Vocabularies, region_ids
from pretrain.config import LossConfig, ModelConfig
from pretrain.data import region_features
from pretrain.distributed import pick_device
from pretrain.evalsets import EvalSet, load_evalset
from pretrain.images import BadSample, center_resize, decode
from pretrain.model import RC3Model
from pretrain.shards import verify_dataset
from pretrain.tokenizer import Tokenizer

RECALL_KEYS = ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10")


def load_model(checkpoint: str | Path, device: torch.device) -> tuple[RC3Model, Tokenizer]:
    """The model and tokenizer a checkpoint holds, in eval mode."""
    state = load_checkpoint(checkpoint)
    tok = Tokenizer(state["tokenizer"])
    model_cfg = ModelConfig(**state["model_config"])
    loss_cfg = LossConfig(**state["config"]["loss"])
    model = RC3Model(model_cfg, loss_cfg, tok.pad_id)
    model.load_state_dict(state["model"])
    model.vocab = Vocabularies(state.get("concepts", []), state.get("region_labels", []))
    if "acquisition" in state:  # MLA: acquired languages are encoded by their own encoders
        from pretrain.acquire import load_acquired

        return load_acquired(checkpoint, model.to(device).eval(), tok, state), tok
    return model.to(device).eval(), tok


def _ranks(scores: torch.Tensor, positives: list[list[int]]) -> np.ndarray:
    """Per query (row), the 0-based rank of its best positive; ties count against it."""
    ranks = np.empty(len(positives), dtype=np.int64)
    for q, pos in enumerate(positives):
        row = scores[q]
        others = torch.ones_like(row, dtype=torch.bool)
        others[pos] = False
        ranks[q] = int((row[others] >= row[pos].max()).sum().item())
    return ranks


def recall_metrics(scores_i2t: torch.Tensor, scores_t2i: torch.Tensor, txt2img: list[int]) -> dict[str, float]:
    """itm_eval: R@1/5/10 (percent) image->text (``txt_r*``), text->image (``img_r*``), r_mean."""
    img2txt: list[list[int]] = [[] for _ in range(scores_i2t.shape[0])]
    for t, i in enumerate(txt2img):
        img2txt[i].append(t)
    tr = _ranks(scores_i2t, img2txt)
    ir = _ranks(scores_t2i, [[i] for i in txt2img])
    out = {}
    for prefix, ranks in (("txt", tr), ("img", ir)):
        for k in (1, 5, 10):
            out[f"{prefix}_r{k}"] = 100.0 * float((ranks < k).mean())
        out[f"{prefix}_r_mean"] = (out[f"{prefix}_r1"] + out[f"{prefix}_r5"] + out[f"{prefix}_r10"]) / 3
    out["r_mean"] = sum(out[k] for k in RECALL_KEYS) / 6
    return out


def check_regions(model: RC3Model, evalset: EvalSet) -> None:
    """A model trained on region features is evaluated with them: refuse a set without any."""
    dim = model.cfg.region_dim
    if dim > 0 and not evalset.has_regions():
        raise ValueError(f"{evalset.name}: the model reads {model.cfg.max_regions} region features of size {dim} per image "
                         "(model.region_dim), and this eval set has no regions: evaluate on a curated split whose rows "
                         "carry regions (the [regions] stage), not a benchmark folder or a dataset built without them")


def _region_batch(model: RC3Model, rows: list[dict[str, Any] | None]) -> dict[str, torch.Tensor]:
    """The region inputs of a batch of images (as the loader makes them; rows without regions
    get none), with region concepts for a model with concepts (unknown names: none)."""
    cfg, vocab = model.cfg, getattr(model, "vocab", None) or Vocabularies()
    samples = []
    for row in rows:
        try:
            feats = region_features({"regions": row}, cfg.region_dim, cfg.max_regions)
        except BadSample as err:
            raise ValueError(f"eval set regions: {err}") from err
        samples.append((feats, region_ids({"regions": row}, vocab, cfg.max_regions, cfg.concepts > 0, False, strict=False)))
    out = {"regions": torch.stack([f[0] for f, _ in samples]), "region_boxes": torch.stack([f[1] for f, _ in samples]),
           "region_mask": torch.arange(cfg.max_regions)[None] < torch.tensor([f[2] for f, _ in samples])[:, None]}
    if cfg.concepts > 0:
        out["region_concepts"] = torch.tensor([ids["concepts"] for _, ids in samples], dtype=torch.long)
    return out


@torch.no_grad()
def encode_image_set(model: RC3Model, images: list, device: torch.device, regions: list[dict[str, Any] | None] | None = None,
                     batch: int = 64) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor | None]]:
    """(normalised embeddings (N, E), per-batch image tokens and token masks, kept for ITM
    re-ranking). ``regions``: per image its row's regions, fed to a region model."""
    size, use_regions = model.cfg.image_size, model.cfg.region_dim > 0 and regions is not None
    feats, tokens, masks = [], [], []
    for start in range(0, len(images), batch):
        pix = torch.stack([center_resize(decode(load(), size), size) for load in images[start : start + batch]])
        extra = _region_batch(model, regions[start : start + batch]) if use_regions else {}
        emb, tok, mask = model.encode_image(pix.to(device), **{k: v.to(device) for k, v in extra.items()})
        feats.append(emb.float())
        tokens.append(tok)
        masks.append(mask)
    return torch.cat(feats), tokens, masks


def encode_images(model: RC3Model, images: list, device: torch.device, batch: int = 64,
                  regions: list[dict[str, Any] | None] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(normalised embeddings (N, E), per-batch image tokens); see ``encode_image_set``."""
    feats, tokens, _ = encode_image_set(model, images, device, regions, batch)
    return feats, tokens


def _concept_ids(model: RC3Model, names: list[list[str] | None] | None) -> torch.Tensor | None:
    """(M, max_concepts) concept ids of captions (-1 = none) for a model with concepts."""
    vocab = getattr(model, "vocab", None)
    if names is None or vocab is None or getattr(model.cfg, "concepts", 0) <= 0:
        return None
    width = model.cfg.max_concepts
    ids = [[i for i in vocab.concept_ids(n, strict=False) if i >= 0][:width] for n in names]
    return torch.tensor([i + [-1] * (width - len(i)) for i in ids], dtype=torch.long)


@torch.no_grad()
def encode_texts(model: RC3Model, tok: Tokenizer, texts: list[str], device: torch.device, batch: int = 256,
                 concepts: list[list[str] | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised embeddings (M, E), padded ids (M, L)); ``concepts``: per text its concept
    names, read by a model with concepts."""
    ids = tok.encode_batch(texts, model.cfg.max_text_len)
    width = max(len(i) for i in ids)
    padded = torch.tensor([i + [tok.pad_id] * (width - len(i)) for i in ids], dtype=torch.long)
    cids = _concept_ids(model, concepts)
    feats = []
    for s in range(0, len(ids), batch):
        extra = {} if cids is None else {"concepts": cids[s : s + batch].to(device)}
        feats.append(model.encode_text(padded[s : s + batch].to(device), **extra)[0].float())
    return torch.cat(feats), padded


@torch.no_grad()
def _itm_log_odds(model: RC3Model, img_tokens: torch.Tensor, img_mask: torch.Tensor | None, ids: torch.Tensor,
                  concepts: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """ITM log-odds (match minus no-match logit) of aligned rows of image tokens and text ids."""
    _, txt_tokens, txt_mask = model.encode_text(ids.to(device), None if concepts is None else concepts.to(device))
    logits = model.itm_scores(img_tokens, img_mask, txt_tokens, txt_mask).float()
    return logits[:, 1] - logits[:, 0]


@torch.no_grad()
def _rerank(sims: torch.Tensor, k: int, log_odds: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Scores (float64) that order each row's top-k columns by ITM log-odds + ITC similarity,
    above every other column, and leave the other columns their ITC similarity: ranks beyond
    k stay in ITC order, so R@n for n >= k is ITC's. ``log_odds(row, cols)`` scores one row
    against its top columns.

    Columns tied in ITC with the (k+1)-th are not re-scored: which of them topk would pick
    is arbitrary, and ties count against the model. The re-scored values are shifted above
    the rest, not the rest below them: ``t - t.min()`` is exact in float64 for float32 ``t``,
    so neither order gains a tie."""
    out = sims.double().clone()
    width = sims.shape[1]
    top = sims.topk(min(k + 1, width), dim=1)
    for r in range(sims.shape[0]):
        cols, values = top.indices[r, :k], top.values[r, :k]
        if k < width:
            keep = values > top.values[r, k]
            cols, values = cols[keep], values[keep]
        if len(cols) == 0:
            continue
        rest = torch.ones(width, dtype=torch.bool, device=sims.device)
        rest[cols] = False
        scores = (log_odds(r, cols) + values).double()
        floor = float(out[r][rest].max()) + 1.0 if rest.any() else 0.0
        out[r, cols] = scores - scores.min() + floor
    return out


def _rerank_both(model: RC3Model, sims: torch.Tensor, imgs: torch.Tensor, img_mask: torch.Tensor | None, ids: torch.Tensor,
                 concepts: torch.Tensor | None, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Image->text and text->image scores, each row's top-k re-scored by ITM (rows of
    ``sims`` are images)."""
    def rows(x: torch.Tensor | None, index: torch.Tensor | slice, n: int = 0) -> torch.Tensor | None:
        return None if x is None else (x[index].expand(n, *x.shape[1:]) if n else x[index])

    i2t = _rerank(sims, k, lambda i, cols: _itm_log_odds(
        model, rows(imgs, slice(i, i + 1), len(cols)), rows(img_mask, slice(i, i + 1), len(cols)), ids[cols],
        rows(concepts, cols), device))
    t2i = _rerank(sims.t(), k, lambda t, cols: _itm_log_odds(
        model, imgs[cols], rows(img_mask, cols), ids[t : t + 1].expand(len(cols), -1),
        rows(concepts, slice(t, t + 1), len(cols)), device))
    return i2t, t2i


def evaluate_set(model: RC3Model, tok: Tokenizer, evalset: EvalSet, device: torch.device, rerank: int = 0,
                 langs: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per language: counts and the itm_eval metrics, on the images that have captions in it.
    A region model is evaluated with the set's regions (and refuses a set without any); a
    model without regions ignores them."""
    if rerank and not model.use_itm:
        raise ValueError("--rerank needs a model trained with ITM (loss.itm > 0)")
    check_regions(model, evalset)
    img_feats, token_batches, mask_batches = encode_image_set(model, evalset.images, device, evalset.regions or None)
    img_tokens = torch.cat(token_batches) if rerank else None
    img_mask = torch.cat(mask_batches) if rerank and mask_batches[0] is not None else None
    results: dict[str, dict[str, Any]] = {}
    for lang in sorted(langs or evalset.captions):
        caps = evalset.captions.get(lang)
        if not caps:
            raise ValueError(f"{evalset.name}: no captions in language {lang!r}; it has {sorted(evalset.captions)}")
        images = sorted({i for i, _ in caps})
        local = {img: n for n, img in enumerate(images)}
        lang_model, lang_tok = model.for_language(lang) if hasattr(model, "for_language") else (model, tok)
        names = evalset.concepts.get(lang)
        txt_feats, ids = encode_texts(lang_model, lang_tok, [t for _, t in caps], device, concepts=names)
        sims = img_feats[images] @ txt_feats.t()
        i2t, t2i = sims, sims.t()
        if rerank:
            i2t, t2i = _rerank_both(model, sims, img_tokens[images], None if img_mask is None else img_mask[images], ids,
                                    _concept_ids(model, names), rerank, device)
        metrics = recall_metrics(i2t.cpu(), t2i.cpu(), [local[i] for i, _ in caps])
        results[lang] = {"images": len(images), "texts": len(caps), **{k: round(v, 2) for k, v in metrics.items()}}
    return results


def evaluate(checkpoint: str, data: str, split: str = "test", langs: list[str] | None = None, rerank: int = 0,
             device: str = "auto", verify: bool = False) -> dict[str, Any]:
    """Load the checkpoint, score ``data`` (curated dataset or benchmark folder); JSON-ready.
    ``verify``: first check a curated dataset's shards against the manifest's sha256."""
    if verify and ((Path(data) / "manifest.json").exists() or "://" in data):
        verify_dataset(data, ("pairs",))
    dev = pick_device(device)
    model, tok = load_model(checkpoint, dev)
    evalset = load_evalset(data, split)
    per_lang = evaluate_set(model, tok, evalset, dev, rerank, langs)
    return {"checkpoint": str(resolve_checkpoint(checkpoint)), "data": evalset.name, "rerank": rerank,
            "languages": per_lang, "mean_r_mean": round(sum(m["r_mean"] for m in per_lang.values()) / len(per_lang), 2)}


def format_table(result: dict[str, Any]) -> str:
    """A fixed-width table: one row per language."""
    head = f"{'lang':<6}{'images':>7}{'texts':>7}" + "".join(f"{k:>9}" for k in (*RECALL_KEYS, "r_mean"))
    lines = [f"retrieval on {result['data']} (i2t = txt_r*, t2i = img_r*; percent)", head]
    for lang, m in result["languages"].items():
        lines.append(f"{lang:<6}{m['images']:>7}{m['texts']:>7}" + "".join(f"{m[k]:>9.2f}" for k in (*RECALL_KEYS, "r_mean")))
    lines.append(f"mean r_mean over languages: {result['mean_r_mean']:.2f}")
    return "\n".join(lines)
