"""Compare two runs' outputs of the same recording: CSV timelines and events JSON.

    python benchmarks/compare_outputs.py A.csv A.events.json B.csv B.events.json

Ignored: what differs by nature between two runs (`wallclock`, `latency_ms`, events'
`start_wallclock`) and floating-point noise within `--tolerance` (relative and absolute, default
1e-6) in the events' statistics: which frames share an inference batch depends on timing, and
float32 results on the batch, so two runs of one build differ there too.
Prints one line per file and exits 1 when they differ beyond that.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys

RUN_FIELDS = {"wallclock", "latency_ms", "start_wallclock"}


def same(a, b, tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a if k not in RUN_FIELDS)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b))
    return a == b


def csv_rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in RUN_FIELDS} for row in csv.DictReader(f)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv_a")
    ap.add_argument("events_a")
    ap.add_argument("csv_b")
    ap.add_argument("events_b")
    ap.add_argument("--tolerance", type=float, default=1e-6)
    args = ap.parse_args(argv)
    ra, rb = csv_rows(args.csv_a), csv_rows(args.csv_b)
    csv_same = ra == rb and open(args.csv_a).readline() == open(args.csv_b).readline()
    ea, eb = json.load(open(args.events_a)), json.load(open(args.events_b))
    events_same = same(ea, eb, args.tolerance)
    print(f"CSV: {len(ra)} vs {len(rb)} rows, {'identical' if csv_same else 'DIFFERENT'} apart from wallclock and latency")
    print(f"events: {len(ea['events'])} vs {len(eb['events'])}, {'identical' if events_same else 'DIFFERENT'} apart "
          f"from wallclock (statistics within {args.tolerance:g})")
    return 0 if csv_same and events_same else 1


if __name__ == "__main__":
    sys.exit(main())
