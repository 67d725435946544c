"""Taking a feed's reference ("this is normal") from a window of its own results, as they arrive:
the frames from `start_s` to `end_s` are collected, and at the first frame past the window the
reference is measured and handed to the run's decision (`Decision.take_reference`), which refuses a
window that is itself distorted. Frames before that are decided without a reference."""
from __future__ import annotations

import logging
from pathlib import Path

from model.decision import Decision, Reference, ReferenceRefused
from monitor.records import FrameResult, StreamState

log = logging.getLogger("scopewatch.reference")


class ReferenceWindow:
    def __init__(self, decision: Decision, feed: str, start_s: float, end_s: float, force: bool = False,
                 save_to: str | Path | None = None, taken_by: str = ""):
        if not 0 <= start_s < end_s:
            raise ValueError(f"a reference window needs 0 <= START < END, got {start_s:g}:{end_s:g}")
        self.decision, self.feed = decision, feed
        self.start_s, self.end_s, self.force = start_s, end_s, force
        self.save_to = Path(save_to) if save_to else None
        self.taken_by = taken_by
        self.probabilities: list[dict[str, float]] = []
        self.qualities: list[float | None] = []
        self.reference: Reference | None = None
        self.refused: str | None = None  # why the window was refused (the run should stop)

    @property
    def done(self) -> bool:
        return self.reference is not None or self.refused is not None

    def abandon(self, reason: str) -> None:
        """Give up on a window still open (its taker stopped waiting): it will not be taken later."""
        if not self.done:
            self.refused = reason

    def __call__(self, result: FrameResult) -> None:
        if self.done:
            return
        if not result.analysed:
            if result.stream_state in (StreamState.ENDED, StreamState.FAILED):
                self.refused = (f"{self.feed}: the feed ended at {result.time_s:.1f} s, before the reference "
                                f"window {self.start_s:g}-{self.end_s:g} s closed")
            return
        if result.time_s < self.start_s:
            return
        if result.time_s < self.end_s:
            self.probabilities.append(dict(result.probabilities))
            self.qualities.append(result.quality)
            return
        try:
            measured = Reference.measure(self.feed, self.start_s, self.end_s, self.probabilities, self.qualities,
                                         self.taken_by)
            self.reference = self.decision.take_reference(measured, self.probabilities, self.force)
        except ReferenceRefused as e:
            self.refused = str(e)
            return
        if self.save_to is not None:
            self.reference.save(self.save_to)
        log.info("%s%s", self.reference.describe(), f" -> {self.save_to}" if self.save_to else "")
