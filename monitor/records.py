"""`FrameResult`: the one record every consumer reads (timeline, events, CSV, dashboard, tests).

CSV columns, in this fixed order (`csv_columns`):
    time_s, frame_index, wallclock, <task>... (presence probability 0..1), <task>_level... (0..4),
    quality (0..100), latency_ms, stream_state
A row whose probability cells are empty is a stream-state change (a gap: stalled, reconnecting,
ended), recorded so that a gap is visible rather than papered over.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from enum import Enum


class StreamState(str, Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    LOST = "lost"  # a live stream's connection ended: it is being reopened
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True)
class FrameResult:
    source_id: str
    frame_index: int  # index of the frame in the decoded stream (-1 for a state-only row)
    pts: int | None  # presentation timestamp in the stream's time_base
    time_s: float  # media time in seconds (from pts, never from a frame counter)
    wall_time: float  # capture wall-clock time, seconds since the epoch
    probabilities: dict[str, float] = field(default_factory=dict)
    levels: dict[str, int] = field(default_factory=dict)
    quality: float | None = None
    latency_ms: float | None = None  # capture to result
    stream_state: StreamState = StreamState.LIVE
    dropped_before: int = 0  # frames dropped (live overload) since the previous result
    model_name: str = ""
    # Where (not in the CSV): per task the presence of each analysed patch, and the patches as
    # (x0, y0, x1, y1) fractions of the frame (model.predict.Prediction.patch_map).
    patch_map: dict | None = field(default=None, repr=False, compare=False)
    patch_boxes: object = field(default=None, repr=False, compare=False)

    @property
    def analysed(self) -> bool:
        return bool(self.probabilities)

    @property
    def wallclock(self) -> str:
        return _dt.datetime.fromtimestamp(self.wall_time, _dt.timezone.utc).isoformat(timespec="milliseconds")


def csv_columns(tasks) -> list[str]:
    return ["time_s", "frame_index", "wallclock", *tasks, *(f"{t}_level" for t in tasks),
            "quality", "latency_ms", "stream_state"]


def csv_row(r: FrameResult, tasks) -> list:
    def num(x, fmt):
        return "" if x is None else format(x, fmt)

    probs = [num(r.probabilities.get(t), ".4f") if r.analysed else "" for t in tasks]
    levels = [str(r.levels.get(t, 0)) if r.analysed else "" for t in tasks]
    return [f"{r.time_s:.3f}", r.frame_index, r.wallclock, *probs, *levels, num(r.quality, ".2f"),
            num(r.latency_ms, ".1f"), r.stream_state.value]
