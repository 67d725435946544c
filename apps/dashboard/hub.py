"""The dashboard's feeds and recordings: at most one running `Session` per live source, shared by
every browser tab watching it (ten viewers never start ten pipelines), and the analysis of one
recording for the Recorded tab. Both write the files `scopewatch analyze`/`watch` would."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from apps.feeds import open_feed
from model.decision import Reference, ReferenceRefused
from monitor.config import ScopeWatchConfig, for_mode
from monitor.inference import InferenceWorker
from monitor.outputs.naming import output_paths
from monitor.session import Session

log = logging.getLogger("scopewatch.dashboard")


class SourceHub:
    """All feeds share one inference worker (one model, batched across feeds); stopping a feed
    releases it."""

    def __init__(self, predictor, cfg: ScopeWatchConfig, out_dir: Path):
        self.predictor, self.cfg, self.out_dir = predictor, cfg, Path(out_dir)
        self.worker = InferenceWorker(predictor, cfg.buffer.batch_size, cfg.model.threads)
        self.sessions: dict[str, Session] = {}
        self.threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, uri: str) -> Session:
        with self._lock:
            if uri in self.sessions and self.threads[uri].is_alive():
                return self.sessions[uri]
            source = open_feed(uri, self.cfg.source)
            source.open()
            paths = output_paths(uri, self.out_dir)
            if paths.reference.exists():  # the feed's normal, as staff marked it last time
                try:
                    self.cfg.decision.references[source.source_id] = Reference.load(paths.reference)
                except ValueError as e:
                    log.warning("%s: ignoring its saved reference: %s", uri, e)
            session = Session(source, self.predictor, self.cfg, paths.csv, paths.events, worker=self.worker)
            thread = threading.Thread(target=session.run, name=f"session:{uri}", daemon=True)
            self.sessions[uri], self.threads[uri] = session, thread
            thread.start()
            return session

    def mark_normal(self, uri: str, seconds: float, force: bool = False, taken_by: str = "",
                    timeout_s: float = 15.0) -> Reference:
        """Take the next `seconds` of the running feed `uri` as its normal (saved beside its outputs)
        and wait for it; ReferenceRefused says why not."""
        session = self.running().get(uri)
        if session is None:
            raise ReferenceRefused(f"{uri}: not running; start it first")
        window = session.mark_normal(seconds, force, output_paths(uri, self.out_dir).reference, taken_by)
        deadline = time.monotonic() + seconds + timeout_s
        while not window.done and time.monotonic() < deadline and self.threads[uri].is_alive():
            time.sleep(0.1)
        window.abandon(f"{uri}: the window {window.start_s:.1f}-{window.end_s:.1f} s did not close within "
                       f"{seconds + timeout_s:g} s (the feed is late or stopped)")
        if window.reference is not None:
            return window.reference
        raise ReferenceRefused(window.refused)

    def clear_reference(self, uri: str) -> None:
        session = self.get(uri)
        if session is not None:
            session.clear_reference(output_paths(uri, self.out_dir).reference)

    def get(self, uri: str) -> Session | None:
        return self.sessions.get(uri)

    def running(self) -> dict[str, Session]:
        return {uri: s for uri, s in self.sessions.items() if self.threads[uri].is_alive()}

    def set_sampling(self, fps: float | None) -> None:
        """Analyse `fps` frames a second (None: every frame) on every feed, running or started later."""
        self.cfg.sampling.fps = fps
        for session in self.running().values():
            session.monitor.set_sampling(fps)

    def stop(self, uri: str) -> None:
        with self._lock:
            session = self.sessions.get(uri)
            if session:
                session.monitor.stop()
                self.threads[uri].join(10)

    def stop_all(self) -> None:
        for uri in list(self.sessions):
            self.stop(uri)
        self.worker.stop()


def analyse_recording(path: Path, predictor, cfg: ScopeWatchConfig, out_dir: Path, progress=None):
    """Analyse the recording at `path` as `scopewatch analyze` does (its mode's sampling, at decoding
    speed, the run's decision) into `out_dir`; returns the session and its two files."""
    cfg = for_mode(cfg, "recorded")
    source = open_feed(str(path), cfg.source)
    source.open()
    paths = output_paths(path, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    session = Session(source, predictor, cfg, paths.csv, paths.events)
    total = source.info.duration_s or 0.0

    def tick(m):
        if progress is not None and total:
            progress(min(1.0, m.last_time_s / total), desc=f"analysing {path.name}: {m.last_time_s:.0f}/{total:.0f} s")

    session.run(on_tick=tick)
    return session, paths.csv, paths.events
