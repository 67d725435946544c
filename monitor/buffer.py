"""The bounded ring buffer between capture and inference.

Frames are either dropped oldest-first when full (live sources: latency stays bounded, and every
drop is counted) or make the producer wait (files: lossless back-pressure, every sampled frame is
analysed). Control items (stream-state changes, end of stream) are never dropped and never block:
they mark where a gap happened in the sequence.
"""
from __future__ import annotations

import threading
from collections import deque


class Control:
    """Base of non-frame items that travel in order with the frames."""


class RingBuffer:
    def __init__(self, capacity: int, drop_oldest: bool):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self._items: deque = deque()
        self._frames = 0
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0  # total frames dropped
        self._dropped_since_get = 0
        self.on_put = None  # called after every put (a consumer serving several buffers waits on it)

    def put(self, frame, timeout: float | None = None) -> bool:
        """Add a frame; False if the buffer was closed (or, when blocking, the wait timed out)."""
        with self._cond:
            if self.drop_oldest:
                while self._frames >= self.capacity:
                    self._drop_oldest_frame()
            elif not self._cond.wait_for(lambda: self._frames < self.capacity or self._closed, timeout):
                return False
            if self._closed:
                return False
            self._items.append(frame)
            self._frames += 1
            self._cond.notify_all()
        if self.on_put:
            self.on_put()
        return True

    def _drop_oldest_frame(self):
        for i, item in enumerate(self._items):
            if not isinstance(item, Control):
                del self._items[i]
                self._frames -= 1
                self.dropped += 1
                self._dropped_since_get += 1
                return

    def put_control(self, item: Control) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()
        if self.on_put:
            self.on_put()

    def get_batch(self, max_frames: int, timeout: float | None = None) -> tuple[list, int]:
        """Up to `max_frames` items in order, stopping after a control item; and the number of
        frames dropped since the previous call. An empty list means timeout or closed-and-empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            out = []
            while self._items and len(out) < max_frames:
                item = self._items.popleft()
                out.append(item)
                if isinstance(item, Control):
                    break
                self._frames -= 1
            dropped, self._dropped_since_get = self._dropped_since_get, 0
            self._cond.notify_all()
            return out, dropped

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return self._frames
