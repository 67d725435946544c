"""Evaluation metrics, named as the ICIP 2020 challenge and IQA papers name them.

Distortion identification is multi-label: `y_true`/`y_pred` are (n, tasks) 0/1 arrays.
* micro-F1: F1 over all (item, task) decisions pooled (the challenge's rank metric);
* exact-match accuracy: the whole label vector right;
* per-task precision / recall / F1.
Severity: exact level and within one level, over the (item, task) pairs where the distortion is
truly present at a known level. Quality: SROCC, PLCC, KROCC and RMSE against the FR target.
"""
from __future__ import annotations

import numpy as np


def _prf(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def micro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp = int((y_true & y_pred).sum())
    fp = int((~y_true & y_pred).sum())
    fn = int((y_true & ~y_pred).sum())
    if tp + fp + fn == 0:
        return 1.0  # nothing present and nothing claimed: every decision right
    return _prf(tp, fp, fn)[2]


def exact_match(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float((np.asarray(y_true, bool) == np.asarray(y_pred, bool)).all(axis=1).mean())


def per_task(y_true: np.ndarray, y_pred: np.ndarray, tasks) -> dict[str, dict[str, float]]:
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    out = {}
    for j, t in enumerate(tasks):
        tp = int((y_true[:, j] & y_pred[:, j]).sum())
        fp = int((~y_true[:, j] & y_pred[:, j]).sum())
        fn = int((y_true[:, j] & ~y_pred[:, j]).sum())
        p, r, f = _prf(tp, fp, fn)
        out[t] = {"precision": p, "recall": r, "f1": f, "support": int(y_true[:, j].sum())}
    return out


def severity_accuracy(true_levels: np.ndarray, pred_levels: np.ndarray) -> dict[str, float]:
    """Over truly present distortions with a known level (true level >= 1)."""
    t, p = np.asarray(true_levels), np.asarray(pred_levels)
    m = t >= 1
    if not m.any():
        return {"severity_exact": float("nan"), "severity_within_one": float("nan"), "severity_support": 0}
    d = np.abs(t[m] - p[m])
    return {"severity_exact": float((d == 0).mean()), "severity_within_one": float((d <= 1).mean()),
            "severity_support": int(m.sum())}


def recall_by_level(true_levels: np.ndarray, y_pred: np.ndarray, tasks) -> dict[str, dict[str, dict]]:
    """Per task and true level (1 = faintest), the share of clips with the distortion at that level
    on which it is called present, and how many there are: where a detector's misses lie."""
    t, p = np.asarray(true_levels), np.asarray(y_pred, bool)
    out: dict[str, dict[str, dict]] = {}
    for j, task in enumerate(tasks):
        out[task] = {}
        for level in sorted(int(v) for v in np.unique(t[:, j]) if v >= 1):
            at = t[:, j] == level
            out[task][str(level)] = {"recall": float(p[at, j].mean()), "support": int(at.sum())}
    return out


def paired_bootstrap(metric, y_true, pred_a, pred_b, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """`metric(y_true, pred_a) - metric(y_true, pred_b)` and the range holding the middle 95% of it
    over the items resampled with replacement, the same draw for both (a paired bootstrap): how far
    a difference between two models on one test set could move with other items like these."""
    y_true, pred_a, pred_b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y_true), size=(resamples, len(y_true)))
    diffs = np.array([metric(y_true[i], pred_a[i]) - metric(y_true[i], pred_b[i]) for i in draws])
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"difference": float(metric(y_true, pred_a) - metric(y_true, pred_b)), "low": float(low),
            "high": float(high), "resamples": resamples}


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return (sums / counts)[inv]


def roc_auc(negatives, positives) -> float:
    """Area under the ROC curve: the chance that a positive scores above a negative (ties count
    half), by the Mann-Whitney rank sum; 0.5 is no separation."""
    neg, pos = np.asarray(negatives, float), np.asarray(positives, float)
    if not len(neg) or not len(pos):
        return float("nan")
    ranks = rankdata(np.concatenate([neg, pos]))[len(neg):]
    return float((ranks.sum() - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos)))


def plcc(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def srocc(a, b) -> float:
    return plcc(rankdata(a), rankdata(b))


def krocc(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    if n < 2:
        return float("nan")
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(n, 1)
    s, na, nb = (da * db)[iu].sum(), (da[iu] != 0).sum(), (db[iu] != 0).sum()
    return float(s / np.sqrt(na * nb)) if na and nb else float("nan")


def quality_metrics(pred, target) -> dict[str, float]:
    pred, target = np.asarray(pred, float), np.asarray(target, float)
    return {"srocc": srocc(pred, target), "plcc": plcc(pred, target), "krocc": krocc(pred, target),
            "rmse": float(np.sqrt(np.mean((pred - target) ** 2))) if len(pred) else float("nan")}


def identification_metrics(y_true, y_pred, tasks, true_levels=None, pred_levels=None) -> dict:
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    single = y_true.sum(axis=1) == 1
    out = {"micro_f1": micro_f1(y_true, y_pred),
           "micro_f1_single": micro_f1(y_true[single], y_pred[single]) if single.any() else float("nan"),
           "exact_match": exact_match(y_true, y_pred), "per_task": per_task(y_true, y_pred, tasks),
           "items": int(len(y_true)), "single_items": int(single.sum())}
    if true_levels is not None:
        out |= severity_accuracy(true_levels, pred_levels)
        out["recall_by_level"] = recall_by_level(true_levels, y_pred, tasks)
    return out
