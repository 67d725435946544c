"""What the dashboard may read off the server's disk: the offered checkpoints, files inside the
allowed folder (nothing that escapes it), and single frames of a recording for the preview."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np

from model.factory import WEIGHTS_DIR
from monitor.archive import VIDEO_SUFFIXES
from monitor.sources import frame_at as source_frame_at


def weights_choices(current: Path, allowed: Path | None) -> dict[str, Path]:
    """Checkpoints the Settings tab may load: the shipped ones, the one in use, and those in the
    allowed folder (nothing else on the server can be named)."""
    found = sorted(WEIGHTS_DIR.glob("*.pt")) + (sorted(allowed.glob("*.pt")) if allowed and allowed.is_dir() else [])
    return {str(p.resolve()): p.resolve() for p in [current, *found]}


def allowed_files(allowed: Path | None) -> list[str]:
    """The recordings the Recorded tab's chooser offers: video files only, the ones an archive run
    would take (the CSV and events files written beside them are not recordings)."""
    if not (allowed and allowed.is_dir()):
        return []
    return sorted(p.name for p in allowed.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def resolve_in(folder: Path, name: str) -> Path:
    """`name` inside `folder`, refusing anything that escapes it (.., absolute paths, links out)."""
    root = folder.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise gr.Error(f"refused: {name!r} is not a file in the allowed folder")
    return path


def frame_at(path: Path, time_s: float) -> np.ndarray | None:
    """The frame of a recording shown at `time_s`, full size."""
    raw = source_frame_at(path, time_s)
    return None if raw is None else raw.to_rgb((raw.width, raw.height))
