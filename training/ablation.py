"""One-factor ablation of the make-weights recipe (issue 18): which part of it buys what on real
footage. Each run trains the recipe with one setting changed (`training/ablations/NAME.json`;
`control` changes nothing, so that it and the others share the machine and the sample stream's
workers) and is scored as the shipped weights were chosen: a snapshot (step 1200 for the shipped
weights) with operating points fitted on val, through `check-real val`, `check-real eval` (reported, never chosen on) and
the synthetic test. This module turns those reports into one table.

    python -m training.ablation table --step 01200 runs/ablation/control runs/ablation/no_nuisances ... [--out FILE.md]

Each run folder scored at that step holds report_stepSTEP/real_val.json, real_eval.json and
evaluation/evaluation.json (`make ablation-report ABLATION=NAME ABLATION_STEP=STEP` writes them);
run folders not scored at that step are left out of the table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLUMNS = ("val clean frames alarmed", "val smoke recall", "val uneven recall", "eval Up-1_2 frames alarmed",
           "eval real_smoke recall", "eval real_smoke clips mostly flagged", "eval holdout_clean alarmed",
           "synthetic micro-F1", "synthetic exact")


def _weighted(items, key) -> float:
    frames = sum(i["frames"] for i in items)
    return sum(i[key] * i["frames"] for i in items) / frames if frames else float("nan")


def figures(report: Path) -> dict[str, str]:
    """The table's row for one run's report folder."""
    val = json.loads((report / "real_val.json").read_text())["items"]
    ev = {i["path"]: i for i in json.loads((report / "real_eval.json").read_text())["items"]}
    synthetic = json.loads((report / "evaluation" / "evaluation.json").read_text())
    smoke = [i for i in val if i["kind"] == "smoke"]
    uneven = [i for i in val if i["kind"] == "uneven_illumination"]
    up, real_smoke, holdout = ev["real_clean_video/Up-1_2.mp4"], ev["real_smoke/*"], ev["holdout_clean/*"]
    values = (_weighted([i for i in val if i["kind"] == "clean"], "any_alarm"),
              sum(i["recall"] for i in smoke) / len(smoke), sum(i["recall"] for i in uneven) / len(uneven),
              up["any_alarm"], real_smoke["recall"], f"{real_smoke['clips_mostly_flagged']} of {real_smoke['clips']}",
              holdout["any_alarm"], f"{synthetic['micro_f1']:.3f}", f"{synthetic['exact_match']:.3f}")
    return {c: (f"{v:.1%}" if isinstance(v, float) else v) for c, v in zip(COLUMNS, values)}


def table(runs: list[Path], step: str) -> str:
    lines = [f"Each run's step-{int(step)} snapshot with operating points fitted on val.", "",
             "| run | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for run in runs:
        if not (run / f"report_step{step}" / "evaluation" / "evaluation.json").is_file():
            continue
        row = figures(run / f"report_step{step}")
        lines.append(f"| `{run.name}` | " + " | ".join(row[c] for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.ablation", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="the ablation table of some runs' reports")
    t.add_argument("runs", type=Path, nargs="+", help="run folders")
    t.add_argument("--step", default="01200", help="the snapshot scored (default 01200)")
    t.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    try:
        text = table(args.runs, args.step)
    except (OSError, KeyError, ValueError) as e:
        print(f"training.ablation: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
