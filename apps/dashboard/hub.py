"""The dashboard's feeds and recordings: at most one running `Session` per live source, shared by
every browser tab watching it (ten viewers never start ten pipelines), and the analysis of one
recording for the Recorded tab. Both write the files `scopewatch analyze`/`watch` would."""
from __future__ import annotations

import threading
from pathlib import Path

from apps.feeds import open_feed
from monitor.config import ScopeWatchConfig, for_mode
from monitor.inference import InferenceWorker
from monitor.outputs.naming import output_paths
from monitor.session import Session


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
            session = Session(source, self.predictor, self.cfg, paths.csv, paths.events, worker=self.worker)
            thread = threading.Thread(target=session.run, name=f"session:{uri}", daemon=True)
            self.sessions[uri], self.threads[uri] = session, thread
            thread.start()
            return session

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
