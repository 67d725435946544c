"""`PipelineMetrics`: the one place where a feed's rates, drops, latencies and state live. The
stages record into it; the CLI's status line and the dashboard only read it."""
from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from monitor.records import FrameResult, StreamState


# Upper bounds (ms) of the capture-to-result latency histogram kept for the whole run (Prometheus).
LATENCY_BUCKETS_MS = (10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)


@dataclass
class PipelineMetrics:
    state: StreamState = StreamState.CONNECTING
    state_reason: str = ""
    decoded: int = 0
    analysed: int = 0
    dropped: int = 0
    queue_depth: int = 0
    last_frame_wall: float | None = None
    last_result: FrameResult | None = None
    last_time_s: float = 0.0
    _decode_times: deque = field(default_factory=lambda: deque(maxlen=100))
    _result_times: deque = field(default_factory=lambda: deque(maxlen=100))
    _latencies: deque = field(default_factory=lambda: deque(maxlen=2000))
    # Over the whole run: per bucket of LATENCY_BUCKETS_MS (and one past the last) the results that
    # fell in it, and the latencies' sum.
    latency_counts: list = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    latency_sum_ms: float = 0.0

    def record_decoded(self, frame_wall: float) -> None:
        self.decoded += 1
        self._decode_times.append(time.time())
        self.last_frame_wall = frame_wall

    def record_result(self, now: float, latency_ms: float) -> None:
        self.analysed += 1
        self._result_times.append(now)
        self._latencies.append(latency_ms)
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        self.latency_sum_ms += latency_ms

    @staticmethod
    def _rate(times: deque, window_s: float = 5.0) -> float:
        """Events per second over the last `window_s` seconds up to now: falls to 0 while nothing comes."""
        now = time.time()
        recent = [t for t in list(times) if t >= now - window_s]
        if len(recent) < 2 or recent[-1] == recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    @property
    def capture_fps(self) -> float:
        return self._rate(self._decode_times)

    @property
    def inference_fps(self) -> float:
        return self._rate(self._result_times)

    def latency_percentile(self, q: float) -> float | None:
        return float(np.percentile(list(self._latencies), q)) if self._latencies else None
