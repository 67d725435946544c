"""The capture stage: decode a source, keep the frames the sampler wants (by media time) and
convert only those, straight to the model's analysis size, into the feed's ring buffer. Its own
thread, named `capture:<source>`; it meets the inference stage only at the buffer."""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from model.preprocess import InputConfig, analysis_size, too_small
from monitor.buffer import Control, RingBuffer
from monitor.metrics import PipelineMetrics
from monitor.records import StreamState
from monitor.sources import FrameSource, RawFrame, StateChange

log = logging.getLogger("scopewatch.capture")


@dataclass
class Sampled:
    """A kept frame, converted for the model."""
    raw: RawFrame
    image: np.ndarray


class FrameTooSmall(Exception):
    """The feed's frames are below the model's minimum size: nothing it says about them is a verdict."""


class EndOfFeed(Control):
    """The last item a capture stage puts: the feed has nothing more."""


class Sampler:
    """Keeps the first frame of each `1/fps` slot of media time (all frames when fps is None).
    Works on pts time, so variable frame rate and dropped frames do not skew the rate, and the
    slots are fixed in media time: a recording cut into chunks keeps the frames one pass keeps."""

    def __init__(self, fps: float | None):
        self.step = None if fps is None else 1.0 / fps
        self.next_time: float | None = None

    def keep(self, time_s: float) -> bool:
        if self.step is None:
            return True
        if self.next_time is None or time_s >= self.next_time - 1e-6:
            self.next_time = (math.floor(time_s / self.step + 1e-6) + 1) * self.step
            return True
        return False

    def reset(self) -> None:
        self.next_time = None


class CaptureStage:
    def __init__(self, source: FrameSource, buffer: RingBuffer, metrics: PipelineMetrics, fps: float | None,
                 input_cfg: InputConfig, skip_unreferenced: bool = True):
        """`skip_unreferenced`: let the source skip decoding frames that are never kept and that no
        other frame refers to (`FrameSource.keeping_every`)."""
        self.source, self.buffer, self.metrics, self.input_cfg = source, buffer, metrics, input_cfg
        self.skip_unreferenced = skip_unreferenced
        self.set_sampling(fps)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}

    def set_sampling(self, fps: float | None) -> None:
        """Analyse `fps` frames per second of media from now on (None: every frame)."""
        self.sampler = Sampler(fps)
        self.source.keeping_every(1.0 / fps if fps and self.skip_unreferenced else None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.source.source_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """True when the stage has ended (or never started)."""
        if self._thread:
            self._thread.join(timeout)
        return not (self._thread and self._thread.is_alive())

    def _size_for(self, w: int, h: int) -> tuple[int, int]:
        if (w, h) not in self._sizes:
            reason = too_small(w, h, self.input_cfg)
            if reason:
                raise FrameTooSmall(reason)
            self._sizes[(w, h)] = analysis_size(w, h, self.input_cfg)
        return self._sizes[(w, h)]

    def _run(self) -> None:
        try:
            for item in self.source.frames():
                if self.stop_event.is_set():
                    break
                if isinstance(item, StateChange):
                    if item.state != StreamState.LIVE:
                        self.sampler.reset()
                    self.buffer.put_control(item)
                    continue
                self.metrics.record_decoded(item.wall_time)
                if not self.sampler.keep(item.time_s):
                    continue
                sampled = Sampled(item, item.to_rgb(self._size_for(item.width, item.height)))
                item.av_frame = None  # release the decoder's picture early
                while not self.buffer.put(sampled, timeout=0.5):  # back-pressure (files) or closed
                    if self.stop_event.is_set() or self.buffer.closed:
                        return
        except FrameTooSmall as e:  # the feed's fault, not ours: said once, no traceback
            log.error("%s: %s", self.source.source_id, e)
            self.buffer.put_control(StateChange(StreamState.FAILED, self.metrics.last_time_s, time.time(), str(e)))
        except Exception as e:  # a source bug must end the run visibly, not hang it
            log.exception("capture failed")
            self.error = e
            self.buffer.put_control(StateChange(StreamState.FAILED, self.metrics.last_time_s, time.time(), str(e)))
        finally:
            self.buffer.put_control(EndOfFeed())
