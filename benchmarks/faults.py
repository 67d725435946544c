"""The fault campaign of issue 21, through the real processes on loopback.

* server restarts, for MPEG-TS over TCP and for RTSP (Debian's rtsp-server-perl, RTP over UDP): one
  `scopewatch watch` of a live 320x180 stream whose server is killed and restarted --restarts times
  after a 2 s outage; per restart, how long after the server was back the first frame analysed from
  it was captured (target <= 5 s), whether the outage is in the timeline (`lost`/`reconnecting`/
  `stalled` rows), that no analysed row was made up inside it, and that the events file holds one
  `signal_lost` event per outage, lasting as long as the picture was away (from the server's kill
  to the first frame after, within 1 s; within 2 s over RTSP, whose server takes longer to settle);
* SIGKILLs: a `watch` killed with SIGKILL mid-run --kills times, each restarted on the same files;
  per kill, whether the CSV still parses, holds every row read before the kill, and the events file
  is valid JSON; at the end, whether the restarts appended without a duplicated row;
* outputs: the disk full (a 16 KiB file size limit on `analyze`) and the output folder removed under
  a live `watch`: one error line, no traceback, exit 1; with the disk full, the CSV keeps whole rows;
* misbehaving sources, through a relay in front of a live server: the stream held (connected, no
  data) for --hold seconds and then garbage bytes for 10 s: the watchdog's `stalled` row within
  10 s of each, the picture back within 5 s of the stream; and a source sending at 2x real time
  for 30 s. For each, the watch's RSS: its growth after the first 5 s must stay under 50 MB.
Prints a table per part, then (last line) one JSON object. --quick: 3 of each, a 10 s hold and a
15 s fast source.

    python benchmarks/faults.py [--quick] [--restarts 10] [--kills 10] [--hold 30] [--parts restarts ...]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import (Publisher, Relay, analysed, free_port, listening, timeline_rows,  # noqa: E402  (the tests' real servers)
                     write_video)

from pipeline import machine  # noqa: E402


SIZE = (320, 180)
PARTS = ("restarts", "kills", "outputs", "sources")


def signal_lost_events(path: Path) -> list[dict]:
    try:
        return [e for e in json.loads(path.read_text())["events"] if e["kind"] == "signal_lost"]
    except (OSError, ValueError, KeyError):
        return []


def watch(url: str, csv_path: Path, events_path: Path, *extra: str, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "apps.cli", "watch", url, "--csv", str(csv_path), "--events",
                             str(events_path), "--timeout", "5", *extra], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=stderr, text=True)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def first_row_after(path: Path, t: float, timeout: float, states: tuple[str, ...] = ()) -> float | None:
    """The capture time (the CSV's wallclock) of the first row written after epoch `t`: an analysed
    frame's, or with `states` a state row's in one of them."""
    end = time.time() + timeout
    while time.time() < end:
        table = timeline_rows(path)
        if table:
            state, wall = table[0].index("stream_state"), table[0].index("wallclock")
            picked = [r for r in table[1:] if not r[3] and r[state] in states] if states else analysed(table)
            later = [x for x in (datetime.fromisoformat(r[wall]).timestamp() for r in picked) if x > t]
            if later:
                return min(later)
        time.sleep(0.1)
    return None


def wait_rows(path: Path, n: int, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if len(analysed(timeline_rows(path))) >= n:
            return True
        time.sleep(0.1)
    return False


class TsServer:
    """A live MPEG-TS server over TCP (the tests' publisher, listening)."""
    name = "MPEG-TS over TCP"
    watch_args: tuple[str, ...] = ()
    slack_s = 1.0  # how far a signal_lost event's length may be from the outage seen

    def __init__(self):
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"

    def start(self):
        self.publisher = Publisher(f"{self.url}?listen=1", "mpegts", seconds=600, size=SIZE)
        self.publisher.start()

    def stop(self):
        self.publisher.stop()


class RtspServer:
    """Debian's rtsp-server-perl, fed by the publisher; clients read RTP over UDP."""
    name = "RTSP (rtsp-server-perl, RTP over UDP)"
    watch_args = ("--rtsp-transport", "udp")
    slack_s = 2.0

    def __init__(self):
        self.client_port, self.source_port = free_port(), free_port()
        self.url = f"rtsp://127.0.0.1:{self.client_port}/live"

    def start(self):
        self.server = subprocess.Popen(
            ["rtsp-server-perl", "--clientport", str(self.client_port), "--serverport", str(self.source_port),
             "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
             "--rtp_start_port", str(20000 + self.client_port % 20000)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.time() + 15
        while not (listening(self.client_port) and listening(self.source_port)) and time.time() < end:
            time.sleep(0.05)
        self.publisher = Publisher(f"rtsp://127.0.0.1:{self.source_port}/live", "rtsp", seconds=600, size=SIZE,
                                   options={"rtsp_transport": "udp"})
        self.publisher.start(settle_s=1.0)

    def stop(self):
        self.publisher.stop()
        self.server.kill()
        self.server.wait(10)


def server_restarts(server, n: int, tmp: Path) -> list[dict]:
    csv_path, events_path = tmp / "restarts.csv", tmp / "restarts.events.json"
    csv_path.unlink(missing_ok=True)
    events_path.unlink(missing_ok=True)
    server.start()
    proc = watch(server.url, csv_path, events_path, "--every-frame", *server.watch_args)
    out = []
    try:
        if not wait_rows(csv_path, 25, 90):
            raise RuntimeError(f"the watch of {server.url} never started")
        for i in range(n):
            stopped = time.time()
            server.stop()
            time.sleep(2.0)  # an outage
            server.start()
            back = time.time()
            first = first_row_after(csv_path, back, 30)
            resumed = first is not None
            resume_s = first - back if resumed else None
            time.sleep(1.0)
            table = timeline_rows(csv_path)
            state, wall = table[0].index("stream_state"), table[0].index("wallclock")
            when = [(datetime.fromisoformat(r[wall]).timestamp(), r) for r in table[1:]]
            # the outage is in the timeline as state rows, and no analysed row was made up inside it
            gap = any(r[state] in ("lost", "reconnecting", "stalled") for t, r in when if t >= stopped and not r[3])
            fabricated = sum(1 for t, r in when if r[3] and stopped + 0.5 < t < back)
            # one signal_lost event per outage, as long as the picture was away (media time runs on the wall clock)
            lost = signal_lost_events(events_path)
            away = None if first is None else first - stopped
            event_ok = len(lost) == i + 1 and away is not None and abs(lost[-1]["duration_s"] - away) <= server.slack_s
            out.append({"restart": i + 1, "resume_s": None if resume_s is None else round(resume_s, 2),
                        "gap_recorded": gap, "rows_inside_gap": fabricated, "signal_lost_events": len(lost),
                        "outage_s": None if away is None else round(away, 2),
                        "event_duration_s": lost[-1]["duration_s"] if lost else None,
                        "ok": resumed and resume_s <= 5.0 and gap and not fabricated and event_ok})
            seconds = {k: "-" if out[-1][k] is None else f"{out[-1][k]:.2f} s" for k in ("resume_s", "outage_s", "event_duration_s")}
            print(f"{i + 1:>7} {seconds['resume_s']:>10} {str(gap):>13} {fabricated:>15} {len(lost):>12} "
                  f"{seconds['outage_s']:>10} {seconds['event_duration_s']:>10}  {'ok' if out[-1]['ok'] else 'FAIL'}", flush=True)
    finally:
        stop(proc)
        server.stop()
    return out


def sigkills(n: int, tmp: Path) -> tuple[list[dict], bool]:
    server = TsServer()
    csv_path, events_path = tmp / "kills.csv", tmp / "kills.events.json"
    out = []
    for i in range(n):
        server.start()
        proc = watch(server.url, csv_path, events_path, "--every-frame")
        try:
            started = wait_rows(csv_path, len(analysed(timeline_rows(csv_path))) + 25, 90)
            seen = timeline_rows(csv_path)
            time.sleep(0.5)  # between two flushes
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            proc.kill()
            server.stop()
        after = timeline_rows(csv_path)
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
    final = timeline_rows(csv_path)
    no_duplicates = final.count(final[0]) == 1 and len({tuple(r) for r in final}) == len(final)
    return out, no_duplicates


def one_error_line(stderr: str) -> str | None:
    """The run's error line, when it said exactly one and no traceback."""
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    return errors[0] if len(errors) == 1 and "Traceback" not in stderr else None


def output_faults(tmp: Path) -> list[dict]:
    out = []
    clip = write_video(tmp / "clip.mp4", n=250, size=SIZE)
    csv_path = tmp / "full" / "clip.csv"
    csv_path.parent.mkdir()

    def small_disk():  # writes past 16 KiB (of a ~25 KiB CSV) fail as on a full disk (EFBIG; Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))

    r = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", str(clip), "--every-frame", "--csv", str(csv_path),
                        "--events", str(csv_path.with_suffix(".events.json")), "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=small_disk)
    kept = timeline_rows(csv_path)
    whole = bool(kept) and all(len(row) == len(kept[0]) for row in kept) and csv_path.read_bytes().endswith(b"\n")
    line = one_error_line(r.stderr)
    out.append({"fault": "disk full (analyze)", "exit": r.returncode, "error_line": line,
                "rows_kept": len(analysed(kept)), "ok": r.returncode == 1 and line is not None and whole and len(analysed(kept)) > 0})

    server = TsServer()
    server.start()
    folder = tmp / "removed"
    folder.mkdir()
    proc = watch(server.url, folder / "feed.csv", folder / "feed.events.json", stderr=subprocess.PIPE)
    try:
        wait_rows(folder / "feed.csv", 5, 60)
        shutil.rmtree(folder)
        removed = time.time()
        _, stderr = proc.communicate(timeout=30)
        took = time.time() - removed
    except subprocess.TimeoutExpired:
        stderr, took = "", None
    finally:
        proc.kill()
        server.stop()
    line = one_error_line(stderr)
    out.append({"fault": "output folder removed (watch)", "exit": proc.returncode, "error_line": line,
                "stopped_after_s": None if took is None else round(took, 2),
                "ok": proc.returncode == 1 and line is not None and took is not None and took < 10})
    for o in out:
        print(f"{o['fault']:<30} exit {o['exit']}  {'ok' if o['ok'] else 'FAIL'}  {o['error_line']}", flush=True)
    return out


def misbehaving_sources(tmp: Path, hold_s: float, fast_s: float) -> list[dict]:
    out = []
    port = free_port()
    publisher = Publisher(f"tcp://127.0.0.1:{port}?listen=1", "mpegts", seconds=600, size=SIZE)
    publisher.start()
    relay = Relay(port).start()
    csv_path = tmp / "relay.csv"
    proc = watch(relay.url, csv_path, tmp / "relay.events.json")
    try:
        wait_rows(csv_path, 10, 60)
        time.sleep(3.0)
        base = rss_mb(proc.pid)
        for mode, seconds in (("hold", hold_s), ("garbage", 10.0)):
            relay.mode, began = mode, time.time()
            fired = first_row_after(csv_path, began, seconds + 10, ("stalled", "lost"))
            time.sleep(max(0.0, began + seconds - time.time()))
            peak = rss_mb(proc.pid)
            relay.mode, back = "pass", time.time()
            first = first_row_after(csv_path, back, 30)
            out.append({"source": f"{mode} {seconds:g} s", "watchdog_s": None if fired is None else round(fired - began, 2),
                        "resume_s": None if first is None else round(first - back, 2),
                        "rss_growth_mb": round(max(peak, rss_mb(proc.pid)) - base, 1)})
            out[-1]["ok"] = (fired is not None and fired - began <= 10 and first is not None and first - back <= 5
                             and out[-1]["rss_growth_mb"] < 50)
    finally:
        stop(proc)
        relay.stop()
        publisher.stop()

    fast = Publisher(f"tcp://127.0.0.1:{port}?listen=1", "mpegts", seconds=fast_s * 2 + 30, size=SIZE, speed=2.0)
    fast.start()
    csv_path = tmp / "fast.csv"
    proc = watch(f"tcp://127.0.0.1:{port}", csv_path, tmp / "fast.events.json")
    try:
        wait_rows(csv_path, 5, 60)
        began = time.time()
        time.sleep(5.0)
        base, peak = rss_mb(proc.pid), 0.0
        while time.time() < began + fast_s:
            peak = max(peak, rss_mb(proc.pid))
            time.sleep(0.5)
        table = timeline_rows(csv_path)
        media = [float(r[0]) for r in analysed(table)]
        wall = table[0].index("wallclock")
        walls = [datetime.fromisoformat(r[wall]).timestamp() for r in analysed(table)]
        pace = (media[-1] - media[0]) / max(walls[-1] - walls[0], 1e-6)
    finally:
        stop(proc)
        fast.stop()
    out.append({"source": f"2x real time {fast_s:g} s", "media_s_per_s": round(pace, 2), "rss_growth_mb": round(peak - base, 1),
                "ok": pace > 1.5 and peak - base < 50})
    for o in out:
        detail = (f"watchdog {o['watchdog_s']} s, back {o['resume_s']} s" if "watchdog_s" in o
                  else f"{o['media_s_per_s']} s of media a second")
        print(f"{o['source']:<22} {detail:<40} RSS +{o['rss_growth_mb']} MB  {'ok' if o['ok'] else 'FAIL'}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 restarts and 3 kills, a 10 s hold, 15 s at 2x")
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--hold", type=float, default=30.0, help="seconds the stalled source sends nothing")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS, help="which parts to run (default all)")
    args = ap.parse_args()
    restarts, kills, hold, fast = (3, 3, 10.0, 15.0) if args.quick else (args.restarts, args.kills, args.hold, 30.0)
    print(f"machine: {machine()}")
    restart_runs, kill_runs, no_duplicates, outputs, sources = {}, [], None, [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for server in (TsServer(), RtspServer()) if "restarts" in args.parts else ():
            if isinstance(server, RtspServer) and shutil.which("rtsp-server-perl") is None:
                print("RTSP: skipped (Debian's rtsp-server-perl is not installed)")
                continue
            print(f"server killed and restarted ({server.name}):")
            print(f"{'restart':>7} {'resumed in':>10} {'gap recorded':>13} {'rows inside it':>15} {'signal_lost':>12} "
                  f"{'away':>10} {'event':>10}  verdict")
            restart_runs[server.name] = server_restarts(server, restarts, tmp)
        if "kills" in args.parts:
            print("watch SIGKILLed and restarted:")
            print(f"{'kill':>4} {'CSV parses':>11} {'flushed rows kept':>17} {'events JSON':>12}  verdict")
            kill_runs, no_duplicates = sigkills(kills, tmp)
        if "outputs" in args.parts:
            print("outputs that can no longer be written:")
            outputs = output_faults(tmp)
        if "sources" in args.parts:
            print("misbehaving sources:")
            sources = misbehaving_sources(tmp, hold, fast)
    resumes = [r["resume_s"] for runs in restart_runs.values() for r in runs if r["resume_s"] is not None]
    summary = {"machine": machine(),
               "restarts_ok": {name: f"{sum(r['ok'] for r in runs)}/{len(runs)}" for name, runs in restart_runs.items()},
               "max_resume_s": max(resumes) if resumes else None,
               "kills_ok": f"{sum(r['ok'] for r in kill_runs)}/{len(kill_runs)}",
               "appended_without_duplicates": no_duplicates,
               "outputs_ok": f"{sum(o['ok'] for o in outputs)}/{len(outputs)}",
               "sources_ok": f"{sum(o['ok'] for o in sources)}/{len(sources)}",
               "restarts": restart_runs, "kills": kill_runs, "outputs": outputs, "sources": sources}
    for name, ok in summary["restarts_ok"].items():
        print(f"{name}: {ok} resumes within 5 s with the gap recorded and its signal_lost event")
    print(f"{summary['kills_ok']} SIGKILLs with a parseable CSV, every flushed row kept and valid events JSON; "
          f"appended without duplicates: {no_duplicates}")
    print(f"{summary['outputs_ok']} output faults ended in one error line; {summary['sources_ok']} misbehaving sources "
          f"survived with bounded memory")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
