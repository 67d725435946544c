"""Which generators does the model call, and from which level, on real surgery? Every generator of
every distortion drawn at each level on the clear frames of the val footage, with the share of
frames on which the run's decision calls that distortion, and the share on which it calls
another one instead or as well.

The synthetic test mixes generators, levels, distortions and scenes in every clip, so a weak
generator hides in its averages; here each generator is asked alone, on real views: the clear
frames of every clean val item (the clear seconds of the smoke_builds and Cholec80 clips, the
clean twins of the added-smoke pairs), a few of each. A generator the model misses at level 2 or 3 on real views is
a blind spot of the model, whatever the test set says; one that raises other alarms is confused
with them. Only val is read (eval is never used here). The model decides as the monitor does at
its fitted operating points, in float32 as the shipping rule runs it.

The same draws also say whether the quality score follows each generator: its mean at each level
beside the mean of its training target (training.quality: SSIM against the clear frame), and its
rank correlation with the level (SROCC, the clear frames counted as level 0; 1 when quality falls
with every step); and, pooled over every draw, its SROCC against the target, the quality figure of
the synthetic test asked on real views. A score that stays high where its target falls is a head
that does not generalise; one that stays high with its target is what the target teaches. Split by
whether the decision calls the distortion, the score's excess over its target says whether the
quality misses what the presence heads miss, or rates a distortion too mildly even when it is seen;
split by the frame's short side, whether it is the frame size the head has not learnt.

    python -m training.sensitivity [--weights W] [--data ../shared/data/surgical] [--frames 4] [--out reports/sensitivity]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.tasks import NUM_LEVELS, level_to_severity
from training.distortions import create_distortion
from training.metrics import srocc
from training.quality import fr_quality
from training.realcheck import DEFAULT_DATA, clear_frame_run, report_weights, write_report
from training.realworld import judged


def measure(predictor, frames: list[np.ndarray], seed: int = 0, progress: bool = False) -> dict:
    """Per distortion, generator and level: the share of `frames` (drawn on, each with its own
    parameters) on which the decision calls that distortion (`called`) and any other (`other`),
    and the mean quality (`quality`) and its target (`target`); per generator, the quality's SROCC
    against the level; over every draw, its SROCC against the target (`quality_target_srocc`)."""
    tasks = list(predictor.tasks)
    clear, clear_quality = judged(predictor, frames)
    report = {"frames": len(frames), "clear_alarmed": float(clear.any(axis=1).mean()),
              "clear_quality": float(clear_quality.mean()), "rows": [], "quality_srocc": []}
    pooled_quality, pooled_target = list(clear_quality), [100.0] * len(frames)
    # Per distortion, the score minus its target on each draw, split by whether the decision called it
    # and by the frame's short side (the model analyses frames under 360 px at their own size).
    errors = {task: {True: [], False: []} for task in tasks}
    sides = [min(f.shape[:2]) for f in frames]
    by_side = {task: {side: [] for side in sorted(set(sides))} for task in tasks}
    rng = np.random.default_rng(seed)
    plan = [(task, g) for task in tasks for g in create_distortion(task).allowed]
    for task, generator in tqdm(plan, desc="generators", unit="generator", disable=not progress):
        distortion, j = create_distortion(task, (generator,)), tasks.index(task)
        others = [k for k in range(len(tasks)) if k != j]
        levels, qualities = [0] * len(frames), list(clear_quality)
        for level in range(1, NUM_LEVELS + 1):
            made = [distortion.apply(f, level_to_severity(level), distortion.sample_params(rng)) for f in frames]
            alarms, quality = judged(predictor, made)
            target = [fr_quality(f, m) for f, m in zip(frames, made)]
            levels += [level] * len(frames)
            qualities += list(quality)
            pooled_quality += list(quality)
            pooled_target += target
            for called, error, side in zip(alarms[:, j], quality - np.asarray(target), sides):
                errors[task][bool(called)].append(float(error))
                by_side[task][side].append(float(error))
            report["rows"].append({"distortion": task, "generator": generator, "level": level,
                                   "called": float(alarms[:, j].mean()),
                                   "other": float(alarms[:, others].any(axis=1).mean()),
                                   "others": {tasks[k]: float(alarms[:, k].mean()) for k in others},
                                   "quality": float(quality.mean()), "target": float(np.mean(target))})
        # Quality falls as the level rises: the correlation with the level, sign turned, is 1 then.
        report["quality_srocc"].append({"distortion": task, "generator": generator,
                                        "srocc": -srocc(levels, qualities)})
    report["quality_target_srocc"] = srocc(pooled_quality, pooled_target)
    report["quality_bias"] = [{"distortion": task, "draws": len(e[True]) + len(e[False]),
                               "called": float(np.mean(e[True])) if e[True] else None, "called_draws": len(e[True]),
                               "missed": float(np.mean(e[False])) if e[False] else None, "missed_draws": len(e[False])}
                              for task, e in errors.items()]
    report["quality_bias_by_side"] = [{"distortion": task, "short_side": side, "draws": len(e), "bias": float(np.mean(e))}
                                      for task, per in by_side.items() for side, e in per.items()]
    return report


def cell(row: dict) -> str:
    """"called / other", naming the other distortion called most where one is."""
    text = f"{row['called']:.0%} / {row['other']:.0%}"
    if row["other"] > 0:
        text += f" {max(row['others'], key=row['others'].get)}"
    return text


def markdown(report: dict) -> str:
    lines = ["# What the model calls of each generator on real views (val only)", "",
             f"Weights `{report['weights']}`; {report['frames']} clear val frames, of which "
             f"{report['clear_alarmed']:.1%} raise an alarm as they are. Each cell: the share of the frames, with "
             "that generator drawn at that level, on which the distortion is called / on which another "
             "distortion is called (the one called most named).", ""]
    for task in dict.fromkeys(r["distortion"] for r in report["rows"]):
        rows = [r for r in report["rows"] if r["distortion"] == task]
        lines += [f"## {task}", "", "| generator | " + " | ".join(f"level {lv}" for lv in range(1, NUM_LEVELS + 1)) + " |",
                  "|---" * (NUM_LEVELS + 1) + "|"]
        for g in dict.fromkeys(r["generator"] for r in rows):
            cells = [cell(r) for r in rows if r["generator"] == g]
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
        means = [np.mean([r["called"] for r in rows if r["level"] == lv]) for lv in range(1, NUM_LEVELS + 1)]
        lines += ["| mean called | " + " | ".join(f"{m:.0%}" for m in means) + " |", ""]
    lines += ["## quality", "", f"Mean quality score / mean training target (SSIM against the clear frame) at each level "
              f"(the clear frames score {report['clear_quality']:.1f}, target 100), and the score's SROCC against "
              "the level with the clear frames as level 0 (1: quality falls with every step). Over every draw, the "
              f"score's SROCC against its target: {report['quality_target_srocc']:.3f}.", "",
              "| distortion | generator | " + " | ".join(f"level {lv}" for lv in range(1, NUM_LEVELS + 1)) + " | SROCC |",
              "|---" * (NUM_LEVELS + 3) + "|"]
    for row in report["quality_srocc"]:
        cells = [f"{r['quality']:.1f} / {r['target']:.1f}" for r in report["rows"]
                 if r["distortion"] == row["distortion"] and r["generator"] == row["generator"]]
        lines.append(f"| {row['distortion']} | {row['generator']} | " + " | ".join(cells)
                     + f" | {row['srocc']:.2f} |")
    lines += ["", "Mean score minus target over every draw of each distortion (every generator and level), on the "
              "draws where the decision calls it and where it misses it: a score above its target on both is a "
              "quality head that rates that distortion too mildly whether or not the presence head sees it.", "",
              "| distortion | called: score - target (draws) | missed: score - target (draws) |", "|---|---|---|"]
    for row in report["quality_bias"]:
        cells = [f"{row[k]:+.1f} ({row[k + '_draws']})" if row[k] is not None else "- (0)" for k in ("called", "missed")]
        lines.append(f"| {row['distortion']} | " + " | ".join(cells) + " |")
    sides = sorted({row["short_side"] for row in report["quality_bias_by_side"]})
    lines += ["", "The same error by the frame's short side (draws in brackets): the target is SSIM at the frame's "
              "own size below 360 px, and the model analyses such frames at their own size.", "",
              "| distortion | " + " | ".join(f"{side} px" for side in sides) + " |", "|---" * (len(sides) + 1) + "|"]
    for task in dict.fromkeys(row["distortion"] for row in report["quality_bias_by_side"]):
        cells = {row["short_side"]: f"{row['bias']:+.1f} ({row['draws']})" for row in report["quality_bias_by_side"]
                 if row["distortion"] == task}
        lines.append(f"| {task} | " + " | ".join(cells[side] for side in sides) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.sensitivity", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared surgical data folder")
    ap.add_argument("--frames", type=int, default=4, help="clear frames taken from each clean val item (default 4)")
    ap.add_argument("--out", type=Path, help="write sensitivity.json and sensitivity.md into this folder")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    run = clear_frame_run("sensitivity", args.data, args.weights, args.frames)
    if run is None:
        return 2
    predictor, frames = run
    report = {"data": str(args.data), "weights": report_weights(args.weights, predictor),
              **measure(predictor, frames, progress=not args.quiet)}
    write_report(args.out, "sensitivity", report, markdown(report))
    return 0

if __name__ == "__main__":
    sys.exit(main())
