"""The dashboard's charts: per-distortion probability and quality over time (Plotly), and the feed
tiles' quality sparkline. They plot `FrameResult`s, the rows the CSV holds."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from model.decision import Decision
from model.tasks import task_spec
from monitor.records import FrameResult

WINDOWS = {"1 min": 60.0, "10 min": 600.0, "all": None}
MAX_POINTS = 600


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


def probability_figure(results, tasks, decision: Decision, title="Distortion probability") -> go.Figure:
    fig = go.Figure()
    t = [r.time_s for r in results]
    for task in tasks:
        spec = task_spec(task)
        fig.add_trace(go.Scatter(x=t, y=[r.probabilities.get(task) for r in results], name=spec.title,
                                 mode="lines", line={"color": spec.color, "width": 2}, hovertemplate="%{y:.2f}"))
    for level, label in threshold_labels(tasks, decision):
        fig.add_hline(y=level, line_dash="dot", line_color="#999", annotation_text=label,
                      annotation_position="top left", annotation_font={"size": 11, "color": "#666"})
    # The legend sits above the plot, right of the title: below it, it covered the axis title.
    fig.update_layout(title=title, height=340, margin=dict(l=40, r=10, t=70, b=40), yaxis_range=[0, 1],
                      xaxis_title="time (s)", uirevision="keep", hovermode="x unified",
                      legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.02, "yanchor": "bottom"})
    return fig


def threshold_labels(tasks, decision: Decision) -> list[tuple[float, str]]:
    """Each alarm threshold drawn on the probability chart, with what it is: 'alarm' alone when
    every distortion shares it, else the distortions it is for."""
    levels: dict[float, list[str]] = {}
    for task in tasks:
        levels.setdefault(decision.threshold(task), []).append(task_spec(task).title)
    return [(level, f"alarm {level:.2f}" + ("" if len(levels) == 1 else f" ({', '.join(names)})"))
            for level, names in sorted(levels.items())]


def quality_figure(results, title="Quality (0-100, higher is better)") -> go.Figure:
    fig = go.Figure(go.Scatter(x=[r.time_s for r in results], y=[r.quality for r in results], mode="lines",
                               line={"color": "#1f77b4", "width": 2}, name="quality"))
    fig.update_layout(title=title, height=260, margin=dict(l=40, r=10, t=40, b=30), yaxis_range=[0, 100],
                      xaxis_title="time (s)", uirevision="keep", hovermode="x unified")
    return fig


def sparkline(values: list[float], lo: float = 0.0, hi: float = 100.0, w: int = 160, h: int = 36) -> str:
    if len(values) < 2:
        return f"<svg width='{w}' height='{h}'></svg>"
    pts = " ".join(f"{w * i / (len(values) - 1):.1f},{h - h * (min(max(v, lo), hi) - lo) / (hi - lo):.1f}"
                   for i, v in enumerate(values))
    return f"<svg width='{w}' height='{h}'><polyline fill='none' stroke='white' stroke-width='2' points='{pts}'/></svg>"
