"""The same command at two revisions of this repository, run in turn (before, after, before, ...),
so that both see the same machine: this machine's speed drifts by up to 2x within a session, more
than most changes move it, so figures from runs minutes apart do not compare. Prints each run, then
the medians and their ratios, then one JSON line.

    python benchmarks/alternate.py --before REV [--after REV] [--runs 5] -- ARGS...

ARGS are the arguments of a Python process (e.g. `-m apps.cli analyze --out {out} VIDEO`), run in a
worktree of each revision (`--after .`, the default, is this working tree itself), with that tree
first on the import path; `{out}` becomes a fresh folder for each run. Wall time and the process's
CPU time (every thread) are measured from outside.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"git {' '.join(args)}: {(r.stderr.strip().splitlines() or ['failed'])[-1]}")
    return r.stdout.strip()


def run(tree: Path, args: list[str], out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `python ARGS` in `tree`."""
    out.mkdir(parents=True)
    cmd = [sys.executable, *(a.replace("{out}", str(out)) for a in args)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        last = stderr.strip().splitlines()
        sys.exit(f"{' '.join(cmd)} (in {tree}) exited with {code}: {last[-1] if last else 'no message'}")
    return wall, usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="revision to compare against (a commit, tag or branch)")
    ap.add_argument("--after", default=".", help="revision, or . for this working tree (default)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each, in turn")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- then the Python process's arguments")
    a = ap.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    if not args:
        ap.error("give the command's arguments after --")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees, names = {}, {}
        for side, rev in (("before", a.before), ("after", a.after)):
            if rev == ".":
                trees[side], names[side] = ROOT, f"working tree ({git('rev-parse', '--short', 'HEAD')}+)"
                continue
            names[side] = git("rev-parse", "--short", rev)
            trees[side] = tmp / side
            git("worktree", "add", "--detach", "-q", str(trees[side]), names[side])
        try:
            times = {side: [] for side in trees}
            for i in range(a.runs):
                for side in trees:
                    wall, cpu = run(trees[side], args, tmp / "out" / f"{side}{i}")
                    times[side].append((wall, cpu))
                    print(f"run {i + 1} {side:<6} {names[side]:<24} wall {wall:7.2f} s  cpu {cpu:7.2f} s", flush=True)
        finally:
            for side in trees:
                if trees[side] != ROOT:
                    git("worktree", "remove", "--force", str(trees[side]))
    med = {side: {k: statistics.median(t[j] for t in ts) for j, k in enumerate(("wall_s", "cpu_s"))} for side, ts in times.items()}
    out = {"command": " ".join(args), "runs": a.runs, "before": names["before"], "after": names["after"],
           **{f"{side}_{k}": round(v, 2) for side, m in med.items() for k, v in m.items()},
           "speedup_wall": round(med["before"]["wall_s"] / med["after"]["wall_s"], 3),
           "speedup_cpu": round(med["before"]["cpu_s"] / med["after"]["cpu_s"], 3)}
    for k, v in out.items():
        print(f"{k:<16}{v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
