"""`scopewatch check-reference SPLIT`: what a feed reference ("this is normal") does, through the
monitor, on the clips of training.realcheck.REFERENCE_CASES: with and without a reference taken on
a window of the clip, the false alarms on a clean part after it, and the recall and time to the first
event of a distortion there (a real one on `val`'s smoke clips; on `eval`'s clean clips each
distortion synthesised in turn). A reference must not cost detection. `val` may choose the
reference settings of the decision; `eval` is reported only."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from apps.cli.common import UsageError, add_weights_args, predictor_for, run_config

# Frames are analysed at the monitor's analysis resolution (short side 360: model.preprocess),
# so they are decoded, sampled and scaled there once and the synthesis runs on what is analysed.
ANALYSIS_SHORT_SIDE = 360


def sampled_frames(path: Path, fps: float, end_s: float | None) -> list[tuple]:
    import av
    import cv2

    frames, next_t = [], 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            t = float(frame.time or 0.0)
            if end_s is not None and t >= end_s:
                break
            if t + 1e-6 < next_t:
                continue
            next_t += 1.0 / fps
            rgb = frame.to_ndarray(format="rgb24")
            k = ANALYSIS_SHORT_SIDE / min(rgb.shape[:2])
            if k < 1:
                rgb = cv2.resize(rgb, (round(rgb.shape[1] * k), round(rgb.shape[0] * k)), interpolation=cv2.INTER_AREA)
            frames.append((t, rgb))
    return frames


def monitored(case, frames, added, predictor, cfg, level: int, seed: list[int]) -> tuple[list, dict]:
    """The monitor's results on `case`'s frames, `added` synthesised onto its scored part at
    `level`, its generator and parameters drawn from `seed`."""
    import numpy as np

    from model.tasks import level_to_severity
    from monitor.session import Session
    from monitor.sources import ArraySource, SourceInfo
    from training.distortions import create_distortion

    about = {}
    if added is not None:
        start = case.scored[0]
        d = create_distortion(added)
        params = d.sample_params(np.random.default_rng(seed))
        severity = level_to_severity(level)
        frames = [(t, d.apply(img, severity, params, t - start) if t >= start else img) for t, img in frames]
        about = {"level": level, "generator": params["generator"]}
    h, w = frames[0][1].shape[:2]
    source = ArraySource(frames, SourceInfo(w, h, cfg.sampling.fps, "decoded", frames[-1][0]),
                         source_id=Path(case.path).name, description=case.path)
    results = []
    session = Session(source, predictor, cfg)
    session.monitor.sinks.append(lambda r, _: results.append(r))
    session.run()
    return results, about


def decided(case, results, expected, decision, event_cfg, tasks, with_reference: bool) -> dict:
    """What `decision` makes of a run's results, with or without a reference taken on the case's
    window as they pass (the monitor's own ReferenceWindow and EventDetector, replayed: the model's
    output does not depend on the reference)."""
    from model.decision import sigmoid
    from monitor.outputs.events import EventDetector
    from monitor.reference import ReferenceWindow
    from training.realcheck import score_reference_run

    feed = Path(case.path).name
    decision.clear_reference(feed)
    window = ReferenceWindow(decision, feed, *case.reference) if with_reference else None
    detector = EventDetector(tasks, event_cfg, feed, decision)
    seen = []
    for r in results:
        if window is not None:
            window(r)
        if r.analysed:
            seen.append((r.time_s, decision.alarms(r.probabilities, feed)))
        detector.update(r)
    detector.flush()
    decision.clear_reference(feed)
    events = [(e.name, e.start_s, e.raised_s) for e in detector.events if e.kind == "distortion"]
    out = {"with_reference": with_reference, **score_reference_run(seen, events, case.scored, expected)}
    if window is not None and window.refused:
        out["refused"] = window.refused
    elif window is not None and window.reference is not None:  # the feed's normal, as probabilities
        out["reference"] = {t: {k: round(sigmoid(v), 3) for k, v in q.items()} for t, q in window.reference.logits.items()}
    return out


def grid_rows(monitored_runs, cfg, tasks) -> list[dict]:
    """Each candidate reference setting on every run: the worst recall change a reference makes
    (per clip and distortion, pooled over its runs) and the clean frames it leaves alarmed."""
    from dataclasses import replace

    from training.realcheck import REFERENCE_GRID, pooled_recall_changes

    rows = []
    for margin, statistic in REFERENCE_GRID:
        decision = replace(cfg.decision, reference_margin=margin, reference_statistic=statistic, references={})
        recalls, clean = [], []
        for case, results, expected in monitored_runs:
            without = decided(case, results, expected, decision, cfg.events, tasks, False)
            with_ref = decided(case, results, expected, decision, cfg.events, tasks, True)
            if "recall" in without:
                recalls.append(((case.path, expected), without, with_ref))
            elif "any_alarm" in without:
                clean.append(with_ref["any_alarm"])
        changes = pooled_recall_changes(recalls)
        rows.append({"margin": margin, "statistic": statistic, "worst_recall_change": round(min(changes.values()), 4),
                     "clean_any_alarm": round(sum(clean) / len(clean), 4) if clean else None})
    return rows


def cmd_check_reference(args) -> int:
    from tqdm import tqdm
    from training.realcheck import reference_cases, reference_markdown

    from apps.cli.checking import check_data

    check_data(args.data)
    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    cfg = run_config(args, "recorded")
    predictor = predictor_for(cfg)
    d = cfg.decision
    report = {"split": args.split, "data": str(args.data), "weights": str(cfg.model.weights or "shipped"),
              "levels": args.levels, "seeds": args.seeds, "seed": args.seed, "sampling_fps": cfg.sampling.fps,
              "reference_margin": d.reference_margin, "reference_statistic": d.reference_statistic,
              "absolute": d.absolute, "unreferenced": list(d.unreferenced), "cases": []}
    cases = reference_cases(args.split)
    # On a clean case: the case as it is, then each distortion at each level, seeds times over.
    added_runs = [(t, level, s) for t in predictor.tasks for level in args.levels
                  for s in range(args.seed, args.seed + args.seeds)]
    runs_of = {c: [(None, 0, 0)] if c.present else [(None, 0, 0), *added_runs] for c in cases}
    monitored_runs = []
    with tqdm(total=sum(len(v) for v in runs_of.values()), desc="reference runs", disable=args.quiet) as bar:
        for i, case in enumerate(cases):
            path = args.data / case.path
            if not path.is_file():
                raise UsageError(f"{path}: missing (the {args.split} footage is not complete on this machine)")
            frames = sampled_frames(path, cfg.sampling.fps, case.scored[1])
            runs = []
            for j, (added, level, seed) in enumerate(runs_of[case]):
                task_index = predictor.tasks.index(added) if added else 0
                results, about = monitored(case, frames, added, predictor, cfg, level, [i, task_index, level, seed])
                expected = added or case.present
                monitored_runs.append((case, results, expected))
                for with_reference in (False, True):
                    runs.append({"added": added, **about, **decided(case, results, expected, cfg.decision, cfg.events,
                                                                    predictor.tasks, with_reference)})
                bar.update()
            report["cases"].append({"path": case.path, "reference": list(case.reference), "scored": list(case.scored),
                                    "present": case.present, "note": case.note, "runs": runs})
    if args.grid:
        report["grid"] = grid_rows(monitored_runs, cfg, predictor.tasks)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"reference_{args.split}"
    Path(f"{stem}.json").write_text(json.dumps(report, indent=1))
    text = reference_markdown(report)
    Path(f"{stem}.md").write_text(text)
    print(text)
    print(f"wrote {stem}.json and .md", file=sys.stderr)
    return 0


def register(sub) -> None:
    from apps.cli.checking import add_real_run_args

    p = sub.add_parser("check-reference", help="what a feed reference does on real clips (val or eval)",
                       description="On each clip of SPLIT, take the feed's reference on a window of it and compare "
                                   "the part scored after it with and without the reference: false alarms on a clean "
                                   "part, and the recall and time to the first event of a distortion there (the real "
                                   "smoke of the val clips; on the eval-only clean clips, each distortion synthesised "
                                   "in turn). Writes OUT/reference_SPLIT.json and .md. `val` may choose the decision's "
                                   "reference settings (--config); `eval` is reported only, never tuned on.")
    p.add_argument("split", choices=("val", "eval"))
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default reports)")
    p.add_argument("--levels", type=int, nargs="+", choices=(1, 2, 3, 4), default=[1, 2, 3], metavar="LEVEL",
                   help="levels of the added distortions (default 1 2 3: the faint ones are those a raised alarm "
                        "level would miss)")
    p.add_argument("--seeds", type=int, default=3,
                   help="runs per distortion and level, each with its own generator and parameters (default 3)")
    p.add_argument("--seed", type=int, default=0, help="first seed of the added distortions' generators and parameters")
    p.add_argument("--grid", action="store_true",
                   help="also score every candidate reference setting (training.realcheck.REFERENCE_GRID) and say "
                        "which keeps every recall within 0.02 with the fewest clean alarms: how the decision's "
                        "defaults are chosen, on val")
    add_weights_args(p)
    add_real_run_args(p)
    p.set_defaults(run=cmd_check_reference)
