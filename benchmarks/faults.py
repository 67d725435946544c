"""The fault campaign of issue 21, through the real processes on loopback (part of it so far).

* server restarts: one `scopewatch watch` of a live MPEG-TS stream (TCP, 320x180) whose server is
  killed and restarted --restarts times after a 2 s outage; per restart, how long after the server
  was back the first frame analysed from it was captured (target <= 5 s), whether the outage is in
  the timeline (`lost`/`reconnecting`/`stalled` rows) and that no analysed row was made up inside it;
* SIGKILLs: a `watch` killed with SIGKILL mid-run --kills times, each restarted on the same files;
  per kill, whether the CSV still parses, holds every row read before the kill, and the events file
  is valid JSON; at the end, whether the restarts appended without a duplicated row.
Prints a table per part, then (last line) one JSON object. --quick: 3 of each.

    python benchmarks/faults.py [--quick] [--restarts 10] [--kills 10]
"""
from __future__ import annotations

import argparse
import csv
import json
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import Publisher, free_port  # noqa: E402  (the tests' real stream server)

from pipeline import machine  # noqa: E402


def rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.reader(f))


def analysed(table: list[list[str]]) -> list[list[str]]:
    return [r for r in table[1:] if len(r) > 3 and r[3]]


def watch(url: str, csv_path: Path, events_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "apps.cli", "watch", url, "--csv", str(csv_path), "--events",
                             str(events_path), "--every-frame", "--timeout", "5"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def first_live_after(path: Path, t: float, timeout: float) -> float | None:
    """The capture time (the CSV's wallclock) of the first analysed row captured after epoch `t`."""
    end = time.time() + timeout
    while time.time() < end:
        table = rows(path)
        if table:
            wall = table[0].index("wallclock")
            times = [datetime.fromisoformat(r[wall]).timestamp() for r in analysed(table)]
            later = [x for x in times if x > t]
            if later:
                return min(later)
        time.sleep(0.1)
    return None


def wait_rows(path: Path, n: int, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if len(analysed(rows(path))) >= n:
            return True
        time.sleep(0.1)
    return False


def server_restarts(n: int, tmp: Path) -> list[dict]:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    csv_path, events_path = tmp / "restarts.csv", tmp / "restarts.events.json"
    server = Publisher(f"{url}?listen=1", "mpegts", seconds=600, size=(320, 180))
    server.start()
    proc = watch(url, csv_path, events_path)
    out = []
    try:
        if not wait_rows(csv_path, 25, 90):
            raise RuntimeError("the watch never started")
        for i in range(n):
            stopped = time.time()
            server.stop()
            time.sleep(2.0)  # an outage
            server = Publisher(f"{url}?listen=1", "mpegts", seconds=600, size=(320, 180))
            server.start()
            back = time.time()
            first = first_live_after(csv_path, back, 30)
            resumed = first is not None
            resume_s = first - back if resumed else None
            time.sleep(1.0)
            table = rows(csv_path)
            state, wall = table[0].index("stream_state"), table[0].index("wallclock")
            when = [(datetime.fromisoformat(r[wall]).timestamp(), r) for r in table[1:]]
            # the outage is in the timeline as state rows, and no analysed row was made up inside it
            gap = any(r[state] in ("lost", "reconnecting", "stalled") for t, r in when if t >= stopped and not r[3])
            fabricated = sum(1 for t, r in when if r[3] and stopped + 0.5 < t < back)
            out.append({"restart": i + 1, "resume_s": None if resume_s is None else round(resume_s, 2),
                        "gap_recorded": gap, "rows_inside_gap": fabricated,
                        "ok": resumed and resume_s <= 5.0 and gap and not fabricated})
            print(f"{i + 1:>7} {'never' if resume_s is None else f'{resume_s:.2f} s':>10} {str(gap):>13} {fabricated:>15}  "
                  f"{'ok' if out[-1]['ok'] else 'FAIL'}", flush=True)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.stop()
    return out


def sigkills(n: int, tmp: Path) -> tuple[list[dict], bool]:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    csv_path, events_path = tmp / "kills.csv", tmp / "kills.events.json"
    out = []
    for i in range(n):
        server = Publisher(f"{url}?listen=1", "mpegts", seconds=120, size=(320, 180))
        server.start()
        proc = watch(url, csv_path, events_path)
        try:
            started = wait_rows(csv_path, len(analysed(rows(csv_path))) + 25, 90)
            seen = rows(csv_path)
            time.sleep(0.5)  # between two flushes
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            proc.kill()
            server.stop()
        after = rows(csv_path)
        parses = bool(after) and all(len(r) == len(after[0]) for r in after)
        kept = after[:len(seen)] == seen
        try:
            json.loads(events_path.read_text())
            events_ok = True
        except (OSError, ValueError):
            events_ok = False
        out.append({"kill": i + 1, "started": started, "csv_parses": parses, "flushed_rows_kept": kept,
                    "events_json_valid": events_ok, "ok": started and parses and kept and events_ok})
        print(f"{i + 1:>4} {str(parses):>11} {str(kept):>17} {str(events_ok):>12}  {'ok' if out[-1]['ok'] else 'FAIL'}",
              flush=True)
    final = rows(csv_path)
    no_duplicates = final.count(final[0]) == 1 and len({tuple(r) for r in final}) == len(final)
    return out, no_duplicates


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 restarts and 3 kills")
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--kills", type=int, default=10)
    args = ap.parse_args()
    restarts, kills = (3, 3) if args.quick else (args.restarts, args.kills)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("server killed and restarted (MPEG-TS over TCP):")
        print(f"{'restart':>7} {'resumed in':>10} {'gap recorded':>13} {'rows inside it':>15}  verdict")
        restart_runs = server_restarts(restarts, tmp)
        print("watch SIGKILLed and restarted:")
        print(f"{'kill':>4} {'CSV parses':>11} {'flushed rows kept':>17} {'events JSON':>12}  verdict")
        kill_runs, no_duplicates = sigkills(kills, tmp)
    resumes = [r["resume_s"] for r in restart_runs if r["resume_s"] is not None]
    summary = {"machine": machine(),
               "restarts_ok": f"{sum(r['ok'] for r in restart_runs)}/{len(restart_runs)}",
               "max_resume_s": max(resumes) if resumes else None,
               "kills_ok": f"{sum(r['ok'] for r in kill_runs)}/{len(kill_runs)}",
               "appended_without_duplicates": no_duplicates, "restarts": restart_runs, "kills": kill_runs}
    print(f"{summary['restarts_ok']} resumes within 5 s with the gap recorded; {summary['kills_ok']} SIGKILLs with a "
          f"parseable CSV, every flushed row kept and valid events JSON; appended without duplicates: {no_duplicates}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
