"""The dashboard's HTML pieces and tables: state badges, feed tiles, the events table and its
thumbnails, the reference's state and the preview's heat overlay. Each reads a feed's `Session` and
the run's `Decision`, nothing else.

An alarm is up while its episode is open (`Session.ongoing`): its badge flashes until an operator
acknowledges it, and a muted distortion's badge says until when, without flashing."""
from __future__ import annotations

import datetime as _dt
import html

import cv2
import numpy as np

from apps.dashboard.charts import downsample, sparkline, windowed
from model.tasks import task_spec
from monitor.outputs.events import heat_overlay
from monitor.session import Session

EVENT_HEADERS = ["kind", "name", "start (s)", "duration (s)", "peak", "mean quality", "state"]


def _clock(epoch_s: float) -> str:
    return _dt.datetime.fromtimestamp(epoch_s).strftime("%H:%M")


def state_class(decision, r) -> str:
    """The one colour rule of a feed's state, for its quality badge and its tile alike: green only
    while nothing alarms and the quality is above the decision's floor."""
    ok = r is not None and not decision.alarms(r.probabilities, r.source_id) and (r.quality or 0.0) >= decision.quality_below
    return "sw-ok" if ok else "sw-bad"


def badges_html(session: Session | None) -> str:
    if session is None:
        return "<div class='sw-badges'><span class='sw-badge sw-idle'>no source running</span></div>"
    m, decision = session.monitor.metrics, session.cfg.decision
    r = m.last_result if m.last_result and m.last_result.analysed else None
    parts = [f"<span class='sw-badge sw-state'>{m.state.value.upper()}</span>"]
    if r:
        parts.append(f"<span class='sw-badge {state_class(decision, r)}' id='sw-quality'>quality {r.quality or 0.0:.0f}</span>")
        up = {e.name: e for e in session.ongoing()}
        for t in decision.alarms(r.probabilities, r.source_id):
            until = decision.muted_until(t, session.feed)
            if until is not None:
                parts.append(f"<span class='sw-badge sw-muted' data-task='{t}'>{task_spec(t).title} L{r.levels.get(t, 0)}"
                             f" · muted until {_clock(until)}</span>")
                continue
            state = "sw-acked" if t in up and up[t].acknowledged_by is not None else "sw-flash" if t in up else ""
            parts.append(f"<span class='sw-badge sw-bad {state}' data-task='{t}'>{task_spec(t).title} "
                         f"L{r.levels.get(t, 0)}{' · acknowledged' if state == 'sw-acked' else ''}</span>")
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
        tiles.append(
            f"<div class='sw-tile {state_class(decision, r)}{' sw-selected' if uri == selected else ''}' "
            f"data-uri='{html.escape(uri, quote=True)}'><b>{html.escape(uri)}</b><br>{m.state.value.upper()} · "
            f"quality {'-' if r is None else f'{r.quality:.0f}'} · {m.inference_fps:.0f} fps · dropped {m.dropped}"
            f"<br>{html.escape(', '.join(bad) or 'no distortion')}<br>{sparkline(recent)}</div>")
    return "<div class='sw-tiles'>" + "".join(tiles) + "</div>"


def event_state(e) -> str:
    words = ["ongoing" if e.ongoing else "ended"]
    if e.acknowledged_by is not None:
        words.append(f"acknowledged{' by ' + e.acknowledged_by if e.acknowledged_by else ''}")
    words += [w for w, on in (("muted", e.muted), ("repeat", e.repeat)) if on]
    return ", ".join(words)


def events_rows(events) -> list[list]:
    return [[e.kind, e.name, round(e.start_s, 1), round(e.duration_s, 1), round(e.peak, 2),
             None if e.mean_quality is None else round(e.mean_quality, 1), event_state(e)] for e in events]


def reference_html(session: Session | None) -> str:
    """The feed's reference state: which window, when and by whom, or that there is none."""
    if session is None:
        return ""
    ref = session.cfg.decision.references.get(session.feed)
    window = session.reference
    if window is not None and not window.done:
        text = f"taking the reference: {window.start_s:.1f}-{window.end_s:.1f} s of the feed…"
    elif ref is None:
        text = "no reference: alarms at the plain thresholds"
    else:
        text = (f"reference {ref.start_s:.1f}-{ref.end_s:.1f} s ({ref.frames} frames), taken {ref.taken_at}"
                f"{' by ' + ref.taken_by if ref.taken_by else ''}{' (forced)' if ref.forced else ''}")
    return f"<div class='sw-reference' id='sw-reference-state'>{html.escape(text)}</div>"


def preview_image(session: Session | None, heat: bool) -> np.ndarray | None:
    """The feed's latest analysed frame; with `heat`, where its alarms are (their per-patch map)."""
    if session is None or session.latest_image is None:
        return None
    image, r = session.latest_image, session.latest_result
    if not heat or r is None or r.patch_map is None:
        return image
    alarms = [t for t in session.cfg.decision.alarms(r.probabilities, r.source_id) if t in r.patch_map]
    if not alarms:
        return image
    return heat_overlay(image, r.patch_boxes, np.max([r.patch_map[t] for t in alarms], axis=0))


def events_gallery(events) -> list[tuple[np.ndarray, str]]:
    """Each event's thumbnail (its worst frame) with a caption, for a gr.Gallery."""
    out = []
    for e in events:
        if e.thumbnail_jpeg:
            bgr = cv2.imdecode(np.frombuffer(e.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
            out.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{e.name} at {e.start_s:.1f} s ({'ongoing, ' if e.ongoing else ''}{e.duration_s:.1f} s)"))
    return out
