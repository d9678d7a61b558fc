"""The two MLA objectives for one language's encoder, against the frozen base.

Both take the base's outputs without gradient (the targets and the image side are fixed);
gradients reach only the language's encoder, through the frozen text encoder it feeds.
``base_tok`` encodes the pivot side of NLT; ``tok`` is the new language's vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pretrain.acquisition.data import pad_ids
from pretrain.acquisition.encoder import LanguageEncoder
from pretrain.model import RC3Model
from pretrain.tokenizer import Tokenizer


def _ids(tok: Tokenizer, texts: list[str], max_len: int, device: torch.device) -> torch.Tensor:
    return pad_ids(tok.encode_batch(texts, max_len), tok.pad_id).to(device)


def nlt_loss(encoder: LanguageEncoder, tok: Tokenizer, base: RC3Model, base_tok: Tokenizer,
             samples: list[tuple[str, str]], device: torch.device) -> torch.Tensor:
    """MLA's Native Language Transfer on (pivot text, new-language text) samples:
    ``||f_new(x) - sg[f_base(x_pivot)]||²`` over unit embeddings, averaged over the batch."""
    max_len = base.cfg.max_text_len
    with torch.no_grad():
        target = base.encode_text(_ids(base_tok, [p for p, _ in samples], max_len, device))[0]
    pred = encoder(_ids(tok, [t for _, t in samples], max_len, device), base)[0]
    return (pred - target).pow(2).sum(-1).mean()


def le_loss(encoder: LanguageEncoder, tok: Tokenizer, base: RC3Model, base_tok: Tokenizer,
            samples: list[tuple[torch.Tensor, str, str]], device: torch.device) -> torch.Tensor:
    """MLA's Language Exposure on (image, image sha256, text) samples: symmetric InfoNCE
    against the frozen image embeddings at the frozen temperature; another row of the batch
    with the same image or the same text is no negative (it is masked out, not a label 0)."""
    images = torch.stack([s[0] for s in samples]).to(device)
    with torch.no_grad():
        img = base.encode_image(images)[0]
        scale = base.logit_scale.exp().clamp(max=100)
    txt = encoder(_ids(tok, [s[2] for s in samples], base.cfg.max_text_len, device), base)[0]
    n = len(samples)
    same = torch.tensor([[a[1] == b[1] or a[2] == b[2] for b in samples] for a in samples], device=device)
    same &= ~torch.eye(n, dtype=torch.bool, device=device)
    logits = (scale * img @ txt.t()).masked_fill(same, float("-inf"))
    labels = torch.arange(n, device=device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
