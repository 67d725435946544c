"""How faint is the real smoke the model misses? The val footage's smoke against the synthesis's
levels, measured the same way on the same frames.

Smoke veils the scene with scattered light, which lifts the darkest colour channel everywhere it
lies (the dark-channel prior of haze removal: clear tissue has some channel near black almost
everywhere). The lift is measured as the rise of the mean dark channel (minimum over RGB, then over
a 15 px square, frames at 256 px on the short side, inside the image circle) from a clear frame of
the same view:

* real: each val smoke item that has clear footage of the same view (the clear seconds of the same
  clip; the clean twin of an added-smoke pair) — its median lift and the share of its frames on
  which the model calls smoke;
* synthetic: every smoke generator of the recipe at each level, drawn on those same clear frames —
  the median lift and the share called;
* separability: for each real item, how well the model's smoke score, the smoke score of its
  smokiest patch (the patch map) and the dark channel alone rank its frames above every clear val
  frame of every view (ROC AUC). A monitor has no clear frame of the same view to compare with,
  only a threshold that keeps all clear views quiet: an item the model misses with a high AUC is
  missed by its threshold, one near 0.5 is not told from other clear views by any threshold on
  that measure.

Only val is read (eval is never used here). The model decides as the monitor does at its fitted
operating point, in float32 as the shipping rule runs it.

    python -m training.faint_smoke [--weights W] [--data ../shared/data/surgical] [--out reports/faint_smoke]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model.tasks import NUM_LEVELS, level_to_severity
from training.distortions import create_distortion, field_of_view
from training.metrics import roc_auc
from training.realcheck import (DEFAULT_DATA, clip_frames, evenly, expand, items, load_still, report_predictor,
                                report_weights, write_report)
from training.realworld import DECISION, predictions

MEASURE_SHORT_SIDE = 256
DARK_WINDOW = 15
CLEAR_FRAMES = 4  # clear frames of each view the generators are drawn on


def dark_channel_mean(frame: np.ndarray) -> float:
    """Mean dark channel (0..1) of an RGB uint8 frame inside its image circle, at 256 px."""
    h, w = frame.shape[:2]
    k = MEASURE_SHORT_SIDE / min(h, w)
    small = cv2.resize(frame, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    dark = cv2.erode(small.min(axis=2), np.ones((DARK_WINDOW, DARK_WINDOW), np.uint8)).astype(np.float32) / 255.0
    inside = field_of_view(small) > 0.5
    return float(dark[inside].mean()) if inside.any() else float(dark.mean())


@dataclass
class View:
    """One val smoke item and clear frames of the same view: `pairs` when each smoky frame has its
    own clean twin (added smoke), else the clip's clear seconds."""
    name: str
    smoky: list[np.ndarray]
    clear: list[np.ndarray]
    pairs: bool


def val_views(data: Path) -> list[View]:
    """Every val smoke item with clear footage of its view; items without (dense still frames) are
    left out, since their lift cannot be measured."""
    val = items("val")
    views = []
    for item in val:
        if item.present != "smoke":
            continue
        if "input_" in item.path:
            smoky_paths = expand(item, data)
            twins = [p.with_name(p.name.replace("input_", "output_")) for p in smoky_paths]
            kept = [(s, c) for s, c in zip(smoky_paths, twins) if c.exists()]
            if kept:
                views.append(View(item.path, [load_still(item, s) for s, _ in kept],
                                  [load_still(item, c) for _, c in kept], pairs=True))
            continue
        clear_item = next((c for c in val if c.clean and c.path == item.path), None)
        files = expand(item, data)
        if clear_item is None or not files:
            continue
        path = files[0]
        views.append(View(f"{item.path} {item.window}", clip_frames(path, item.start_s, item.end_s),
                          clip_frames(path, clear_item.start_s, clear_item.end_s), pairs=False))
    return views


def smoke_read(predictor, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """The model's smoke probability of each frame, the smoke probability of its smokiest patch
    (the patch map: where smoke that lies in one part of the view would show), and the share of
    frames on which the run's decision calls smoke."""
    read = predictions(predictor, frames, with_map=True)
    scores = np.array([p.probabilities["smoke"] for p in read])
    patch = np.array([p.patch_map["smoke"].max() for p in read])
    return scores, patch, float(np.mean([DECISION.present("smoke", s) for s in scores]))


def dark_means(frames: list[np.ndarray]) -> np.ndarray:
    return np.array([dark_channel_mean(f) for f in frames])


def real_separability(predictor, views: list[View]) -> tuple[list[dict], int]:
    """Per val view, its smoke's lift, the share called and the three AUCs against every clear
    frame of every view; and how many clear frames those are."""
    clear_dark = [dark_means(v.clear) for v in views]
    every_clear_dark = np.concatenate(clear_dark) if views else np.zeros(0)
    clear_scores, clear_patch, _ = smoke_read(predictor, [f for v in views for f in v.clear])
    rows = []
    for v, clear in zip(views, clear_dark):
        smoky = dark_means(v.smoky)
        lift = smoky - (clear if v.pairs else float(np.median(clear)))
        scores, patch, called = smoke_read(predictor, v.smoky)
        rows.append({"item": v.name, "frames": len(v.smoky), "lift_median": float(np.median(lift)),
                     "called": called, "auc_score": roc_auc(clear_scores, scores),
                     "auc_patch": roc_auc(clear_patch, patch), "auc_dark": roc_auc(every_clear_dark, smoky)})
    return rows, len(clear_scores)


def run(predictor, data: Path, weights: str | None = None, seed: int = 0) -> dict:
    """`weights`: the checkpoint the predictor was loaded from, as the report names it (None: the shipped weights)."""
    views = val_views(data)
    report = {"data": str(data), "weights": report_weights(weights, predictor),
              "measure": f"mean dark channel rise, {DARK_WINDOW} px window at {MEASURE_SHORT_SIDE} px", "real": [], "synthetic": []}
    report["real"], report["clear_frames"] = real_separability(predictor, views)
    bases = [f for v in views for f in evenly(v.clear, CLEAR_FRAMES)]
    base_dark = dark_means(bases)
    smoke = create_distortion("smoke")
    rng = np.random.default_rng(seed)
    for generator in smoke.allowed:
        for level in range(1, NUM_LEVELS + 1):
            made = []
            for base in bases:
                params = {"generator": generator, **smoke.generator_params(generator, rng)}
                made.append(smoke.apply(base, level_to_severity(level), params))
            report["synthetic"].append({"generator": generator, "level": level, "frames": len(made),
                                        "lift_median": float(np.median(dark_means(made) - base_dark)),
                                        "called": smoke_read(predictor, made)[2]})
    report["synthetic_by_level"] = [
        {"level": level, "lift_median": float(np.median([r["lift_median"] for r in rows])),
         "called": float(np.mean([r["called"] for r in rows]))}
        for level in range(1, NUM_LEVELS + 1)
        for rows in [[r for r in report["synthetic"] if r["level"] == level]]]
    return report


def markdown(report: dict) -> str:
    lines = ["# How faint is the real smoke? (val only)", "",
             f"Weights `{report['weights']}`; haze lift = {report['measure']}, against clear frames of the same "
             "view; called = share of frames on which the model calls smoke; AUC = how well the measure ranks "
             f"the item's frames above all {report['clear_frames']} clear val frames of every view (0.5: not at all).", "",
             "| real val smoke | frames | lift (median) | called | AUC, model's smoke score | AUC, smokiest patch "
             "| AUC, dark channel |",
             "|---|---|---|---|---|---|---|"]
    for r in report["real"]:
        lines.append(f"| `{r['item']}` | {r['frames']} | {r['lift_median']:.3f} | {r['called']:.1%} "
                     f"| {r['auc_score']:.2f} | {r['auc_patch']:.2f} | {r['auc_dark']:.2f} |")
    lines += ["", "The recipe's smoke generators drawn on those views' clear frames:", "",
              "| level | lift (median over generators) | called (mean over generators) |", "|---|---|---|"]
    for r in report["synthetic_by_level"]:
        lines.append(f"| {r['level']} | {r['lift_median']:.3f} | {r['called']:.1%} |")
    lines += ["", "| generator | " + " | ".join(f"level {lv}: lift / called" for lv in range(1, NUM_LEVELS + 1)) + " |",
              "|---" * (NUM_LEVELS + 1) + "|"]
    for g in dict.fromkeys(r["generator"] for r in report["synthetic"]):
        cells = [f"{r['lift_median']:.3f} / {r['called']:.0%}" for r in report["synthetic"] if r["generator"] == g]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.faint_smoke", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared surgical data folder")
    ap.add_argument("--out", type=Path, help="write faint_smoke.json and faint_smoke.md into this folder")
    args = ap.parse_args(argv)
    predictor = report_predictor("faint_smoke", args.data, args.weights)
    if predictor is None:
        return 2
    report = run(predictor, args.data, args.weights)
    write_report(args.out, "faint_smoke", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
