"""Multi-stage training (MVP): a ``[[schedule]]`` list of stages, each with its own steps and
objective weights.

A stage is ``{name, steps, unimodal, loss}``: ``loss`` holds objective weights only (every
objective it does not name weighs 0 in that stage; the other ``[loss]`` settings, such as
``weak_form`` or the temperature, hold for every stage). ``unimodal = true`` removes every
cross-attention: MLM predicts from the text encoder alone, masked region modelling from the
vision encoder alone (masked patch modelling always does), and objectives that need the other modality are refused there.

Stages run in order; stage k covers steps [sum of the earlier stages' steps, + its steps),
and the last stage runs on until ``train.steps`` (so ``--resume --steps N`` lengthens it).
Which stage a step belongs to depends on the step alone, so a resumed run continues in the
stage it stopped in, or crosses a boundary exactly where the uninterrupted run does.

The model has the heads of every objective any stage uses (its ``[loss]`` weights are set to
the largest weight of each objective over the stages, ``union_weights``), so its parameters,
optimiser state and checkpoints are the same in every stage; a stage only decides which
objectives are computed and how much each weighs. Without a schedule the run is one stage
with the ``[loss]`` weights, exactly as before stages existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Every objective weight of [loss], in the order the loss reports them.
OBJECTIVES = ("itc", "weak", "ttc", "mlm", "itm", "ttm", "cmlm", "mrfr", "mrc", "tcp", "icp", "rca", "wca", "mpm")
# Objectives that need both modalities (or the fusion encoder) and cannot run in a unimodal stage.
CROSS_MODAL = ("itc", "weak", "itm", "ttm", "cmlm", "rca", "wca")


class StageError(ValueError):
    """A [[schedule]] entry is wrong; the message names the stage and the setting."""


@dataclass
class Stage:
    """One stage of the schedule (see the module docstring)."""

    name: str
    steps: int
    unimodal: bool = False
    loss: dict[str, float] = field(default_factory=dict)

    def weight(self, objective: str) -> float:
        return float(self.loss.get(objective, 0.0))


def parse_schedule(raw: Any) -> list[Stage]:
    """The stages of a TOML ``[[schedule]]`` array (a list of tables), checked one by one."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise StageError("schedule must be an array of tables ([[schedule]] entries)")
    stages = []
    for i, entry in enumerate(raw):
        if isinstance(entry, Stage):
            entry = {"name": entry.name, "steps": entry.steps, "unimodal": entry.unimodal, "loss": dict(entry.loss)}
        if not isinstance(entry, dict):
            raise StageError(f"schedule[{i}] must be a table with name, steps, unimodal and loss")
        where = f"schedule[{i}] ({entry.get('name', '?')})"
        unknown = sorted(set(entry) - {"name", "steps", "unimodal", "loss"})
        if unknown:
            raise StageError(f"{where}: unknown setting(s) {unknown}; known: ['loss', 'name', 'steps', 'unimodal']")
        name, steps, loss = entry.get("name"), entry.get("steps"), entry.get("loss", {})
        if not isinstance(name, str) or not name:
            raise StageError(f"schedule[{i}]: give the stage a name (name = \"...\")")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise StageError(f"{where}: steps must be an integer >= 1, got {steps!r}")
        if not isinstance(loss, dict):
            raise StageError(f"{where}: loss must be a table of objective weights, e.g. loss = {{ mlm = 1.0 }}")
        bad = sorted(set(loss) - set(OBJECTIVES))
        if bad:
            raise StageError(f"{where}: loss: unknown objective(s) {bad}; a stage sets weights only, of {list(OBJECTIVES)} "
                             "(other [loss] settings hold for every stage)")
        if any(not isinstance(w, int | float) or isinstance(w, bool) or w < 0 for w in loss.values()):
            raise StageError(f"{where}: loss weights must be numbers >= 0")
        if not any(w > 0 for w in loss.values()):
            raise StageError(f"{where}: no objective has a weight > 0")
        unimodal = entry.get("unimodal", False)
        if not isinstance(unimodal, bool):
            raise StageError(f"{where}: unimodal must be true or false")
        crossing = [o for o in CROSS_MODAL if loss.get(o, 0) > 0]
        if unimodal and crossing:
            raise StageError(f"{where}: unimodal = true has no cross-attention and no image-text pairing; "
                             f"drop {crossing} from this stage or set unimodal = false")
        stages.append(Stage(name, steps, unimodal, {k: float(v) for k, v in loss.items()}))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise StageError(f"schedule: stage names must differ, got {names}")
    return stages


def check_steps(stages: list[Stage], train_steps: int) -> None:
    """The last stage runs until train.steps: it must at least reach the last stage's end."""
    total = sum(s.steps for s in stages)
    if stages and train_steps < total:
        raise StageError(f"train.steps = {train_steps} ends before the schedule does ({' + '.join(str(s.steps) for s in stages)}"
                         f" = {total} steps); set train.steps = {total} (the last stage runs on until train.steps)")


def union_weights(stages: list[Stage]) -> dict[str, float]:
    """Per objective, its largest weight over the stages: which heads the model needs."""
    return {o: max(s.weight(o) for s in stages) for o in OBJECTIVES}


def stage_index(stages: list[Stage], step: int) -> int:
    """The stage that trains optimiser step ``step`` (0-based); the last one past the end."""
    start = 0
    for i, stage in enumerate(stages):
        start += stage.steps
        if step < start:
            return i
    return len(stages) - 1


def stage_bounds(stages: list[Stage]) -> list[tuple[str, int, int]]:
    """(name, first step, end step) of each stage (the last one's end as its steps say)."""
    out, start = [], 0
    for stage in stages:
        out.append((stage.name, start, start + stage.steps))
        start += stage.steps
    return out
