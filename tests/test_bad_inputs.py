"""`scopewatch analyze` on every case of tests/bad_inputs.py (issue 21): each ends with rows written
and exit 0, or one clear line and a non-zero exit; never a traceback, never a hang, and a failure
keeps the rows it wrote, parseable. Prints the tally."""
import csv
from concurrent.futures import ThreadPoolExecutor

import pytest

from bad_inputs import make_cases
from helpers import run_cli

TIMEOUT_S = 120


def analysed_rows(path) -> int:
    with open(path, newline="") as f:
        return sum(1 for row in csv.DictReader(f) if row["noise"])


def verdict(case, folder, weights) -> tuple[str, str]:
    """('analysed' | 'refused', detail), or ('BAD', why)."""
    out = folder / "out" / (case.path.name.replace(" ", "_") + ".csv")
    args = [str(case.path), "--weights", str(weights), "-q"]
    if not case.path.is_dir():
        args += ["--csv", str(out), "--events", str(out.with_suffix(".json"))]
    else:
        args += ["--out", str(folder / "out" / "archive")]
    try:
        r = run_cli("analyze", *args, timeout=TIMEOUT_S)
    except Exception as e:  # subprocess.TimeoutExpired
        return "BAD", f"hang ({type(e).__name__})"
    if "Traceback" in r.stderr or "Traceback" in r.stdout:
        return "BAD", "traceback: " + r.stderr[-300:]
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    if r.returncode == 0:
        if case.path.is_dir():
            return "analysed", r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        rows = analysed_rows(out) if out.exists() else 0
        return ("analysed", f"{rows} rows") if rows else ("BAD", "exit 0 without an analysed row")
    if len(errors) != 1:
        return "BAD", f"exit {r.returncode} with {len(errors)} error lines: {r.stderr[-300:]}"
    if out.exists():
        analysed_rows(out)  # what a failure kept must still parse
    return "refused", errors[0]


def test_every_bad_input_is_analysed_or_refused_in_one_line(tmp_path, tiny_weights):
    cases = make_cases(tmp_path / "cases")
    assert len(cases) >= 50 and all(c.path.exists() for c in cases)
    (tmp_path / "out").mkdir()
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda c: verdict(c, tmp_path, tiny_weights), cases))
    tally = {k: sum(v == k for v, _ in verdicts) for k in ("analysed", "refused", "BAD")}
    print(f"\n{len(cases)} bad inputs: {tally['analysed']} analysed (exit 0), {tally['refused']} refused in one "
          f"line, {tally['BAD']} bad (tracebacks, hangs, silent exits)")
    for case, (v, detail) in zip(cases, verdicts):
        print(f"  {v:8s} {case.name}: {detail[:140]}")
    bad = [f"{c.name}: {d}" for c, (v, d) in zip(cases, verdicts) if v == "BAD"]
    assert not bad, "\n".join(bad)
