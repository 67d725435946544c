"""The monitor: source -> ring buffer -> inference worker -> sinks (timeline, events, CSV, ...).

Each stage has one job and its own thread, named like an address (`capture:<source>`,
`infer:<model>`); they meet only at the bounded ring buffer. The capture stage decodes, keeps the
frames the sampler wants (by media time) and converts only those, straight to the model's
analysis size. The worker batches whatever is waiting (frames across time), runs the model and
hands each `FrameResult` with its analysis frame to every sink in order. `PipelineMetrics` is the
one place where rates, drops, queue depth and state live; the CLI and dashboard only read it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from model.predict import Predictor
from model.preprocess import analysis_size
from monitor.buffer import Control, RingBuffer
from monitor.config import ScopeWatchConfig
from monitor.records import FrameResult, StreamState
from monitor.sources import FrameSource, RawFrame, StateChange

log = logging.getLogger("scopewatch.pipeline")


class Sink(Protocol):
    def __call__(self, result: FrameResult, image: np.ndarray | None) -> None: ...


@dataclass
class _Sampled:
    raw: RawFrame
    image: np.ndarray


class _End(Control):
    pass


class Sampler:
    """Keeps frames `1/fps` apart in media time (all frames when fps is None). Works on pts time,
    so variable frame rate and dropped frames do not skew the rate."""

    def __init__(self, fps: float | None):
        self.step = None if fps is None else 1.0 / fps
        self.next_time: float | None = None

    def keep(self, time_s: float) -> bool:
        if self.step is None:
            return True
        if self.next_time is None or time_s >= self.next_time - 1e-6:
            base = time_s if self.next_time is None or time_s - self.next_time > self.step else self.next_time
            self.next_time = base + self.step
            return True
        return False

    def reset(self) -> None:
        self.next_time = None


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

    @staticmethod
    def _rate(times: deque) -> float:
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    @property
    def capture_fps(self) -> float:
        return self._rate(self._decode_times)

    @property
    def inference_fps(self) -> float:
        return self._rate(self._result_times)

    def latency_percentile(self, q: float) -> float | None:
        return float(np.percentile(list(self._latencies), q)) if self._latencies else None


class Monitor:
    def __init__(self, source: FrameSource, predictor: Predictor, cfg: ScopeWatchConfig | None = None,
                 sinks: list[Sink] | None = None):
        self.source = source
        self.predictor = predictor
        self.cfg = cfg or ScopeWatchConfig()
        self.sinks: list[Sink] = list(sinks or [])
        self.metrics = PipelineMetrics()
        self.buffer = RingBuffer(self.cfg.buffer.capacity, drop_oldest=source.live)
        self.sampler = Sampler(self.cfg.sampling.fps)
        self.stop_event = threading.Event()
        self.failed: str | None = None
        self.error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}

    # -- capture stage -------------------------------------------------------------------------
    def _size_for(self, w: int, h: int) -> tuple[int, int]:
        if (w, h) not in self._sizes:
            self._sizes[(w, h)] = analysis_size(w, h, self.predictor.input_cfg)
        return self._sizes[(w, h)]

    def _capture(self):
        try:
            for item in self.source.frames():
                if self.stop_event.is_set():
                    break
                if isinstance(item, StateChange):
                    if item.state != StreamState.LIVE:
                        self.sampler.reset()
                    self.buffer.put_control(item)
                    continue
                self.metrics.decoded += 1
                self.metrics._decode_times.append(time.time())
                self.metrics.last_frame_wall = item.wall_time
                if not self.sampler.keep(item.time_s):
                    continue
                sampled = _Sampled(item, item.to_rgb(self._size_for(item.width, item.height)))
                item.av_frame = None  # release the decoder's picture early
                while not self.buffer.put(sampled, timeout=0.5):  # back-pressure (files) or closed
                    if self.stop_event.is_set() or self.buffer.closed:
                        return
        except Exception as e:  # a source bug must end the run visibly, not hang it
            log.exception("capture failed")
            self.error = e
            self.buffer.put_control(StateChange(StreamState.FAILED, self.metrics.last_time_s, time.time(), str(e)))
        finally:
            self.buffer.put_control(_End())

    # -- inference stage -------------------------------------------------------------------------
    def _emit(self, result: FrameResult, image) -> None:
        self.metrics.last_result = result
        self.metrics.last_time_s = result.time_s
        for sink in self.sinks:
            sink(result, image)

    def _infer(self):
        threads = self.cfg.model.threads
        if threads:
            torch.set_num_threads(threads)
        try:
            while True:
                batch, dropped = self.buffer.get_batch(self.cfg.buffer.batch_size, timeout=0.5)
                self.metrics.dropped += dropped
                self.metrics.queue_depth = len(self.buffer)
                frames = [b for b in batch if isinstance(b, _Sampled)]
                if frames:
                    self._analyse(frames, dropped)
                for item in batch:
                    if isinstance(item, StateChange):
                        self._state(item)
                    elif isinstance(item, _End):
                        return
                if not batch and self.buffer.closed:
                    return
        except Exception as e:
            log.exception("inference failed")
            self.error = e
            self.stop_event.set()
            self.source.close()
            self.buffer.close()

    def _analyse(self, frames: list[_Sampled], dropped: int) -> None:
        preds = self.predictor.predict([f.image for f in frames])
        now = time.time()
        for i, (f, p) in enumerate(zip(frames, preds)):
            latency = (now - f.raw.wall_time) * 1000.0
            self.metrics._latencies.append(latency)
            self.metrics._result_times.append(now)
            self.metrics.analysed += 1
            r = FrameResult(self.source.source_id, f.raw.index, f.raw.pts, f.raw.time_s, f.raw.wall_time,
                            p.probabilities, p.levels, p.quality, latency, StreamState.LIVE,
                            dropped if i == 0 else 0, self.predictor.name)
            self._emit(r, f.image)

    def _state(self, change: StateChange) -> None:
        self.metrics.state, self.metrics.state_reason = change.state, change.reason
        level = logging.WARNING if change.state in (StreamState.STALLED, StreamState.FAILED) else logging.INFO
        log.log(level, "%s: %s %s", self.source.source_id, change.state.value, change.reason)
        if change.state == StreamState.FAILED:
            self.failed = change.reason
        self._emit(FrameResult(self.source.source_id, -1, None, change.time_s, change.wall_time,
                               stream_state=change.state, model_name=self.predictor.name), None)

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> "Monitor":
        self.source.open()
        sid = self.source.source_id
        self._threads = [threading.Thread(target=self._capture, name=f"capture:{sid}", daemon=True),
                         threading.Thread(target=self._infer, name=f"infer:{self.predictor.name}", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.source.close()
        self.buffer.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to finish; True when both stages have ended."""
        deadline = None if timeout is None else time.time() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.time()))
        return not any(t.is_alive() for t in self._threads)

    def run(self, duration_s: float | None = None, on_tick: Callable[[PipelineMetrics], None] | None = None,
            tick_s: float = 0.5) -> None:
        """Start, wait until the source ends (or `duration_s` passes, or Ctrl-C), then stop."""
        self.start()
        start = time.time()
        try:
            while not self.join(timeout=tick_s):
                if on_tick:
                    on_tick(self.metrics)
                if duration_s is not None and time.time() - start >= duration_s:
                    break
        finally:
            self.stop()
            self.join(timeout=10)
