"""Faults a monitor on an OR network meets (issue 21), one of each kind, through the real processes
on loopback. The repeated campaign is the benchmark's job; these pin the behaviour."""
import json
import signal
import subprocess
import sys
import time

from conftest import ROOT
from helpers import Publisher, analysed, free_port, run_cli, timeline_rows


def test_a_killed_watch_leaves_whole_files_and_a_restart_continues_them(tmp_path, tiny_weights):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    csv_path, events_path = tmp_path / "feed.csv", tmp_path / "feed.events.json"
    args = ["watch", url, "--weights", str(tiny_weights), "--csv", str(csv_path), "--events", str(events_path),
            "--every-frame"]
    server = Publisher(f"{url}?listen=1", "mpegts", seconds=120, size=(320, 180))
    server.start()
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (csv_path.exists() and len(analysed(timeline_rows(csv_path))) >= 40):
            time.sleep(0.2)
        flushed = timeline_rows(csv_path)
        assert len(analysed(flushed)) >= 40
        time.sleep(0.7)  # mid-run, between flushes
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        server.stop()
    killed = timeline_rows(csv_path)
    header = killed[0]
    assert all(len(row) == len(header) for row in killed)  # whole rows only: still parseable
    assert killed[:len(flushed)] == flushed  # every row flushed before the kill is kept
    json.loads(events_path.read_text())  # written by rename: always valid JSON

    server = Publisher(f"{url}?listen=1", "mpegts", seconds=30, size=(320, 180))
    server.start()
    try:
        r = run_cli(*args, "--duration", "4", timeout=120)
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr
    again = timeline_rows(csv_path)
    assert again[:len(killed)] == killed and len(analysed(again)) > len(analysed(killed))
    assert again.count(header) == 1 and len({tuple(row) for row in again}) == len(again)  # appended, no duplicate
    states = [row[header.index("stream_state")] for row in again[len(killed):]]
    assert states[0] == "connecting"  # the restart is marked in the timeline
    assert json.loads(events_path.read_text())["source"] == url


def test_analyze_starts_afresh_and_watch_refuses_a_table_of_other_columns(tmp_path, tiny_weights):
    from helpers import write_video
    video = write_video(tmp_path / "clip.mp4", n=25)
    out = tmp_path / "clip.csv"
    for _ in range(2):  # analysing a recording again replaces its results
        r = run_cli("analyze", str(video), "--csv", str(out), "--events", str(tmp_path / "e.json"),
                    "--weights", str(tiny_weights), "-q")
        assert r.returncode == 0, r.stderr
    rows = timeline_rows(out)
    assert rows.count(rows[0]) == 1
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    r = run_cli("watch", "synthetic:2", "--csv", str(other), "--weights", str(tiny_weights))
    assert r.returncode == 2 and "holds a timeline with other columns" in r.stderr
    assert other.read_text() == "a,b,c\n1,2,3\n"


def test_a_full_disk_ends_the_run_in_one_line_and_keeps_whole_rows(tmp_path, tiny_weights):
    import resource
    from helpers import write_video
    clip = write_video(tmp_path / "clip.mp4", n=250)
    csv_path = tmp_path / "clip.csv"

    def small_disk():  # writes past 8 KiB fail as on a full disk (EFBIG; Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    r = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", str(clip), "--every-frame", "--weights",
                        str(tiny_weights), "--csv", str(csv_path), "--events", str(tmp_path / "clip.events.json"), "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=small_disk)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (f"scopewatch analyze: error: cannot write {csv_path}: the file size "
                                                 "limit is reached; what was written before is kept")
    kept = timeline_rows(csv_path)
    assert csv_path.stat().st_size <= 8192 and csv_path.read_bytes().endswith(b"\r\n")
    assert all(len(row) == len(kept[0]) for row in kept) and len(analysed(kept)) > 20  # whole rows, up to the limit


def test_the_output_folder_removed_mid_watch_ends_it_in_one_line(tmp_path, tiny_weights):
    import shutil
    from monitor.outputs.naming import feed_stem
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    out = tmp_path / "out"
    out.mkdir()
    server = Publisher(f"{url}?listen=1", "mpegts", seconds=60, size=(320, 180))
    server.start()
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "watch", url, "--weights", str(tiny_weights),
                             "--csv", str(out / "feed.csv"), "--events", str(out / "feed.events.json")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not ((out / "feed.csv").exists() and len(analysed(timeline_rows(out / "feed.csv"))) >= 5):
            time.sleep(0.2)
        shutil.rmtree(out)
        removed = time.time()
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        server.stop()
    assert time.time() - removed < 10 and proc.returncode == 1 and "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if "error" in line] == [
        f"scopewatch watch: error: {feed_stem(url)}: cannot write {out / 'feed.csv'}: it was removed (or its folder) "
        "while being written"]
