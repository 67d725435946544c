"""All monitor settings in one place: typed, documented, bounded. A run builds its config once,
with `build_config`: the defaults of its mode, then a JSON settings file, then the command line."""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlparse

from model.decision import Decision
from model.predict import check_precision


@dataclass
class SourceConfig:
    realtime: bool = False  # play a file at its own pace, as if it were a live feed
    open_timeout_s: float = 10.0  # give up opening a network stream after this long
    read_timeout_s: float = 5.0  # a network read that blocks this long fails
    stall_s: float = 3.0  # no frame for this long: the watchdog declares the stream stalled and reopens it
    # Waits between reopen attempts, the last one repeated: at most 2 s, so that a feed is back within
    # a few seconds of its server (an attempt is one connection: cheap on any network).
    reconnect_backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0)
    max_reconnects: int | None = None  # None: keep trying while the monitor runs
    rtsp_transport: str = "tcp"  # or "udp"
    # At a sampled rate, do not decode the frames no other frame refers to (B-frames) when the
    # analysed frames are far enough apart: they are never analysed and nothing else needs them.
    skip_unreferenced: bool = True

    def __post_init__(self):
        for name in ("open_timeout_s", "read_timeout_s", "stall_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.rtsp_transport not in ("tcp", "udp"):
            raise ValueError("rtsp_transport must be tcp or udp")


# A recording is analysed 5 frames a second of media: episodes resolved to 0.2 s, finer than any
# distortion episode lasts, while inference stays a small part of decoding a long recording.
RECORDED_FPS = 5.0
# A live feed too, in watch and on the dashboard alike (one default, issue 22): a distortion shows
# within 0.2 s, and a 2-core machine keeps a fifth of the inference load free for decoding,
# the dashboard, a browser and more feeds (benchmarks/dashboard_cpu.py prints latency and drops).
LIVE_FPS = 5.0


@dataclass
class SamplingConfig:
    fps: float | None = RECORDED_FPS  # analysed frames per second of media; None = every frame (see MODES)

    def __post_init__(self):
        if self.fps is not None and not 0 < self.fps < math.inf:
            raise ValueError(f"fps must be a finite number > 0, got {self.fps}")


@dataclass
class BufferConfig:
    capacity: int = 16  # frames waiting for inference; live sources drop the oldest beyond this
    batch_size: int = 8  # most frames analysed in one model call

    def __post_init__(self):
        if self.capacity < 1 or self.batch_size < 1:
            raise ValueError("capacity and batch_size must be >= 1")


@dataclass
class ModelConfig:
    weights: str | None = None  # checkpoint path; None = the shipped weights
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch threads; None = leave one core to decoding
    # auto: bfloat16 on a CPU that does it natively (the model a sixth faster in batches), else float32
    precision: str = "auto"

    def __post_init__(self):
        check_precision(self.precision)


@dataclass
class EventConfig:
    """How events are measured; when they open and close is the run's `Decision`."""
    smoothing_s: float = 1.0  # time constant of the exponential smoothing of probabilities
    freeze_s: float = 2.0  # identical frames for this long: a frozen feed
    freeze_diff: float = 0.2  # mean absolute 8-bit difference (at 160x90) under which two frames are "identical"
    # A repeated picture decodes to differences of 0 to 0.1; the slowest moving scene measured,
    # the demo feed, at its flattest (smoke, then defocus blur), never fell below 0.43.
    black_luma: float = 16.0  # mean luma under which a frame is black
    black_s: float = 1.0  # black for this long: a black-frame event
    thumbnail_width: int = 240

    def __post_init__(self):
        if self.smoothing_s < 0:
            raise ValueError("smoothing_s must be >= 0")


@dataclass
class OutputConfig:
    webhook: str | None = None  # POST each event as JSON here (http:// or https://)
    flush_s: float = 1.0  # the CSV is flushed at least this often

    def __post_init__(self):
        if self.webhook is not None:
            url = urlparse(self.webhook)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise ValueError(f"webhook must be an http:// or https:// URL, got {self.webhook!r}")
        if not 0 < self.flush_s < math.inf:
            raise ValueError("flush_s must be a finite number > 0")


@dataclass
class TimelineConfig:
    recent_s: float = 600.0  # kept frame by frame in memory (the 10-minute chart window)
    archive_points: int = 2000  # older history, downsampled to at most this many points

    def __post_init__(self):
        if self.recent_s <= 0 or self.archive_points < 2:
            raise ValueError("recent_s must be > 0 and archive_points >= 2")


@dataclass
class ScopeWatchConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    events: EventConfig = field(default_factory=EventConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    timeline: TimelineConfig = field(default_factory=TimelineConfig)
    decision: Decision = field(default_factory=Decision)


# What differs between the ways of running: a recording is analysed at decoding speed; a live feed
# at its own pace; the dashboard plays files at their own pace, as the live feeds they stand in for.
MODES: dict[str, dict[str, object]] = {
    "recorded": {"sampling.fps": RECORDED_FPS, "source.realtime": False},
    "live": {"sampling.fps": LIVE_FPS, "source.realtime": False},
    "dashboard": {"sampling.fps": LIVE_FPS, "source.realtime": True},
}


class ConfigError(ValueError):
    """A settings file or value that cannot be used: one line for the user."""


def _section(cls, values: dict, where: str):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(names))})")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})  # JSON has no tuples
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _merged(cfg: ScopeWatchConfig, settings: dict[str, dict], where: str) -> ScopeWatchConfig:
    """`cfg` with the sections in `settings` ({section: {field: value}}) laid over it."""
    known = [f.name for f in fields(cfg)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown section {unknown[0]!r} (known: {', '.join(known)})")
    out = {}
    for name, values in settings.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: section {name!r} must be an object of settings")
        current = getattr(cfg, name)
        out[name] = _section(type(current), {**vars(current), **values}, f"{where}: {name}")
    return replace(cfg, **out)


def _dotted(overrides: dict[str, object]) -> dict[str, dict]:
    settings: dict[str, dict] = {}
    for key, value in overrides.items():
        section, name = key.split(".", 1)
        settings.setdefault(section, {})[name] = value
    return settings


def mode_default(mode: str, key: str):
    """The default of a dotted setting (e.g. "sampling.fps") in `mode`, for help texts."""
    if key in MODES[mode]:
        return MODES[mode][key]
    section, name = key.split(".", 1)
    return getattr(getattr(ScopeWatchConfig(), section), name)


def build_config(mode: str, file: str | Path | None = None, cli: dict[str, object] | None = None) -> ScopeWatchConfig:
    """The one config of a run: `mode`'s defaults (MODES), then the JSON `file` ({section: {field:
    value}}), then what the command line gave (`cli`: dotted keys as in MODES)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    cfg = _merged(ScopeWatchConfig(), _dotted(MODES[mode]), f"mode {mode}")
    if file is not None:
        try:
            settings = json.loads(Path(file).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{file}: cannot read settings ({e})") from None
        if not isinstance(settings, dict):
            raise ConfigError(f"{file}: settings must be a JSON object of sections")
        cfg = _merged(cfg, settings, str(file))
    return _merged(cfg, _dotted(cli or {}), "command line")


def for_mode(cfg: ScopeWatchConfig, mode: str) -> ScopeWatchConfig:
    """`cfg` run in another mode (the dashboard's Recorded tab analyses as `analyze` does): a copy
    with that mode's defaults, sharing the run's decision, so a threshold set once holds for both."""
    out = _merged(copy.deepcopy(cfg), _dotted(MODES[mode]), f"mode {mode}")
    out.decision = cfg.decision
    return out
