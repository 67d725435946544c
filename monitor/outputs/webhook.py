"""POST each event as JSON to a URL from a background thread: retried with back-off, bounded
queue, never blocking the pipeline (when the queue is full the event is dropped and logged). At
exit an unreachable URL costs at most `close`'s timeout: once closing, a failed post is not retried."""
from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.request

log = logging.getLogger("scopewatch.webhook")


class WebhookSender:
    def __init__(self, url: str, retries: int = 3, backoff_s: float = 0.5, timeout_s: float = 5.0, maxsize: int = 100):
        self.url, self.retries, self.backoff_s, self.timeout_s = url, retries, backoff_s, timeout_s
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.sent = self.failed = self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def send(self, payload: dict) -> None:
        try:
            self.queue.put_nowait(payload)
        except queue.Full:
            self.dropped += 1
            log.warning("webhook queue full: event dropped")

    def _post(self, payload: dict) -> None:
        req = urllib.request.Request(self.url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            resp.read()

    def _run(self) -> None:
        while not (self._stop.is_set() and self.queue.empty()):
            try:
                payload = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            for attempt in range(self.retries + 1):
                try:
                    self._post(payload)
                    self.sent += 1
                    break
                except Exception as e:  # network errors of every kind: retry, then give up on this event
                    if attempt == self.retries or self._stop.is_set():
                        self.failed += 1
                        log.warning("webhook %s failed after %d attempts: %s", self.url, attempt + 1, e)
                        break
                    self._stop.wait(self.backoff_s * 2**attempt)  # closing cuts the back-off short

    def close(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("webhook %s: %d events not delivered at exit", self.url, self.queue.qsize() + 1)
