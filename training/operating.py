"""Operating points chosen on the real `val` footage, folded into the presence head.

A model trained on synthesis need not put its best real-world decision at 0.5. Per distortion,
`choose` looks at the presence probabilities the monitor saw on the val split's frames (clean
items, and degraded items where a person sees that distortion) and picks the threshold:

* with val footage of the distortion: among the thresholds that keep the clean frames under
  `clean_budget` (a monitor that cries wolf is switched off first), those that detect the most
  val items showing it (recall >= `min_recall`); the middle of that range, which leaves most
  margin both ways. When 0.5 already detects as many, it stays (at least 0.5);
* without val footage of it: the lowest threshold, not below 0.5, that keeps the clean frames
  quiet (a threshold is never lowered without evidence that it should be).

`fold` shifts the presence head's bias by -logit(threshold), so the folded checkpoint decides at
0.5 like any other (model.decision); `unfold` takes that shift back out. Only val may be used here;
eval is reported, never fitted.
"""
from __future__ import annotations

import math

import numpy as np
import torch

# Thresholds from LOWEST: lower, the model says a distortion is absent four times out of five where
# it is called present, and a threshold fitted there on a few dozen clean frames would fit their
# noise. A model whose real frames all score low may rank them well below it (`--lowest`;
# reports/ablation/README.md, context_max).
LOWEST, HIGHEST = 0.2, 0.95


def grid(lowest: float = LOWEST) -> np.ndarray:
    return np.round(np.arange(lowest, HIGHEST + 0.001, 0.01), 2)


def _rate(probs: np.ndarray, threshold: float) -> float:
    return float(np.mean(probs >= threshold)) if len(probs) else 0.0


def choose(clean: np.ndarray, degraded: list[np.ndarray], clean_budget: float = 0.01, min_recall: float = 0.5,
           lowest: float = LOWEST) -> dict:
    """One distortion's operating point: `clean` its probabilities on val clean frames, `degraded`
    one array per val item showing it; no threshold below `lowest`. Returns the threshold and how
    it was chosen."""
    quiet = [t for t in grid(lowest) if _rate(clean, t) <= clean_budget]
    if not quiet:
        return {"threshold": HIGHEST, "how": "no threshold keeps the clean frames quiet: the highest"}
    base = max(0.5, float(min(quiet)))  # where the threshold goes without evidence to lower it

    def detected(t: float) -> int:
        return sum(_rate(d, t) >= min_recall for d in degraded)

    if not degraded:
        return {"threshold": base, "how": "no val footage of it: the lowest quiet threshold, at least 0.5"}
    most = max(detected(t) for t in quiet)
    if detected(base) == most:
        return {"threshold": base, "how": f"{most} of {len(degraded)} val items detected without lowering it: "
                                          "the lowest quiet threshold, at least 0.5"}
    best = [t for t in quiet if detected(t) == most]
    return {"threshold": float(np.round((min(best) + max(best)) / 2, 2)),
            "how": f"{most} of {len(degraded)} val items detected, clean frames quiet, from {min(best):.2f} "
                   f"to {max(best):.2f}: the middle"}


def choose_all(tasks, clean: dict[str, np.ndarray], degraded: dict[str, list[np.ndarray]], **kw) -> dict[str, dict]:
    return {t: choose(np.asarray(clean.get(t, [])), [np.asarray(d) for d in degraded.get(t, [])], **kw)
            for t in tasks}


@torch.no_grad()
def fold(model, thresholds: dict[str, float]) -> None:
    """Make `model` decide at 0.5 where it decided at `thresholds[task]` (presence logit - logit(t))."""
    for j, task in enumerate(model.tasks):
        t = thresholds.get(task, 0.5)
        model.presence.bias[j] -= math.log(t / (1.0 - t))


@torch.no_grad()
def unfold(model) -> dict | None:
    """Take a loaded checkpoint's folded operating points back out of `model` (in place), so that it
    decides at 0.5 where its network did before `fold`; returns the record that was taken out (None:
    there were none)."""
    record = model.checkpoint_meta["metrics"].get("operating_points")
    if record:  # logit(1 - t) = -logit(t): folding the complements takes the shift back out
        fold(model, {task: 1.0 - c["threshold"] for task, c in record["chosen"].items()})
    return record
