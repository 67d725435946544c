"""The in-memory timeline of one source: every FrameResult in order, and its summary."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from monitor.records import FrameResult


@dataclass
class TaskSummary:
    name: str
    percent_present: float
    episodes: int
    worst_level: int


class Timeline:
    def __init__(self, tasks, thresholds: dict[str, float] | None = None):
        self.tasks = tuple(tasks)
        self.thresholds = {t: 0.5 for t in self.tasks} | (thresholds or {})
        self.results: list[FrameResult] = []
        self._lock = threading.Lock()

    def __call__(self, result: FrameResult, image=None) -> None:
        with self._lock:
            self.results.append(result)

    def snapshot(self) -> list[FrameResult]:
        with self._lock:
            return list(self.results)

    def analysed(self) -> list[FrameResult]:
        return [r for r in self.snapshot() if r.analysed]

    def summary(self, events=()) -> tuple[list[TaskSummary], dict]:
        rows = self.analysed()
        out = []
        for t in self.tasks:
            present = [r.probabilities[t] >= self.thresholds[t] for r in rows]
            out.append(TaskSummary(t, 100.0 * float(np.mean(present)) if rows else 0.0,
                                   sum(1 for e in events if e.kind == "distortion" and e.name == t),
                                   max((r.levels.get(t, 0) for r in rows), default=0)))
        q = [r.quality for r in rows if r.quality is not None]
        overall = {"frames": len(rows), "mean_quality": float(np.mean(q)) if q else None,
                   "min_quality": float(np.min(q)) if q else None,
                   "duration_s": (rows[-1].time_s - rows[0].time_s) if len(rows) > 1 else 0.0}
        return out, overall


def format_summary(tasks: list[TaskSummary], overall: dict, events=()) -> str:
    lines = [f"{'distortion':<22}{'% of time':>10}{'episodes':>10}{'worst level':>13}"]
    lines += [f"{t.name:<22}{t.percent_present:>9.1f}%{t.episodes:>10}{t.worst_level:>13}" for t in tasks]
    if overall["mean_quality"] is not None:
        lines.append(f"quality: mean {overall['mean_quality']:.1f}, min {overall['min_quality']:.1f} "
                     f"(0..100) over {overall['frames']} analysed frames, {overall['duration_s']:.1f} s")
    other = [e for e in events if e.kind != "distortion"]
    for e in other:
        lines.append(f"{e.kind} event: {e.start_s:.1f}-{e.end_s:.1f} s")
    return "\n".join(lines)
