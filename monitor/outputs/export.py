"""Writers of the timeline (CSV, one row per analysed frame) and of events (JSON), both durable:
the CSV is flushed at least every `flush_s` seconds and at every stream-state change, and the
events file is rewritten atomically as each event closes, so a crash, Ctrl-C or a broken stream
loses at most the last second. A file that can no longer be written (the disk full, a file size
limit, the file or its folder removed) raises `OutputError`, one line that ends the run; what was
written before stays."""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import os
import time
from pathlib import Path

from monitor.records import FrameResult, csv_columns, csv_row

log = logging.getLogger("scopewatch.outputs")
WHY = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
       errno.EFBIG: "the file size limit is reached", errno.ENOENT: "its folder was removed",
       errno.EROFS: "the file system became read-only"}


class OutputError(OSError):
    """An output file that can no longer be written: the run ends with this one line."""

    @classmethod
    def of(cls, path: Path, error: OSError | None = None, why: str = "") -> "OutputError":
        """`error` what the write raised, or `why` the file is gone (then nothing of it is left)."""
        if why:
            return cls(f"cannot write {path}: {why}")
        return cls(f"cannot write {path}: {WHY.get(error.errno, error.strerror or str(error))}"
                   f"{'' if error.errno == errno.ENOENT else '; what was written before is kept'}")


class CsvTimelineWriter:
    """Rows are kept until a flush and then written whole, in one write, so that a process killed at
    any moment leaves a file that ends with a complete row; a write the disk takes only in part is
    cut back to the last whole row. With `append`, an existing timeline of the same columns is
    continued (a restarted `watch`), after cutting a partial last line left by a crash; otherwise
    the file is started afresh."""

    def __init__(self, path: str | Path, tasks, flush_s: float = 1.0, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tasks = tuple(tasks)
        self.flush_s = flush_s
        self._line = io.StringIO()  # one formatter for every row
        self._csv = csv.writer(self._line)
        header = self._format(csv_columns(self.tasks))
        continued = append and _continue_timeline(self.path, header)
        # Unbuffered: each flush is one write of whole rows, and nothing is left to write at close.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if continued else os.O_TRUNC), 0o644)
        self._whole = os.fstat(self._fd).st_size  # bytes of whole rows on disk
        self.broken: OutputError | None = None
        self._pending: list[str] = [] if continued else [header]
        self._flush()
        self.rows = 0

    def write(self, r: FrameResult) -> None:
        self._pending.append(self._format(csv_row(r, self.tasks)))
        self.rows += 1
        if not r.analysed or time.monotonic() - self._last_flush >= self.flush_s:
            self._flush()

    def _format(self, values) -> str:
        self._line.seek(0)
        self._line.truncate()
        self._csv.writerow(values)
        return self._line.getvalue()

    def _flush(self) -> None:
        if self.broken:
            raise self.broken
        data = "".join(self._pending).encode()
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, memoryview(data)[written:])
            gone = os.fstat(self._fd).st_nlink == 0  # writes to a removed file would vanish unseen
        except OSError as e:
            with contextlib.suppress(OSError):  # keep the whole rows the disk took
                os.ftruncate(self._fd, self._whole + data.rfind(b"\n", 0, written) + 1)
            self.broken = OutputError.of(self.path, e)
            raise self.broken from None
        if gone:
            self.broken = OutputError.of(self.path, why="it was removed (or its folder) while being written")
            raise self.broken
        self._pending.clear()
        self._whole += len(data)
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            if not self.broken:
                self._flush()
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1


def _continue_timeline(path: Path, header: str) -> bool:
    """Whether `path` is a timeline with `header` to continue; a partial last line is cut off. A
    file with other columns is refused (a ValueError): appending would mix two tables. Reads the
    header and the tail only: a whole day's timeline is tens of MB."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        if f.read(len(header.encode())) != header.encode():
            raise ValueError(f"{path} holds a timeline with other columns; move it away or write elsewhere")
        size = f.seek(0, os.SEEK_END)
        tail_at = max(0, size - 65536)  # far longer than a row
        f.seek(tail_at)
        tail = f.read()
        end = tail_at + tail.rfind(b"\n") + 1
        if end < size:
            f.truncate(end)
    return True


def made_by(model_name: str, weights) -> dict:
    """What wrote an events file: ScopeWatch's version, the model and its weights (as IT pins them)."""
    from model.checkpoint import CODE_VERSION
    from model.factory import weights_label
    return {"scopewatch": CODE_VERSION, "model": model_name, "weights": weights_label(weights)}


class EventsJsonWriter:
    def __init__(self, path: str | Path, source_id: str, tasks, made_by: dict | None = None, append: bool = False):
        """`made_by`: what wrote the file (ScopeWatch's version, the model and its weights).
        `append`: keep the events of an existing file of the same source and tasks (a restarted
        `watch`); one that cannot be read is kept aside as `*.unreadable` and a new one begun."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.header = {"source": source_id, "tasks": list(tasks), **({"made_by": made_by} if made_by else {})}
        self.events: list[dict] = self._earlier() if append else []
        self._write()

    def _earlier(self) -> list[dict]:
        if not self.path.is_file():
            return []
        try:
            data = json.loads(self.path.read_text())
            if data.get("source") == self.header["source"] and data.get("tasks") == self.header["tasks"]:
                return list(data["events"])
        except (ValueError, KeyError, TypeError, AttributeError):
            aside = self.path.with_name(self.path.name + ".unreadable")
            self.path.replace(aside)
            log.warning("%s: not an events file of this feed; kept as %s, starting a new one", self.path, aside)
            return []
        raise ValueError(f"{self.path} holds the events of another feed or other distortions; move it away or write elsewhere")

    def add(self, event) -> None:
        self.events.append(event.to_dict())
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        try:
            tmp.write_text(json.dumps({**self.header, "events": self.events}, indent=1))
            tmp.replace(self.path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # the last whole file stays in place
            raise OutputError.of(self.path, e) from None
