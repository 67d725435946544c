"""`Decision`: when a distortion counts as present and when an episode of it opens and closes.

One object per run, read by everything that decides: the CSV's levels, the badges, the timeline's
summary, the events and the dashboard's threshold sliders (which change it in place, so a change
reaches every reader at once). A checkpoint with operating points folded into its head decides at
0.5 like any other, which is why 0.5 is the default for every task.

A feed may have a **reference**, its own normal (`Reference`: per task, the presence logits on a
window of that feed that staff called normal). It quiets what the feed's normal already raises
events on, and nothing else. A distortion whose reference reaches the level that opens an episode
(threshold plus hysteresis) alarms on that feed when its logit rises `reference_margin` above the
reference's high end (the *relative* rule), and always once the probability reaches `absolute`
(the *absolute* rule), so that a reference taken in smoke cannot mute smoke for ever. Every other
distortion keeps the plain threshold, so the reference costs its detection nothing; so do the
`unreferenced` ones (motion blur comes from what the camera does, not from what the feed is). A
window that the absolute rule already calls distorted is refused as a reference
(`ReferenceRefused`) unless forced.

Events follow a per-distortion **policy** (`EventPolicy`: hysteresis, minimum duration, the gap
under which two episodes merge, and a cool-down during which a new episode is recorded but flagged
as a repeat, not raised again); `policies` overrides the defaults per task.

An operator may **mute** a distortion on one feed for some minutes (`mute`): its events are still
recorded, marked muted, but not raised (no webhook, no flashing badge).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from model.tasks import severity_to_level

PRESENCE_THRESHOLD = 0.5
LOGIT_LIMIT = 12.0  # probabilities of 0 and 1 are read as +-12 logits (6e-6 from the end)


def logit(p: float) -> float:
    p = min(max(float(p), 1.0 / (1.0 + math.exp(LOGIT_LIMIT))), 1.0 / (1.0 + math.exp(-LOGIT_LIMIT)))
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class ReferenceRefused(ValueError):
    """A reference window that is itself distorted (one line for the user)."""


@dataclass(frozen=True)
class Reference:
    """A feed's normal, measured on a window of it: per task the median and high end (95th
    percentile) of the presence logits, and the quality's median and low end (5th percentile)."""
    feed: str
    start_s: float
    end_s: float
    frames: int
    logits: dict[str, dict[str, float]]  # task -> {"median": .., "high": ..}
    quality: dict[str, float] | None = None  # {"median": .., "low": ..}
    taken_at: str = ""  # ISO time
    taken_by: str = ""
    forced: bool = False  # taken although the absolute rule called the window distorted

    @classmethod
    def measure(cls, feed: str, start_s: float, end_s: float, probabilities: list[dict[str, float]],
                qualities: list[float] | None = None, taken_by: str = "", forced: bool = False) -> "Reference":
        if not probabilities:
            raise ReferenceRefused(f"{feed}: no analysed frame in the reference window {start_s:g}-{end_s:g} s")
        logits = {t: np.array([logit(p[t]) for p in probabilities]) for t in probabilities[0]}
        q = [x for x in (qualities or []) if x is not None]
        return cls(feed, float(start_s), float(end_s), len(probabilities),
                   {t: {"median": round(float(np.median(v)), 4), "high": round(float(np.percentile(v, 95)), 4)}
                    for t, v in logits.items()},
                   {"median": round(float(np.median(q)), 2), "low": round(float(np.percentile(q, 5)), 2)} if q else None,
                   _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), taken_by, forced)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Reference":
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or not {"feed", "start_s", "end_s", "frames", "logits"} <= set(data):
            raise ValueError("not a ScopeWatch reference (needs feed, start_s, end_s, frames, logits)")
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Reference":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: cannot read the reference ({e})") from None

    def describe(self) -> str:
        by = f" by {self.taken_by}" if self.taken_by else ""
        return (f"reference of {self.feed}: {self.start_s:g}-{self.end_s:g} s ({self.frames} frames), taken "
                f"{self.taken_at}{by}{' (forced)' if self.forced else ''}")


@dataclass(frozen=True)
class EventPolicy:
    """How one distortion's episodes become events."""
    hysteresis: float  # open this far above the alarm level (smoothed), close this far below it
    min_duration_s: float  # shorter episodes are not events
    merge_gap_s: float  # an episode starting this soon after the previous one ended continues it
    cooldown_s: float  # an event starting this soon after the previous one ended is a repeat (not raised)


POLICY_FIELDS = tuple(f.name for f in fields(EventPolicy))


@dataclass
class Decision:
    thresholds: dict[str, float] = field(default_factory=dict)  # per task; a task not named decides at 0.5
    # The event policy of every task not named in `policies` (see EventPolicy).
    hysteresis: float = 0.1
    min_duration_s: float = 1.0
    merge_gap_s: float = 2.0
    cooldown_s: float = 30.0
    # Per task, overrides of the four above ({"motion_blur": {"min_duration_s": 1.5}}). None by
    # default: on the real val clips (`scopewatch check-reference val`) no distortion fires a false
    # event under the common policy, so there is nothing yet to choose a per-task value on.
    policies: dict[str, dict[str, float]] = field(default_factory=dict)
    quality_below: float = 60.0  # quality under this opens a low-quality episode
    quality_hysteresis: float = 5.0  # ... which closes at quality_below + this
    # The relative rule: logits this far above the feed reference's `reference_statistic` ("median"
    # or "high", its 95th percentile). Chosen on the val clips by `scopewatch check-reference val
    # --grid`: the setting that keeps every recall within 0.02 with the fewest clean alarms.
    reference_margin: float = 0.5
    reference_statistic: str = "high"
    absolute: float = 0.85  # a probability this high alarms whatever the reference
    # Distortions no reference moves. Motion blur is a camera move, not a property of the feed: a
    # window with some camera motion in it would otherwise mute the next camera shake.
    unreferenced: tuple[str, ...] = ("motion_blur",)
    references: dict[str, Reference] = field(default_factory=dict)  # per feed (source id)
    mutes: dict[str, dict[str, float]] = field(default_factory=dict)  # per feed: task -> muted until (epoch s)

    def __post_init__(self):
        self.references = {k: v if isinstance(v, Reference) else Reference.from_dict(v)
                           for k, v in self.references.items()}
        self.unreferenced = tuple(self.unreferenced)
        for task, values in self.policies.items():
            unknown = set(values) - set(POLICY_FIELDS)
            if unknown:
                raise ValueError(f"policies.{task}: unknown setting {sorted(unknown)[0]!r} (known: {', '.join(POLICY_FIELDS)})")
        for task in {"every task", *self.policies}:
            p = self.policy(task)
            if min(p.min_duration_s, p.merge_gap_s, p.cooldown_s) < 0:
                raise ValueError(f"{task}: min_duration_s, merge_gap_s and cooldown_s must be >= 0")
        for task in {"every task", *self.thresholds, *self.policies}:
            self.check(task, self.threshold(task))
        if not PRESENCE_THRESHOLD <= self.absolute < 1 - self.hysteresis:
            raise ValueError(f"absolute {self.absolute} must lie in [0.5, {1 - self.hysteresis:g})")
        if self.reference_margin < 0:
            raise ValueError("reference_margin must be >= 0")
        if self.reference_statistic not in ("median", "high"):
            raise ValueError(f"reference_statistic must be median or high, got {self.reference_statistic!r}")

    def policy(self, task: str) -> EventPolicy:
        default = EventPolicy(self.hysteresis, self.min_duration_s, self.merge_gap_s, self.cooldown_s)
        return replace(default, **self.policies.get(task, {}))

    def check(self, task: str, threshold: float) -> None:
        h = self.policy(task).hysteresis
        if not 0 < threshold - h <= threshold + h < 1:
            raise ValueError(f"{task}: threshold {threshold} +- hysteresis {h} must lie inside (0, 1)")

    def set_threshold(self, task: str, threshold: float) -> None:
        self.check(task, threshold)
        self.thresholds[task] = float(threshold)

    def threshold(self, task: str) -> float:
        """The plain threshold (no reference)."""
        return self.thresholds.get(task, PRESENCE_THRESHOLD)

    # -- references ------------------------------------------------------------------------------
    def take_reference(self, reference: Reference, probabilities: list[dict[str, float]], force: bool = False) -> Reference:
        """Make `reference` (measured on `probabilities`, its window's frames) its feed's normal;
        refused when the absolute rule calls the window distorted, unless `force`."""
        distorted = {t: float(np.mean([p[t] >= self.absolute for p in probabilities])) for t in reference.logits}
        worst = max(distorted, key=distorted.get)
        if distorted[worst] > 0.2 and not force:
            raise ReferenceRefused(
                f"{reference.feed}: the window {reference.start_s:g}-{reference.end_s:g} s is not normal: {worst} on "
                f"{distorted[worst]:.0%} of its frames (probability >= {self.absolute:g}); choose a clean window "
                "or force it")
        reference = replace(reference, forced=bool(force and distorted[worst] > 0.2))
        self.references[reference.feed] = reference
        return reference

    def clear_reference(self, feed: str) -> None:
        self.references.pop(feed, None)

    def alarm_level(self, task: str, feed: str = "") -> float:
        """The probability at which `task` alarms on `feed`: the plain threshold, or where the
        feed's reference moves it, the relative rule's level, never above `absolute`."""
        base = self.threshold(task)
        ref = self._engaged(task, feed)
        if ref is None:
            return base
        return min(max(self._relative(ref, task), base), max(base, self.absolute))

    def _engaged(self, task: str, feed: str) -> Reference | None:
        """The feed's reference when it moves `task`'s level: the task is referenced and the
        feed's normal would open episodes of it by the plain rule (it reaches the threshold plus the
        hysteresis). A normal that never opens one has nothing to quiet."""
        ref = self.references.get(feed)
        if ref is None or task not in ref.logits or task in self.unreferenced:
            return None
        opens = self.threshold(task) + self.policy(task).hysteresis
        return ref if sigmoid(ref.logits[task][self.reference_statistic]) >= opens else None

    def _relative(self, ref: Reference, task: str) -> float:
        return sigmoid(ref.logits[task][self.reference_statistic] + self.reference_margin)

    def rule(self, task: str, feed: str = "") -> str:
        """Which rule an alarm of `task` on `feed` fires on: "threshold" (no reference moves it),
        "relative", or "absolute" (the reference alone would have hidden it)."""
        ref = self._engaged(task, feed)
        if ref is None:
            return "threshold"
        return "absolute" if self._relative(ref, task) > self.absolute else "relative"

    # -- operator mutes --------------------------------------------------------------------------
    def mute(self, task: str, feed: str, minutes: float, now: float | None = None) -> float | None:
        """Mute `task` on `feed` for `minutes` (0: unmute); returns the time it is muted until."""
        if not minutes >= 0 or math.isinf(minutes):
            raise ValueError(f"mute for a finite number of minutes >= 0, got {minutes}")
        if minutes == 0:
            self.mutes.get(feed, {}).pop(task, None)
            return None
        until = (time.time() if now is None else now) + 60.0 * minutes
        self.mutes.setdefault(feed, {})[task] = until
        return until

    def muted_until(self, task: str, feed: str = "", now: float | None = None) -> float | None:
        """When `task`'s mute on `feed` ends, or None when it is not muted."""
        until = self.mutes.get(feed, {}).get(task)
        return until if until is not None and until > (time.time() if now is None else now) else None

    # -- per frame -------------------------------------------------------------------------------
    def present(self, task: str, probability: float, feed: str = "") -> bool:
        return probability >= self.alarm_level(task, feed)

    def alarms(self, probabilities: dict[str, float], feed: str = "") -> list[str]:
        """The tasks present in one frame, in the order given."""
        return [t for t, p in probabilities.items() if self.present(t, p, feed)]

    def levels(self, probabilities: dict[str, float], severities: dict[str, float], feed: str = "") -> dict[str, int]:
        """Severity level per task: 0 when absent, else 1..4 from the predicted severity (a present
        distortion is at least level 1, whatever its severity head says)."""
        return {t: max(1, severity_to_level(severities[t])) if self.present(t, p, feed) else 0
                for t, p in probabilities.items()}

    # -- episodes --------------------------------------------------------------------------------
    def event_on(self, task: str, feed: str = "") -> float:
        """The smoothed probability that opens an episode: the alarm level plus the hysteresis,
        but never above `absolute` once a reference raised the level (the absolute rule's promise)."""
        h = self.policy(task).hysteresis
        on = self.alarm_level(task, feed) + h
        if self.rule(task, feed) == "threshold":
            return on
        return min(on, max(self.absolute, self.threshold(task) + h))

    def event_off(self, task: str, feed: str = "") -> float:
        return max(self.alarm_level(task, feed) - self.policy(task).hysteresis, 0.01)
