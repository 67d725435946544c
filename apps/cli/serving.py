"""`scopewatch dashboard` (the web dashboard) and `scopewatch demo` (the built-in sample feed, in the
dashboard or headless)."""
from __future__ import annotations

import os
from pathlib import Path

from apps.cli.common import (UsageError, add_metrics_args, add_monitor_args, add_sampling_args, positive, predictor_for,
                             run_config, start_metrics)


def _serve(args, sources: list[str]) -> int:
    """Serve the dashboard with `sources` started (each a tile; the first is the one shown)."""
    from apps.dashboard.serve import ServeError, check_access, serve
    auth = args.auth or os.environ.get("SCOPEWATCH_AUTH")
    try:
        check_access(args.host, auth)  # before anything is loaded
        cfg = run_config(args, "dashboard")
        if args.allowed_dir is not None and not args.allowed_dir.is_dir():
            raise UsageError(f"--allowed-dir: {args.allowed_dir}: no such folder")
        predictor = predictor_for(cfg)
        return serve(predictor, cfg, sources, host=args.host, port=args.port, auth=auth,
                     allowed_dir=args.allowed_dir, max_upload_mb=args.max_upload_mb, weights=args.weights,
                     start_metrics=lambda sessions: start_metrics(args, sessions, args.weights),
                     read_only=args.read_only)
    except ServeError as e:
        raise UsageError(str(e)) from None


def cmd_dashboard(args) -> int:
    if args.read_only and not args.sources:
        raise UsageError("--read-only shows the feeds given on the command line: name at least one SOURCE")
    return _serve(args, args.sources)


def cmd_demo(args) -> int:
    """The built-in sample (a procedural scene with scheduled episodes) played as a live feed with
    the shipped weights: in the dashboard, or headless with --no-browser."""
    from monitor.outputs.naming import output_paths
    from monitor.session import Session
    from monitor.sources import FileSource
    from training.demo import DEMO_FPS, DEMO_SIZE, write_demo_clip

    path = args.out / "demo.mp4"
    print(f"synthesising {path}: {args.seconds:g} s of a procedural laparoscopic scene, "
          f"{DEMO_SIZE[0]}x{DEMO_SIZE[1]} at {DEMO_FPS} fps, with:")
    for e in write_demo_clip(path, args.seconds):
        print(f"  {e.start:6.1f}-{e.end:6.1f} s  {e.name:<20} severity {e.severity:.2f}")
    if not args.no_browser:
        return _serve(args, [str(path)])
    cfg = run_config(args, "dashboard")
    source = FileSource(path, realtime=True)
    source.open()
    paths = output_paths(path)
    csv_path = args.csv or paths.csv
    session = Session(source, predictor_for(cfg), cfg, csv_path, paths.events)
    session.run(args.duration)
    print(f"\nScopeWatch found ({csv_path}):")
    for e in session.events:
        print(f"  {e.start_s:6.1f}-{e.end_s:6.1f} s  {e.name:<20} peak {e.peak:.2f}")
    print(session.summary_text())
    return 0


def _add_server_args(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1; others need --auth)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--auth", help="USER:PASS required to open the dashboard (or set SCOPEWATCH_AUTH)")
    p.add_argument("--allowed-dir", type=Path, help="folder whose videos the Recorded tab may open")
    p.add_argument("--max-upload-mb", type=positive(int), default=500, help="largest upload accepted (default 500 MB)")
    add_sampling_args(p, "dashboard")
    add_monitor_args(p)
    add_metrics_args(p)
    p.add_argument("--read-only", action="store_true",
                   help="a wall screen: the feeds given on the command line and their alarms, nothing to start, "
                        "stop, acknowledge, mute or analyse")


def register(sub) -> None:
    p = sub.add_parser("demo", help="the dashboard on the built-in sample feed",
                       description="Synthesise the built-in sample (a procedural laparoscopic scene with scheduled "
                                   "smoke, defocus, noise, motion blur and light episodes), play it as a live feed "
                                   "with the shipped weights and open the dashboard on it (prints the URL). With "
                                   "--no-browser it runs headless and prints the episodes found.")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--seconds", type=positive(float), default=60.0, help="length of the sample (default 60)")
    p.add_argument("--no-browser", action="store_true", help="no dashboard: monitor headless and print a summary")
    p.add_argument("--duration", type=positive(float), help="with --no-browser: stop after this many seconds")
    p.add_argument("--csv", type=Path, help="with --no-browser: timeline CSV (default OUT/demo.mp4.scopewatch.csv)")
    _add_server_args(p)
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("dashboard", help="the web dashboard (live feeds, recordings, CSV export)",
                       description="Serve the dashboard: a Live tab (start/stop a source, current frame, charts, "
                                   "badges, events), a Recorded tab (upload or choose a video, analyse, download the "
                                   "CSV and events) and Settings. Binds 127.0.0.1 unless --host and --auth are given.")
    p.add_argument("sources", metavar="SOURCE", nargs="*", help="feeds to start watching right away (each a tile)")
    _add_server_args(p)
    p.set_defaults(run=cmd_dashboard)
