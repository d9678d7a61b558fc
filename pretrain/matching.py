"""Hard negatives for the matching objectives, image-text (ITM) and text-text (CCLM's TTM).

Pure selection, no parameters: which rows are the same content (a candidate showing the
positive's text or image would be a false negative), ALBEF's sampling weights, and the draw.
The model sends the drawn pairs through the fusion encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def same_pair_content(text_ids: torch.Tensor, image_key: torch.Tensor | None = None) -> torch.Tensor:
    """(B, B) bool: pairs i and j show the same text (equal token ids, padding included) or
    the same image (equal ``image_key``, the loader's digest of the image bytes; without
    one, only i == j counts as the same image: crops of one image differ in pixels)."""
    same = (text_ids[:, None, :] == text_ids[None, :, :]).all(dim=-1)
    if image_key is not None:
        same |= image_key[:, None] == image_key[None, :]
    return same | torch.eye(text_ids.shape[0], dtype=torch.bool, device=text_ids.device)


def same_parallel_content(src_ids: torch.Tensor, tgt_ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(P, P) bool: parallel rows i and j share a text, in either role (i's source is j's
    source or target, or i's target is). Each step shows a row's sides in either order (the
    query side is drawn per row), so a text repeated anywhere in the batch is never a
    label-0 negative for its own row."""
    width = max(src_ids.shape[1], tgt_ids.shape[1])
    both = torch.cat([F.pad(x, (0, width - x.shape[1]), value=pad_id) for x in (src_ids, tgt_ids)])
    equal = (both[:, None, :] == both[None, :, :]).all(dim=-1)
    p = src_ids.shape[0]
    same = equal[:p, :p] | equal[p:, p:] | equal[:p, p:] | equal[p:, :p]
    return same | torch.eye(p, dtype=torch.bool, device=src_ids.device)


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
