"""The Beam ``ModelHandler`` that runs a ``Translator`` inside ``RunInference``.

An example is a request ``(text, model source code, model target code)``; a prediction
is a ``Hypothesis``. Wrap it in ``KeyedModelHandler`` to carry ``(row id, text index,
target)`` keys through inference. What the handler tells RunInference:

- batching (``batch_elements_kwargs``): batches of ``mt.batch_size`` requests, bucketed
  by source length (``batch_length_fn`` = ``request_length``, ``batch_bucket_boundaries``),
  so a batch holds sentences of similar length; the engine then cuts each batch into
  token-budget model batches. Bucketing only takes effect on Beam's stateful batching
  path, which ``max_batch_duration_secs`` (not None) switches on. Its default here, 0,
  flushes a bucket when it is full or its window ends and sets no processing-time
  timer: FnApiRunner does not wait for such timers and can fail with "time-pending
  bundles did not execute" when one is still set as the input ends. Streaming
  pipelines should set ``mt.batch_seconds`` > 0. (``max_batch_weight`` is not used: it
  raises TypeError in Beam 2.77.)
- sharing (``model_copies``): on CUDA one model per machine, shared by its SDK
  processes, so one GPU holds one copy.
- resources (``get_resource_hints``): the accelerator hint on CUDA (``mt.accelerator``).

A batch mixes directions; ``run_inference`` translates each (source, target) group with
one engine call and returns predictions in batch order. An exception fails the whole
batch: ``RunInference(...).with_exception_handling()`` sends it to the dead-letter
output, which ``TranslateCaptions`` turns into rejects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler

from translate.config import TranslateConfig
from translate.engine import Hypothesis, Translator
from translate.rows import Request, request_length

METRICS_NAMESPACE = "mt_inference"


class TranslationModelHandler(ModelHandler[Request, Hypothesis, Translator]):
    """RunInference handler for the configured engine (see the module docstring).

    cfg: the ``[mt]`` settings. loader: builds the Translator (default
    ``translate.loading.load_translator``; tests pass fakes).
    """

    def __init__(self, cfg: TranslateConfig, loader: Any = None):
        super().__init__(
            min_batch_size=cfg.batch_size,  # fixed-size batches: full GPU batches from the start
            max_batch_size=cfg.batch_size,
            max_batch_duration_secs=cfg.batch_seconds,
            batch_length_fn=request_length,
            batch_bucket_boundaries=list(cfg.bucket_boundaries),
            model_copies=cfg.copies(),
        )
        self.cfg = cfg
        self.loader = loader

    def load_model(self) -> Translator:
        if self.loader is not None:
            return self.loader(self.cfg)
        from translate.loading import load_translator

        return load_translator(self.cfg)

    def run_inference(self, batch: Sequence[Request], model: Translator,
                      inference_args: dict[str, Any] | None = None) -> Iterable[Hypothesis]:
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (_text, src, tgt) in enumerate(batch):
            groups.setdefault((src, tgt), []).append(i)
        out: list[Hypothesis | None] = [None] * len(batch)
        for (src, tgt), members in groups.items():
            hyps = model.translate([batch[i][0] for i in members], src, tgt)
            if len(hyps) != len(members):
                raise RuntimeError(f"the engine returned {len(hyps)} hypotheses for {len(members)} sentences")
            for i, hyp in zip(members, hyps, strict=True):
                out[i] = hyp
        return out  # type: ignore[return-value]

    def get_num_bytes(self, batch: Sequence[Request]) -> int:
        return sum(len(text.encode("utf-8")) for text, _src, _tgt in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def get_resource_hints(self) -> dict[str, Any]:
        hint = self.cfg.resource_hint()
        return {"accelerator": hint} if hint else {}
