"""From per-frame probabilities to episodes a person cares about.

Probabilities are smoothed in time (exponential, time constant `smoothing_s`, using the real time
between analysed frames) and thresholded with the run's `Decision` (open above the task's threshold
plus its hysteresis, close under the threshold minus it), so an episode neither flickers at the
boundary nor starts on one bad frame. The smoothing decides *that* there is an episode; its
boundaries come from the raw signal (from where it first rose above the closing level to the last
frame above it), so they do not lag by the smoothing. Each distortion follows its policy in the
decision (`Decision.policy`): an episode that starts within `merge_gap_s` of the previous one's end
continues it (so an event is emitted only once that gap has passed), episodes shorter than
`min_duration_s` are dropped, and one starting within `cooldown_s` of the previous event's end is
kept as a `repeat` (recorded, not raised: no webhook). With a feed reference, events say which rule
fired them (`Decision.rule`); a muted distortion's events are kept, marked muted. An operator can
acknowledge the open episodes (`acknowledge`), and `ongoing` shows them before they close. Besides
one episode kind per distortion there
are the cheap checks of broadcast monitors (FFmpeg's blackdetect/freezedetect): quality below a
threshold, a frozen picture, a black picture; and each outage of the feed (the picture lost,
stalled or reconnecting, until it is back or the feed ends) is one `signal_lost` event, as an NVR
records its gaps. Each picture event keeps a JPEG thumbnail of its worst frame.
"""
from __future__ import annotations

import base64
import datetime as _dt
import logging
import math
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from model.decision import Decision
from monitor.config import EventConfig
from monitor.records import FrameResult

log = logging.getLogger("scopewatch.events")
GAP_STATES = ("stalled", "reconnecting", "lost")  # no picture: an outage, until the feed is back or ends


@dataclass
class Event:
    kind: str  # "distortion" | "low_quality" | "freeze" | "black" | "signal_lost"
    name: str  # the distortion (task) name, the kind, or for signal_lost the state that began it (lost, stalled)
    source_id: str
    start_s: float
    end_s: float
    peak: float  # highest probability (for quality events: lowest quality)
    mean: float
    mean_quality: float | None
    worst_time_s: float
    frames: int
    start_wallclock: str
    thumbnail_jpeg: bytes | None = field(default=None, repr=False)
    raised_s: float | None = None  # when the smoothed signal confirmed it: the alarm a live feed raises
    rule: str = ""  # distortion events: "threshold", or with a feed reference "relative" / "absolute"
    repeat: bool = False  # started within the cool-down of the previous event of its name
    # Distortion events: where in the worst frame, as [x0, y0, x1, y1, probability] per patch (the
    # thumbnail shows it as a heat overlay).
    where: list[list[float]] | None = None
    ongoing: bool = False  # still open (EventDetector.ongoing): end_s is its last frame so far
    muted: bool = False  # its distortion was muted on this feed (Decision.mute): recorded, not raised
    acknowledged_by: str | None = None  # the operator who acknowledged the alarm ("" when anonymous)
    acknowledged_at: str | None = None  # ISO time

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict:
        d = asdict(self)
        d["duration_s"] = round(self.duration_s, 3)
        d["thumbnail_jpeg"] = base64.b64encode(self.thumbnail_jpeg).decode() if self.thumbnail_jpeg else None
        return d


def heat_overlay(image: np.ndarray, boxes: np.ndarray, values: np.ndarray, colour=(255, 40, 40)) -> np.ndarray:
    """`image` with each patch box (x0, y0, x1, y1 fractions) tinted by its probability: where a
    distortion is, as the model's per-patch map says (model.predict.Prediction.patch_map)."""
    h, w = image.shape[:2]
    heat = np.zeros((h, w), np.float32)
    for (x0, y0, x1, y1), v in zip(boxes, values):
        region = heat[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)]
        np.maximum(region, float(v), out=region)  # overlapping patches: the stronger one shows
    alpha = (0.55 * heat)[..., None]
    out = image.astype(np.float32) * (1 - alpha) + np.array(colour, np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def thumbnail(image: np.ndarray, width: int, where: tuple | None = None) -> bytes:
    """A JPEG of `image` at `width`; with `where` (boxes, values) its heat overlay drawn on it."""
    h = max(1, round(image.shape[0] * width / image.shape[1]))
    small = cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA)
    if where is not None:
        small = heat_overlay(small, *where)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes() if ok else b""


@dataclass(frozen=True)
class Picture:
    """What the freeze and black checks need of a frame: how much it changed since the previous
    analysed frame (None for the first) and its mean luma. Measured where the frame is, so that a
    detector can also run on results alone (archive chunks analysed elsewhere, stitched here)."""
    change: float | None
    luma: float


class PictureMeter:
    def __init__(self):
        self._prev: np.ndarray | None = None

    def __call__(self, image: np.ndarray) -> Picture:
        # 160x90: coarse enough to ignore codec flicker, fine enough that a slow pan under a smoke
        # veil or a blur still differs (at 64x36 it fell under the threshold: false freezes in the demo).
        small = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (160, 90), interpolation=cv2.INTER_AREA).astype(np.float32)
        change = None if self._prev is None else float(np.abs(small - self._prev).mean())
        self._prev = small
        return Picture(change, float(small.mean()))

    def reset(self) -> None:
        self._prev = None


class _Episode:
    """One open episode, accumulating its statistics."""

    def __init__(self, r: FrameResult, value: float, image, worse_is_higher: bool):
        self.start = r.time_s
        self.start_wallclock = r.wallclock
        self.values, self.qualities = [value], [r.quality]
        self.worse_is_higher = worse_is_higher
        self._set_worst(value, r, image)
        self.last_active = r.time_s  # last frame whose raw signal was on the distorted side
        self.raised: float | None = None
        self.muted = False  # muted when it was raised
        self.acknowledged: tuple[str, str] | None = None  # (by, ISO time)
        self._thumbnail: tuple[float, bytes | None] | None = None  # (worst time, JPEG): ongoing() draws it once

    def add(self, r: FrameResult, value: float, image, active: bool = True):
        if active:
            self.last_active = r.time_s
        self.values.append(value)
        self.qualities.append(r.quality)
        if (value > self.worst) if self.worse_is_higher else (value < self.worst):
            self._set_worst(value, r, image)

    def _set_worst(self, value: float, r: FrameResult, image) -> None:
        self.worst, self.worst_time, self.worst_image = value, r.time_s, image
        self.worst_map = (r.patch_boxes, r.patch_map) if r.patch_map is not None else None

    def merge(self, later: "_Episode") -> None:
        """Continue this episode with `later`, which started within the merge gap."""
        self.values += later.values
        self.qualities += later.qualities
        self.last_active = later.last_active
        if (later.worst > self.worst) if self.worse_is_higher else (later.worst < self.worst):
            self.worst, self.worst_time, self.worst_image = later.worst, later.worst_time, later.worst_image
            self.worst_map = later.worst_map

    def event(self, kind, name, source_id, width, rule: str = "", repeat: bool = False, muted: bool = False,
              ongoing: bool = False) -> Event:
        q = [x for x in self.qualities if x is not None]
        where = None
        if self.worst_map is not None and name in self.worst_map[1]:
            where = (self.worst_map[0], self.worst_map[1][name])
        if self._thumbnail is None or self._thumbnail[0] != self.worst_time:
            self._thumbnail = (self.worst_time, thumbnail(self.worst_image, width, where) if self.worst_image is not None else None)
        by, at = self.acknowledged or (None, None)
        return Event(kind, name, source_id, self.start, self.last_active, float(self.worst), float(np.mean(self.values)),
                     float(np.mean(q)) if q else None, self.worst_time, len(self.values), self.start_wallclock,
                     self._thumbnail[1], self.raised, rule, repeat,
                     None if where is None else [[*map(float, np.round(b, 4)), round(float(v), 4)] for b, v in zip(*where)],
                     ongoing, muted, by, at)


class EventDetector:
    def __init__(self, tasks, cfg: EventConfig | None = None, source_id: str = "", decision: Decision | None = None):
        self.tasks = tuple(tasks)
        self.cfg = cfg or EventConfig()
        self.decision = decision or Decision()
        self.source_id = source_id
        self.smoothed: dict[str, float] = {}
        self.open: dict[str, _Episode] = {}
        self.pending: dict[str, _Episode] = {}  # raw signal active, not (yet) confirmed by the smoothing
        self.closing: dict[str, _Episode] = {}  # closed, waiting out the merge gap before it becomes an event
        self.rules: dict[str, str] = {}  # the rule each open distortion episode opened on
        self.last_end: dict[str, float] = {}  # end of the last event of each name (for the cool-down)
        self.last_time: float | None = None
        self.events: list[Event] = []
        self.meter = PictureMeter()
        self._frozen_since: float | None = None
        self._black_since: float | None = None
        self.outage: tuple[float, str, str] | None = None  # (start_s, wallclock, state) of the gap going on

    def _alpha(self, t: float) -> float:
        if self.last_time is None or self.cfg.smoothing_s == 0:
            return 1.0
        return 1.0 - math.exp(-max(0.0, t - self.last_time) / self.cfg.smoothing_s)

    def update(self, r: FrameResult, image: np.ndarray | None = None, picture: Picture | None = None) -> list[Event]:
        """Feed one result (and its analysis frame, or the frame's `Picture` measured elsewhere:
        then events carry no thumbnail); return the events that closed with it."""
        closed = self._signal(r)
        if not r.analysed:
            return closed + (self.flush(r.time_s) if r.stream_state.value in (*GAP_STATES, "ended", "failed") else [])
        a = self._alpha(r.time_s)
        self.last_time = r.time_s
        closed += self._merge_gaps_passed(r.time_s)
        signals = {t: r.probabilities[t] for t in self.tasks if t in r.probabilities}
        for name, p in signals.items():
            s = self.smoothed[name] = p if name not in self.smoothed else self.smoothed[name] + a * (p - self.smoothed[name])
            on, off = self.decision.event_on(name, self.source_id), self.decision.event_off(name, self.source_id)
            closed += self._hysteresis(name, "distortion", p >= off, s >= on, s < off, r, p, image, worse_is_higher=True)
        if r.quality is not None:
            q = self.smoothed["quality"] = r.quality if "quality" not in self.smoothed else \
                self.smoothed["quality"] + a * (r.quality - self.smoothed["quality"])
            below, recovered = self.decision.quality_below, self.decision.quality_below + self.decision.quality_hysteresis
            closed += self._hysteresis("low_quality", "low_quality", r.quality < recovered, q < below, q >= recovered,
                                       r, r.quality, image, worse_is_higher=False)
        if picture is None and image is not None:
            picture = self.meter(image)
        if picture is not None:
            closed += self._picture_checks(r, picture, image)
        return closed

    def _signal(self, r: FrameResult) -> list[Event]:
        """Open an outage at the first row of a gap; close it, as one `signal_lost` event named for
        the state that began it, at the next picture (or where the feed ends)."""
        state = r.stream_state.value
        if state in GAP_STATES:
            if self.outage is None:
                self.outage = (r.time_s, r.wallclock, state)
                log.info("%s: alarm on: signal_lost (%s) at %.1f s", self.source_id, state, r.time_s,
                         extra={"feed": self.source_id, "alarm": "signal_lost", "change": "on", "time_s": r.time_s})
            return []
        if self.outage is None or state == "connecting":
            return []
        ev = self._outage_event(r.time_s, ongoing=False)
        self.outage = None
        log.info("%s: alarm off: signal_lost after %.1f s", self.source_id, ev.duration_s,
                 extra={"feed": self.source_id, "alarm": "signal_lost", "change": "off", "time_s": r.time_s})
        self.events.append(ev)
        return [ev]

    def _outage_event(self, end_s: float, ongoing: bool) -> Event:
        start, wallclock, state = self.outage
        return Event("signal_lost", state, self.source_id, start, end_s, 1.0, 1.0, None, start, 0,
                     wallclock, ongoing=ongoing)

    def _hysteresis(self, key, kind, active, turn_on, turn_off, r, value, image, worse_is_higher) -> list[Event]:
        ep = self.open.get(key)
        if ep is None:
            candidate = self.pending.get(key)
            if not active:
                self.pending.pop(key, None)
                candidate = None
            elif candidate is None:
                candidate = self.pending[key] = _Episode(r, value, image, worse_is_higher)
            else:
                candidate.add(r, value, image)
            if turn_on:
                ep = candidate or _Episode(r, value, image, worse_is_higher)
                earlier = self.closing.pop(key, None)
                if earlier is not None:  # within the merge gap: the same episode goes on
                    earlier.merge(ep)
                    ep = earlier
                else:
                    self.rules[key] = self.decision.rule(key, self.source_id) if kind == "distortion" else ""
                    ep.raised = r.time_s
                    ep.muted = self._muted(key)
                    log.info("%s: alarm on: %s at %.1f s%s", self.source_id, key, r.time_s,
                             " (muted)" if ep.muted else "",
                             extra={"feed": self.source_id, "alarm": key, "change": "on", "time_s": r.time_s})
                self.open[key] = ep
                self.pending.pop(key, None)
            return []
        ep.add(r, value, image, active)
        if turn_off:
            return self._close(key, kind)
        return []

    def _close(self, key: str, kind: str) -> list[Event]:
        """Close `key`'s episode: it waits out its merge gap (an event later), or is final now."""
        self.closing[key] = self.open.pop(key)
        return [] if self.decision.policy(key).merge_gap_s > 0 else self._finalise(key, kind)

    def _merge_gaps_passed(self, time_s: float) -> list[Event]:
        return [ev for key in list(self.closing) if time_s - self.closing[key].last_active > self.decision.policy(key).merge_gap_s
                for ev in self._finalise(key, "distortion" if key in self.tasks else key)]

    def _finalise(self, key: str, kind: str) -> list[Event]:
        ep = self.closing.pop(key)
        policy = self.decision.policy(key)
        log.info("%s: alarm off: %s at %.1f s", self.source_id, key, ep.last_active,
                 extra={"feed": self.source_id, "alarm": key, "change": "off", "time_s": ep.last_active})
        if ep.last_active - ep.start < policy.min_duration_s:
            return []
        repeat = key in self.last_end and ep.start - self.last_end[key] < policy.cooldown_s
        ev = ep.event(kind, key, self.source_id, self.cfg.thumbnail_width, self.rules.pop(key, ""), repeat,
                      ep.muted or self._muted(key))
        self.last_end[key] = ep.last_active
        self.events.append(ev)
        return [ev]

    def _muted(self, key: str) -> bool:
        return self.decision.muted_until(key, self.source_id) is not None

    def _episodes(self) -> list[tuple[str, _Episode]]:
        """The episodes an alarm is up for: confirmed and not yet an event (open, or waiting out
        their merge gap), freezes and black pictures once they last long enough."""
        out = []
        for key, ep in [*self.open.items(), *self.closing.items()]:
            if key in ("freeze", "black"):
                if ep.last_active - ep.start < (self.cfg.freeze_s if key == "freeze" else self.cfg.black_s):
                    continue
            out.append((key, ep))
        return sorted(out, key=lambda item: item[1].start)

    def ongoing(self) -> list[Event]:
        """The alarms up now, as events so far (`ongoing`, no repeat flag yet): what a live view lists
        before they close."""
        outage = [] if self.outage is None else [self._outage_event(self.outage[0], ongoing=True)]
        return outage + [ep.event("distortion" if key in self.tasks else key, key,
                                  self.source_id, self.cfg.thumbnail_width, self.rules.get(key, ""), False,
                                  ep.muted or self._muted(key), ongoing=True)
                         for key, ep in self._episodes()]

    def alarms_up(self) -> list[str]:
        """The names of the alarms up now (what `ongoing` lists, without building their events)."""
        return ["signal_lost"] * (self.outage is not None) + [key for key, _ in self._episodes()]

    def acknowledge(self, by: str = "") -> list[str]:
        """Acknowledge every alarm up now (they stay in the history, marked); returns their names."""
        at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        names = []
        for key, ep in self._episodes():
            if ep.acknowledged is None:
                ep.acknowledged = (by, at)
                names.append(key)
        return names

    def _picture_checks(self, r: FrameResult, picture: Picture, image: np.ndarray | None) -> list[Event]:
        closed = []
        frozen = picture.change is not None and picture.change < self.cfg.freeze_diff
        black = picture.luma < self.cfg.black_luma
        for key, active, since_attr, min_s in (("freeze", frozen and not black, "_frozen_since", self.cfg.freeze_s),
                                               ("black", black, "_black_since", self.cfg.black_s)):
            since = getattr(self, since_attr)
            if active:
                if since is None:
                    setattr(self, since_attr, r.time_s)
                    self.open[key] = _Episode(r, 1.0, image, True)
                else:
                    self.open[key].add(r, 1.0, image)
            elif since is not None:
                setattr(self, since_attr, None)
                ep = self.open.pop(key)
                if ep.last_active - ep.start >= min_s:
                    ev = ep.event(key, key, self.source_id, self.cfg.thumbnail_width)
                    self.events.append(ev)
                    closed.append(ev)
        return closed

    def flush(self, time_s: float | None = None) -> list[Event]:
        """Close every open episode (end of stream or a gap: an episode never spans a gap)."""
        closed = []
        for key in list(self.open):
            kind = "distortion" if key in self.tasks else key
            if key in ("freeze", "black"):
                ep = self.open.pop(key)
                setattr(self, "_frozen_since" if key == "freeze" else "_black_since", None)
                if ep.last_active - ep.start >= (self.cfg.freeze_s if key == "freeze" else self.cfg.black_s):
                    ev = ep.event(key, key, self.source_id, self.cfg.thumbnail_width)
                    self.events.append(ev)
                    closed.append(ev)
            else:
                closed += self._close(key, kind)
        for key in list(self.closing):  # a gap ends an episode: nothing merges across it
            closed += self._finalise(key, "distortion" if key in self.tasks else key)
        self.smoothed.clear()
        self.pending.clear()
        self.last_time = None
        self.meter.reset()
        return closed
