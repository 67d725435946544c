"""Choose a run's start on val (issue 18): of several initial weights trained to the same early
step, the one whose network ranks the val footage's light smoke best above every clear val frame.

The recipe's five seeds part by step 800 on the added light smoke of the val pairs (the ROC AUC of
the smoke score against the 62 clear val frames, 0.75 to 0.85), and their finished runs detect
those pairs in the same order (reports/ablation/README.md, "The recipe's starts at step 800").
The score is `training.faint_smoke`'s, on val only; the snapshots are the runs' weight averages
at that step (`scopewatch train --stop-at STEP` writes them; `--resume` finishes the chosen one).
Measured, not adopted: the chosen start, finished, ranked the pairs best (0.90) but detected fewer
of them at its val operating point than the same seed trained without a stop, so `make weights`
does not choose starts ("Seed 2 finished from the chosen start").

    python -m training.starts SNAPSHOT [SNAPSHOT ...] [--data ../shared/data/surgical] [--out DIR]

Prints a table and, last, `chosen: SNAPSHOT`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.faint_smoke import real_separability, val_views
from training.realcheck import DEFAULT_DATA, report_predictor, write_report

SCORED_ITEM = "pairs_added_smoke"  # the val item whose light smoke the starts are ranked on


def score_starts(predictors: dict[str, object], data: Path) -> list[dict]:
    """Each snapshot's AUC on the val pairs' light smoke, and its rows for every val smoke view."""
    views = val_views(data)
    scored = []
    for path, predictor in predictors.items():
        rows, clear = real_separability(predictor, views)
        pairs = next(r for r in rows if SCORED_ITEM in r["item"])
        scored.append({"weights": path, "auc": pairs["auc_score"], "clear_frames": clear, "real": rows})
    return scored


def choose(scored: list[dict]) -> dict:
    """The best AUC; on a tie, the first named (the order given is the order of preference)."""
    return max(scored, key=lambda s: s["auc"])


def markdown(scored: list[dict], chosen: dict) -> str:
    items = [r["item"] for r in scored[0]["real"]]
    lines = ["# Starts ranked on val", "",
             f"ROC AUC of the smoke score, each val smoke item's frames against all {scored[0]['clear_frames']} clear "
             f"val frames; the start is chosen on `{SCORED_ITEM}`.", "",
             "| snapshot | " + " | ".join(f"`{i}`" for i in items) + " |", "|---" * (len(items) + 1) + "|"]
    for s in scored:
        lines.append(f"| `{s['weights']}`{' (chosen)' if s is chosen else ''} | "
                     + " | ".join(f"{r['auc_score']:.2f}" for r in s["real"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.starts", description=__doc__.splitlines()[0])
    ap.add_argument("snapshots", nargs="+", type=Path, help="the starts' snapshots at one step, in order of preference")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared surgical data folder")
    ap.add_argument("--out", type=Path, help="write starts.json and starts.md into this folder")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.snapshots if not p.is_file()]
    if missing:
        print(f"{ap.prog}: error: no such snapshot: {', '.join(missing)}", file=sys.stderr)
        return 2
    predictors = {str(p): report_predictor(ap.prog, args.data, str(p)) for p in args.snapshots}
    if None in predictors.values():
        return 2
    scored = score_starts(predictors, args.data)
    chosen = choose(scored)
    write_report(args.out, "starts", {"data": str(args.data), "item": SCORED_ITEM, "starts": scored,
                                      "chosen": chosen["weights"]}, markdown(scored, chosen))
    print(f"chosen: {chosen['weights']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
