"""`scopewatch check-real SPLIT`: a checkpoint on the real footage of one split (`val` may choose
thresholds and checkpoints; `eval` is only reported), through the monitor itself: clips are
analysed as `scopewatch analyze` analyses them (same sampling, decision and events), frames by the
same predictor and decision."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from apps.cli.common import (UsageError, add_config_arg, add_device_arg, add_weights_args, predictor_for,
                             run_config)


def observe_clip(path: Path, item, predictor, cfg, worst=None):
    from monitor.session import Session
    from monitor.sources import FileSource
    from training.realcheck import Observed, wrongness

    end = item.end_s if item.end_s is not None else float("inf")
    frames, times, probabilities = [], [], []

    def sink(result, image):
        if result.analysed and item.start_s <= result.time_s < end:
            frames.append(cfg.decision.alarms(result.probabilities, result.source_id))
            times.append(result.time_s)
            probabilities.append(dict(result.probabilities))
            if worst is not None:
                wrong, why = wrongness(item, result.probabilities)
                worst.add(wrong, image, f"{path.name} {result.time_s:.1f}s: {why}")

    source = FileSource(path)
    source.open()
    session = Session(source, predictor, cfg)
    session.monitor.sinks.append(sink)
    session.run()
    events = [(e.name, e.start_s, e.end_s) for e in session.events
              if e.kind == "distortion" and e.end_s > item.start_s and e.start_s < end]
    seconds = (times[-1] - times[0]) if len(times) > 1 else 0.0
    return Observed(frames, seconds, events, probabilities)


def check_real(split: str, data: Path, predictor, cfg, progress: bool = True, worst=None, seen=None) -> dict:
    """The report of `split`'s real footage under `data`, analysed by `predictor` as `cfg` says;
    the frames it gets most wrong go to `worst` (a training.realcheck.WorstFrames) when given, and
    each item with what was observed on its files to the list `seen`."""
    from tqdm import tqdm
    from training.realcheck import Observed, expand, is_image, items, load_still, score, wrongness

    report = {"split": split, "data": str(data), "weights": str(cfg.model.weights or "shipped"),
              "sampling_fps": cfg.sampling.fps, "items": []}
    for item in tqdm(items(split), desc=f"real footage ({split})", unit="item", disable=not progress):
        observed = []
        for path in expand(item, data):
            if is_image(path):
                image = load_still(item, path)
                [p] = predictor.predict([image])
                observed.append((path, Observed([cfg.decision.alarms(p.probabilities)], 0.0, [], [p.probabilities])))
                if worst is not None:
                    wrong, why = wrongness(item, p.probabilities)
                    worst.add(wrong, image, f"{path.name}: {why}")
            else:
                observed.append((path, observe_clip(path, item, predictor, cfg, worst)))
        report["items"].append(score(item, observed, predictor.tasks))
        if seen is not None:
            seen.append((item, observed))
    return report


def check_data(data: Path) -> None:
    if not data.is_dir():
        raise UsageError(f"--data: {data}: no such folder (the real footage is not on this machine)")


def cmd_check_real(args) -> int:
    import cv2
    from training.realcheck import WorstFrames, compare_markdown, markdown

    check_data(args.data)
    before = None
    if args.before:
        try:
            before = json.loads(args.before.read_text())
            if before.get("split") != args.split:
                raise ValueError(f"it is a report of split {before.get('split')!r}, not {args.split!r}")
        except (OSError, ValueError) as e:
            raise UsageError(f"--before: {args.before}: {e}") from None
    cfg = run_config(args, "recorded")
    worst = WorstFrames(keep=args.worst) if args.worst else None
    report = check_real(args.split, args.data, predictor_for(cfg), cfg, progress=not args.quiet, worst=worst)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"real_{args.split}"
    sheet = worst.sheet() if worst else None
    if sheet is not None:
        cv2.imwrite(f"{stem}_worst.jpg", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        print(f"wrote {stem}_worst.jpg (the {len(worst.frames)} frames it gets most wrong)", file=sys.stderr)
    Path(f"{stem}.json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    if args.before:
        text += "\n" + compare_markdown(report, before)
    Path(f"{stem}.md").write_text(text)
    print(text)
    print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)
    return 0


def cmd_ship(args) -> int:
    import shutil
    from dataclasses import replace

    from model.factory import DEFAULT_MODEL, weights_path
    from training import provenance, shipping
    from training.evaluate import evaluate
    from training.labels import LabelError

    check_data(args.data)
    if not args.testset.is_dir():
        raise UsageError(f"--testset: {args.testset}: no such folder (make it with `make {args.testset}/labels.csv`)")
    for w in args.candidates:
        if not w.is_file():
            raise UsageError(f"{w}: no such checkpoint")
    cfg = run_config(args, "recorded")
    shipped = Path(args.shipped or weights_path(DEFAULT_MODEL))
    progress = not args.quiet

    def scored(weights: Path, reference: dict | None) -> tuple[dict, dict]:
        # float32 whatever the machine: the same checkpoint is chosen on every one
        run = replace(cfg, model=replace(cfg.model, weights=str(weights), precision="float32"))
        predictor = predictor_for(run)
        val = check_real("val", args.data, predictor, run, progress)
        synthetic = evaluate(predictor, args.testset, progress=progress)
        found = shipping.checks(val, synthetic, reference or synthetic)
        # The inference copy keeps its checkpoint's metadata: digest and machines without reading the file again.
        return ({"weights": str(weights), **provenance.of_checkpoint(predictor.model.checkpoint_meta),
                 "checks": shipping.as_dicts(found), "val": val,
                 "synthetic": {k: synthetic[k] for k in ("micro_f1", "exact_match")},
                 "against_shipped": shipping.synthetic_against(synthetic, reference) if reference else None,
                 "failed": sum(not c.passed for c in found), "rank": shipping.rank_key(val)}, synthetic)

    try:
        current, current_synthetic = scored(shipped, None) if shipped.is_file() else (None, None)
        candidates = [scored(w, current_synthetic)[0] for w in args.candidates]
    except (LabelError, OSError) as e:
        raise UsageError(str(e)) from None
    chosen, why = shipping.choose(candidates, current, args.fewer_failures)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"shipped": current, "candidates": candidates, "chosen": chosen, "why": why}
    (args.out / "shipping.json").write_text(json.dumps(record, indent=1))
    text = shipping.markdown(candidates, current, chosen, why)
    (args.out / "shipping.md").write_text(text)
    print(text)
    if chosen is None:
        print(f"nothing installed: {why}", file=sys.stderr)
        return 1
    if args.install:
        digest = next(c["sha256"] for c in candidates if c["weights"] == str(chosen))
        if digest and _weights_digest(args.install) == digest:
            # A rebuild carries its own metadata (creation time, run folder): copying it would
            # change the tracked file and nothing it computes.
            print(f"kept {args.install}: it already holds these weights ({digest[:12]}; {why})", file=sys.stderr)
            return 0
        args.install.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chosen, args.install)
        print(f"installed {chosen} as {args.install} ({why})", file=sys.stderr)
    return 0


def _weights_digest(path: Path) -> str | None:
    """The weight digest of the checkpoint at `path`; None where there is no readable one."""
    from model.checkpoint import CheckpointError, read_checkpoint

    try:
        return read_checkpoint(path).get("sha256")
    except CheckpointError:
        return None


def cmd_operating_points(args) -> int:
    import numpy as np
    from model import CheckpointError, load_checkpoint, save_checkpoint
    from model.predict import Predictor
    from training.operating import choose_all, fold, unfold

    if not 0.0 < args.lowest < 0.95:
        raise UsageError(f"--lowest {args.lowest}: a threshold between 0 and 0.95")
    check_data(args.data)
    try:
        model = load_checkpoint(args.weights)
    except (CheckpointError, OSError) as e:
        raise UsageError(str(e)) from None
    meta = model.checkpoint_meta
    if "operating_points" in meta["metrics"]:
        if not args.refit:
            raise UsageError(f"{args.weights}: its operating points are already fitted; fit those of the checkpoint "
                             "before, or take them out and fit anew with --refit")
        unfold(model)  # the new record replaces the old one in the metrics written below
    cfg = run_config(args, "recorded")
    seen: list = []
    check_real("val", args.data, Predictor(model, cfg.model.device), cfg, progress=not args.quiet, seen=seen)
    tasks = model.tasks
    clean = {t: np.array([p[t] for item, obs in seen if item.clean for _, o in obs for p in o.probabilities])
             for t in tasks}
    degraded = {t: [np.array([p[t] for _, o in obs for p in o.probabilities]) for item, obs in seen
                    if item.present == t and any(o.probabilities for _, o in obs)] for t in tasks}
    chosen = choose_all(tasks, clean, degraded, clean_budget=args.clean_budget, lowest=args.lowest)
    fold(model, {t: c["threshold"] for t, c in chosen.items()})
    record = {"data": str(args.data), "split": "val", "clean_frames": int(len(next(iter(clean.values())))),
              "clean_budget": args.clean_budget, "lowest": args.lowest, "chosen": chosen}
    save_checkpoint(model, args.out, training=meta["training"], metrics={**meta["metrics"], "operating_points": record},
                    extra=meta["extra"])
    print(f"operating points on the val footage ({record['clean_frames']} clean frames, at most "
          f"{args.clean_budget:.0%} of them alarmed per distortion):")
    for t, c in chosen.items():
        print(f"  {t:<20} {c['threshold']:.2f}  {c['how']}")
    print(f"wrote {args.out} (decides at 0.5 where {args.weights} decided at those thresholds)")
    return 0


def add_real_run_args(p) -> None:
    """What every command that runs the real footage through the monitor takes."""
    from training.realcheck import DEFAULT_DATA
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"the real footage (default {DEFAULT_DATA})")
    add_device_arg(p)
    add_config_arg(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def register(sub) -> None:
    p = sub.add_parser("check-real", help="a checkpoint on the real footage of one split (val or eval)",
                       description="Analyse the real surgical footage of SPLIT through the monitor: on clean "
                                   "items the frames with an alarm and the false events per 10 minutes, on "
                                   "degraded items the recall of the distortion a person sees. `val` may be used "
                                   "to choose thresholds and checkpoints; `eval` is reported only, never tuned on. "
                                   "Writes OUT/real_SPLIT.json and .md.")
    p.add_argument("split", choices=("val", "eval"))
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default reports)")
    p.add_argument("--before", type=Path, help="an earlier real_SPLIT.json (another checkpoint): adds a before/after table")
    p.add_argument("--worst", type=int, default=0, metavar="N",
                   help="also write OUT/real_SPLIT_worst.jpg, a contact sheet of the N frames it gets most wrong")
    add_weights_args(p)
    add_real_run_args(p)
    p.set_defaults(run=cmd_check_real)

    p = sub.add_parser("operating-points", help="choose each distortion's threshold on the real val footage",
                       description="Analyse the real val footage through the monitor and choose, per distortion, "
                                   "the threshold that detects every val item showing it while keeping the clean "
                                   "frames quiet (training/operating.py says how); fold them into the presence "
                                   "head, so the written checkpoint decides at 0.5. The eval split is never read.")
    add_weights_args(p, required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--clean-budget", type=float, default=0.01,
                   help="share of val clean frames one distortion may alarm on (default 0.01)")
    p.add_argument("--lowest", type=float, default=0.2,
                   help="no threshold below this (default 0.2: lower, a threshold fitted on a few dozen clean "
                        "frames would fit their noise; lower it only for a model whose val frames rank well below it)")
    p.add_argument("--refit", action="store_true",
                   help="weights whose operating points are already fitted: take them out and fit anew")
    add_real_run_args(p)
    p.set_defaults(run=cmd_operating_points)

    p = sub.add_parser("ship", help="the shipping rule: which candidate checkpoint may replace the shipped one",
                       description="Score each candidate on the real val footage (through the monitor, as "
                                   "check-real val) and on the synthetic test set, against the rule of issue 18: "
                                   "at most 5% of val clean frames with an alarm and 1 false event per 10 min, "
                                   "each val distortion detected (recall >= 0.5), and micro-F1 and exact match "
                                   "on the test set at most 0.01 below the shipped weights (the report also gives "
                                   "each candidate's difference from them clip by clip, with the range a paired "
                                   "bootstrap over the clips puts it in). Writes "
                                   "OUT/shipping.json and .md, with each checkpoint's weights digest and the machine "
                                   "that trained it; with --install copies the best passing candidate there, else "
                                   "a candidate with the shipped weights' digest (a rebuild: reproduced), else (with "
                                   "--fewer-failures) the one failing fewest checks if that is fewer than the shipped "
                                   "weights fail, or as many but ranked better on val. Exit 1 when none is chosen. "
                                   "The eval split is never read.")
    p.add_argument("candidates", type=Path, nargs="+", help="candidate checkpoints")
    p.add_argument("--testset", type=Path, default=Path("data/testset"), help="synthetic test set (default data/testset)")
    p.add_argument("--shipped", type=Path, help="the weights to compare with (default: the shipped weights)")
    p.add_argument("--install", type=Path, help="copy the chosen candidate here (a file already holding its weights is kept as it is)")
    p.add_argument("--fewer-failures", action="store_true",
                   help="when no candidate passes every check, choose the one failing the fewest, provided it "
                        "fails fewer than the shipped weights, or as many and ranks better on val (fewer clean "
                        "alarms, then more recall); the report says which checks still fail")
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default reports)")
    add_real_run_args(p)
    p.set_defaults(run=cmd_ship)
