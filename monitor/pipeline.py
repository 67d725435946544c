"""The monitor of one feed: source -> capture stage -> ring buffer -> inference stage -> sinks
(timeline, events, CSV, ...).

Each stage has one job and its own thread; they meet only at the bounded ring buffer. The
inference worker may be shared by several monitors (one model call batches their frames) and
delivers each feed's results back through `deliver`, in the feed's order: every sink gets each
`FrameResult` with its analysis frame. The decision (levels, alarms) is the run's `Decision`.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

import numpy as np

from model.predict import Predictor
from monitor.buffer import RingBuffer
from monitor.capture import CaptureStage, EndOfFeed, Sampled
from monitor.config import ScopeWatchConfig
from monitor.inference import InferenceWorker
from monitor.metrics import PipelineMetrics
from monitor.records import FrameResult, StreamState
from monitor.sources import FrameSource, StateChange

log = logging.getLogger("scopewatch.pipeline")


class Sink(Protocol):
    def __call__(self, result: FrameResult, image: np.ndarray | None) -> None: ...


class Monitor:
    def __init__(self, source: FrameSource, predictor: Predictor, cfg: ScopeWatchConfig | None = None,
                 sinks: list[Sink] | None = None, worker: InferenceWorker | None = None):
        """`worker`: a shared inference worker (several feeds, one model); None gives this monitor
        its own."""
        self.source = source
        self.predictor = predictor
        self.cfg = cfg or ScopeWatchConfig()
        self.sinks: list[Sink] = list(sinks or [])
        self.metrics = PipelineMetrics()
        self.buffer = RingBuffer(self.cfg.buffer.capacity, drop_oldest=source.live)
        self.capture = CaptureStage(source, self.buffer, self.metrics, self.cfg.sampling.fps, predictor.input_cfg,
                                    self.cfg.source.skip_unreferenced)
        self.failed: str | None = None
        self._error: BaseException | None = None
        self._own_worker = worker is None
        self.worker = worker or InferenceWorker(predictor, self.cfg.buffer.batch_size, self.cfg.model.threads)
        self.buffer.on_put = self.worker.wake
        self._done = threading.Event()  # the worker has delivered this feed's end

    @property
    def error(self) -> BaseException | None:
        """What broke the run (a source or sink bug, a model failure), if anything did."""
        return self._error or self.capture.error

    def set_sampling(self, fps: float | None) -> None:
        self.capture.set_sampling(fps)

    # -- delivery (called by the inference worker, in this feed's order) -----------------------
    def deliver(self, items: list, preds: list, dropped: int) -> None:
        """Turn a batch's items (frames with their predictions, state changes, the end) into
        results for the sinks."""
        self.metrics.dropped += dropped
        self.metrics.queue_depth = len(self.buffer)
        preds = iter(preds)
        now = time.time()
        first = True
        for item in items:
            if isinstance(item, Sampled):
                self._result(item, next(preds), now, dropped if first else 0)
                first = False
            elif isinstance(item, StateChange):
                self._state(item)
            elif isinstance(item, EndOfFeed):
                self._finish()

    def fail(self, error: BaseException) -> None:
        """End this feed because of `error` (the worker calls it when the model or a sink fails)."""
        self._error = error
        self.stop()
        self._finish()

    def _emit(self, result: FrameResult, image) -> None:
        self.metrics.last_result = result
        self.metrics.last_time_s = result.time_s
        for sink in self.sinks:
            sink(result, image)

    def _result(self, f: Sampled, p, now: float, dropped: int) -> None:
        latency = (now - f.raw.wall_time) * 1000.0
        self.metrics.record_result(now, latency)
        levels = self.cfg.decision.levels(p.probabilities, p.severities, self.source.source_id)
        self._emit(FrameResult(self.source.source_id, f.raw.index, f.raw.pts, f.raw.time_s, f.raw.wall_time,
                               p.probabilities, levels, p.quality, latency, StreamState.LIVE, dropped,
                               self.predictor.name, p.patch_map, p.patch_boxes), f.image)

    def _state(self, change: StateChange) -> None:
        self.metrics.state, self.metrics.state_reason = change.state, change.reason
        # A failure ends the feed and whoever runs it says so (the CLI's error line, the dashboard's
        # tile): logged at INFO, so that a user sees it once.
        level = logging.WARNING if change.state == StreamState.STALLED else logging.INFO
        log.log(level, "%s: %s %s", self.source.source_id, change.state.value, change.reason,
                extra={"feed": self.source.source_id, "state": change.state.value, "time_s": change.time_s})
        if change.state == StreamState.FAILED:
            self.failed = change.reason
        self._emit(FrameResult(self.source.source_id, -1, None, change.time_s, change.wall_time,
                               stream_state=change.state, model_name=self.predictor.name), None)

    def _finish(self) -> None:
        self.worker.detach(self)
        if self._own_worker:
            self.worker.stop()
        self._done.set()

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> "Monitor":
        self.source.open()
        self.capture.start()
        self.worker.attach(self)
        return self

    def stop(self) -> None:
        self.capture.stop()
        self.source.close()
        self.buffer.close()  # the worker still delivers what is queued, then the capture's end

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to finish; True when capture has ended and every result is delivered."""
        deadline = None if timeout is None else time.time() + timeout
        captured = self.capture.join(timeout)
        self._done.wait(None if deadline is None else max(0.0, deadline - time.time()))
        return self._done.is_set() and captured
