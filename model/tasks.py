"""The one table of task (distortion) properties that the model, training, events, CSV and charts read.

A task is one distortion the model reports: a presence probability in [0, 1] and a severity level
0..4 (0 = absent). Adding a distortion to the project is adding a row here plus its synthesiser in
`training.distortions`; the model's heads are sized from the task list it is created with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

NUM_LEVELS = 4


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    lower_better: bool = True  # a higher probability means a worse picture
    score_range: tuple[float, float] = (0.0, 1.0)
    color: str = "#888888"  # chart colour, so every view of a task looks the same


TASK_SPECS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("noise", "Noise", color="#636efa"),
        TaskSpec("smoke", "Surgical smoke", color="#7f7f7f"),
        TaskSpec("uneven_illumination", "Uneven illumination", color="#fecb52"),
        TaskSpec("defocus_blur", "Defocus blur", color="#ef553b"),
        TaskSpec("motion_blur", "Motion blur", color="#00cc96"),
        TaskSpec("compression", "Compression artefacts", color="#ab63fa"),
    )
}

# The five surgical distortions of the LVQ / ICIP 2020 benchmark, in its label-code order (1..5).
DEFAULT_TASKS: tuple[str, ...] = ("noise", "smoke", "uneven_illumination", "defocus_blur", "motion_blur")

QUALITY_RANGE = (0.0, 100.0)  # quality score: higher is better


def task_spec(name: str) -> TaskSpec:
    if name not in TASK_SPECS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASK_SPECS)}")
    return TASK_SPECS[name]


def validate_tasks(tasks) -> tuple[str, ...]:
    tasks = tuple(tasks)
    for name in tasks:
        task_spec(name)
    if len(set(tasks)) != len(tasks) or not tasks:
        raise ValueError(f"task list must be non-empty and unique, got {tasks}")
    return tasks


def level_to_severity(level: int) -> float:
    """Nominal continuous severity of a level: the centre of its bin ((L-1)/4, L/4]."""
    if not 0 <= level <= NUM_LEVELS:
        raise ValueError(f"level must be 0..{NUM_LEVELS}, got {level}")
    return 0.0 if level == 0 else (level - 0.5) / NUM_LEVELS


def severity_to_level(severity: float) -> int:
    """Level 1..4 of a continuous severity in (0, 1]; 0 for an absent distortion."""
    if severity <= 0.0:
        return 0
    return min(NUM_LEVELS, max(1, math.ceil(severity * NUM_LEVELS)))
