"""The feeds the apps can open: every source the monitor reads, plus `synthetic:SECONDS`, the
built-in demo scene (training's synthesis, handed to the monitor as an ordinary frame source)."""
from __future__ import annotations

from urllib.parse import urlparse

from monitor.config import SourceConfig
from monitor.sources import ArraySource, FrameSource, SourceError, SourceInfo, open_source
from training.demo import DEMO_FPS, DEMO_SIZE, DemoFeed


def synthetic_source(uri: str, cfg: SourceConfig) -> FrameSource:
    """`synthetic:SECONDS` (default 60): the demo scene with its scheduled episodes."""
    try:
        seconds = float(urlparse(uri).path or 60)
    except ValueError:
        raise SourceError(f"{uri}: expected synthetic:SECONDS") from None
    if not seconds > 0:
        raise SourceError(f"{uri}: expected synthetic:SECONDS with SECONDS > 0")
    feed = DemoFeed(seconds)
    info = SourceInfo(DEMO_SIZE[0], DEMO_SIZE[1], float(DEMO_FPS), "synthetic", seconds)
    return ArraySource(feed, info, realtime=cfg.realtime, source_id=uri,
                       description="synthetic scene")


SCHEMES = {"synthetic": synthetic_source}


def open_feed(uri: str, cfg: SourceConfig | None = None) -> FrameSource:
    """The source for `uri` (see monitor.sources.open_source), synthetic:SECONDS included."""
    return open_source(uri, cfg, SCHEMES)
