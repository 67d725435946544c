"""`scopewatch check-real SPLIT`: a checkpoint on the real footage of one split (`val` may choose
thresholds and checkpoints; `eval` is only reported), through the monitor itself: clips are
analysed as `scopewatch analyze` analyses them (same sampling, decision and events), frames by the
same predictor and decision."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from apps.cli.common import UsageError, add_config_arg, add_device_arg, add_weights_args, predictor_for, run_config


def observe_clip(path: Path, item, predictor, cfg):
    from monitor.session import Session
    from monitor.sources import FileSource
    from training.realcheck import Observed

    end = item.end_s if item.end_s is not None else float("inf")
    frames, times = [], []

    def sink(result, image):
        if result.analysed and item.start_s <= result.time_s < end:
            frames.append(cfg.decision.alarms(result.probabilities))
            times.append(result.time_s)

    source = FileSource(path)
    source.open()
    session = Session(source, predictor, cfg)
    session.monitor.sinks.append(sink)
    session.run()
    events = [(e.name, e.start_s, e.end_s) for e in session.events
              if e.kind == "distortion" and e.end_s > item.start_s and e.start_s < end]
    seconds = (times[-1] - times[0]) if len(times) > 1 else 0.0
    return Observed(frames, seconds, events)


def cmd_check_real(args) -> int:
    from tqdm import tqdm
    from training.content import read_image
    from training.realcheck import Observed, expand, is_image, items, markdown, score

    if not args.data.is_dir():
        raise UsageError(f"--data: {args.data}: no such folder (the real footage is not on this machine)")
    cfg = run_config(args, "recorded")
    predictor = predictor_for(cfg)
    report = {"split": args.split, "data": str(args.data), "weights": str(cfg.model.weights or "shipped"),
              "sampling_fps": cfg.sampling.fps, "items": []}
    for item in tqdm(items(args.split), desc=f"real footage ({args.split})", unit="item", disable=args.quiet):
        observed = []
        for path in expand(item, args.data):
            if is_image(path):
                [p] = predictor.predict([read_image(path)])
                observed.append((path, Observed([cfg.decision.alarms(p.probabilities)], 0.0, [])))
            else:
                observed.append((path, observe_clip(path, item, predictor, cfg)))
        report["items"].append(score(item, observed, predictor.tasks))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"real_{args.split}"
    Path(f"{stem}.json").write_text(json.dumps(report, indent=1))
    Path(f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)
    return 0


def register(sub) -> None:
    from training.realcheck import DEFAULT_DATA
    p = sub.add_parser("check-real", help="a checkpoint on the real footage of one split (val or eval)",
                       description="Analyse the real surgical footage of SPLIT through the monitor: on clean "
                                   "items the frames with an alarm and the false events per 10 minutes, on "
                                   "degraded items the recall of the distortion a person sees. `val` may be used "
                                   "to choose thresholds and checkpoints; `eval` is reported only, never tuned on. "
                                   "Writes OUT/real_SPLIT.json and .md.")
    p.add_argument("split", choices=("val", "eval"))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"the real footage (default {DEFAULT_DATA})")
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default reports)")
    add_weights_args(p)
    add_device_arg(p)
    add_config_arg(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_check_real)
