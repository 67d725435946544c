"""Where frames come from: files and live streams through PyAV, capture devices through OpenCV,
and frames handed over as arrays (a generated feed). All behind one `FrameSource` interface.

A source yields `RawFrame`s (decoded but not yet converted: the capture stage converts only the
frames the sampler keeps, straight to the model's analysis size with libswscale) and
`StateChange`s (connecting, live, stalled, reconnecting, ended, failed) in stream order. Time is
the frame's pts in its stream's time_base (`time_s` = pts x time_base), never a frame counter.
"""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import urlparse

import av
import numpy as np

from monitor.buffer import Control
from monitor.config import SourceConfig
from monitor.records import StreamState

log = logging.getLogger("scopewatch.source")

NETWORK_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "srt", "tcp", "hls"}


class SourceError(Exception):
    """A source that cannot be opened or read: one line for the user."""


@dataclass
class RawFrame:
    index: int
    pts: int | None
    time_s: float
    wall_time: float
    width: int
    height: int
    av_frame: av.VideoFrame | None = None
    array: np.ndarray | None = None  # RGB, for sources that do not decode with PyAV

    def to_rgb(self, size: tuple[int, int]) -> np.ndarray:
        if self.av_frame is not None:
            f = self.av_frame
            if (f.width, f.height) != size:
                f = f.reformat(size[0], size[1], format="rgb24", interpolation="AREA")
            return f.to_ndarray(format="rgb24")
        import cv2
        if (self.array.shape[1], self.array.shape[0]) == size:
            return self.array
        return cv2.resize(self.array, size, interpolation=cv2.INTER_AREA)


@dataclass
class StateChange(Control):
    state: StreamState
    time_s: float
    wall_time: float
    reason: str = ""


@dataclass
class SourceInfo:
    width: int = 0
    height: int = 0
    fps: float | None = None
    codec: str = ""
    duration_s: float | None = None


# Encoders put at most 3 frames that nothing refers to (B-frames) between two references: x264's
# and most hardware encoders' default. With analysed frames at least this many frames apart, a
# reference always falls between two of them, so decoding only references keeps the sampled rate.
REFERENCE_SPAN = 4


class FrameSource(ABC):
    """live: frames arrive on their own clock and are dropped (oldest first) if analysis falls
    behind; otherwise the source waits for the analysis (back-pressure)."""

    live: bool = False
    damage: "Damage | None" = None  # a recording's damaged stretches, once read (None: none looked for)

    def __init__(self, source_id: str):
        self.source_id = source_id
        self.info = SourceInfo()
        self.stop_event = threading.Event()
        self.kept_step_s: float | None = None  # see keeping_every

    def open(self) -> None:
        """Check the source can be read (raises SourceError); fills `info`."""

    @abstractmethod
    def frames(self) -> Iterator[RawFrame | StateChange]: ...

    def keeping_every(self, step_s: float | None) -> None:
        """The capture stage keeps one frame per `step_s` of media from now on (None: every frame
        it gets). A source that decodes with PyAV then skips decoding the frames no other frame
        refers to, where the codec marks them, when references come often enough (`skips_unreferenced`).
        The frames it still gives are decoded exactly as before: nothing else depends on the ones skipped."""
        self.kept_step_s = step_s

    def skips_unreferenced(self) -> bool:
        fps = self.info.fps
        return self.kept_step_s is not None and bool(fps) and self.kept_step_s * fps >= REFERENCE_SPAN - 1e-6

    def _apply_skipping(self, codec_context, skipping: bool) -> bool:
        """Set the decoder to skip unreferenced frames or not, as `skips_unreferenced` says now;
        `skipping` is its current setting. Returns the new one."""
        wanted = self.skips_unreferenced()
        if wanted != skipping:
            codec_context.skip_frame = "NONREF" if wanted else "DEFAULT"
        return wanted

    def close(self) -> None:
        self.stop_event.set()


def _av_error(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def frame_at(path: str | Path, time_s: float) -> RawFrame | None:
    """The decoded frame of a recording shown at `time_s` (the last one when past the end): seek
    to the keyframe before, decode forward. For a preview or a thumbnail, not for analysis."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        if stream.time_base:
            c.seek(max(0, int(time_s / stream.time_base)), stream=stream, backward=True)
        last = None
        for f in c.decode(stream):
            last = f
            if f.time is not None and f.time >= time_s - 1e-3:
                break
    if last is None:
        return None
    return RawFrame(-1, last.pts, last.time or 0.0, time.time(), last.width, last.height, av_frame=last)


class FileSource(FrameSource):
    """A recorded video of any container/codec FFmpeg reads. Audio is ignored. With `realtime`
    the file is played at its own pace, as a live feed (frames dropped if analysis lags)."""

    def __init__(self, path: str | Path, realtime: bool = False, source_id: str | None = None,
                 start_s: float = 0.0, end_s: float | None = None):
        """`start_s`/`end_s`: decode only frames with start_s <= time < end_s (a chunk of a long
        recording analysed on its own); the end of the stream is reported only when reached."""
        super().__init__(source_id or Path(path).name)
        self.path = Path(path)
        self.live = realtime
        self.start_s, self.end_s = start_s, end_s
        self.container = None

    def open(self):
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise SourceError(f"{self.path}: is a folder, not a video file")
        if self.path.stat().st_size == 0:
            raise SourceError(f"{self.path}: empty file")
        try:
            self.container = av.open(str(self.path))
        except (av.error.FFmpegError, UnicodeDecodeError) as e:
            raise SourceError(f"{self.path}: not a readable video ({_av_error(e)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"{self.path}: no video stream (audio-only or not a video)")
        stream = self.container.streams.video[0]
        cc = stream.codec_context
        if not cc.width or not cc.height:
            self.container.close()
            raise SourceError(f"{self.path}: video stream has no picture size (damaged or unsupported)")
        duration = float(stream.duration * stream.time_base) if stream.duration else (
            self.container.duration / 1e6 if self.container.duration else None)
        self.info = SourceInfo(cc.width, cc.height, float(stream.average_rate) if stream.average_rate else None,
                               cc.name, duration)

    def skips_unreferenced(self) -> bool:
        # A transport stream's lost frames show only as gaps in its timestamps (Damage), which
        # skipped frames would imitate: it is decoded whole.
        return (self.damage is None or self.damage.fps is None) and super().skips_unreferenced()

    def frames(self):
        if self.container is None:
            self.open()
        stream = self.container.streams.video[0]
        if not self.live and self.kept_step_s is None:
            # A recording decoded whole, as fast as it goes: frame threads decode several frames at
            # once, bit for bit as one thread would, a few frames late (only a feed would feel it).
            # Where unreferenced frames are skipped, the references left decode one after the
            # other, and frame threads cost more CPU than they save (benchmarks/RESULTS.md).
            stream.codec_context.thread_type = "FRAME"
        fps = self.info.fps or 25.0
        start_wall = time.time()
        first_time = None
        index = 0
        # A chunk starting mid-file, or frames skipped, number the frames as the whole file would
        # (constant frame rate).
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        yield StateChange(StreamState.LIVE, self.start_s, start_wall, f"{self.info.codec} {self.info.width}x{self.info.height}")
        if self.start_s > 0 and stream.time_base:  # from the keyframe before, decoding forward
            self.container.seek(int(self.start_s / stream.time_base), stream=stream, backward=True)
        t = self.start_s
        # A transport stream carries no index: FFmpeg drops what it cannot parse without an error,
        # so lost frames show only as a jump in their timestamps and a tail left unread.
        damage = self.damage = Damage(fps if "mpegts" in self.container.format.name else None)
        skipping, numbered_by_time = False, self.start_s > 0
        try:
            for packet in damage.packets(self.container, stream):
                skipping = self._apply_skipping(stream.codec_context, skipping)
                numbered_by_time = numbered_by_time or skipping
                try:
                    if isinstance(packet, Exception):
                        raise packet
                    decoded = packet.decode()
                except av.error.InvalidDataError as e:  # damaged data: skip to where the stream is whole again
                    if damage.skip(e):
                        yield StateChange(StreamState.STALLED, t, time.time(), f"damaged data after {t:.2f} s: skipping to the next whole frame")
                    continue
                for frame in decoded:
                    if self.stop_event.is_set():
                        return
                    t = frame.time if frame.time is not None else index / fps
                    if t < self.start_s - 1e-6:
                        continue
                    if self.end_s is not None and t >= self.end_s - 1e-6:
                        return
                    if damage.jumped(t):
                        yield StateChange(StreamState.STALLED, damage.last_t, time.time(), "frames missing: timestamps jump")
                    if damage.open_gap:
                        yield StateChange(StreamState.LIVE, t, time.time(), damage.resumed())
                    damage.read(packet, t)
                    if first_time is None:
                        first_time = t
                    if self.live:  # pace by the media clock
                        delay = start_wall + (t - first_time) - time.time()
                        if delay > 0 and self.stop_event.wait(delay):
                            return
                    number = round((t - origin) * fps) if numbered_by_time else index
                    yield RawFrame(number, frame.pts, t, time.time(), frame.width, frame.height, av_frame=frame)
                    index += 1
        except av.error.FFmpegError as e:
            yield StateChange(StreamState.FAILED, t, time.time(), f"decoding stopped at frame {index}: {_av_error(e)}")
            return
        finally:
            self.container.close()
        if damage.open_gap:  # nothing whole came after the damage
            yield StateChange(StreamState.FAILED, t, time.time(),
                              f"decoding stopped at frame {index}: damaged data to the end ({damage.total} packets skipped)")
            return
        if index == 0:
            yield StateChange(StreamState.FAILED, 0.0, time.time(), "no decodable video frames")
            return
        # A damaged or cut file often just ends early without a decoding error: the container's
        # declared duration tells. (Its estimate can be off by a frame or two, hence the margin.)
        declared = self.info.duration_s
        if declared and t + max(1.0, 3.0 / fps) < declared:
            yield StateChange(StreamState.FAILED, t, time.time(),
                              f"file ends early: decoded up to {t:.1f} s of its {declared:.1f} s (truncated or damaged)")
            return
        damage.tail(self.path.stat().st_size)
        note = damage.summary()
        yield StateChange(StreamState.ENDED, t, time.time(), f"{index} frames" + (f"; {note}" if note else ""))


class Damage:
    """Damaged stretches of a recording: packets the decoder refuses are skipped (the decoder
    resyncs at the next whole frame) and counted, and each stretch becomes a gap in the timeline.
    A demuxer error restarts the demuxer where it stopped; too many in a row and reading ends.
    With `fps` (a constant-rate stream without an index), a timestamp jump of more than
    `JUMP_FRAMES` frames counts as frames lost, and a tail of the file that yields no frame is noted."""

    MAX_DEMUX_ERRORS = 100
    JUMP_FRAMES = 2.5
    TAIL_BYTES = 16 * 1024  # less than this unread at the end is trailing audio or padding

    def __init__(self, fps: float | None = None):
        self.fps = fps
        self.total = 0  # packets skipped over the file
        self.in_gap = 0  # packets skipped since the last whole frame
        self.first_error = ""
        self.lost_frames = 0  # frames missing over the file (timestamp jumps)
        self.jump = 0  # frames missing in the gap now open by a jump
        self.last_t: float | None = None
        self.end_pos = 0  # where the last packet that gave a frame ends in the file
        self.unread_tail = 0

    @property
    def open_gap(self) -> bool:
        return self.in_gap > 0 or self.jump > 0

    def skip(self, error: Exception) -> bool:
        """Count a skipped packet; True when it starts a damaged stretch."""
        self.total += 1
        self.in_gap += 1
        if self.in_gap == 1:
            self.first_error = _av_error(error)
        return self.in_gap == 1

    def jumped(self, t: float) -> bool:
        """True when frame time `t` comes too long after the last: frames were lost (a gap opens)."""
        if not self.fps or self.last_t is None or self.open_gap or t - self.last_t <= self.JUMP_FRAMES / self.fps:
            return False
        self.jump = round((t - self.last_t) * self.fps) - 1
        self.lost_frames += self.jump
        return True

    def read(self, packet, t: float) -> None:
        self.last_t = t
        if packet.pos is not None and packet.pos >= 0:
            self.end_pos = max(self.end_pos, packet.pos + packet.size)

    def tail(self, file_size: int) -> None:
        if self.fps and self.end_pos and file_size - self.end_pos > max(self.TAIL_BYTES, file_size // 100):
            self.unread_tail = file_size - self.end_pos

    def resumed(self) -> str:
        """Close the open gap, saying what it was."""
        text = (f"resumed after {self.jump} missing frames" if self.jump else
                f"resumed after {self.in_gap} damaged packets ({self.first_error})")
        self.in_gap = self.jump = 0
        return text

    def summary(self) -> str:
        """What was damaged, for the user ('' when nothing was)."""
        parts = ([f"{self.total} damaged packets skipped (the gaps are 'stalled' rows of the CSV)"] if self.total else []) + \
                ([f"{self.lost_frames} frames missing (the gaps are 'stalled' rows of the CSV)"] if self.lost_frames else []) + \
                ([f"the last {self.unread_tail // 1024} KB hold no decodable video (cut or corrupted)"] if self.unread_tail else [])
        return "; ".join(parts)

    def packets(self, container, stream):
        """The stream's packets (the last, empty one flushes the decoder), with each demuxer error
        in their place as the exception itself."""
        errors = 0
        while True:
            try:
                for packet in container.demux(stream):
                    errors = 0
                    yield packet
                return
            except av.error.InvalidDataError as e:
                errors += 1
                if errors > self.MAX_DEMUX_ERRORS:
                    raise
                yield e


class StreamSource(FrameSource):
    """A live network stream (rtsp, rtmp, http(s)/HLS, udp/rtp MPEG-TS, srt, tcp) through PyAV.

    Opened with low-latency options (no input buffering, small probe) and open/read timeouts, so a
    dead peer is an error after the timeout rather than a hang. A read that gets nothing for
    `stall_s` (the watchdog, via FFmpeg's interrupt callback) marks the stream stalled; it is then
    reopened with back-off. Media time continues across reconnections on the wall clock (the first
    frame after an outage comes as long after the last one as it did in wall time; pts restart with
    each connection and begin anywhere), so a gap shows at its true length."""

    live = True

    def __init__(self, url: str, cfg: SourceConfig, source_id: str | None = None, fmt: str | None = None):
        super().__init__(source_id or url)
        self.url, self.cfg, self.fmt = url, cfg, fmt

    def _options(self) -> dict[str, str]:
        opts = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "500000", "analyzeduration": "1000000"}
        scheme = urlparse(self.url).scheme
        if scheme in ("rtsp", "rtsps"):
            opts["rtsp_transport"] = self.cfg.rtsp_transport
        return opts

    def _open(self):
        fmt = self.fmt
        if fmt is None and urlparse(self.url).scheme in ("udp", "tcp", "srt", "rtp"):
            fmt = "mpegts"
        container = av.open(self.url, format=fmt, options=self._options(),
                            timeout=(self.cfg.open_timeout_s, min(self.cfg.read_timeout_s, self.cfg.stall_s)))
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.url}: no video stream")
        return container

    def open(self):
        # Checked on the first connection inside frames(): opening here would hold the stream open
        # while nothing reads it.
        scheme = urlparse(self.url).scheme
        if scheme not in NETWORK_SCHEMES:
            raise SourceError(f"{self.url}: unsupported stream scheme {scheme!r}")

    def frames(self):
        t0 = time.time()
        index, attempt, ever_live = 0, 0, False
        announce_live = True  # a LIVE row is due at the first frame of each session
        last_time, last_wall = 0.0, None
        while not self.stop_event.is_set():
            if attempt == 0:  # once per outage; the retries after it are logged only
                yield StateChange(StreamState.CONNECTING if not ever_live else StreamState.RECONNECTING,
                                  last_time, time.time(), self.url)
            try:
                container = self._open()
            except (av.error.FFmpegError, OSError, SourceError) as e:
                reason = _av_error(e)
                if not ever_live:  # never reached: a wrong or dead address, not a dropped feed
                    yield StateChange(StreamState.FAILED, 0.0, time.time(), f"cannot open {self.url}: {reason}")
                    return
                if self.cfg.max_reconnects is not None and attempt >= self.cfg.max_reconnects:
                    yield StateChange(StreamState.FAILED, last_time, time.time(), f"cannot open: {reason}")
                    return
                wait = self.cfg.reconnect_backoff_s[min(attempt, len(self.cfg.reconnect_backoff_s) - 1)]
                attempt += 1
                if self.stop_event.wait(wait):
                    return
                continue
            stream = container.streams.video[0]
            cc = stream.codec_context
            self.info = SourceInfo(cc.width, cc.height, float(stream.average_rate) if stream.average_rate else None, cc.name)
            session_start = None
            reason, stalled, skipping = "end of stream", False, False
            try:
                for packet in container.demux(stream):
                    skipping = self._apply_skipping(cc, skipping)
                    for frame in packet.decode():
                        if self.stop_event.is_set():
                            return
                        now = time.time()
                        t = frame.time if frame.time is not None else 0.0
                        if session_start is None:
                            # Media time continues on the wall clock across reconnections.
                            session_start = (now - t0 if last_wall is None else last_time + now - last_wall) - t
                            if announce_live:
                                yield StateChange(StreamState.LIVE, session_start + t, now,
                                                  f"{cc.name} {cc.width}x{cc.height}")
                            ever_live, attempt, announce_live = True, 0, False
                        last_time, last_wall = session_start + t, now
                        yield RawFrame(index, frame.pts, last_time, now, frame.width, frame.height, av_frame=frame)
                        index += 1
            except (av.error.FFmpegError, OSError) as e:
                # The read timeout interrupts FFmpeg (AVERROR_EXIT): connected, but no picture arrives.
                stalled = isinstance(e, (av.error.ExitError, TimeoutError))
                reason = f"no picture for {min(self.cfg.read_timeout_s, self.cfg.stall_s):g} s" if stalled else _av_error(e)
            finally:
                container.close()
            if self.stop_event.is_set():
                return
            state = StreamState.STALLED if stalled else StreamState.LOST
            announce_live = True
            log.warning("%s: %s (%s); reconnecting", self.url, state.value, reason)
            yield StateChange(state, last_time, time.time(), reason)
            if self.cfg.max_reconnects is not None and attempt >= self.cfg.max_reconnects:
                yield StateChange(StreamState.FAILED, last_time, time.time(), "gave up reconnecting")
                return
            wait = self.cfg.reconnect_backoff_s[0]
            if self.stop_event.wait(wait):
                return


class DeviceSource(FrameSource):
    """A local capture device (/dev/videoN, capture cards). PyAV's wheel has no v4l2 input, so
    OpenCV captures; time is the capture wall clock (devices give no trustworthy pts)."""

    live = True

    def __init__(self, device: str, source_id: str | None = None):
        super().__init__(source_id or device)
        self.device = device
        self.cap = None

    def open(self):
        import cv2
        target = int(self.device) if self.device.isdigit() else self.device
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise SourceError(f"{self.device}: cannot open capture device")
        self.info = SourceInfo(int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                               self.cap.get(cv2.CAP_PROP_FPS) or None, "v4l2")

    def frames(self):
        import cv2
        if self.cap is None:
            self.open()
        t0, index = time.time(), 0
        yield StateChange(StreamState.LIVE, 0.0, t0, self.device)
        try:
            while not self.stop_event.is_set():
                ok, bgr = self.cap.read()
                if not ok:
                    yield StateChange(StreamState.ENDED, time.time() - t0, time.time(), "device stopped delivering")
                    return
                now = time.time()
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                yield RawFrame(index, None, now - t0, now, rgb.shape[1], rgb.shape[0], array=rgb)
                index += 1
        finally:
            self.cap.release()


class ArraySource(FrameSource):
    """Frames handed over as RGB arrays by any Python iterable of `(time_s, rgb)`: a generated feed
    (the demo scene the apps build with training's synthesis), a test double. pts counts frames in
    a 1/fps time base; with `realtime` the frames come at their own pace, as a live feed's."""

    def __init__(self, frames: Iterable[tuple[float, np.ndarray]], info: SourceInfo, realtime: bool = False,
                 source_id: str = "generated", description: str = "generated frames"):
        super().__init__(source_id)
        self.arrays, self.info, self.live, self.description = frames, info, realtime, description

    def frames(self):
        start = time.time()
        yield StateChange(StreamState.LIVE, 0.0, start, self.description)
        i, t = 0, 0.0
        for t, img in self.arrays:
            if self.live and self.stop_event.wait(max(0.0, start + t - time.time())):
                return
            if self.stop_event.is_set():
                return
            yield RawFrame(i, i, t, time.time(), img.shape[1], img.shape[0], array=img)
            i += 1
        yield StateChange(StreamState.ENDED, t, time.time(), f"{i} frames")


SourceFactory = Callable[[str, SourceConfig], FrameSource]


def is_file_uri(uri: str) -> bool:
    """Whether `uri` names a file, not a stream, a device or a feed of another scheme (`name:...`;
    a one-letter scheme is a Windows drive)."""
    parsed = urlparse(uri)
    if parsed.scheme in NETWORK_SCHEMES or uri.startswith("/dev/video"):
        return False
    return len(parsed.scheme) <= 1 or Path(uri).exists()


def open_source(uri: str, cfg: SourceConfig | None = None, schemes: dict[str, SourceFactory] | None = None) -> FrameSource:
    """Pick the source for `uri`: a network URL, a capture device (/dev/videoN or device:N), a feed
    of one of `schemes` (scheme -> factory(uri, cfg), e.g. the apps' synthetic:SECONDS), or a video
    file. Raises SourceError for what cannot work."""
    cfg = cfg or SourceConfig()
    schemes = schemes or {}
    parsed = urlparse(uri)
    if parsed.scheme in NETWORK_SCHEMES:
        return StreamSource(uri, cfg)
    if uri.startswith("/dev/video") or parsed.scheme == "device":
        return DeviceSource(uri.split(":", 1)[1] if parsed.scheme == "device" else uri)
    if parsed.scheme in schemes:
        return schemes[parsed.scheme](uri, cfg)
    if not is_file_uri(uri):
        extra = "".join(f", {name}:..." for name in schemes)
        raise SourceError(f"{uri}: unsupported scheme {parsed.scheme!r} (use a file, rtsp://, rtmp://, "
                          f"http(s)://, udp://, rtp://, srt://, tcp://, /dev/videoN{extra})")
    return FileSource(uri, realtime=cfg.realtime)
