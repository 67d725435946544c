"""`scopewatch analyze` (recordings, one by one or as an archive) and `scopewatch watch` (live feeds)."""
from __future__ import annotations

import sys
from pathlib import Path

from apps.cli.common import (UsageError, add_metrics_args, add_monitor_args, add_reference_args, add_sampling_args,
                             check_folder, check_writable, open_checked, positive, predictor_for, reference_for,
                             run_config, start_metrics)
from model.preprocess import too_small
from monitor.outputs.export import OutputError
from monitor.outputs.naming import DEFAULT_FOLDER, feed_stem, output_paths
from monitor.records import StreamState


def unique_inputs(inputs: list[str]) -> list[str]:
    """`inputs` with a file named twice (by any path to it) kept once, saying so: analysing it twice
    would only overwrite its own files."""
    seen, out = set(), []
    for item in inputs:
        key = str(Path(item).resolve()) if Path(item).exists() else item
        if key in seen:
            print(f"scopewatch: {item} is given more than once; analysing it once", file=sys.stderr)
            continue
        seen.add(key)
        out.append(item)
    return out


def _given_path(given, many: bool, option: str) -> Path | None:
    if given is None:
        return None
    if many:
        raise UsageError(f"{option} names one file: give one video, or leave it out to write beside each video")
    return Path(given)


def cmd_archive(args, cfg) -> int:
    from tqdm import tqdm
    from monitor.archive import SUMMARY, ArchiveError, analyse_archive, find_videos, local_executor, ray_executor

    if args.csv or args.events or args.realtime or args.reference:
        raise UsageError("--csv/--events/--realtime/--reference do not apply to archive mode (--out/--ray)")
    if args.ray and args.out is None:
        raise UsageError("--ray needs --out DIR (where every video's files and the summary go)")
    try:
        videos = find_videos(args.videos)
    except ArchiveError as e:
        raise UsageError(str(e)) from None
    check_folder(args.out, "--out")
    check_writable(args.out / SUMMARY, "--out")
    predictor = predictor_for(cfg)
    if args.ray:
        import importlib.util
        if importlib.util.find_spec("ray") is None:  # an optional extra
            raise UsageError("--ray needs Ray: pip install -e '.[ray]'")
        cfg.model.threads = 1  # one core per task: Ray runs as many tasks as the cluster has cores
        try:
            executor = ray_executor(args.ray_address, cfg, cfg.model.weights, cfg.model.device)
        except ConnectionError as e:
            raise UsageError(f"cannot reach the Ray cluster at {args.ray_address}: {e}") from None
    else:
        executor = local_executor(cfg, predictor)
    with tqdm(desc="archive", unit="chunk", disable=args.quiet) as bar:
        rows = analyse_archive(videos, args.out, cfg, predictor, executor, args.chunk_s, bar)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} videos analysed -> {args.out}/{SUMMARY}")
    for r in failed:
        print(f"scopewatch analyze: error: {r['error'] if r['video'] in r['error'] else r['video'] + ': ' + r['error']}", file=sys.stderr)
    return 1 if failed else 0


def cmd_analyze(args) -> int:
    from tqdm import tqdm
    from monitor.session import Session

    if args.ray_address and not args.ray:
        raise UsageError("--ray-address goes with --ray")
    cfg = run_config(args, "recorded", **{"source.realtime": args.realtime or None})
    if args.out is not None or args.ray:
        return cmd_archive(args, cfg)
    videos = unique_inputs(args.videos)
    many = len(videos) > 1
    jobs = []
    for video in videos:  # check everything before analysing anything
        paths = output_paths(video)
        if paths.csv.parent == DEFAULT_FOLDER and not (args.csv and args.events):
            print(f"scopewatch: {Path(video).parent} cannot take files; {Path(video).name}'s go to {DEFAULT_FOLDER}/",
                  file=sys.stderr)
            check_folder(DEFAULT_FOLDER, "the default output folder")
        csv_path = _given_path(args.csv, many, "--csv") or paths.csv
        events_path = _given_path(args.events, many, "--events") or paths.events
        check_writable(csv_path)
        check_writable(events_path)
        source = open_checked(video, cfg)
        reference = reference_for(args, cfg.decision, source.source_id, paths.reference)
        jobs.append((video, source, csv_path, events_path, reference))
    predictor = predictor_for(cfg)
    for video, source, *_ in jobs:  # a stream's size is known once it is connected: checked as it plays
        reason = source.info.width and too_small(source.info.width, source.info.height, predictor.input_cfg)
        if reason:
            raise UsageError(f"{video}: {reason}")
    failures = 0
    for video, source, csv_path, events_path, reference in jobs:
        session = Session(source, predictor, cfg, csv_path, events_path, reference=reference)
        total = source.info.duration_s
        bar = tqdm(total=round(total, 1) if total else None, desc=Path(video).name, unit="s", disable=args.quiet,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} s [{elapsed}<{remaining}]")

        def tick(m, bar=bar):
            bar.n = round(m.last_time_s, 1)
            bar.refresh()

        try:
            session.run(on_tick=tick)
        except KeyboardInterrupt:
            bar.close()
            print(f"{video}: interrupted; {csv_path} keeps {session.csv.rows} rows", file=sys.stderr)
            return 130
        tick(session.monitor.metrics)
        bar.close()
        m = session.monitor.metrics
        error = session.monitor.error
        reason = session.monitor.failed or (str(error) if error else None)
        if m.analysed or not reason:  # a source that never gave a frame has no summary, only its error
            print(f"\n{video}: {m.analysed} frames analysed of {m.decoded} decoded -> {csv_path}, {events_path}")
            print(session.summary_text())
        if reference is not None and reference.reference is not None:
            print(f"{reference.reference.describe()} -> {reference.save_to}")
        if source.damage and source.damage.summary():
            print(f"scopewatch analyze: warning: {video}: {source.damage.summary()}", file=sys.stderr)
        if isinstance(error, OutputError):  # it says what was kept
            failures += 1
            print(f"scopewatch analyze: error: {reason}", file=sys.stderr)
        elif reason:
            failures += 1
            kept = f"{csv_path} keeps the {m.analysed} frames analysed before it" if m.analysed else \
                f"nothing analysed ({csv_path} records the attempt)"
            print(f"scopewatch analyze: error: {reason if video in reason else f'{video}: {reason}'}; {kept}",
                  file=sys.stderr)
    return 1 if failures else 0


def feed_status(m, decision, name: str = "") -> str:
    """One feed's status line: state, media time, quality, the distortions present now, rates. Out
    of the live state there is no picture to report on: the last one's figures would be stale."""
    if m.state != StreamState.LIVE:
        return f"{name}[{m.state.value}] t={m.last_time_s:7.1f}s | no picture: {m.state_reason or '-'} | dropped {m.dropped}"
    r = m.last_result
    present = ", ".join(f"{t} {r.probabilities[t]:.2f}" for t in decision.alarms(r.probabilities, r.source_id)) \
        if r and r.analysed else ""
    q = f"{r.quality:.0f}" if r and r.quality is not None else "-"
    lat = m.latency_percentile(50)
    return (f"{name}[{m.state.value}] t={m.last_time_s:7.1f}s quality {q:>3} | distortions: {present or 'none'} | "
            f"{m.inference_fps:4.1f} fps, latency {lat or 0:5.0f} ms, dropped {m.dropped}")


def run_totals(m) -> str:
    """A feed's counts at the end of a watch: what a capacity check (benchmarks/multifeed.py) reads."""
    p50, p95 = m.latency_percentile(50), m.latency_percentile(95)
    latency = f", latency p50 {p50:.0f} ms, p95 {p95:.0f} ms" if p95 is not None else ""
    return f"{m.analysed} frames analysed of {m.decoded} decoded, {m.dropped} dropped{latency}"


def cmd_watch(args) -> int:
    from monitor.inference import InferenceWorker
    from monitor.session import Session, run_sessions

    cfg = run_config(args, "live", **{"source.realtime": args.realtime or None,
                                      "source.rtsp_transport": args.rtsp_transport,
                                      "source.open_timeout_s": args.timeout})
    many = len(args.sources) > 1
    if many and (args.csv or args.events):
        raise UsageError("--csv/--events name one feed's files: with several sources use --out-dir")
    outputs = []
    if args.out_dir is not None:
        check_folder(args.out_dir, "--out-dir")
    references = []
    for uri in args.sources:
        paths = output_paths(uri, args.out_dir)
        outputs.append((paths.csv, paths.events) if args.out_dir is not None else (args.csv, args.events))
        references.append(paths.reference)
    for paths in outputs:
        for path in paths:
            if path is not None:
                check_writable(Path(path))
    if len({str(p) for p, _ in outputs if p}) < len([p for p, _ in outputs if p]):
        raise UsageError("two sources would write the same files: give each feed a distinct address")
    sources = [open_checked(uri, cfg) for uri in args.sources]
    predictor = predictor_for(cfg)
    running = []  # what the metrics report: the sessions, once built
    metrics = start_metrics(args, lambda: running, cfg.model.weights)
    # One inference worker for every feed: frames of all feeds are batched into one model call.
    worker = InferenceWorker(predictor, cfg.buffer.batch_size, cfg.model.threads)
    try:  # a restarted watch continues each feed's files
        sessions = [Session(src, predictor, cfg, csv, events, worker=worker, append=True,
                            reference=reference_for(args, cfg.decision, src.source_id, ref_path))
                    for src, (csv, events), ref_path in zip(sources, outputs, references)]
    except ValueError as e:
        worker.stop()
        raise UsageError(str(e)) from None
    running.extend(sessions)
    names = [feed_stem(uri) for uri in args.sources]
    tty = sys.stderr.isatty()
    ticks = [0]

    def status():
        if many:  # a block of one line per feed every 5 s
            ticks[0] += 1
            if ticks[0] % 10 == 1:
                lines = [feed_status(s.monitor.metrics, cfg.decision, f"{name}: ") for name, s in zip(names, sessions)]
                print("\n".join(lines), file=sys.stderr, flush=True)
            return
        line = feed_status(sessions[0].monitor.metrics, cfg.decision)
        print(("\r" + line.ljust(120)) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    quiet = getattr(args, "log_format", "text") == "json"  # a log shipper reads stderr: JSON lines only
    try:
        run_sessions(sessions, args.duration, None if quiet else status)
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
    finally:
        worker.stop()
        if metrics is not None:
            metrics.shutdown()
    if tty and not many:
        print(file=sys.stderr)
    failed = 0
    for name, s in zip(names, sessions):
        if many:
            print(f"== {name}")
        print(run_totals(s.monitor.metrics))
        if s.timeline.frames_analysed:  # a feed that never gave a frame has no summary, only its error
            print(s.summary_text())
        refused = s.reference is not None and s.reference.refused
        if s.reference is not None and s.reference.reference is not None:
            print(f"{s.reference.reference.describe()} -> {s.reference.save_to}")
        if s.monitor.failed and (refused or not s.timeline.frames_analysed):
            print(f"scopewatch watch: error: {name}: {s.monitor.failed}", file=sys.stderr)
            failed += 1
        elif isinstance(s.monitor.error, OutputError):
            print(f"scopewatch watch: error: {name}: {s.monitor.error}", file=sys.stderr)
            failed += 1
    return 1 if failed == len(sessions) or (failed and not many) else 0


def register(sub) -> None:
    p = sub.add_parser("analyze", help="analyse recorded videos into a CSV timeline and events",
                       description="Decode each VIDEO (any container/codec FFmpeg reads), analyse frames and write "
                                   "a CSV timeline (one row per analysed frame) and an events JSON, then print a "
                                   "summary. Default sampling is 5 frames per second of video: episodes are "
                                   "resolved to 0.2 s while a long recording is analysed at decoding speed. "
                                   "Exit status 1 when a video breaks off midway (its CSV keeps every row before).")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (with --out: also folders, searched recursively)")
    p.add_argument("--csv", help="timeline CSV (default VIDEO.scopewatch.csv beside each video)")
    p.add_argument("--events", help="events JSON (default VIDEO.scopewatch.events.json)")
    p.add_argument("--out", type=Path, help="archive mode: write every video's CSV and events into this folder, plus "
                                            "archive_summary.csv (one row per video); videos already complete there "
                                            "are skipped, a video that cannot be read fails alone")
    p.add_argument("--ray", action="store_true",
                   help="archive mode on Ray (pip install -e '.[ray]'): one task per video, long videos cut into "
                        "chunks; a local Ray instance is started unless --ray-address names a cluster")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="with --ray: 'auto' joins the cluster running on this machine, HOST:PORT or ray://HOST:PORT "
                        "joins that one")
    p.add_argument("--chunk-s", type=positive(float), default=300.0,
                   help="archive mode: videos longer than this are cut into chunks of this many seconds (default 300)")
    add_sampling_args(p, "recorded")
    p.add_argument("--realtime", action="store_true", help="play the file at its own pace, as a live feed")
    add_monitor_args(p)
    add_reference_args(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_analyze)

    p = sub.add_parser("watch", help="monitor live feeds (stream URLs, devices or files played live)",
                       description="Watch one SOURCE or several at once (each with its own decoder, buffer, "
                                   "timeline and files; one inference worker batches them all, visiting feeds "
                                   "in turn so a slow or dead feed never starves the others). A SOURCE is "
                                   "rtsp://, rtmp://, http(s):// (HLS), udp://, rtp://, srt://, tcp:// (MPEG-TS), "
                                   "/dev/videoN, a file (with --realtime), or synthetic:SECONDS. Shows a live "
                                   "status line; Ctrl-C stops cleanly with files closed. A dropped stream is "
                                   "reopened with back-off and the gap is recorded.")
    p.add_argument("sources", metavar="SOURCE", nargs="+",
                   help="one feed, or several watched at once by one shared inference worker")
    p.add_argument("--csv", help="timeline CSV to write (one source)")
    p.add_argument("--events", help="events JSON to write (one source)")
    p.add_argument("--out-dir", type=Path, help="write FEED.scopewatch.csv and .events.json here for every source")
    p.add_argument("--duration", type=positive(float), help="stop after this many seconds")
    add_sampling_args(p, "live")
    p.add_argument("--realtime", action="store_true", help="for a file: play it at its own pace")
    p.add_argument("--rtsp-transport", choices=("tcp", "udp"), help="RTSP transport (default tcp)")
    p.add_argument("--timeout", type=positive(float), help="seconds to wait when opening a stream (default 10)")
    add_monitor_args(p)
    add_reference_args(p)
    add_metrics_args(p)
    p.set_defaults(run=cmd_watch)
