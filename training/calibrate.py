"""`scopewatch calibrate`: each presence head's operating point, fitted on validation clips.

A head trained with binary cross-entropy on the training mix puts its 0.5 where that mix puts it,
which need not be where a clip decision is best: on clips made like the test clips, the trained
models scored many faint (level-1) distortions under 0.5 while clean clips stayed far below. So, per
task, the threshold that maximises that task's F1 on clip decisions (the mean probability over a
clip's frames, as `scopewatch evaluate` decides) is searched on a coarse grid from 0.25 to 0.75,
ties going to the value nearest 0.5 (a task already right keeps 0.5; a narrow grid keeps a
120-clip fit from chasing single clips). The data must be made from *validation* content
(`make weights` synthesises it from the trainer's validation sources), never from test content.

The threshold t is folded into the presence head's bias, logit(p') = logit(p) - logit(t), so a
calibrated checkpoint decides at 0.5 like any other and nothing downstream (events' hysteresis,
badges, CSV) needs to know; the fitted thresholds and the clip figures before and after are
recorded in the checkpoint's metrics.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.predict import Predictor
from training.evaluate import clip_predictions, find_labels, true_presence
from training.metrics import exact_match, micro_f1, per_task

GRID = tuple(round(0.25 + 0.05 * i, 2) for i in range(11))


def fit_thresholds(prob: np.ndarray, y_true: np.ndarray, tasks, grid=GRID) -> dict[str, float]:
    """Per task, the grid threshold with the best F1 of `prob >= t` against `y_true` ((n, tasks))."""
    y_true = np.asarray(y_true, bool)
    out = {}
    for j, task in enumerate(tasks):
        best_f1, best_t = -1.0, 0.5
        for t in sorted(grid, key=lambda g: abs(g - 0.5)):
            f1 = per_task(y_true[:, j:j + 1], prob[:, j:j + 1] >= t, [task])[task]["f1"]
            if f1 > best_f1 + 1e-12:
                best_f1, best_t = f1, float(t)
        out[task] = best_t
    return out


@torch.no_grad()
def fold_thresholds(model, thresholds: dict[str, float]) -> None:
    """Shift the presence logits so that probability 0.5 now means what `thresholds` meant."""
    for j, task in enumerate(model.tasks):
        t = thresholds[task]
        model.presence.bias[j] -= math.log(t / (1.0 - t))


def clip_scores(prob: np.ndarray, y_true: np.ndarray, thresholds: list[float]) -> dict[str, float]:
    y_pred = prob >= np.asarray(thresholds)[None]
    return {"micro_f1": micro_f1(y_true, y_pred), "exact_match": exact_match(y_true, y_pred)}


def calibrate(weights: Path, data: Path, out: Path, frames_per_clip: int = 8, progress: bool = True) -> dict:
    """Fit the thresholds of `weights` on the clips of `data`, write the calibrated checkpoint to
    `out` and return the calibration record stored in it."""
    model = load_checkpoint(weights)
    meta = model.checkpoint_meta
    if "calibration" in meta["metrics"]:
        raise CheckpointError(f"{weights}: already calibrated (on {meta['metrics']['calibration']['data']}); "
                              "calibrate the trainer's checkpoint instead")
    predictor = Predictor(model, "cpu")
    items = find_labels(data, model.tasks)
    prob = clip_predictions(predictor, items, frames_per_clip, progress)["probability"]
    y_true = true_presence(items, model.tasks)
    thresholds = fit_thresholds(prob, y_true, model.tasks)
    record = {"data": str(data), "clips": len(items), "frames_per_clip": frames_per_clip, "thresholds": thresholds,
              "before": clip_scores(prob, y_true, [0.5] * len(model.tasks)),
              "after": clip_scores(prob, y_true, [thresholds[t] for t in model.tasks])}
    fold_thresholds(model, thresholds)
    save_checkpoint(model, out, training=meta["training"], metrics={**meta["metrics"], "calibration": record},
                    extra=meta["extra"])
    return record
