"""What the command families share: the one-line error convention, argument types, the argument
groups several commands take (declared once here), and the run's config, predictor and sources."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from monitor.config import ConfigError, ScopeWatchConfig, build_config, mode_default


class UsageError(Exception):
    """A mistake in what the user asked for (exit status 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; one clear line is enough
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got {text!r}") from None
    if not (64 <= w <= 4096 and 64 <= h <= 4096) or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size must be even numbers between 64 and 4096, got {text!r}")
    return w, h


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
        return value
    return parse


def task_list(text: str) -> tuple[str, ...]:
    from model.tasks import validate_tasks
    try:
        return validate_tasks(t.strip() for t in text.split(",") if t.strip())
    except (KeyError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e).strip("'\"")) from None


# -- argument groups shared by several commands ---------------------------------------------------
DEVICES = ("auto", "cpu", "cuda")


def add_metrics_args(p) -> None:
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on PORT (/metrics: frames, drops, latency, feed state, alarms)")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="address the metrics listen on (default 127.0.0.1; 0.0.0.0 for a scraper elsewhere)")


def start_metrics(args, sessions, weights) -> object | None:
    """The metrics endpoint of `--metrics-port`, or a one-line error when it cannot listen."""
    if args.metrics_port is None:
        return None
    from apps.version import scopewatch_version
    from model.factory import weights_label
    from monitor.outputs.prometheus import serve_metrics
    if not 0 < args.metrics_port < 65536:
        raise UsageError(f"--metrics-port must be 1-65535, got {args.metrics_port}")
    try:
        return serve_metrics(args.metrics_port, args.metrics_host, sessions, scopewatch_version(), weights_label(weights))
    except OSError as e:
        raise UsageError(f"--metrics-port {args.metrics_port}: cannot listen on {args.metrics_host} "
                         f"({e.strerror or e})") from None


def add_weights_args(p, required: bool = False) -> None:
    p.add_argument("--weights", type=Path, required=required,
                   help="checkpoint (the trainer's best.pt)" if required else "checkpoint (default: the shipped weights)")


def add_device_arg(p, precision: str = "auto") -> None:
    """--device, and --precision whose default is `precision` (auto: the monitor's setting)."""
    p.add_argument("--device", choices=DEVICES, help="where the model runs (default auto: CUDA when present)")
    from model.predict import PRECISIONS
    p.add_argument("--precision", choices=PRECISIONS,
                   help=f"the model's arithmetic (default {precision}" +
                        (": bfloat16 on a CPU that does it natively, else float32)" if precision == "auto" else ")"))


def add_monitor_args(p) -> None:
    """The model and outputs of a monitoring run, and its settings file."""
    add_weights_args(p)
    add_device_arg(p)
    p.add_argument("--webhook", help="POST each event as JSON to this URL")
    add_config_arg(p)


def add_config_arg(p) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="JSON settings ({section: {setting: value}}, sections of monitor.config.ScopeWatchConfig: "
                        "source, sampling, buffer, model, events, output, timeline, decision); flags override it")


def reference_spec(text: str):
    """--reference: START:END seconds of the feed, or a saved reference file."""
    if text.lower().endswith(".json"):
        return Path(text)
    try:
        start, end = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:END in seconds (e.g. 4:7) or a saved .json, got {text!r}") from None
    if not 0 <= start < end:
        raise argparse.ArgumentTypeError(f"expected 0 <= START < END, got {text!r}")
    return start, end


def add_reference_args(p) -> None:
    p.add_argument("--reference", type=reference_spec, metavar="START:END|FILE",
                   help="the feed's normal: alarms are raised relative to what these seconds of it show (saved as "
                        "FEED.scopewatch.reference.json beside the outputs), or to a saved reference; a window the "
                        "model already calls distorted is refused")
    p.add_argument("--force-reference", action="store_true", help="take the --reference window even if it looks distorted")


def reference_for(args, decision, feed: str, save_to: Path):
    """The ReferenceWindow to take while `feed` runs, or None (no --reference, or a saved one,
    which is installed in `decision` now)."""
    from model.decision import Reference
    from monitor.reference import ReferenceWindow
    if args.reference is None:
        return None
    if isinstance(args.reference, Path):
        try:
            ref = Reference.load(args.reference)
        except ValueError as e:
            raise UsageError(f"--reference: {e}") from None
        decision.references[feed] = ref
        print(f"{feed}: alarms relative to the {ref.describe()} ({args.reference})", file=sys.stderr)
        return None
    check_writable(save_to)
    start, end = args.reference
    return ReferenceWindow(decision, feed, start, end, args.force_reference, save_to, os.environ.get("USER", ""))


def add_sampling_args(p, mode: str) -> None:
    default = mode_default(mode, "sampling.fps")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fps", type=positive(float),
                   help=f"analysed frames per second of media (default {default or 'every frame'})")
    g.add_argument("--every-frame", action="store_true", help="analyse every decoded frame")


def add_clip_data_args(p) -> None:
    """A labelled clip folder and how much of each clip is analysed (evaluate, calibrate)."""
    p.add_argument("--frames-per-clip", type=positive(int), default=8, help="frames analysed per clip (default 8)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


# -- what a run is built from ----------------------------------------------------------------------
def run_config(args, mode: str, **given) -> ScopeWatchConfig:
    """The run's one config: `mode`'s defaults, then --config FILE, then the flags given (`given`:
    dotted settings the caller read off its own flags; None values were not given)."""
    cli = {k: v for k, v in given.items() if v is not None}
    if getattr(args, "every_frame", False):
        cli["sampling.fps"] = None
    elif getattr(args, "fps", None) is not None:
        cli["sampling.fps"] = args.fps
    for key, attr in (("model.weights", "weights"), ("output.webhook", "webhook")):
        if getattr(args, attr, None) is not None:
            cli[key] = str(getattr(args, attr))
    for key, attr in (("model.device", "device"), ("model.precision", "precision")):
        if getattr(args, attr, None) is not None:
            cli[key] = getattr(args, attr)
    try:
        return build_config(mode, getattr(args, "config", None), cli)
    except ConfigError as e:
        raise UsageError(f"--config: {e}" if getattr(args, "config", None) else str(e)) from None


def load_predictor(weights, device, precision: str | None = None):
    from model import CheckpointError
    from model import load_predictor as load
    try:
        return load(weights, device or "auto", precision or "float32")
    except (CheckpointError, ValueError) as e:
        raise UsageError(str(e)) from None


def predictor_for(cfg: ScopeWatchConfig):
    return load_predictor(cfg.model.weights, cfg.model.device, cfg.model.precision)


def open_checked(uri: str, cfg: ScopeWatchConfig):
    """The opened source for `uri`, or a UsageError saying why it cannot be read."""
    from apps.feeds import open_feed
    from monitor.sources import SourceError
    try:
        source = open_feed(uri, cfg.source)
        source.open()
        return source
    except SourceError as e:
        raise UsageError(str(e)) from None


def check_writable(path: Path, what: str = "--csv/--events") -> None:
    """Refuse, before anything is decoded, an output that cannot be written as a file: a folder, a
    missing or read-only place, or one the system will not create a file in (/proc)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; {what} need a file name")
    existed = path.exists()
    try:
        with open(path, "a"):
            pass
    except OSError as e:
        raise UsageError(f"cannot write {path} ({e.strerror or type(e).__name__}); choose another place with {what}") from None
    if not existed:
        path.unlink(missing_ok=True)


def check_folder(path: Path, what: str) -> None:
    """Make the output folder `path`, or refuse with one line when it cannot be one."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path}: a file of that name is in the way; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{what} {path}: cannot make the folder ({e.strerror or type(e).__name__})") from None
