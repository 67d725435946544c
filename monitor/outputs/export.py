"""Writers of the timeline (CSV, one row per analysed frame) and of events (JSON), both durable:
the CSV is flushed at least every `flush_s` seconds and at every stream-state change, and the
events file is rewritten atomically as each event closes, so a crash, Ctrl-C or a broken stream
loses at most the last second."""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

from monitor.records import FrameResult, csv_columns, csv_row


class CsvTimelineWriter:
    def __init__(self, path: str | Path, tasks, flush_s: float = 1.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tasks = tuple(tasks)
        self.flush_s = flush_s
        self._f = open(self.path, "w", newline="")
        self._w = csv.writer(self._f)
        self._w.writerow(csv_columns(self.tasks))
        self._f.flush()
        self._last_flush = time.monotonic()
        self.rows = 0

    def write(self, r: FrameResult) -> None:
        self._w.writerow(csv_row(r, self.tasks))
        self.rows += 1
        now = time.monotonic()
        if not r.analysed or now - self._last_flush >= self.flush_s:
            self._f.flush()
            self._last_flush = now

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


def made_by(model_name: str, weights) -> dict:
    """What wrote an events file: ScopeWatch's version, the model and its weights (as IT pins them)."""
    from model.checkpoint import CODE_VERSION
    from model.factory import weights_label
    return {"scopewatch": CODE_VERSION, "model": model_name, "weights": weights_label(weights)}


class EventsJsonWriter:
    def __init__(self, path: str | Path, source_id: str, tasks, made_by: dict | None = None):
        """`made_by`: what wrote the file (ScopeWatch's version, the model and its weights)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.header = {"source": source_id, "tasks": list(tasks), **({"made_by": made_by} if made_by else {})}
        self.events: list[dict] = []
        self._write()

    def add(self, event) -> None:
        self.events.append(event.to_dict())
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({**self.header, "events": self.events}, indent=1))
        tmp.replace(self.path)
