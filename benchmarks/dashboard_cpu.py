"""CPU cost of the dashboard while a browser watches a 25 fps feed (it must not starve the monitor).

Runs the same 25 fps synthetic feed for --seconds twice: under `scopewatch watch` (the monitor
alone) and under `scopewatch dashboard` with headless Chromium on the Live tab; prints the CPU
seconds per wall second of each server process, the difference (the dashboard's own cost), the
frames analysed per second in both, and the dashboard server's resident memory sampled through the
run (the live timeline keeps 10 minutes in full, then downsamples: run past 600 s to see it level
off), and for both the capture-to-result latency (p95, from the feed's CSV) and the frames dropped.
Both run at the live default sampling unless `--fps N` or `--every-frame` is given. Needs Debian's
chromium and playwright.
    python benchmarks/dashboard_cpu.py [--seconds 20] [--fps N | --every-frame]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latency_p95(csv_path: Path) -> float:
    """p95 of the capture-to-result latency over the analysed rows of a feed's CSV."""
    with open(csv_path, newline="") as f:
        values = [float(r["latency_ms"]) for r in csv.DictReader(f) if r["latency_ms"]]
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else float("nan")


def monitor_alone(seconds: float, sampling: list[str]) -> dict:
    out = Path(tempfile.mkdtemp(prefix="scopewatch-bench-")) / "watch.csv"
    cmd = [sys.executable, "-m", "apps.cli", "watch", "synthetic:600", "--realtime", "--duration", str(seconds),
           "--csv", str(out), *sampling]
    t = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds * 0.9)
    cpu = cpu_seconds(proc.pid)
    wall = time.time() - t
    status = proc.communicate()[1]
    rows = sum(1 for line in open(out) if ",live" in line and ",,," not in line)
    dropped = int(status.rsplit("dropped", 1)[1].split()[0]) if "dropped" in status else -1
    return {"cpu_per_s": cpu / wall, "frames_per_s": rows / seconds, "p95_ms": latency_p95(out), "dropped": dropped}


def with_dashboard(seconds: float, sampling: list[str]) -> dict:
    from playwright.sync_api import sync_playwright
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="scopewatch-bench-")  # the dashboard keeps its feeds' files under TMPDIR
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "dashboard", "synthetic:600", "--port", str(port), *sampling],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=os.environ | {"TMPDIR": tmp, "GRADIO_ANALYTICS_ENABLED": "False"})
    while "ScopeWatch dashboard:" not in proc.stdout.readline():
        pass
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_label("1 min").check()
        time.sleep(3)  # settle
        c0, t0 = cpu_seconds(proc.pid), time.time()
        rss = [rss_mb(proc.pid)]
        while time.time() - t0 < seconds:
            time.sleep(min(10.0, max(0.0, seconds - (time.time() - t0))))
            rss.append(rss_mb(proc.pid))
        cpu, wall = cpu_seconds(proc.pid) - c0, time.time() - t0
        badges = page.inner_text(".sw-badges")
        fps = float(badges.split(" fps")[0].split()[-1])
        dropped = int(badges.split("dropped ")[1].split()[0])
        browser.close()
    proc.terminate()
    proc.wait(10)
    (feed_csv,) = Path(tmp).glob("scopewatch-*/live/*.scopewatch.csv")
    return {"cpu_per_s": cpu / wall, "frames_per_s": fps, "rss": rss, "p95_ms": latency_p95(feed_csv), "dropped": dropped}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--fps", type=float, help="analysed frames per second (default: the live default)")
    g.add_argument("--every-frame", action="store_true", help="analyse every frame")
    args = ap.parse_args()
    sampling = ["--every-frame"] if args.every_frame else ["--fps", str(args.fps)] if args.fps else []
    alone, dash = monitor_alone(args.seconds, sampling), with_dashboard(args.seconds, sampling)
    out = {"monitor_alone_cpu_cores": round(alone["cpu_per_s"], 2), "with_dashboard_cpu_cores": round(dash["cpu_per_s"], 2),
           "dashboard_cost_cpu_cores": round(dash["cpu_per_s"] - alone["cpu_per_s"], 2),
           "analysed_fps_alone": round(alone["frames_per_s"], 1), "analysed_fps_with_dashboard": dash["frames_per_s"],
           "dashboard_rss_mb_start": round(dash["rss"][0], 1), "dashboard_rss_mb_end": round(dash["rss"][-1], 1),
           "dashboard_rss_mb_max": round(max(dash["rss"]), 1),
           "latency_p95_ms_alone": round(alone["p95_ms"], 1), "latency_p95_ms_with_dashboard": round(dash["p95_ms"], 1),
           "dropped_alone": alone["dropped"], "dropped_with_dashboard": dash["dropped"],
           "sampling": " ".join(sampling) or "the live default"}
    for k, v in out.items():
        print(f"{k:<30}{v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
