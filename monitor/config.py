"""All monitor settings in one place: typed, documented, bounded; the CLI overrides fields."""
from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class SourceConfig:
    realtime: bool = False  # play a file at its own pace, as if it were a live feed
    open_timeout_s: float = 10.0  # give up opening a network stream after this long
    read_timeout_s: float = 5.0  # a network read that blocks this long fails
    stall_s: float = 3.0  # no frame for this long: the watchdog declares the stream stalled and reopens it
    reconnect_backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between reopen attempts
    max_reconnects: int | None = None  # None: keep trying while the monitor runs
    rtsp_transport: str = "tcp"  # or "udp"

    def __post_init__(self):
        for name in ("open_timeout_s", "read_timeout_s", "stall_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.rtsp_transport not in ("tcp", "udp"):
            raise ValueError("rtsp_transport must be tcp or udp")


@dataclass
class SamplingConfig:
    fps: float | None = 5.0  # analysed frames per second of media; None = every frame
    # 5 fps resolves episodes to 0.2 s, which is finer than any distortion episode lasts, while
    # inference stays a small fraction of decoding cost on a long recording.

    def __post_init__(self):
        if self.fps is not None and self.fps <= 0:
            raise ValueError("fps must be > 0")


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


@dataclass
class EventConfig:
    smoothing_s: float = 1.0  # time constant of the exponential smoothing of probabilities
    on_threshold: float = 0.6  # smoothed probability that opens an episode
    off_threshold: float = 0.4  # ... and that closes it (hysteresis: no flicker at the boundary)
    min_duration_s: float = 1.0  # shorter episodes are discarded as noise
    quality_below: float = 60.0  # quality under this opens a low-quality episode
    freeze_s: float = 2.0  # identical frames for this long: a frozen feed
    freeze_diff: float = 0.2  # mean absolute 8-bit difference (at 160x90) under which two frames are "identical"
    # A repeated picture decodes to differences of 0 to 0.1; the slowest moving scene measured,
    # the demo feed, at its flattest (smoke, then defocus blur), never fell below 0.43.
    black_luma: float = 16.0  # mean luma under which a frame is black
    black_s: float = 1.0  # black for this long: a black-frame event
    thumbnail_width: int = 240

    def __post_init__(self):
        if not 0 < self.off_threshold <= self.on_threshold < 1:
            raise ValueError("need 0 < off_threshold <= on_threshold < 1")
        if self.smoothing_s < 0 or self.min_duration_s < 0:
            raise ValueError("smoothing_s and min_duration_s must be >= 0")


@dataclass
class OutputConfig:
    csv: str | None = None
    events: str | None = None
    webhook: str | None = None  # POST each event as JSON here
    flush_s: float = 1.0  # the CSV is flushed at least this often


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

    def to_dict(self) -> dict:
        return {f.name: vars(getattr(self, f.name)).copy() for f in fields(self)}
