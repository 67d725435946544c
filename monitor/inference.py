"""The inference stage: one thread (`infer:<model>`) that batches the frames waiting in one feed's
ring buffer or many, runs the model once per batch and hands each feed its results in order."""
from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

import torch

from model.predict import Predictor
from monitor.capture import Sampled
from monitor.outputs.export import OutputError

if TYPE_CHECKING:
    from monitor.pipeline import Monitor

log = logging.getLogger("scopewatch.inference")


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
            spare = self.batch_size - sum(isinstance(i, Sampled) for _, items, _ in taken for i in items)
            for k, (m, items, dropped) in enumerate(taken):  # fill the batch from feeds with more waiting
                if spare <= 0:
                    break
                more, more_dropped = m.buffer.get_batch(spare, timeout=0)
                taken[k] = (m, items + more, dropped + more_dropped)
                spare -= sum(isinstance(i, Sampled) for i in more)
            images = [item.image for _, items, _ in taken for item in items if isinstance(item, Sampled)]
            try:
                # With the per-patch map (a few small matrix products more): events show where.
                preds = iter(self.predictor.predict(images, with_map=True))
            except Exception as e:  # a model failure ends every feed visibly, not silently
                log.exception("inference failed")
                for m, _, _ in taken:
                    m.fail(e)
                continue
            for m, items, dropped in taken:
                mine = [next(preds) for item in items if isinstance(item, Sampled)]
                try:
                    m.deliver(items, mine, dropped)
                except OutputError as e:  # a file that can no longer be written: whoever runs the feed says so
                    log.info("%s: %s", m.source.source_id, e)
                    m.fail(e)
                except Exception as e:  # a feed's sink failing ends that feed only
                    log.exception("%s: delivering results failed", m.source.source_id)
                    m.fail(e)
            if not any(items for _, items, _ in taken):
                self._wake.wait(0.05)
