"""The ScopeWatch web dashboard (Gradio): watch a live feed, analyse a recording, export the CSV.

It shows only what the monitor produced: charts and tables read the same `FrameResult`s that the
CSV holds, and the downloads are the very files the monitor wrote. One `Session` per source is
shared by every browser tab watching it (`SourceHub`), so ten viewers never start ten pipelines.
"""
from __future__ import annotations

import copy
import html
import logging
import tempfile
import threading
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import plotly.graph_objects as go

from model.tasks import task_spec
from monitor.config import ScopeWatchConfig
from monitor.pipeline import InferenceWorker, Sampler
from monitor.records import FrameResult
from monitor.session import Session
from monitor.sources import SourceError, frame_at as source_frame_at, open_source

log = logging.getLogger("scopewatch.dashboard")

WINDOWS = {"1 min": 60.0, "10 min": 600.0, "all": None}
MAX_POINTS = 600


class SourceHub:
    """At most one running Session per source, shared by all viewers; stopping releases it. All
    feeds share one inference worker (one model, batched across feeds)."""

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
            source = open_source(uri, self.cfg.source)
            source.open()
            stem = "".join(c if c.isalnum() else "_" for c in uri)[-60:]
            session = Session(source, self.predictor, self.cfg, self.out_dir / f"{stem}.csv",
                              self.out_dir / f"{stem}.events.json", worker=self.worker)
            thread = threading.Thread(target=session.run, name=f"session:{uri}", daemon=True)
            self.sessions[uri], self.threads[uri] = session, thread
            thread.start()
            return session

    def get(self, uri: str) -> Session | None:
        return self.sessions.get(uri)

    def running(self) -> dict[str, Session]:
        return {uri: s for uri, s in self.sessions.items() if self.threads[uri].is_alive()}

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


def downsample(results: list[FrameResult], max_points: int = MAX_POINTS) -> list[FrameResult]:
    """At most `max_points` results, by time buckets keeping each bucket's worst frame (highest
    distortion probability), so a short episode stays visible in a long history."""
    if len(results) <= max_points:
        return results
    k = int(np.ceil(len(results) / max_points))
    out = []
    for i in range(0, len(results), k):
        bucket = results[i:i + k]
        out.append(max(bucket, key=lambda r: max(r.probabilities.values(), default=0.0)))
    return out


def windowed(results: list[FrameResult], window_s: float | None) -> list[FrameResult]:
    rows = [r for r in results if r.analysed]
    if window_s is None or not rows:
        return rows
    end = rows[-1].time_s
    return [r for r in rows if r.time_s >= end - window_s]


def probability_figure(results, tasks, title="Distortion probability") -> go.Figure:
    fig = go.Figure()
    t = [r.time_s for r in results]
    for task in tasks:
        spec = task_spec(task)
        fig.add_trace(go.Scatter(x=t, y=[r.probabilities.get(task) for r in results], name=spec.title,
                                 mode="lines", line={"color": spec.color, "width": 2}, hovertemplate="%{y:.2f}"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#999")
    fig.update_layout(title=title, height=320, margin=dict(l=40, r=10, t=40, b=30), yaxis_range=[0, 1],
                      xaxis_title="time (s)", legend_orientation="h", uirevision="keep", hovermode="x unified")
    return fig


def quality_figure(results, title="Quality (0-100, higher is better)") -> go.Figure:
    fig = go.Figure(go.Scatter(x=[r.time_s for r in results], y=[r.quality for r in results], mode="lines",
                               line={"color": "#1f77b4", "width": 2}, name="quality"))
    fig.update_layout(title=title, height=260, margin=dict(l=40, r=10, t=40, b=30), yaxis_range=[0, 100],
                      xaxis_title="time (s)", uirevision="keep", hovermode="x unified")
    return fig


def badges_html(session: Session | None) -> str:
    if session is None:
        return "<div class='sw-badges'><span class='sw-badge sw-idle'>no source running</span></div>"
    m = session.monitor.metrics
    r = m.last_result if m.last_result and m.last_result.analysed else None
    parts = [f"<span class='sw-badge sw-state'>{m.state.value.upper()}</span>"]
    if r:
        q = r.quality or 0.0
        parts.append(f"<span class='sw-badge {'sw-bad' if q < session.cfg.events.quality_below else 'sw-ok'}'>"
                     f"quality {q:.0f}</span>")
        for t, p in r.probabilities.items():
            if p >= session.monitor.predictor.thresholds[t]:
                parts.append(f"<span class='sw-badge sw-bad'>{task_spec(t).title} L{r.levels.get(t, 0)}</span>")
    lat = m.latency_percentile(50)
    parts.append(f"<span class='sw-badge sw-info'>{m.inference_fps:.1f} fps · latency {lat or 0:.0f} ms · "
                 f"dropped {m.dropped} · {session.monitor.predictor.name}</span>")
    return "<div class='sw-badges'>" + "".join(parts) + "</div>"


def sparkline(values: list[float], lo: float = 0.0, hi: float = 100.0, w: int = 160, h: int = 36) -> str:
    if len(values) < 2:
        return f"<svg width='{w}' height='{h}'></svg>"
    pts = " ".join(f"{w * i / (len(values) - 1):.1f},{h - h * (min(max(v, lo), hi) - lo) / (hi - lo):.1f}"
                   for i, v in enumerate(values))
    return f"<svg width='{w}' height='{h}'><polyline fill='none' stroke='white' stroke-width='2' points='{pts}'/></svg>"


def tiles_html(feeds: dict[str, Session], selected: str) -> str:
    """Every running feed as a tile: state, quality now, distortions present, a one-minute
    quality sparkline. A click opens the feed in the full view."""
    if not feeds:
        return ""
    tiles = []
    for uri, session in feeds.items():
        m = session.monitor.metrics
        r = m.last_result if m.last_result and m.last_result.analysed else None
        recent = [x.quality for x in downsample(windowed(session.timeline.snapshot(), 60.0), 60) if x.quality is not None]
        bad = [task_spec(t).title for t, p in (r.probabilities.items() if r else ())
               if p >= session.monitor.predictor.thresholds[t]]
        ok = r is not None and not bad and (r.quality or 0) >= session.cfg.events.quality_below
        tiles.append(
            f"<div class='sw-tile {'sw-ok' if ok else 'sw-bad'}{' sw-selected' if uri == selected else ''}' "
            f"data-uri='{html.escape(uri, quote=True)}'><b>{html.escape(uri)}</b><br>{m.state.value.upper()} · "
            f"quality {'-' if r is None else f'{r.quality:.0f}'} · {m.inference_fps:.0f} fps · dropped {m.dropped}"
            f"<br>{html.escape(', '.join(bad) or 'no distortion')}<br>{sparkline(recent)}</div>")
    return "<div class='sw-tiles'>" + "".join(tiles) + "</div>"


def events_rows(events) -> list[list]:
    return [[e.kind, e.name, round(e.start_s, 1), round(e.duration_s, 1), round(e.peak, 2),
             None if e.mean_quality is None else round(e.mean_quality, 1)] for e in events]


def events_gallery(events) -> list[tuple[np.ndarray, str]]:
    """Each event's thumbnail (its worst frame) with a caption, for a gr.Gallery."""
    out = []
    for e in events:
        if e.thumbnail_jpeg:
            bgr = cv2.imdecode(np.frombuffer(e.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
            out.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{e.name} at {e.start_s:.1f} s ({e.duration_s:.1f} s)"))
    return out


EVENT_HEADERS = ["kind", "name", "start (s)", "duration (s)", "peak", "mean quality"]
CSS = """
.sw-badges {display:flex; flex-wrap:wrap; gap:8px}
.sw-badge {font-size:1.5em; font-weight:700; padding:6px 14px; border-radius:8px; color:white}
.sw-ok {background:#2e7d32} .sw-bad {background:#c62828} .sw-info {background:#455a64; font-size:1.1em}
.sw-state {background:#1565c0} .sw-idle {background:#757575}
.sw-tiles {display:flex; flex-wrap:wrap; gap:10px}
.sw-tile {color:white; padding:8px 12px; border-radius:8px; cursor:pointer; min-width:200px}
.sw-selected {outline:4px solid #1565c0}
"""


# A click on a point of a recorded chart writes its time into the "frame at" box, whose change
# event shows that frame: gr.Plot has no select event, Plotly's own click event is only in the page.
# A click on a feed tile writes its address into the source box, which the live view follows.
DASHBOARD_JS = """
() => {
  const setInput = (selector, value) => {
    const input = document.querySelector(selector);
    if (!input) return;
    input.value = value;
    input.dispatchEvent(new Event('input', {bubbles: true}));
  };
  document.addEventListener('click', (e) => {
    const tile = e.target.closest('.sw-tile');
    if (tile) setInput('#sw-source textarea, #sw-source input', tile.dataset.uri);
  });
  setInterval(() => {
    for (const plot of document.querySelectorAll('#sw-rec-prob .js-plotly-plot, #sw-rec-quality .js-plotly-plot')) {
      if (!plot.on || plot.dataset.swSeek) continue;
      plot.dataset.swSeek = '1';
      plot.on('plotly_click', (d) => { if (d.points.length) setInput('#sw-seek input', d.points[0].x); });
    }
  }, 500);
}
"""


def weights_choices(current: Path, allowed: Path | None) -> dict[str, Path]:
    """Checkpoints the Settings tab may load: the shipped ones, the one in use, and those in the
    allowed folder (nothing else on the server can be named)."""
    from model.factory import WEIGHTS_DIR
    found = sorted(WEIGHTS_DIR.glob("*.pt")) + (sorted(allowed.glob("*.pt")) if allowed and allowed.is_dir() else [])
    return {str(p.resolve()): p.resolve() for p in [current, *found]}


def resolve_in(folder: Path, name: str) -> Path:
    """`name` inside `folder`, refusing anything that escapes it (.., absolute paths, links out)."""
    root = folder.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise gr.Error(f"refused: {name!r} is not a file in the allowed folder")
    return path


def frame_at(path: Path, time_s: float) -> np.ndarray | None:
    """The frame of a recording shown at `time_s`, full size."""
    raw = source_frame_at(path, time_s)
    return None if raw is None else raw.to_rgb((raw.width, raw.height))


def analyse_recording(path: Path, predictor, cfg: ScopeWatchConfig, out_dir: Path, progress=None):
    # A recording is analysed losslessly at decoding speed, whatever the live view's pacing.
    cfg = copy.deepcopy(cfg)
    cfg.source.realtime = False
    source = open_source(str(path), cfg.source)
    source.open()
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, events_path = out_dir / f"{path.name}.scopewatch.csv", out_dir / f"{path.name}.scopewatch.events.json"
    session = Session(source, predictor, cfg, csv_path, events_path)
    total = source.info.duration_s or 0.0

    def tick(m):
        if progress is not None and total:
            progress(min(1.0, m.last_time_s / total), desc=f"analysing {path.name}: {m.last_time_s:.0f}/{total:.0f} s")

    session.run(on_tick=tick)
    return session, csv_path, events_path


def build_app(predictor, cfg: ScopeWatchConfig, default_source: str = "", allowed_dir: Path | None = None,
              out_dir: Path | None = None, weights: Path | None = None) -> tuple[gr.Blocks, SourceHub]:
    """`weights`: the checkpoint `predictor` was loaded from (None: the shipped one)."""
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.factory import DEFAULT_MODEL, weights_path

    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="scopewatch-"))
    hub = SourceHub(predictor, cfg, out_dir / "live")
    tasks = predictor.tasks
    allowed = Path(allowed_dir) if allowed_dir else None
    current_weights = Path(weights or weights_path(DEFAULT_MODEL)).resolve()
    checkpoints = weights_choices(current_weights, allowed)
    loaded = {"weights": str(current_weights)}  # what the shared predictor runs now

    def live_update(uri, window, shown):
        """One refresh of the Live tab; the thumbnails are sent only when the feed's events change
        (`shown`: the feed and event count this viewer has)."""
        tiles = tiles_html(hub.running(), uri.strip())
        session = hub.get(uri.strip())
        if session is None:
            return None, badges_html(None), probability_figure([], tasks), quality_figure([]), [], [], tiles, None
        rows = downsample(windowed(session.timeline.snapshot(), WINDOWS[window]))
        events = list(session.events)
        now = (uri.strip(), len(events))
        gallery = gr.skip() if now == shown else events_gallery(events)
        return (session.latest_image, badges_html(session), probability_figure(rows, tasks), quality_figure(rows),
                events_rows(events), gallery, tiles, now)

    def start(uri):
        try:
            hub.start(uri.strip())
        except SourceError as e:
            raise gr.Error(str(e))
        return f"watching {uri.strip()}"

    def stop(uri):
        hub.stop(uri.strip())
        return f"stopped {uri.strip()}"

    def analyse(upload, chosen, progress=gr.Progress()):
        if upload:
            path = Path(upload)
        elif chosen and allowed:
            path = resolve_in(allowed, chosen)
        else:
            raise gr.Error("upload a video or choose one from the folder")
        try:
            session, csv_path, events_path = analyse_recording(path, predictor, cfg, out_dir / "recorded", progress)
        except SourceError as e:
            raise gr.Error(str(e))
        rows = downsample(session.timeline.analysed())
        first = frame_at(path, rows[0].time_s) if rows else None
        return (probability_figure(rows, tasks), quality_figure(rows), events_rows(session.events),
                str(csv_path), str(events_path), session.summary_text(), str(path), first,
                events_gallery(session.events), [e.start_s for e in session.events if e.thumbnail_jpeg])

    def jump(table, evt: gr.SelectData):
        """A click on an event row moves the "frame at" box to the event's start."""
        if evt.index is None or table is None or not len(table):
            return gr.skip()
        return float(table.iloc[evt.index[0]]["start (s)"])

    def jump_to_thumbnail(starts, evt: gr.SelectData):
        """... and so does a click on an event's thumbnail."""
        return gr.skip() if evt.index is None or not starts else float(starts[evt.index])

    def show_at(path, t):
        if not path or t is None:
            return None, ""
        return frame_at(Path(path), float(t)), f"frame at {float(t):.1f} s"

    def apply_settings(*values):
        chosen = values[-1]
        if chosen and chosen != loaded["weights"]:
            if chosen not in checkpoints:
                raise gr.Error(f"refused: {chosen!r} is not one of the offered weights files")
            try:
                predictor.replace_model(load_checkpoint(checkpoints[chosen]))
            except (CheckpointError, ValueError) as e:
                raise gr.Error(f"weights not changed: {e}")
            loaded["weights"] = chosen
        for t, v in zip(tasks, values[:len(tasks)]):
            predictor.thresholds[t] = float(v)
        cfg.sampling.fps = float(values[len(tasks)]) or None
        cfg.events.smoothing_s = float(values[len(tasks) + 1])  # running detectors share this config
        for session in hub.running().values():
            session.monitor.sampler = Sampler(cfg.sampling.fps)
        return f"settings applied to every feed (weights: {Path(chosen).name if chosen else 'unchanged'})"

    with gr.Blocks(title="ScopeWatch") as app:
        gr.Markdown("# ScopeWatch — surgical video quality monitor")
        with gr.Tab("Live"):
            with gr.Row():
                source = gr.Textbox(value=default_source, label="Source (rtsp://, udp://, /dev/videoN, file, synthetic:SECONDS)",
                                    scale=4, elem_id="sw-source")
                start_btn = gr.Button("Start", variant="primary", scale=1)
                stop_btn = gr.Button("Stop", scale=1)
            status = gr.Markdown()
            tiles = gr.HTML(label="Feeds (click one to open it)")
            badges = gr.HTML(badges_html(None))
            with gr.Row():
                preview = gr.Image(label="Current frame", height=300, scale=2)
                with gr.Column(scale=3):
                    window = gr.Radio(list(WINDOWS), value="1 min", label="Chart window")
                    prob_plot = gr.Plot(label="Distortions")
            quality_plot = gr.Plot(label="Quality")
            events_table = gr.Dataframe(headers=EVENT_HEADERS, label="Events", interactive=False)
            thumbnails = gr.Gallery(label="Events: worst frame of each", columns=6, height=180, object_fit="contain")
            shown = gr.State(None)
            start_btn.click(start, source, status)
            stop_btn.click(stop, source, status)
            timer = gr.Timer(0.5)
            timer.tick(live_update, [source, window, shown],
                       [preview, badges, prob_plot, quality_plot, events_table, thumbnails, tiles, shown])
        with gr.Tab("Recorded"):
            with gr.Row():
                upload = gr.File(label="Upload a video", file_types=["video"], type="filepath")
                choices = sorted(p.name for p in allowed.iterdir() if p.is_file()) if allowed and allowed.is_dir() else []
                chosen = gr.Dropdown(choices=choices, label=f"…or choose from {allowed}" if allowed else "No folder configured",
                                     allow_custom_value=True)
            analyse_btn = gr.Button("Analyse", variant="primary")
            recording = gr.State("")
            with gr.Row():
                summary = gr.Textbox(label="Summary", lines=8, scale=3)
                with gr.Column(scale=2):
                    rec_frame = gr.Image(label="Frame (click an event or a chart point)", height=220)
                    seek = gr.Number(label="Frame at (s)", elem_id="sw-seek", minimum=0)
                    rec_frame_time = gr.Markdown()
            rec_prob = gr.Plot(label="Distortions", elem_id="sw-rec-prob")
            rec_quality = gr.Plot(label="Quality", elem_id="sw-rec-quality")
            rec_events = gr.Dataframe(headers=EVENT_HEADERS, label="Events (click a row to see its frame)", interactive=False)
            rec_thumbnails = gr.Gallery(label="Events: worst frame of each (click one to see its start)", columns=6,
                                        height=180, object_fit="contain")
            thumbnail_starts = gr.State([])
            with gr.Row():
                csv_file = gr.File(label="CSV timeline", elem_id="sw-csv")
                events_file = gr.File(label="Events JSON")
            analyse_btn.click(analyse, [upload, chosen], [rec_prob, rec_quality, rec_events, csv_file, events_file,
                                                         summary, recording, rec_frame, rec_thumbnails, thumbnail_starts])
            rec_events.select(jump, rec_events, seek)
            rec_thumbnails.select(jump_to_thumbnail, thumbnail_starts, seek)
            seek.change(show_at, [recording, seek], [rec_frame, rec_frame_time])
        with gr.Tab("Settings"):
            sliders = [gr.Slider(0.05, 0.95, value=predictor.thresholds[t], step=0.05, label=f"{task_spec(t).title} threshold")
                       for t in tasks]
            fps = gr.Number(value=cfg.sampling.fps or 0, label="Sampling (analysed frames per second; 0 = every frame)")
            smoothing = gr.Slider(0.0, 5.0, value=cfg.events.smoothing_s, step=0.1, label="Event smoothing (s)")
            weights_file = gr.Dropdown(choices=list(checkpoints), value=str(current_weights), label="Weights file")
            applied = gr.Markdown()
            gr.Button("Apply").click(apply_settings, [*sliders, fps, smoothing, weights_file], applied)
    return app, hub
