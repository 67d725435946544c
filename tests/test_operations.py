"""What hospital IT runs ScopeWatch with (issue 21): the Prometheus endpoint of `watch
--metrics-port`, scraped over HTTP from the real process while it watches a real stream (MPEG-TS over
TCP on loopback, published by PyAV), and `--log-format json` lines for log shippers."""
import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT
from helpers import Publisher, free_port, run_cli


def scrape(port: int) -> dict:
    """{(name, labels as a sorted tuple): value} of one scrape."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_watch_serves_frames_latency_state_and_version(tmp_path, tiny_weights):
    stream_port, metrics_port = free_port(), free_port()
    url = f"tcp://127.0.0.1:{stream_port}"
    server = Publisher(f"{url}?listen=1", "mpegts", seconds=60, size=(320, 180))
    server.start()
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "watch", url, "--weights", str(tiny_weights),
                             "--metrics-port", str(metrics_port), "--out-dir", str(tmp_path), "--duration", "20"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        feed = "127.0.0.1:" + str(stream_port)
        deadline, seen = time.time() + 60, {}
        while time.time() < deadline:
            try:
                seen = scrape(metrics_port)
            except OSError:
                seen = {}
            analysed = [v for (name, labels), v in seen.items() if name == "scopewatch_frames_analysed_total"]
            if analysed and analysed[0] >= 10:
                break
            time.sleep(0.5)
        assert analysed and analysed[0] >= 10, seen
        feeds = {dict(labels)["feed"] for (name, labels) in seen if name == "scopewatch_frames_decoded_total"}
        assert len(feeds) == 1 and feed in next(iter(feeds))
        label = (("feed", next(iter(feeds))),)
        assert seen[("scopewatch_frames_decoded_total", label)] >= seen[("scopewatch_frames_analysed_total", label)]
        assert seen[("scopewatch_frames_dropped_total", label)] == 0
        assert seen[("scopewatch_feed_state", tuple(sorted({"feed": label[0][1], "state": "live"}.items())))] == 1.0
        assert seen[("scopewatch_feed_state", tuple(sorted({"feed": label[0][1], "state": "lost"}.items())))] == 0.0
        # every analysed frame is in the latency histogram, under +Inf
        inf = tuple(sorted({"feed": label[0][1], "le": "+Inf"}.items()))
        assert seen[("scopewatch_latency_seconds_bucket", inf)] == seen[("scopewatch_latency_seconds_count", label)]
        assert seen[("scopewatch_latency_seconds_count", label)] >= 10
        info = [dict(labels) for (name, labels) in seen if name == "scopewatch_build_info"]
        assert info and info[0]["weights"] == tiny_weights.name and info[0]["version"]
        assert ("scopewatch_alarms_active", label) in seen
    finally:
        if proc.poll() is None and time.time() > deadline:  # it never got going: do not wait for --duration
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # it stops at --duration
        server.stop()
    assert proc.returncode == 0, err
    with pytest.raises(OSError):  # the endpoint goes with the process
        scrape(metrics_port)


def test_a_metrics_port_in_use_is_one_line(tmp_path, tiny_weights):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli("watch", "synthetic:5", "--weights", str(tiny_weights), "--metrics-port", str(port),
                    "--csv", str(tmp_path / "t.csv"), timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"scopewatch watch: error: --metrics-port {port}: cannot listen")


def test_json_logs_say_each_state_change_and_alarm_with_its_feed(tmp_path):
    # The demo scene with the shipped weights: smoke and other distortions come and go in 15 s.
    r = run_cli("--log-format", "json", "watch", "synthetic:15", "--csv", str(tmp_path / "t.csv"),
                "--events", str(tmp_path / "t.json"), timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stderr.strip().splitlines()]  # nothing but JSON on stderr
    states = [(x["feed"], x["state"]) for x in lines if "state" in x]
    assert [s for _, s in states][-2:] == ["live", "ended"] and {f for f, _ in states} == {"synthetic:15"}
    alarms = [x for x in lines if "alarm" in x]
    assert alarms and {x["change"] for x in alarms} == {"on", "off"}
    events = json.loads((tmp_path / "t.json").read_text())["events"]
    assert {e["name"] for e in events} <= {x["alarm"] for x in alarms}
    assert all(x["level"] in ("info", "warning") and x["time"].endswith("+00:00") for x in lines)


def test_the_version_is_one_and_the_files_carry_it(tmp_path):
    from importlib.metadata import version

    from model.checkpoint import CODE_VERSION
    from model.factory import weights_label
    assert version("scopewatch") == CODE_VERSION  # pyproject.toml and the code say the same
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"scopewatch {CODE_VERSION} (weights {weights_label(None)};")
    r = run_cli("watch", "synthetic:3", "--csv", str(tmp_path / "t.csv"), "--events", str(tmp_path / "t.json"),
                timeout=120)
    assert r.returncode == 0, r.stderr
    made_by = json.loads((tmp_path / "t.json").read_text())["made_by"]
    assert made_by == {"scopewatch": CODE_VERSION, "model": "scopewatch_lap5", "weights": weights_label(None)}
