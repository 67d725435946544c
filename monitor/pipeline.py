"""The monitor: source -> ring buffer -> inference worker -> sinks (timeline, events, CSV, ...).

Each stage has one job and its own thread, named like an address (`capture:<source>`,
`infer:<model>`); they meet only at the bounded ring buffer. The capture stage decodes, keeps the
frames the sampler wants (by media time) and converts only those, straight to the model's
analysis size. The inference worker batches whatever is waiting (frames across time, and across
feeds when several monitors share one worker), runs the model and hands each `FrameResult` with
its analysis frame to every sink of its feed in order. `PipelineMetrics` is the
one place where rates, drops, queue depth and state live; the CLI and dashboard only read it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

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
    def _rate(times: deque, window_s: float = 5.0) -> float:
        """Events per second over the last `window_s` seconds (the rate now, not since long ago)."""
        recent = [t for t in list(times) if t >= times[-1] - window_s] if times else []
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


class InferenceWorker:
    """The inference stage: one thread that serves one feed or many (`watch A B C` runs one worker
    for all). Each round it takes a fair share of a batch from every feed with frames waiting,
    visiting feeds round robin, so a busy feed cannot starve a quiet one and a stalled or dead feed
    costs nothing, then fills what is left of the batch from feeds with more waiting; it runs the
    model once on all of them (a GPU serves every feed) and hands each feed its results in order."""

    def __init__(self, predictor: Predictor, batch_size: int = 8, threads: int | None = None):
        self.predictor, self.batch_size, self.threads = predictor, batch_size, threads
        self._feeds: list[Monitor] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._turn = 0

    def attach(self, monitor: "Monitor") -> None:
        with self._lock:
            self._feeds.append(monitor)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=f"infer:{self.predictor.name}", daemon=True)
                self._thread.start()
        self.wake()

    def detach(self, monitor: "Monitor") -> None:
        with self._lock:
            if monitor in self._feeds:
                self._feeds.remove(monitor)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _run(self) -> None:
        # Decoding runs beside inference on the CPU: by default the model leaves it one core.
        # (The setting is process-wide, so the caller's is restored when the worker ends.)
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads or max(1, (os.cpu_count() or 1) - 1))
        try:
            self._serve()
        finally:
            torch.set_num_threads(before)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            with self._lock:
                feeds = self._feeds[self._turn:] + self._feeds[:self._turn]
                self._turn = (self._turn + 1) % max(1, len(self._feeds))
            share = max(1, self.batch_size // max(1, len(feeds)))
            taken = [(m, *m.buffer.get_batch(share, timeout=0)) for m in feeds]
            spare = self.batch_size - sum(isinstance(i, _Sampled) for _, items, _ in taken for i in items)
            for k, (m, items, dropped) in enumerate(taken):  # fill the batch from feeds with more waiting
                if spare <= 0:
                    break
                more, more_dropped = m.buffer.get_batch(spare, timeout=0)
                taken[k] = (m, items + more, dropped + more_dropped)
                spare -= sum(isinstance(i, _Sampled) for i in more)
            images = [item.image for _, items, _ in taken for item in items if isinstance(item, _Sampled)]
            try:
                preds = iter(self.predictor.predict(images))
            except Exception as e:  # a model failure ends every feed visibly, not silently
                log.exception("inference failed")
                for m, _, _ in taken:
                    m._fail(e)
                continue
            for m, items, dropped in taken:
                mine = [next(preds) for item in items if isinstance(item, _Sampled)]
                try:
                    m._deliver(items, mine, dropped)
                except Exception as e:  # a feed's sink failing ends that feed only
                    log.exception("%s: delivering results failed", m.source.source_id)
                    m._fail(e)
            if not any(items for _, items, _ in taken):
                self._wake.wait(0.05)


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
        self.sampler = Sampler(self.cfg.sampling.fps)
        self.stop_event = threading.Event()
        self.failed: str | None = None
        self.error: BaseException | None = None
        self._own_worker = worker is None
        self.worker = worker or InferenceWorker(predictor, self.cfg.buffer.batch_size, self.cfg.model.threads)
        self.buffer.on_put = self.worker.wake
        self._capture_thread: threading.Thread | None = None
        self._done = threading.Event()  # the worker has delivered this feed's end
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

    # -- delivery (called by the inference worker, in this feed's order) -----------------------
    def _emit(self, result: FrameResult, image) -> None:
        self.metrics.last_result = result
        self.metrics.last_time_s = result.time_s
        for sink in self.sinks:
            sink(result, image)

    def _deliver(self, items: list, preds: list, dropped: int) -> None:
        self.metrics.dropped += dropped
        self.metrics.queue_depth = len(self.buffer)
        preds = iter(preds)
        now = time.time()
        first = True
        for item in items:
            if isinstance(item, _Sampled):
                self._result(item, next(preds), now, dropped if first else 0)
                first = False
            elif isinstance(item, StateChange):
                self._state(item)
            elif isinstance(item, _End):
                self._finish()

    def _result(self, f: _Sampled, p, now: float, dropped: int) -> None:
        latency = (now - f.raw.wall_time) * 1000.0
        self.metrics._latencies.append(latency)
        self.metrics._result_times.append(now)
        self.metrics.analysed += 1
        self._emit(FrameResult(self.source.source_id, f.raw.index, f.raw.pts, f.raw.time_s, f.raw.wall_time,
                               p.probabilities, p.levels, p.quality, latency, StreamState.LIVE, dropped,
                               self.predictor.name), f.image)

    def _state(self, change: StateChange) -> None:
        self.metrics.state, self.metrics.state_reason = change.state, change.reason
        level = logging.WARNING if change.state in (StreamState.STALLED, StreamState.FAILED) else logging.INFO
        log.log(level, "%s: %s %s", self.source.source_id, change.state.value, change.reason)
        if change.state == StreamState.FAILED:
            self.failed = change.reason
        self._emit(FrameResult(self.source.source_id, -1, None, change.time_s, change.wall_time,
                               stream_state=change.state, model_name=self.predictor.name), None)

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self.stop()
        self._finish()

    def _finish(self) -> None:
        self.worker.detach(self)
        if self._own_worker:
            self.worker.stop()
        self._done.set()

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> "Monitor":
        self.source.open()
        self._capture_thread = threading.Thread(target=self._capture, name=f"capture:{self.source.source_id}",
                                                daemon=True)
        self._capture_thread.start()
        self.worker.attach(self)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.source.close()
        self.buffer.close()  # the worker still delivers what is queued, then the capture's end

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to finish; True when capture has ended and every result is delivered."""
        deadline = None if timeout is None else time.time() + timeout
        if self._capture_thread:
            self._capture_thread.join(timeout)
        self._done.wait(None if deadline is None else max(0.0, deadline - time.time()))
        return self._done.is_set() and not (self._capture_thread and self._capture_thread.is_alive())
