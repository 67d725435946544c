"""The dashboard's HTML pieces and tables: state badges, feed tiles, the events table and its
thumbnails. Each reads a feed's `Session` and the run's `Decision`, nothing else."""
from __future__ import annotations

import html

import cv2
import numpy as np

from apps.dashboard.charts import downsample, sparkline, windowed
from model.tasks import task_spec
from monitor.session import Session

EVENT_HEADERS = ["kind", "name", "start (s)", "duration (s)", "peak", "mean quality"]


def badges_html(session: Session | None) -> str:
    if session is None:
        return "<div class='sw-badges'><span class='sw-badge sw-idle'>no source running</span></div>"
    m, decision = session.monitor.metrics, session.cfg.decision
    r = m.last_result if m.last_result and m.last_result.analysed else None
    parts = [f"<span class='sw-badge sw-state'>{m.state.value.upper()}</span>"]
    if r:
        q = r.quality or 0.0
        parts.append(f"<span class='sw-badge {'sw-bad' if q < decision.quality_below else 'sw-ok'}'>"
                     f"quality {q:.0f}</span>")
        for t in decision.alarms(r.probabilities, r.source_id):
            parts.append(f"<span class='sw-badge sw-bad'>{task_spec(t).title} L{r.levels.get(t, 0)}</span>")
    lat = m.latency_percentile(50)
    parts.append(f"<span class='sw-badge sw-info'>{m.inference_fps:.1f} fps · latency {lat or 0:.0f} ms · "
                 f"dropped {m.dropped} · {session.monitor.predictor.name}</span>")
    return "<div class='sw-badges'>" + "".join(parts) + "</div>"


def tiles_html(feeds: dict[str, Session], selected: str) -> str:
    """Every running feed as a tile: state, quality now, distortions present, a one-minute
    quality sparkline. A click opens the feed in the full view."""
    if not feeds:
        return ""
    tiles = []
    for uri, session in feeds.items():
        m, decision = session.monitor.metrics, session.cfg.decision
        r = m.last_result if m.last_result and m.last_result.analysed else None
        recent = [x.quality for x in downsample(windowed(session.timeline.snapshot(), 60.0), 60) if x.quality is not None]
        bad = [task_spec(t).title for t in decision.alarms(r.probabilities, r.source_id)] if r else []
        ok = r is not None and not bad and (r.quality or 0) >= decision.quality_below
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
