"""The CLI's log lines: text for people, or one JSON object a line (`--log-format json`) for log
shippers, with the feed, state or alarm of the line as fields of their own."""
from __future__ import annotations

import datetime as _dt
import json
import logging

FIELDS = ("feed", "state", "alarm", "change", "time_s")  # the `extra` the monitor's log calls carry


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure(verbose: bool, fmt: str) -> None:
    """Text at WARNING (INFO with -v); JSON at INFO, since a log shipper wants every state change."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose or fmt == "json" else logging.WARNING, handlers=[handler])
