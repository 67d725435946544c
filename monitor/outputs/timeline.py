"""The in-memory timeline of one source: recent results in full, older ones downsampled, and an
exact running summary.

A live feed runs for hours, so memory must not grow with it: the last `recent_s` seconds are kept
frame by frame (what the 1-minute and 10-minute charts show), older results move to an archive
that holds at most `archive_points` entries, each the worst frame of a bucket of consecutive ones
(a short episode stays visible; when the archive fills, neighbouring buckets merge pairwise). The
summary (percent of time per distortion, quality mean and minimum) is counted as results arrive, so
it is exact whatever was downsampled. The CSV on disk always holds every row.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from model.decision import Decision
from monitor.records import FrameResult


@dataclass
class TaskSummary:
    name: str
    percent_present: float
    episodes: int
    worst_level: int


def severity_key(result: FrameResult) -> float:
    """Which result of a bucket represents it: the most distorted analysed frame."""
    return max(result.probabilities.values(), default=0.0) if result.analysed else -1.0


class Timeline:
    def __init__(self, tasks, decision: Decision | None = None, recent_s: float = 600.0, archive_points: int = 2000):
        """`decision`: the run's, read as each result arrives (a threshold changed mid-run counts
        from then on)."""
        self.tasks = tuple(tasks)
        self.decision = decision or Decision()
        self.recent_s, self.archive_points = recent_s, archive_points
        self.recent: deque[FrameResult] = deque()
        self.archive: list[FrameResult] = []
        self.bucket = 1  # results per archive entry
        self._pending: FrameResult | None = None  # worst result so far of the bucket being filled
        self._pending_n = 0
        self._lock = threading.Lock()
        self.frames_analysed = 0
        self._present = dict.fromkeys(self.tasks, 0)
        self._worst_level = dict.fromkeys(self.tasks, 0)
        self._quality_sum, self._quality_n, self._quality_min = 0.0, 0, None
        self._first_time = self._last_time = None

    def __call__(self, result: FrameResult, image=None) -> None:
        with self._lock:
            self._count(result)
            self.recent.append(result)
            while self.recent and self.recent[0].time_s < result.time_s - self.recent_s:
                self._to_archive(self.recent.popleft())

    def _count(self, r: FrameResult) -> None:
        if not r.analysed:
            return
        self.frames_analysed += 1
        for t in self.tasks:
            self._present[t] += self.decision.present(t, r.probabilities.get(t, 0.0), r.source_id)
            self._worst_level[t] = max(self._worst_level[t], r.levels.get(t, 0))
        if r.quality is not None:
            self._quality_sum += r.quality
            self._quality_n += 1
            self._quality_min = r.quality if self._quality_min is None else min(self._quality_min, r.quality)
        if self._first_time is None:
            self._first_time = r.time_s
        self._last_time = r.time_s

    def _to_archive(self, result: FrameResult) -> None:
        if self._pending is None or severity_key(result) > severity_key(self._pending):
            self._pending = result
        self._pending_n += 1
        if self._pending_n < self.bucket:
            return
        self.archive.append(self._pending)
        self._pending, self._pending_n = None, 0
        if len(self.archive) > self.archive_points:
            merged = [max(pair, key=severity_key) for pair in zip(self.archive[0::2], self.archive[1::2])]
            if len(self.archive) % 2:  # an unpaired last entry starts the next, twice as long, bucket
                self._pending, self._pending_n = self.archive[-1], self.bucket
            self.archive, self.bucket = merged, self.bucket * 2

    def snapshot(self) -> list[FrameResult]:
        """Everything kept, oldest first: the archive (downsampled), then the recent results."""
        with self._lock:
            return self.archive + ([self._pending] if self._pending else []) + list(self.recent)

    def analysed(self) -> list[FrameResult]:
        return [r for r in self.snapshot() if r.analysed]

    def summary(self, events=()) -> tuple[list[TaskSummary], dict]:
        with self._lock:
            n = self.frames_analysed
            out = [TaskSummary(t, 100.0 * self._present[t] / n if n else 0.0,
                               sum(1 for e in events if e.kind == "distortion" and e.name == t),
                               self._worst_level[t]) for t in self.tasks]
            overall = {"frames": n, "mean_quality": self._quality_sum / self._quality_n if self._quality_n else None,
                       "min_quality": self._quality_min,
                       "duration_s": (self._last_time - self._first_time) if n > 1 else 0.0}
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
