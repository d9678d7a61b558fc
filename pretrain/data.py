"""The training stream: rows -> samples -> batches, sharded by rank and DataLoader worker.

Like open_clip's pipeline, it is a chain of small picklable stages: ``RowStream`` (split by
consumer, shuffled by epoch), ``make_sample`` (text policy, decode, augment, tokenise, mask),
``collate``. Each worker builds whole batches, so a batch always comes from one worker and
carries that worker's stream positions and counters; the trainer keeps the positions of the
batches it has *consumed* (not prefetched) and a checkpoint restarts every worker there.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pretrain.concepts import Vocabularies, mask_concepts, region_ids, text_concepts
from pretrain.config import PretrainConfig
from pretrain.images import BadSample, decode, random_resized_crop
from pretrain.sampling import choose_text, mask_parallel, mask_patches, mask_regions, mask_tokens
from pretrain.shards import (
    PAIR_COLUMNS,
    PARALLEL_COLUMNS,
    Dataset,
    RowStream,
    StreamPosition,
    seeded,
    with_split,
)
from pretrain.tokenizer import Tokenizer

MAX_CONSECUTIVE_BAD = 2000


def image_key(sha256: str) -> int:
    """The image's identity as a tensor-friendly int: the first 60 bits of its sha256. ITM
    uses it to never draw a copy of a row's own image as that row's negative (crops of one
    image differ in pixels, so the pixels cannot tell)."""
    return int(sha256[:15], 16)


def _pad(seqs: list[list[int]], pad: int, fill: int | None = None, width: int = 0) -> torch.Tensor:
    """Right-pad to the longest sequence, or to ``width`` (static shapes for torch.compile)."""
    width = max(width, max(len(s) for s in seqs))
    value = pad if fill is None else fill
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def region_features(row: dict[str, Any], dim: int, limit: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(features (limit, dim), boxes (limit, 4), count); zeros past ``count``."""
    feats, boxes = torch.zeros(limit, dim), torch.zeros(limit, 4)
    reg = row.get("regions")
    if not reg or not reg["features"]:
        return feats, boxes, 0
    n = min(limit, len(reg["features"]))
    got = torch.tensor(reg["features"][:n], dtype=torch.float32)
    if got.ndim != 2 or got.shape[1] != dim:
        raise BadSample("regions_dim_mismatch", f"region features of size {tuple(got.shape)}, model.region_dim is {dim}")
    feats[:n], boxes[:n] = got, torch.tensor(reg["boxes"][:n], dtype=torch.float32)
    return feats, boxes, n


def masks_regions(cfg: PretrainConfig) -> bool:
    """Whether samples carry a region mask: masked region modelling in any stage."""
    return cfg.model.region_dim > 0 and (cfg.loss.mrfr > 0 or cfg.loss.mrc > 0 or cfg.loss.icp > 0)


def make_sample(row: dict[str, Any], cfg: PretrainConfig, tok: Tokenizer, rng: random.Random,
                vocab: Vocabularies | None = None) -> dict[str, Any]:
    """One training sample from one pairs row; raises BadSample when it cannot be used.
    ``vocab``: the run's concepts and detector labels (model.concepts, loss.mrc)."""
    choice = choose_text(row["texts"], cfg.data, rng)
    if choice is None:
        raise BadSample("no_text_for_policy")
    size, max_len = cfg.model.image_size, cfg.model.max_text_len
    image = decode(row["image"]["bytes"], size, row["image"]["sha256"])
    image = random_resized_crop(image, size, tuple(cfg.data.crop_scale), rng, hflip=cfg.data.hflip)
    if choice.spans:
        ids, in_span = tok.encode_with_spans(choice.text, choice.spans, max_len)
    else:
        ids, in_span = tok.encode(choice.text, max_len), []
    weak = choice.is_weak and cfg.loss.weak_form != "strict"  # "strict": the weak-as-strict baseline
    if weak:  # MLM conditioned on a weakly-aligned image would teach noise
        mlm_ids, labels = list(ids), [-100] * len(ids)
    else:
        mlm_ids, labels = mask_tokens(ids, in_span, cfg.data, rng, tok.mask_id, tok.vocab_size, tok.special_ids)
    sample = {"image": image, "image_key": image_key(row["image"]["sha256"]), "ids": ids, "mlm_ids": mlm_ids, "labels": labels,
              "relevance": choice.relevance if weak else 1.0, "is_weak": weak,
              "anchor": tok.encode(choice.anchor, max_len) if (weak and choice.anchor) else None}
    if cfg.model.region_dim:
        sample["regions"] = region_features(row, cfg.model.region_dim, cfg.model.max_regions)
        if masks_regions(cfg):
            sample["region_masked"] = mask_regions(sample["regions"][2], cfg.model.max_regions, cfg.data.mrm_mask_prob, rng)
    if vocab is not None and (cfg.model.concepts or cfg.loss.mrc > 0):
        _concept_sample(sample, row, choice.concepts, cfg, vocab, rng, weak)
    if cfg.loss.mpm > 0:  # masked patch modelling in any stage; drawn last, so no other choice moves
        sample["patch_masked"] = mask_patches(size // cfg.model.patch_size, cfg.data.mpm_block, cfg.data.mpm_mask_prob, rng)
    return sample


def _concept_sample(sample: dict[str, Any], row: dict[str, Any], names: list[str] | None, cfg: PretrainConfig,
                    vocab: Vocabularies, rng: random.Random, weak: bool) -> None:
    """The concept ids of the text and the regions, the detector label of each region, and
    which text concepts text concept recovery masks (none of a weak text, as for MLM)."""
    if cfg.model.concepts:
        sample["concepts"] = text_concepts(names, vocab, cfg.model.max_concepts)
        if cfg.loss.tcp > 0:
            sample["concepts_masked"] = [False] * len(sample["concepts"]) if weak else \
                mask_concepts(sample["concepts"], cfg.data.concept_mask_prob, rng)
    if cfg.model.region_dim:
        sample["region_ids"] = region_ids(row, vocab, cfg.model.max_regions, bool(cfg.model.concepts), cfg.loss.mrc > 0)


def parallel_sample(row: dict[str, Any], cfg: PretrainConfig, tok: Tokenizer, rng: random.Random) -> dict[str, Any]:
    """One parallel row: both sides' ids and, with CCLM's cross view on (loss.ttm/cmlm), which
    side is the query this step (the other is its context): the target with probability 1/2,
    as CCLM swaps source and target per row, so both directions are trained. Conditional MLM
    masks the query side."""
    max_len = cfg.model.max_text_len
    sample: dict[str, Any] = {"src": tok.encode(row["src_text"], max_len), "tgt": tok.encode(row["tgt_text"], max_len)}
    if cfg.loss.ttm > 0 or cfg.loss.cmlm > 0:
        sample["query_tgt"] = rng.random() < 0.5
        if cfg.loss.cmlm > 0:
            query = sample["tgt" if sample["query_tgt"] else "src"]
            sample["cmlm"] = mask_parallel(query, cfg.data, rng, tok.mask_id, tok.vocab_size, tok.special_ids)
    return sample


def collate(samples: list[dict[str, Any]], parallel: list[dict[str, Any]], tok: Tokenizer, max_len: int,
            static: bool = False, max_concepts: int = 0) -> dict[str, torch.Tensor]:
    """Stack samples into the tensors the model's forward takes (see RC3Model.forward);
    ``static`` pads every text to ``max_len``; concept ids are padded to ``max_concepts``
    (-1 = none) on every batch, so every rank holds the same shapes."""
    pad, w = tok.pad_id, max_len if static else 0
    batch = {
        "images": torch.stack([s["image"] for s in samples]),
        "image_key": torch.tensor([s["image_key"] for s in samples], dtype=torch.long),
        "text_ids": _pad([s["ids"] for s in samples], pad, width=w),
        "mlm_ids": _pad([s["mlm_ids"] for s in samples], pad, width=w),
        "mlm_labels": _pad([s["labels"] for s in samples], pad, fill=-100, width=w),
        "relevance": torch.tensor([s["relevance"] for s in samples], dtype=torch.float32),
        "is_weak": torch.tensor([s["is_weak"] for s in samples], dtype=torch.bool),
        "has_anchor": torch.tensor([s["anchor"] is not None for s in samples], dtype=torch.bool),
        "anchor_ids": _pad([s["anchor"] or [tok.cls_id, tok.eos_id] for s in samples], pad, width=w),
    }
    if "regions" in samples[0]:
        batch["regions"] = torch.stack([s["regions"][0] for s in samples])
        batch["region_boxes"] = torch.stack([s["regions"][1] for s in samples])
        counts = torch.tensor([s["regions"][2] for s in samples])
        batch["region_mask"] = torch.arange(batch["regions"].shape[1])[None] < counts[:, None]
    for key in ("region_masked", "patch_masked"):
        if key in samples[0]:
            batch[key] = torch.tensor([s[key] for s in samples], dtype=torch.bool)
    if "concepts" in samples[0]:
        batch["text_concepts"] = _pad([s["concepts"] for s in samples], -1, width=max_concepts)
        if "concepts_masked" in samples[0]:
            batch["concepts_masked"] = _pad([[int(m) for m in s["concepts_masked"]] for s in samples], 0, width=max_concepts).bool()
    for key, name in (("concepts", "region_concepts"), ("labels", "region_labels")):
        if "region_ids" in samples[0] and key in samples[0]["region_ids"]:
            batch[name] = torch.tensor([s["region_ids"][key] for s in samples], dtype=torch.long)
    if parallel:
        batch.update(_collate_parallel(parallel, pad, w))
    return batch


def _collate_parallel(parallel: list[dict[str, Any]], pad: int, width: int) -> dict[str, torch.Tensor]:
    batch = {"src_ids": _pad([p["src"] for p in parallel], pad, width=width),
             "tgt_ids": _pad([p["tgt"] for p in parallel], pad, width=width)}
    if "query_tgt" in parallel[0]:
        batch["par_query_tgt"] = torch.tensor([p["query_tgt"] for p in parallel], dtype=torch.bool)
    if "cmlm" in parallel[0]:
        batch["par_mlm_ids"] = _pad([p["cmlm"][0] for p in parallel], pad, width=width)
        batch["par_mlm_labels"] = _pad([p["cmlm"][1] for p in parallel], pad, fill=-100, width=width)
    return batch


class RC3Batches(IterableDataset):
    """Endless batches for one rank; each DataLoader worker is one consumer of the streams.

    start: {worker id: {"pairs": [epoch, rows], "parallel": [epoch, rows], "stats": {...}}},
    the positions a checkpoint recorded for this rank (None = from the beginning).
    first_worker: the logical worker whose batch the trainer expects next. DataLoader always
    starts at its worker 0, so worker i plays logical worker (i + first_worker) % workers,
    which keeps the round-robin batch order of an uninterrupted run across a resume.
    """

    def __init__(self, data: Dataset, cfg: PretrainConfig, tok: Tokenizer, rank: int = 0, world: int = 1,
                 start: dict[int, dict[str, Any]] | None = None, first_worker: int = 0, vocab: Vocabularies | None = None):
        self.cfg, self.tok, self.rank, self.world, self.vocab = cfg, tok, rank, world, vocab
        self.pair_units = with_split(data.pairs, cfg.data.split)
        if not self.pair_units:
            raise ValueError(f"{data.root}: no pairs rows with split {cfg.data.split!r}; set data.split")
        self.parallel_units = with_split(data.parallel, cfg.data.split) if cfg.data.parallel_batch_size else []
        cross_view = [f"loss.{n}" for n in ("ttm", "cmlm") if getattr(cfg.loss, n) > 0]
        if cross_view and not self.parallel_units:
            raise ValueError(f"{data.root}: {' and '.join(cross_view)} train on parallel rows, and there are none with split "
                             f"{cfg.data.split!r}; set {' and '.join(cross_view)} to 0")
        if vocab is None and (cfg.model.concepts or (cfg.model.region_dim and cfg.loss.mrc > 0)):
            raise ValueError("model.concepts / loss.mrc need the run's vocabularies: pass vocab (pretrain.train.run_vocabularies)")
        self.start = start or {}
        self.first_worker = first_worker

    def _stream(self, units: list, columns: list[str], table: str, worker: int, workers: int) -> RowStream:
        pos = self.start.get(worker, {}).get(table)
        return RowStream(units, columns, self.cfg.data.split, self.cfg.train.seed, self.rank * workers + worker,
                         self.world * workers, self.cfg.data.shuffle_buffer, StreamPosition(*pos) if pos else None)

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, Any]]]:
        info = get_worker_info()
        worker, workers = ((info.id + self.first_worker) % info.num_workers, info.num_workers) if info else (0, 1)
        pairs = self._stream(self.pair_units, PAIR_COLUMNS, "pairs", worker, workers)
        parallel = self._stream(self.parallel_units, PARALLEL_COLUMNS, "parallel", worker, workers) if self.parallel_units else None
        stats: Counter[str] = Counter(self.start.get(worker, {}).get("stats", {}))
        pair_rows, par_rows = iter(pairs), iter(parallel) if parallel else None
        consumer = self.rank * workers + worker
        while True:
            samples = self._samples(pair_rows, stats, consumer)
            par = [self._parallel(next(par_rows), consumer) for _ in range(self.cfg.data.parallel_batch_size)] if par_rows else []
            stats["samples"] += len(samples)
            stats["parallel_rows"] += len(par)
            state = {"pairs": [pairs.position.epoch, pairs.position.rows], "stats": dict(stats)}
            if parallel:
                state["parallel"] = [parallel.position.epoch, parallel.position.rows]
            batch = collate(samples, par, self.tok, self.cfg.model.max_text_len, static=self.cfg.train.compile,
                            max_concepts=self.cfg.model.max_concepts)
            yield batch, {"worker": worker, "state": state}

    def _parallel(self, item: tuple[dict[str, Any], StreamPosition], consumer: int) -> dict[str, Any]:
        row, pos = item
        return parallel_sample(row, self.cfg, self.tok, seeded(self.cfg.train.seed, "parallel", consumer, pos.epoch, pos.rows))

    def _samples(self, rows: Iterator, stats: Counter[str], consumer: int) -> list[dict[str, Any]]:
        samples: list[dict[str, Any]] = []
        bad_run = 0
        while len(samples) < self.cfg.data.batch_size:
            row, pos = next(rows)
            rng = seeded(self.cfg.train.seed, "sample", consumer, pos.epoch, pos.rows)
            try:
                samples.append(make_sample(row, self.cfg, self.tok, rng, self.vocab))
                bad_run = 0
            except BadSample as err:
                stats[f"skipped/{err.reason}"] += 1
                bad_run += 1
                if bad_run >= MAX_CONSECUTIVE_BAD:
                    raise RuntimeError(f"{bad_run} consecutive unusable samples (last: {err}); check the data and "
                                       "data.kind_weights / data.null_relevance / model.region_dim") from err
        return samples


def build_loader(data: Dataset, cfg: PretrainConfig, tok: Tokenizer, rank: int = 0, world: int = 1,
                 start: dict[int, dict[str, Any]] | None = None, first_worker: int = 0,
                 vocab: Vocabularies | None = None) -> DataLoader:
    """A DataLoader over RC3Batches; its own generator keeps the global torch RNG untouched,
    which resume exactness depends on. ``vocab``: needed with model.concepts or loss.mrc
    (``pretrain.train.setup`` resolves it; ``run_vocabularies``)."""
    workers = cfg.data.num_workers
    return DataLoader(RC3Batches(data, cfg, tok, rank, world, start, first_worker, vocab), batch_size=None, num_workers=workers,
                      prefetch_factor=4 if workers else None, pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(cfg.train.seed))
