"""One monitored source with its outputs attached: the Monitor plus timeline, events detector,
CSV and events writers and optional webhook, wired as sinks. `analyze`, `watch` and the
dashboard all build a Session, so every front end writes exactly the same files."""
from __future__ import annotations

import time
from pathlib import Path

from model.predict import Predictor
from monitor.config import ScopeWatchConfig
from monitor.inference import InferenceWorker
from monitor.outputs.events import EventDetector
from monitor.outputs.export import CsvTimelineWriter, EventsJsonWriter, OutputError, made_by
from monitor.outputs.timeline import Timeline, format_summary
from monitor.outputs.webhook import WebhookSender
from monitor.pipeline import Monitor
from monitor.reference import ReferenceWindow
from monitor.sources import FrameSource


class Session:
    def __init__(self, source: FrameSource, predictor: Predictor, cfg: ScopeWatchConfig,
                 csv_path: str | Path | None = None, events_path: str | Path | None = None,
                 worker: InferenceWorker | None = None, reference: ReferenceWindow | None = None,
                 append: bool = False):
        """`reference`: a window of this feed to take as its normal as it passes (the run stops
        with the reason in `monitor.failed` when the window is refused). `append`: continue the
        feed's existing CSV and events files (a restarted `watch`) instead of starting them afresh."""
        self.cfg = cfg
        self.reference = reference
        self._stop_if_refused = True
        tasks = predictor.tasks
        self.timeline = Timeline(tasks, cfg.decision, cfg.timeline.recent_s, cfg.timeline.archive_points)
        self.detector = EventDetector(tasks, cfg.events, source.source_id, cfg.decision)
        self.csv = CsvTimelineWriter(csv_path, tasks, cfg.output.flush_s, append) if csv_path else None
        self.events_out = EventsJsonWriter(events_path, source.source_id, tasks, made_by(predictor.name, cfg.model.weights),
                                           append) if events_path else None
        self.webhook = WebhookSender(cfg.output.webhook) if cfg.output.webhook else None
        self.latest_image = None
        self.latest_result = None  # latest_image's result (its patch map says where)
        self.monitor = Monitor(source, predictor, cfg, sinks=[self._on_result], worker=worker)

    def _on_result(self, result, image) -> None:
        if self.reference is not None and not self.reference.done:
            self.reference(result)  # before the frame is decided: the reference counts from this frame on
            if self.reference.refused and self._stop_if_refused:
                self.monitor.failed = self.reference.refused
                self.monitor.stop()
        self.timeline(result)
        if image is not None:
            self.latest_image, self.latest_result = image, result
        if self.csv:
            self.csv.write(result)
        for event in self.detector.update(result, image):
            self._publish(event)

    def _publish(self, event) -> None:
        if self.events_out:
            self.events_out.add(event)
        if self.webhook and not (event.repeat or event.muted):  # recorded, not raised
            self.webhook.send(event.to_dict())

    @property
    def events(self):
        return self.detector.events

    @property
    def feed(self) -> str:
        """The source id: what references and mutes are keyed by."""
        return self.detector.source_id

    # -- operator actions (the dashboard's buttons) ----------------------------------------------
    def mark_normal(self, seconds: float, force: bool = False, save_to: str | Path | None = None,
                    taken_by: str = "") -> ReferenceWindow:
        """Take the next `seconds` of this running feed as its reference. A refused window leaves the
        feed running (the reason is in the returned window's `refused`)."""
        start = max(0.0, self.monitor.metrics.last_time_s or 0.0)
        window = ReferenceWindow(self.cfg.decision, self.feed, start, start + seconds, force, save_to, taken_by)
        self._stop_if_refused = False
        self.reference = window
        return window

    def clear_reference(self, saved: str | Path | None = None) -> None:
        """Back to the plain thresholds; the saved reference file (if any) is removed too."""
        self.cfg.decision.clear_reference(self.feed)
        if self.reference is not None and not self.reference.done:
            self.reference.refused = "cleared before it was taken"
        if saved is not None:
            Path(saved).unlink(missing_ok=True)

    def ongoing(self):
        """The alarms up now (open episodes), as events so far."""
        return self.detector.ongoing()

    def acknowledge(self, by: str = "") -> list[str]:
        return self.detector.acknowledge(by)

    def finish(self) -> None:
        """Close open episodes and every file; safe to call more than once. A file that can no
        longer be written ends the feed with that error (`monitor.error`), not a traceback."""
        for close in [self._flush_events, *([self.csv.close] if self.csv else [])]:
            try:
                close()
            except OutputError as e:
                if self.monitor.error is None:
                    self.monitor.fail(e)
        if self.webhook:
            self.webhook.close()

    def _flush_events(self) -> None:
        for event in self.detector.flush():
            self._publish(event)

    def run(self, duration_s=None, on_tick=None) -> None:
        """Run until the source ends, `duration_s` passes or Ctrl-C; `on_tick(metrics)` twice a second."""
        run_sessions([self], duration_s, (lambda: on_tick(self.monitor.metrics)) if on_tick else None)

    def summary_text(self) -> str:
        tasks, overall = self.timeline.summary(self.events)
        return format_summary(tasks, overall, self.events)


def run_sessions(sessions: list[Session], duration_s: float | None = None, on_tick=None, tick_s: float = 0.5) -> None:
    """Run several sessions at once (feeds sharing one inference worker when built with one) until
    every source ends, `duration_s` passes or Ctrl-C; then stop them all and close their files."""
    try:
        for s in sessions:
            s.monitor.start()
        start = time.time()
        while not all([s.monitor.join(timeout=tick_s / len(sessions)) for s in sessions]):
            if on_tick:
                on_tick()
            if duration_s is not None and time.time() - start >= duration_s:
                break
    finally:
        for s in sessions:
            s.monitor.stop()
        for s in sessions:
            s.monitor.join(timeout=10)
            s.finish()
