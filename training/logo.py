"""Leave-one-generator-out: how the model does on distortion code it never saw.

Round r holds out, for every distortion at once, its r-th generator (training.distortions): the
model of that round trains on the other generators only (`held_in`), and a test set is made with
the held-out generators alone (`held_out`). Comparing, per distortion, that model with the model
trained on every generator, both on the held-out test set, measures what generalisation costs:
round 0 holds out the generators the models before issue 18 were trained on alone.

    python -m training.logo table --round 0 --full FULL_EVAL.json --held-out LOGO_EVAL.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.tasks import DEFAULT_TASKS
from training.distortions import DISTORTIONS


def held_out(round_: int, tasks=DEFAULT_TASKS) -> dict[str, str]:
    return {t: DISTORTIONS.get(t).drawn()[round_ % len(DISTORTIONS.get(t).drawn())] for t in tasks}


def held_in(round_: int, tasks=DEFAULT_TASKS) -> dict[str, tuple[str, ...]]:
    out = held_out(round_, tasks)
    return {t: tuple(g for g in DISTORTIONS.get(t).drawn() if g != out[t]) for t in tasks}


def as_arg(choice: dict) -> str:
    """The --generators argument of `scopewatch synth` / `train` for a choice."""
    return ",".join(f"{t}={'+'.join([g] if isinstance(g, str) else g)}" for t, g in choice.items())


def table(round_: int, full: dict, logo: dict) -> str:
    out = held_out(round_, full["tasks"])
    lines = [f"Round {round_}: each distortion's generator `held out` of the second model's training; both models "
             f"on {full['clips']} clips made with the held-out generators alone (`{full['data']}`).", "",
             "| distortion | held-out generator | F1, trained on all | F1, never saw it | change |", "|---|---|---|---|---|"]
    for t in full["tasks"]:
        a, b = full["per_task"][t]["f1"], logo["per_task"][t]["f1"]
        lines.append(f"| {t} | {out[t]} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    for key in ("micro_f1", "exact_match"):
        lines.append(f"| *{key}* | | {full[key]:.3f} | {logo[key]:.3f} | {logo[key] - full[key]:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.logo", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("generators", help="print the --generators argument of a round")
    a.add_argument("which", choices=("held-in", "held-out"))
    a.add_argument("--round", type=int, default=0)
    t = sub.add_parser("table", help="the table of a round from two `scopewatch evaluate` reports")
    t.add_argument("--round", type=int, default=0)
    t.add_argument("--full", type=Path, required=True, help="evaluation.json of the model trained on every generator")
    t.add_argument("--held-out", type=Path, required=True, help="evaluation.json of the round's model")
    t.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = p.parse_args(argv)
    if args.cmd == "generators":
        print(as_arg(held_in(args.round) if args.which == "held-in" else held_out(args.round)))
        return 0
    try:
        full, logo = (json.loads(Path(f).read_text()) for f in (args.full, args.held_out))
    except (OSError, ValueError) as e:
        print(f"python -m training.logo: {e}", file=sys.stderr)
        return 2
    text = table(args.round, full, logo)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
