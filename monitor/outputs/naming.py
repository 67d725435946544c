"""The one rule that names a source's output files, for analyze, watch, archives and the dashboard.

A recording's files carry its file name (`case.mp4.scopewatch.csv`), so they sort beside it and
two recordings never share files; a stream, a device or a generated feed has no file name, so its
address is turned into one (`rtsp_cam1_8554_live.scopewatch.csv`), which a folder accepts on every
system. A recording whose folder cannot take files (a read-only share, someone else's folder) has
them written to `scopewatch-out/` in the current folder instead.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from monitor.sources import is_file_uri

SUFFIX = ".scopewatch"
DEFAULT_FOLDER = Path("scopewatch-out")  # a recording's files when its own folder cannot take them


@dataclass(frozen=True)
class OutputPaths:
    csv: Path
    events: Path
    summary: Path  # an archive's per-video summary (written last: its presence means complete)
    reference: Path  # the feed's reference ("this is normal"), when one is taken


def feed_stem(uri: str) -> str:
    """A file name for a feed: its address with everything but letters and digits as '_'."""
    return "".join(c if c.isalnum() else "_" for c in uri).strip("_")[-60:] or "feed"


def can_write_in(folder: Path) -> bool:
    """Whether a file can be created in `folder`: tried, not read off permission bits, which root,
    network shares and read-only mounts each answer differently."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def output_paths(uri: str | Path, folder: str | Path | None = None) -> OutputPaths:
    """The files of source `uri` in `folder`; without a folder, a recording's go beside it (or to
    DEFAULT_FOLDER when its folder cannot take files) and a stream's into the current folder."""
    uri = str(uri)
    if is_file_uri(uri):
        path = Path(uri)
        if folder is not None:
            base = Path(folder)
        else:
            base = path.parent if can_write_in(path.parent) else DEFAULT_FOLDER
        stem = base / path.name
    else:
        stem = Path(folder or ".") / feed_stem(uri)
    return OutputPaths(Path(f"{stem}{SUFFIX}.csv"), Path(f"{stem}{SUFFIX}.events.json"),
                       Path(f"{stem}{SUFFIX}.summary.json"), Path(f"{stem}{SUFFIX}.reference.json"))
