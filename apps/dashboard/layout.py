"""The dashboard's page (Gradio Blocks): a Live tab (feeds as tiles, the current frame, charts,
badges, events, and the operator's actions on a feed: acknowledge, mute, mark as normal), a Recorded tab (analyse an upload or a file of the allowed folder, seek by
clicking a chart point, an event or a thumbnail, download the CSV and events) and Settings
(thresholds, sampling, smoothing, weights), wired to the feeds hub. It shows only what the
monitor produced: charts and tables read the same `FrameResult`s that the CSV holds, and the
downloads are the very files the monitor wrote.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from apps.dashboard.charts import WINDOWS, downsample, probability_figure, quality_figure, windowed
from apps.dashboard.files import allowed_files, frame_at, resolve_in, weights_choices
from apps.dashboard.hub import SourceHub, analyse_recording
from apps.dashboard.widgets import (EVENT_HEADERS, badges_html, events_gallery, events_rows, preview_image, reference_html,
                                    tiles_html)
from apps.version import version_line
from model.checkpoint import CheckpointError, load_checkpoint
from model.decision import Decision, ReferenceRefused
from model.factory import DEFAULT_MODEL, weights_path
from model.tasks import task_spec
from monitor.config import ScopeWatchConfig
from monitor.sources import SourceError


def live_tab(hub: SourceHub, tasks, decision: Decision, default_source: str, read_only: bool = False) -> None:
    """Feeds as tiles, the chosen feed's frame (with its heat overlay on demand), badges, charts and
    events (the open ones first listed as ongoing), refreshed twice a second; the operator's actions:
    mark as normal, clear the reference, acknowledge the alarms up, mute a distortion for a while.
    `read_only` (a wall screen): the feeds and their alarms only; no control is built, so none can
    be called over the API either."""

    def live_update(uri, window, heat, shown):
        """One refresh of the Live tab; the thumbnails are sent only when the feed's events change
        (`shown`: what this viewer has: the feed and, per event, its start and worst second)."""
        tiles = tiles_html(hub.running(), uri.strip())
        session = hub.get(uri.strip())
        if session is None:
            return (None, badges_html(None), probability_figure([], tasks, decision), quality_figure([]), [], [], tiles,
                    None, reference_html(None))
        rows = downsample(windowed(session.timeline.snapshot(), WINDOWS[window]))
        events = sorted([*session.events, *session.ongoing()], key=lambda e: e.start_s)
        now = (uri.strip(), tuple((e.name, e.start_s, int(e.worst_time_s), e.ongoing) for e in events))
        gallery = gr.skip() if now == shown else events_gallery(events)
        return (preview_image(session, heat), badges_html(session), probability_figure(rows, tasks, decision),
                quality_figure(rows), events_rows(events), gallery, tiles, now, reference_html(session))

    def running(uri):
        session = hub.running().get(uri.strip())
        if session is None:
            raise gr.Error(f"{uri.strip() or 'no source'}: not running; start it first")
        return session

    def start(uri):
        try:
            hub.start(uri.strip())
        except SourceError as e:
            raise gr.Error(str(e))
        return f"watching {uri.strip()}"

    def stop(uri):
        hub.stop(uri.strip())
        return f"stopped {uri.strip()}"

    def mark_normal(uri, seconds, force, request: gr.Request):
        running(uri)
        try:
            ref = hub.mark_normal(uri.strip(), float(seconds or 0) or 3.0, bool(force), operator(request))
        except ReferenceRefused as e:
            raise gr.Error(f"reference refused: {e}")
        gr.Info(f"alarms now relative to the {ref.describe()}")
        return reference_html(hub.get(uri.strip()))

    def clear_reference(uri):
        running(uri)
        hub.clear_reference(uri.strip())
        gr.Info(f"{uri.strip()}: reference cleared; alarms at the plain thresholds")
        return reference_html(hub.get(uri.strip()))

    def acknowledge(uri, request: gr.Request):
        session = running(uri)
        names = session.acknowledge(operator(request))
        gr.Info(f"acknowledged: {', '.join(task_spec(n).title if n in tasks else n for n in names)}" if names
                else "no unacknowledged alarm is up")
        return badges_html(session)

    def mute(uri, task, minutes):
        session = running(uri)
        if task not in tasks:
            raise gr.Error("choose the distortion to mute")
        try:
            until = decision.mute(task, session.feed, float(minutes or 0))
        except ValueError as e:
            raise gr.Error(str(e))
        gr.Info(f"{task_spec(task).title} on {session.feed}: " + (f"muted for {float(minutes):g} min" if until else "unmuted"))
        return badges_html(session)

    with gr.Row():
        source = gr.Textbox(value=default_source, label="Feed (click a tile to open it)" if read_only else
                            "Source (rtsp://, udp://, /dev/videoN, file, synthetic:SECONDS)", scale=4, elem_id="sw-source")
        if not read_only:
            start_btn = gr.Button("Start", variant="primary", scale=1)
            stop_btn = gr.Button("Stop", scale=1)
    status = gr.Markdown()
    tiles = gr.HTML(label="Feeds (click one to open it)")
    badges = gr.HTML(badges_html(None))
    reference = gr.HTML(reference_html(None))
    if not read_only:
        with gr.Row(equal_height=True):
            ack_btn = gr.Button("Acknowledge alarms [A]", elem_id="sw-ack", scale=1)
            mute_task = gr.Dropdown([(task_spec(t).title, t) for t in tasks], value=tasks[0], label="Distortion to mute",
                                    elem_id="sw-mute-task", scale=1)
            mute_minutes = gr.Number(10, label="for minutes (0 = unmute)", minimum=0, elem_id="sw-mute-minutes", scale=1)
            mute_btn = gr.Button("Mute [M]", elem_id="sw-mute", scale=1)
        with gr.Row(equal_height=True):
            normal_btn = gr.Button("Mark as normal [N]", elem_id="sw-mark-normal", scale=1)
            normal_s = gr.Number(3, label="for the next seconds", minimum=0.5, elem_id="sw-normal-seconds", scale=1)
            force = gr.Checkbox(False, label="take it even if it looks distorted", scale=1)
            clear_btn = gr.Button("Clear reference", elem_id="sw-clear-reference", scale=1)
        gr.Markdown("Keys (outside a text box): **A** acknowledge · **M** mute · **N** mark as normal · "
                    "**H** heat overlay", elem_classes="sw-keys")
    with gr.Row():
        with gr.Column(scale=2):
            preview = gr.Image(label="Current frame", height=300, elem_id="sw-preview")
            heat = gr.Checkbox(False, label="Show where the alarms are (heat overlay) [H]", elem_id="sw-heat")
        with gr.Column(scale=3):
            window = gr.Radio(list(WINDOWS), value="1 min", label="Chart window")
            prob_plot = gr.Plot(label="Distortions")
    quality_plot = gr.Plot(label="Quality")
    events_table = gr.Dataframe(headers=EVENT_HEADERS, label="Events", interactive=False, elem_id="sw-events")
    thumbnails = gr.Gallery(label="Events: worst frame of each", columns=6, fit_columns=False, height=230, object_fit="contain",
                            elem_id="sw-thumbnails")
    shown = gr.State(None)
    if not read_only:
        start_btn.click(start, source, status)
        stop_btn.click(stop, source, status)
        normal_btn.click(mark_normal, [source, normal_s, force], reference)
        clear_btn.click(clear_reference, source, reference)
        ack_btn.click(acknowledge, source, badges)
        mute_btn.click(mute, [source, mute_task, mute_minutes], badges)
    timer = gr.Timer(0.5)
    timer.tick(live_update, [source, window, heat, shown],
               [preview, badges, prob_plot, quality_plot, events_table, thumbnails, tiles, shown, reference])


def operator(request: gr.Request | None) -> str:
    """Who pressed the button: the signed-in user, or "dashboard" on an open loopback page."""
    return getattr(request, "username", None) or "dashboard"


def recorded_tab(predictor, cfg: ScopeWatchConfig, allowed: Path | None, out_dir: Path) -> None:
    """Analyse an upload or a file of the allowed folder; seek by a chart point, an event or a thumbnail."""
    tasks, decision = predictor.tasks, cfg.decision

    def analyse(upload, chosen, progress=gr.Progress()):
        if upload:
            path = Path(upload)
        elif chosen and allowed:
            path = resolve_in(allowed, chosen)
        else:
            raise gr.Error("upload a video or choose one from the folder")
        try:
            session, csv_path, events_path = analyse_recording(path, predictor, cfg, out_dir, progress)
        except SourceError as e:
            raise gr.Error(str(e))
        rows = downsample(session.timeline.analysed())
        first = frame_at(path, rows[0].time_s) if rows else None
        return (probability_figure(rows, tasks, decision), quality_figure(rows), events_rows(session.events),
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

    with gr.Row():
        upload = gr.File(label="Upload a video", file_types=["video"], type="filepath")
        chosen = gr.Dropdown(choices=allowed_files(allowed), label=f"…or choose from {allowed}" if allowed else "No folder configured",
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
    rec_thumbnails = gr.Gallery(label="Events: worst frame of each (click one to see its start)", columns=6, fit_columns=False,
                                height=230, object_fit="contain")
    thumbnail_starts = gr.State([])
    with gr.Row():
        csv_file = gr.File(label="CSV timeline", elem_id="sw-csv")
        events_file = gr.File(label="Events JSON")
    analyse_btn.click(analyse, [upload, chosen], [rec_prob, rec_quality, rec_events, csv_file, events_file,
                                                 summary, recording, rec_frame, rec_thumbnails, thumbnail_starts])
    rec_events.select(jump, rec_events, seek)
    rec_thumbnails.select(jump_to_thumbnail, thumbnail_starts, seek)
    seek.change(show_at, [recording, seek], [rec_frame, rec_frame_time])


def settings_tab(predictor, cfg: ScopeWatchConfig, hub: SourceHub, checkpoints: dict[str, Path], current: Path) -> None:
    """Thresholds (the run's decision, changed in place), sampling, smoothing and the weights file."""
    tasks, decision = predictor.tasks, cfg.decision
    loaded = {"weights": str(current)}  # what the shared predictor runs now

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
            try:
                decision.set_threshold(t, float(v))
            except ValueError as e:
                raise gr.Error(f"threshold not changed: {e}")
        cfg.events.smoothing_s = float(values[len(tasks) + 1])  # running detectors share this config
        hub.set_sampling(float(values[len(tasks)]) or None)
        return f"settings applied to every feed (weights: {Path(chosen).name if chosen else 'unchanged'})"

    lo = round(decision.hysteresis + 0.05, 2)  # an episode must be able to open and close
    sliders = [gr.Slider(lo, 1 - lo, value=decision.threshold(t), step=0.05, label=f"{task_spec(t).title} threshold")
               for t in tasks]
    fps = gr.Number(value=cfg.sampling.fps or 0, label="Sampling (analysed frames per second; 0 = every frame)")
    smoothing = gr.Slider(0.0, 5.0, value=cfg.events.smoothing_s, step=0.1, label="Event smoothing (s)")
    weights_file = gr.Dropdown(choices=list(checkpoints), value=str(current), label="Weights file")
    applied = gr.Markdown()
    gr.Button("Apply").click(apply_settings, [*sliders, fps, smoothing, weights_file], applied)


def build_app(predictor, cfg: ScopeWatchConfig, default_source: str = "", allowed_dir: Path | None = None,
              out_dir: Path | None = None, weights: Path | None = None,
              read_only: bool = False) -> tuple[gr.Blocks, SourceHub]:
    """`weights`: the checkpoint `predictor` was loaded from (None: the shipped one). Every
    threshold is the run's `cfg.decision`, which the Settings tab changes in place. `read_only`: a
    wall screen, the Live tab's feeds and alarms only (no controls, no Recorded or Settings tab)."""
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="scopewatch-"))
    hub = SourceHub(predictor, cfg, out_dir / "live")
    allowed = Path(allowed_dir) if allowed_dir else None
    current = Path(weights or weights_path(DEFAULT_MODEL)).resolve()
    with gr.Blocks(title="ScopeWatch") as app:
        gr.Markdown("# ScopeWatch — surgical video quality monitor")
        with gr.Tab("Live"):
            live_tab(hub, predictor.tasks, cfg.decision, default_source, read_only)
        if not read_only:
            with gr.Tab("Recorded"):
                recorded_tab(predictor, cfg, allowed, out_dir / "recorded")
            with gr.Tab("Settings"):
                settings_tab(predictor, cfg, hub, weights_choices(current, allowed), current)
        gr.Markdown(version_line(weights), elem_id="sw-footer")  # what IT pins, on every screen
    return app, hub
