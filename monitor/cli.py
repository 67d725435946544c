"""`scopewatch`: the command line. Each subcommand parses and checks its arguments here, then calls
the package that does the work. A user mistake ends with one line on stderr and exit status 2,
never a traceback."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

log = logging.getLogger("scopewatch")


class UsageError(Exception):
    """A mistake in what the user asked for (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; one clear line is enough
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got {text!r}") from None
    if not (64 <= w <= 4096 and 64 <= h <= 4096) or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size must be even numbers between 64 and 4096, got {text!r}")
    return w, h


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value
    return parse


def _tasks(text: str) -> tuple[str, ...]:
    from model.tasks import validate_tasks
    try:
        return validate_tasks(t.strip() for t in text.split(",") if t.strip())
    except (KeyError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e).strip("'\"")) from None


def _contents(specs: list[str], size, seed: int):
    from training.content import open_content
    try:
        return [c for spec in specs for c in open_content(spec, size, seed=seed)]
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--content: {e}") from None


def cmd_synth(args) -> int:
    from training.synth import synthesize
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} exists and is not a folder")
    contents = _contents(args.content or ["procedural"], args.size, args.seed)
    labels = synthesize(args.out, contents, args.clips, args.seconds, args.fps, args.tasks, args.seed,
                        progress=not args.quiet)
    print(f"wrote {args.clips} clips and {labels}")
    return 0


def _demo_clip(out: Path, seconds: float) -> Path:
    import numpy as np
    from training.compose import Recipe
    from training.scene import ProceduralScene
    from training.synth import demo_episodes, render_clip

    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.mp4"
    episodes = demo_episodes(seconds)
    print(f"synthesising {path}: {seconds:g} s of a procedural laparoscopic scene, 640x360 at 25 fps, with:")
    for e in episodes:
        print(f"  {e.start:6.1f}-{e.end:6.1f} s  {e.name:<20} severity {e.severity:.2f}")
    render_clip(path, ProceduralScene(7, (640, 360)), Recipe.sample(episodes, np.random.default_rng(7)), seconds, 25)
    return path


def _loopback(host: str) -> bool:
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args, sources: list[str]) -> int:
    """Serve the dashboard with `sources` started (each a tile; the first is the one shown)."""
    from monitor.config import ScopeWatchConfig
    from monitor.sources import SourceError
    from apps.dashboard import CSS, DASHBOARD_JS, build_app

    auth = args.auth or os.environ.get("SCOPEWATCH_AUTH")
    if not _loopback(args.host) and not auth:
        raise UsageError(f"refusing to serve on {args.host} without --auth USER:PASS (or SCOPEWATCH_AUTH): "
                         "a surgical feed must not be open to the network")
    if auth and ":" not in auth:
        raise UsageError("--auth must look like USER:PASS")
    cfg = ScopeWatchConfig()
    cfg.source.realtime = True  # files in the live view play at their own pace
    cfg.sampling.fps = args.fps
    predictor = _predictor(args.weights, args.device)
    if args.allowed_dir is not None and not args.allowed_dir.is_dir():
        raise UsageError(f"--allowed-dir: {args.allowed_dir}: no such folder")
    app, hub = build_app(predictor, cfg, sources[0] if sources else "", args.allowed_dir, weights=args.weights)
    for uri in sources:
        try:
            hub.start(uri)
        except SourceError as e:
            raise UsageError(str(e)) from None
    app.queue(default_concurrency_limit=4)
    _, url, _ = app.launch(server_name=args.host, server_port=args.port, share=False, prevent_thread_lock=True,
                           auth=tuple(auth.split(":", 1)) if auth else None, inbrowser=False,
                           max_file_size=f"{args.max_upload_mb}mb", quiet=True, css=CSS, js=DASHBOARD_JS)
    print(f"ScopeWatch dashboard: {url}  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop_all()
        app.close()
    return 0


def cmd_dashboard(args) -> int:
    return _serve(args, args.sources)


def cmd_demo(args) -> int:
    """The built-in sample (a procedural scene with scheduled episodes) played as a live feed with
    the shipped weights: in the dashboard, or headless with --no-browser."""
    from monitor.config import ScopeWatchConfig
    from monitor.session import Session
    from monitor.sources import FileSource

    path = _demo_clip(args.out, args.seconds)
    if not args.no_browser:
        return _serve(args, [str(path)])
    cfg = ScopeWatchConfig()
    cfg.sampling.fps = args.fps
    source = FileSource(path, realtime=True)
    source.open()
    csv_path = args.csv or args.out / "demo.scopewatch.csv"
    session = Session(source, _predictor(args.weights, args.device), cfg, csv_path, args.out / "demo.scopewatch.events.json")
    session.run(args.duration)
    print(f"\nScopeWatch found ({csv_path}):")
    for e in session.events:
        print(f"  {e.start_s:6.1f}-{e.end_s:6.1f} s  {e.name:<20} peak {e.peak:.2f}")
    print(session.summary_text())
    return 0


def _add_server_args(p):
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1; others need --auth)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--auth", help="USER:PASS required to open the dashboard (or set SCOPEWATCH_AUTH)")
    p.add_argument("--allowed-dir", type=Path, help="folder whose videos the Recorded tab may open")
    p.add_argument("--max-upload-mb", type=_positive(int), default=500, help="largest upload accepted (default 500 MB)")
    p.add_argument("--fps", type=_positive(float), default=None, help="analysed frames per second (default every frame)")


def cmd_contact_sheet(args) -> int:
    from training.content import read_image
    from training.contact_sheet import write_contact_sheet
    from training.scene import ProceduralScene
    if args.frame:
        try:
            frame = read_image(args.frame)
        except ValueError as e:
            raise UsageError(str(e)) from None
    else:
        frame = ProceduralScene(0, (640, 360)).frame_at(0)
    try:
        path = write_contact_sheet(frame, args.out, seed=args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {path}")
    return 0


def cmd_train(args) -> int:
    from dataclasses import replace
    from training.trainer import TrainConfig, train
    try:
        cfg = TrainConfig.from_json(args.config) if args.config else TrainConfig()
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"--config: {e}") from None
    overrides = {k: getattr(args, k) for k in ("model", "steps", "batch_size", "lr", "nss_weight", "directional_weight",
                                               "scale_ratios", "scene_shading", "severity_skew", "ema_decay", "workers",
                                               "device", "precision", "compile", "seed", "val_every")
                 if getattr(args, k) is not None}
    if args.out is not None:
        overrides["out"] = str(args.out)
    if args.content:
        overrides["train_content"] = tuple(args.content)
    if args.tasks is not None:
        overrides["tasks"] = args.tasks
    cfg = replace(cfg, **overrides)
    from model.factory import MODELS
    if cfg.model not in MODELS:
        raise UsageError(MODELS.unknown_message(cfg.model))
    try:
        best = train(cfg, resume=args.resume, progress=not args.quiet)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"best checkpoint: {best}")
    return 0


def _predictor(weights, device):
    from model import CheckpointError, load_predictor
    try:
        return load_predictor(weights, device)
    except (CheckpointError, ValueError) as e:
        raise UsageError(str(e)) from None


def cmd_evaluate(args) -> int:
    from training.evaluate import evaluate, markdown, write_report
    from training.labels import LabelError
    if not args.data.exists():
        raise UsageError(f"{args.data}: no such folder")
    predictor = _predictor(args.weights, args.device)
    try:
        report = evaluate(predictor, args.data, args.frames_per_clip, progress=not args.quiet)
    except (LabelError, ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    out = args.out or (args.data if args.data.is_dir() else args.data.parent) / "evaluation"
    j, m = write_report(report, out)
    print(markdown(report))
    print(f"wrote {j} and {m}")
    return 0


def cmd_calibrate(args) -> int:
    from model import CheckpointError
    from training.calibrate import calibrate
    from training.labels import LabelError
    if not args.data.exists():
        raise UsageError(f"{args.data}: no such folder")
    try:
        record = calibrate(args.weights, args.data, args.out, args.frames_per_clip, progress=not args.quiet)
    except (CheckpointError, LabelError, ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    print(f"decision layer fitted on {record['clips']} clips of {args.data} (folded into the presence head; "
          "the checkpoint decides at 0.5):")
    print(f"  {'distortion':<20} {'own logit x':>11} {'directional x':>13} {'shift':>6}")
    for j, task in enumerate(record["tasks"]):
        print(f"  {task:<20} {record['presence_mix'][j][j]:>11.2f} {record['directional_mix'][j][j]:>13.2f} "
              f"{record['shift'][j]:>6.2f}")
    before, after = record["before"], record["after"]
    print(f"on those clips: micro-F1 {before['micro_f1']:.3f} -> {after['micro_f1']:.3f}, "
          f"exact match {before['exact_match']:.3f} -> {after['exact_match']:.3f}")
    print(f"wrote {args.out}")
    return 0


def _monitor_config(args):
    from monitor.config import ScopeWatchConfig
    cfg = ScopeWatchConfig()
    cfg.sampling.fps = None if args.every_frame else args.fps
    cfg.source.realtime = getattr(args, "realtime", False)
    cfg.model.weights, cfg.model.device = args.weights, args.device
    cfg.output.webhook = args.webhook
    if getattr(args, "rtsp_transport", None):
        cfg.source.rtsp_transport = args.rtsp_transport
    if getattr(args, "timeout", None):
        cfg.source.open_timeout_s = args.timeout
    return cfg


def _open_source(uri, cfg):
    from monitor.sources import SourceError, open_source
    try:
        source = open_source(uri, cfg.source)
        source.open()
        return source
    except SourceError as e:
        raise UsageError(str(e)) from None


def _sidecar(video: str, given, suffix: str, many: bool, option: str) -> Path:
    if given is not None:
        if many:
            raise UsageError(f"{option} names one file: give one video, or leave it out to write beside each video")
        return Path(given)
    return Path(f"{video}.scopewatch{suffix}")


def _check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists() or not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write {path} (folder missing or read-only); choose another place with --csv/--events")


def cmd_archive(args, cfg) -> int:
    from tqdm import tqdm
    from monitor.archive import ArchiveError, analyse_archive, find_videos, local_executor, ray_executor

    if args.csv or args.events or args.realtime:
        raise UsageError("--csv/--events/--realtime do not apply to archive mode (--out/--ray)")
    if args.ray and args.out is None:
        raise UsageError("--ray needs --out DIR (where every video's files and the summary go)")
    try:
        videos = find_videos(args.videos)
    except ArchiveError as e:
        raise UsageError(str(e)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    _check_writable(args.out / "archive_summary.csv")
    predictor = _predictor(args.weights, args.device)
    weights = str(args.weights) if args.weights else None
    if args.ray:
        import importlib.util
        if importlib.util.find_spec("ray") is None:  # an optional extra
            raise UsageError("--ray needs Ray: pip install -e '.[ray]'")
        cfg.model.threads = 1  # one core per task: Ray runs as many tasks as the cluster has cores
        try:
            executor = ray_executor(None if args.ray == "local" else args.ray, cfg, weights, args.device)
        except ConnectionError as e:
            raise UsageError(f"cannot reach the Ray cluster at {args.ray}: {e}") from None
    else:
        executor = local_executor(cfg, predictor)
    with tqdm(desc="archive", unit="chunk", disable=args.quiet) as bar:
        rows = analyse_archive(videos, args.out, cfg, predictor, executor, args.chunk_s, bar)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} videos analysed -> {args.out}/archive_summary.csv")
    for r in failed:
        print(f"scopewatch analyze: error: {r['error'] if r['video'] in r['error'] else r['video'] + ': ' + r['error']}", file=sys.stderr)
    return 1 if failed else 0


def cmd_analyze(args) -> int:
    from tqdm import tqdm
    from monitor.session import Session

    cfg = _monitor_config(args)
    if args.out is not None or args.ray:
        return cmd_archive(args, cfg)
    many = len(args.videos) > 1
    jobs = []
    for video in args.videos:  # check everything before analysing anything
        source = _open_source(video, cfg)
        csv_path = _sidecar(video, args.csv, ".csv", many, "--csv")
        events_path = _sidecar(video, args.events, ".events.json", many, "--events")
        _check_writable(csv_path)
        _check_writable(events_path)
        jobs.append((video, source, csv_path, events_path))
    predictor = _predictor(args.weights, args.device)
    failures = 0
    for video, source, csv_path, events_path in jobs:
        session = Session(source, predictor, cfg, csv_path, events_path)
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
        print(f"\n{video}: {m.analysed} frames analysed of {m.decoded} decoded -> {csv_path}, {events_path}")
        print(session.summary_text())
        if session.monitor.failed or session.monitor.error:
            failures += 1
            reason = session.monitor.failed or session.monitor.error
            print(f"scopewatch analyze: error: {video}: {reason}; {csv_path} keeps the "
                  f"{session.timeline.frames_analysed} frames analysed before it", file=sys.stderr)
    return 1 if failures else 0


def _feed_stem(uri: str) -> str:
    """A file name for a feed's outputs: the source with everything but letters and digits as '_'."""
    return "".join(c if c.isalnum() else "_" for c in uri).strip("_")[-60:] or "feed"


def cmd_watch(args) -> int:
    from monitor.pipeline import InferenceWorker
    from monitor.session import Session, run_sessions

    cfg = _monitor_config(args)
    many = len(args.sources) > 1
    if many and (args.csv or args.events):
        raise UsageError("--csv/--events name one feed's files: with several sources use --out-dir")
    outputs = []
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    for uri in args.sources:
        if args.out_dir is not None:
            stem = args.out_dir / _feed_stem(uri)
            outputs.append((Path(f"{stem}.scopewatch.csv"), Path(f"{stem}.scopewatch.events.json")))
        else:
            outputs.append((args.csv, args.events))
    for paths in outputs:
        for path in paths:
            if path is not None:
                _check_writable(Path(path))
    if len({str(p) for p, _ in outputs if p}) < len([p for p, _ in outputs if p]):
        raise UsageError("two sources would write the same files: give each feed a distinct address")
    sources = [_open_source(uri, cfg) for uri in args.sources]
    predictor = _predictor(args.weights, args.device)
    # One inference worker for every feed: frames of all feeds are batched into one model call.
    worker = InferenceWorker(predictor, cfg.buffer.batch_size, cfg.model.threads)
    sessions = [Session(src, predictor, cfg, csv, events, worker=worker) for src, (csv, events) in zip(sources, outputs)]
    names = [_feed_stem(uri) for uri in args.sources]
    tty = sys.stderr.isatty()

    def feed_status(m, name=""):
        r = m.last_result
        present = ", ".join(f"{t} {p:.2f}" for t, p in (r.probabilities.items() if r and r.analysed else ())
                            if p >= 0.5) or "none"
        q = f"{r.quality:.0f}" if r and r.quality is not None else "-"
        lat = m.latency_percentile(50)
        return (f"{name}[{m.state.value}] t={m.last_time_s:7.1f}s quality {q:>3} | distortions: {present} | "
                f"{m.inference_fps:4.1f} fps, latency {lat or 0:5.0f} ms, dropped {m.dropped}")

    ticks = [0]

    def status():
        if many:  # a block of one line per feed every 5 s
            ticks[0] += 1
            if ticks[0] % 10 == 1:
                lines = [feed_status(s.monitor.metrics, f"{name}: ") for name, s in zip(names, sessions)]
                print("\n".join(lines), file=sys.stderr, flush=True)
            return
        line = feed_status(sessions[0].monitor.metrics)
        print(("\r" + line.ljust(120)) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        run_sessions(sessions, args.duration, status)
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
    finally:
        worker.stop()
    if tty and not many:
        print(file=sys.stderr)
    failed = 0
    for name, s in zip(names, sessions):
        if many:
            print(f"== {name}")
        print(s.summary_text())
        if s.monitor.failed and not s.timeline.frames_analysed:
            print(f"scopewatch watch: error: {name}: {s.monitor.failed}", file=sys.stderr)
            failed += 1
    return 1 if failed == len(sessions) or (failed and not many) else 0


def _add_model_args(p):
    p.add_argument("--weights", type=Path, help="checkpoint (default: the shipped weights)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs (default auto: CUDA when present)")
    p.add_argument("--webhook", help="POST each event as JSON to this URL")


def _add_sampling_args(p, default_fps):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fps", type=_positive(float), default=default_fps,
                   help=f"analysed frames per second of media (default {default_fps or 'every frame'})")
    g.add_argument("--every-frame", action="store_true", help="analyse every decoded frame")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scopewatch", description="Real-time distortion and quality monitor for surgical video.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("synth", help="synthesise distorted training/test clips with labels",
                       description="Write H.264 clips of clean content distorted singly and in combination "
                                   "(LVQ-style: 5 distortions x 4 levels) and DIR/labels.csv with one row per "
                                   "clip: file, one 0..4 level column per distortion, mean FR quality (0..100).")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--clips", type=_positive(int), default=40, help="number of clips (default 40)")
    p.add_argument("--seconds", type=_positive(float), default=4.0, help="length of each clip (default 4)")
    p.add_argument("--fps", type=_positive(int), default=25, help="frame rate (default 25)")
    p.add_argument("--size", type=_size, default=(640, 360), help="frame size WxH (default 640x360)")
    p.add_argument("--content", action="append",
                   help="clean content, repeatable: 'procedural[:N]' or 'procedural:A-B' (built-in "
                        "generator, default), a folder of images/videos ('folder[a:b]' for a slice of its "
                        "sorted files), or one file ('video.mp4@s:e' for seconds s..e)")
    p.add_argument("--tasks", type=_tasks, default=None,
                   help="comma-separated distortions to synthesise (default: the five surgical ones)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same clips)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_synth)

    p = sub.add_parser("train", help="train the multi-task model on synthesised data",
                       description="Train on distortions synthesised on the fly from clean content; validate "
                                   "on content training never sees; keep the best checkpoint (best.pt) and a "
                                   "resumable last.pt in --out. Defaults: training.trainer.TrainConfig.")
    p.add_argument("--config", type=Path, help="JSON file of TrainConfig settings (flags override it)")
    p.add_argument("--out", type=Path, help="run folder (default runs/default)")
    p.add_argument("--content", action="append", help="training content spec (repeatable; replaces the default)")
    p.add_argument("--model", help="architecture (see model.factory.list_models)")
    p.add_argument("--tasks", type=_tasks, default=None, help="comma-separated tasks (heads)")
    p.add_argument("--steps", type=_positive(int), help="optimizer steps")
    p.add_argument("--batch-size", type=_positive(int), help="samples per step")
    p.add_argument("--lr", type=_positive(float), help="peak learning rate")
    p.add_argument("--nss-weight", type=float, help="weight of the NSS auxiliary loss (0 = no auxiliary task)")
    p.add_argument("--directional-weight", type=float,
                   help="weight of the presence loss on the directional-energy pathway alone (0 = none)")
    p.add_argument("--no-scale-ratios", dest="scale_ratios", action="store_false", default=None,
                   help="directional energies without their fine/coarse ratios (as synth_v8 and earlier models)")
    p.add_argument("--scene-shading", type=float,
                   help="share of clean training frames shaded by the scene's own relief, labelled clean (0 = none)")
    p.add_argument("--severity-skew", type=float,
                   help="exponent of the training severities' distribution: 1 uniform, above 1 more faint distortions")
    p.add_argument("--ema-decay", type=float, help="decay of the weight average that is validated and saved (0 = raw weights)")
    p.add_argument("--workers", type=int, help="data-synthesis worker processes")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the model trains (default auto: CUDA when present)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="arithmetic of the training steps (default auto: bfloat16 mixed precision where the "
                        "CPU or GPU computes it natively, else float32)")
    p.add_argument("--no-compile", dest="compile", action="store_false", default=None,
                   help="train eager instead of through torch.compile (compiling takes ~40 s once; here it "
                        "made steps 19%% faster in float32, 32%% in bfloat16)")
    p.add_argument("--val-every", type=_positive(int), help="steps between validations")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("evaluate", help="score a checkpoint on a labelled clip folder",
                       description="Analyse every clip of DATA (a `scopewatch synth` folder or an LVQ-style "
                                   "folder) and report the ICIP 2020 metrics (micro-F1, exact match), "
                                   "per-distortion precision/recall/F1, severity accuracy, quality SROCC/PLCC "
                                   "and throughput, as JSON and Markdown.")
    p.add_argument("data", type=Path, help="folder with labels.csv (or an LVQ labels CSV) and its clips")
    p.add_argument("--weights", type=Path, help="checkpoint (default: the shipped weights)")
    p.add_argument("--frames-per-clip", type=_positive(int), default=8, help="frames analysed per clip (default 8)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs")
    p.add_argument("--out", type=Path, help="report folder (default DATA/evaluation)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("calibrate", help="fit the presence decisions' last layer on validation clips",
                       description="Analyse every clip of DATA (a `scopewatch synth` folder made from validation "
                                   "content, never test content), fit a decision layer over the presence logits "
                                   "and the directional pathway's logits (mixing across distortions, with a shift "
                                   "each: faint distortions are lifted over 0.5) to the clips' labels, fold it into "
                                   "the presence head so the checkpoint decides at 0.5, and write the calibrated "
                                   "checkpoint to --out. The printed table gives each distortion's own weights "
                                   "and shift.")
    p.add_argument("data", type=Path, help="folder with labels.csv and its clips (validation content)")
    p.add_argument("--weights", type=Path, required=True, help="checkpoint to calibrate (the trainer's best.pt)")
    p.add_argument("--out", type=Path, required=True, help="calibrated checkpoint to write")
    p.add_argument("--frames-per-clip", type=_positive(int), default=8, help="frames analysed per clip (default 8)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_calibrate)

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
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="archive mode on Ray (pip install -e '.[ray]'): one task per video, long videos cut into "
                        "chunks; without ADDRESS a local Ray instance is started, 'auto' joins the cluster running "
                        "on this machine, HOST:PORT or ray://HOST:PORT joins that one")
    p.add_argument("--chunk-s", type=_positive(float), default=300.0,
                   help="archive mode: videos longer than this are cut into chunks of this many seconds (default 300)")
    _add_sampling_args(p, 5.0)
    p.add_argument("--realtime", action="store_true", help="play the file at its own pace, as a live feed")
    _add_model_args(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_analyze)

    p = sub.add_parser("watch", help="monitor live feeds (stream URLs, devices or files played live)",
                       description="Watch one SOURCE or several at once (each with its own decoder, buffer, "
                                   "timeline and files; one inference worker batches them all, visiting feeds "
                                   "in turn so a slow or dead feed never starves the others). A SOURCE is rtsp://, rtmp://, http(s):// (HLS), udp://, rtp://, srt://, "
                                   "tcp:// (MPEG-TS), /dev/videoN, a file (with --realtime), or synthetic:SECONDS. "
                                   "Shows a live status line; Ctrl-C stops cleanly with files closed. A dropped "
                                   "stream is reopened with back-off and the gap is recorded.")
    p.add_argument("sources", metavar="SOURCE", nargs="+",
                   help="one feed, or several watched at once by one shared inference worker")
    p.add_argument("--csv", help="timeline CSV to write (one source)")
    p.add_argument("--events", help="events JSON to write (one source)")
    p.add_argument("--out-dir", type=Path, help="write FEED.scopewatch.csv and .events.json here for every source")
    p.add_argument("--duration", type=_positive(float), help="stop after this many seconds")
    _add_sampling_args(p, None)
    p.add_argument("--realtime", action="store_true", help="for a file: play it at its own pace")
    p.add_argument("--rtsp-transport", choices=("tcp", "udp"), help="RTSP transport (default tcp)")
    p.add_argument("--timeout", type=_positive(float), help="seconds to wait when opening a stream (default 10)")
    _add_model_args(p)
    p.set_defaults(run=cmd_watch)

    p = sub.add_parser("contact-sheet", help="one frame at every distortion and level, as an image",
                       description="Render FRAME (default: a procedural scene) with every distortion at "
                                   "levels 1..4 into one PNG, each tile labelled with its FR quality.")
    p.add_argument("frame", nargs="?", type=Path, help="an image file (PNG/JPEG)")
    p.add_argument("--out", type=Path, default=Path("out/contact_sheet.png"), help="output image")
    p.add_argument("--seed", type=int, default=0, help="random seed for the distortions' choices")
    p.set_defaults(run=cmd_contact_sheet)

    p = sub.add_parser("demo", help="the dashboard on the built-in sample feed",
                       description="Synthesise the built-in sample (a procedural laparoscopic scene with scheduled "
                                   "smoke, defocus, noise, motion blur and light episodes), play it as a live feed "
                                   "with the shipped weights and open the dashboard on it (prints the URL). With "
                                   "--no-browser it runs headless and prints the episodes found.")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--seconds", type=_positive(float), default=60.0, help="length of the sample (default 60)")
    p.add_argument("--no-browser", action="store_true", help="no dashboard: monitor headless and print a summary")
    p.add_argument("--duration", type=_positive(float), help="with --no-browser: stop after this many seconds")
    p.add_argument("--csv", type=Path, help="with --no-browser: timeline CSV (default OUT/demo.scopewatch.csv)")
    _add_server_args(p)
    _add_model_args(p)
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("dashboard", help="the web dashboard (live feeds, recordings, CSV export)",
                       description="Serve the dashboard: a Live tab (start/stop a source, current frame, charts, "
                                   "badges, events), a Recorded tab (upload or choose a video, analyse, download the "
                                   "CSV and events) and Settings. Binds 127.0.0.1 unless --host and --auth are given.")
    p.add_argument("sources", metavar="SOURCE", nargs="*", help="feeds to start watching right away (each a tile)")
    _add_server_args(p)
    _add_model_args(p)
    p.set_defaults(run=cmd_dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "tasks", False) is None and args.command == "synth":
        from model.tasks import DEFAULT_TASKS
        args.tasks = DEFAULT_TASKS
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.run(args)
    except UsageError as e:
        print(f"scopewatch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scopewatch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
