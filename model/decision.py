"""`Decision`: when a distortion counts as present and when an episode of it opens and closes.

One object per run, read by everything that decides: the CSV's levels, the badges, the timeline's
summary, the events and the dashboard's threshold sliders (which change it in place, so a change
reaches every reader at once). A calibrated checkpoint puts its operating point at 0.5
(training.calibrate folds it into the head), which is why 0.5 is the default for every task.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from model.tasks import severity_to_level

PRESENCE_THRESHOLD = 0.5


@dataclass
class Decision:
    thresholds: dict[str, float] = field(default_factory=dict)  # per task; a task not named decides at 0.5
    # Episodes open when the smoothed probability rises `hysteresis` above the task's threshold and
    # close when it falls `hysteresis` below it: no flicker at the boundary.
    hysteresis: float = 0.1
    min_duration_s: float = 1.0  # shorter episodes are discarded as noise
    quality_below: float = 60.0  # quality under this opens a low-quality episode
    quality_hysteresis: float = 5.0  # ... which closes at quality_below + this

    def __post_init__(self):
        for task, threshold in {"every task": PRESENCE_THRESHOLD, **self.thresholds}.items():
            self.check(task, threshold)
        if self.min_duration_s < 0:
            raise ValueError("min_duration_s must be >= 0")

    def check(self, task: str, threshold: float) -> None:
        if not 0 < threshold - self.hysteresis <= threshold + self.hysteresis < 1:
            raise ValueError(f"{task}: threshold {threshold} +- hysteresis {self.hysteresis} must lie inside (0, 1)")

    def set_threshold(self, task: str, threshold: float) -> None:
        self.check(task, threshold)
        self.thresholds[task] = float(threshold)

    def threshold(self, task: str) -> float:
        return self.thresholds.get(task, PRESENCE_THRESHOLD)

    def present(self, task: str, probability: float) -> bool:
        return probability >= self.threshold(task)

    def alarms(self, probabilities: dict[str, float]) -> list[str]:
        """The tasks present in one frame, in the order given."""
        return [t for t, p in probabilities.items() if self.present(t, p)]

    def levels(self, probabilities: dict[str, float], severities: dict[str, float]) -> dict[str, int]:
        """Severity level per task: 0 when absent, else 1..4 from the predicted severity (a present
        distortion is at least level 1, whatever its severity head says)."""
        return {t: max(1, severity_to_level(severities[t])) if self.present(t, p) else 0
                for t, p in probabilities.items()}

    def event_on(self, task: str) -> float:
        return self.threshold(task) + self.hysteresis

    def event_off(self, task: str) -> float:
        return self.threshold(task) - self.hysteresis
