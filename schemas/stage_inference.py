"""The RunInference path of a row stage (``schemas/stage.py``): the stage's Beam
``ModelHandler``. Its own module because ``apache_beam.ml.inference.base`` imports torch
(Beam's model manager), about 200 MB and seconds of start-up that a build whose stages all
take the buffered fast path does not need; ``ApplyRowStage`` imports it only for windowed
input or shared model copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, RunInference

from schemas.stage import Row, RowStage, StageCounters, run_batch

__all__ = ["RunInference", "StageModelHandler"]


class StageModelHandler(ModelHandler[Row, Any, Any]):
    """The ``ModelHandler`` of a row stage: its model is ``logic.load()``; a prediction
    list holds the batch's kept rows, then its Rejects (``ApplyRowStage`` splits them)."""

    def __init__(self, stage: str, logic: RowStage, table: str):
        super().__init__(min_batch_size=1, max_batch_size=logic.batch_size, element_size_fn=logic.weight,
                         model_copies=logic.copies())
        self.stage, self.logic, self.table = stage, logic, table
        self._counters: StageCounters | None = None

    def load_model(self) -> Any:
        return self.logic.load()

    def run_inference(self, batch: Sequence[Row], model: Any, inference_args: dict[str, Any] | None = None) -> list[Any]:
        if self._counters is None:
            self._counters = StageCounters(self.stage)
        kept, rejects = run_batch(self.stage, self.logic, self.table, list(batch), model, self._counters)
        return [*kept, *rejects]

    def get_num_bytes(self, batch: Sequence[Row]) -> int:
        return len(batch)

    def get_metrics_namespace(self) -> str:
        return f"{self.stage}_inference"
