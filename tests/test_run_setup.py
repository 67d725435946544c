"""What a run is built from: the one config (mode defaults, then a settings file, then flags), the
one decision every alarm reads, and the one rule that names output files."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from helpers import HookServer
from model.decision import Decision
from monitor.config import MODES, ConfigError, build_config, for_mode
from monitor.outputs.naming import feed_stem, output_paths
from monitor.outputs.timeline import Timeline
from monitor.records import FrameResult


def test_config_is_mode_defaults_then_file_then_flags(tmp_path):
    # One sampling default for recordings, watch and the dashboard (issue 22 item 6).
    assert build_config("recorded").sampling.fps == build_config("live").sampling.fps == build_config("dashboard").sampling.fps == 5.0
    assert build_config("dashboard").source.realtime and not build_config("live").source.realtime
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"sampling": {"fps": 10}, "decision": {"thresholds": {"smoke": 0.6}},
                                    "source": {"reconnect_backoff_s": [1, 2]}}))
    cfg = build_config("recorded", settings)
    assert cfg.sampling.fps == 10 and cfg.decision.threshold("smoke") == 0.6 and cfg.decision.threshold("noise") == 0.5
    assert cfg.source.reconnect_backoff_s == (1, 2)
    assert build_config("recorded", settings, {"sampling.fps": None}).sampling.fps is None  # --every-frame wins
    assert build_config("recorded", settings, {"sampling.fps": 2.0}).sampling.fps == 2.0


@pytest.mark.parametrize("text, message", [
    ('{"sampling": {"fsp": 3}}', "unknown setting 'fsp'"),
    ('{"sampels": {}}', "unknown section 'sampels'"),
    ('{"decision": {"thresholds": {"smoke": 0.97}}}', "must lie inside"),
    ('{"sampling": {"fps": -1}}', "fps must be a finite number > 0"),
    ('[1, 2]', "JSON object"),
    ('{not json', "cannot read settings"),
])
def test_bad_settings_are_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_config("live", path)


def test_a_bad_settings_file_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"events": {"smothing_s": 2}}')
    r = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", str(tmp_path / "x.mp4"), "--config", str(path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown setting 'smothing_s'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_another_mode_shares_the_runs_decision():
    live = build_config("dashboard", cli={"sampling.fps": None})
    recorded = for_mode(live, "recorded")
    assert recorded.sampling.fps == MODES["recorded"]["sampling.fps"] and not recorded.source.realtime
    assert live.sampling.fps is None and live.source.realtime  # the original is untouched
    live.decision.set_threshold("smoke", 0.7)
    assert recorded.decision.threshold("smoke") == 0.7


def test_decision_levels_and_event_levels_follow_each_threshold():
    d = Decision(thresholds={"smoke": 0.7})
    probs, sev = {"noise": 0.55, "smoke": 0.6}, {"noise": 0.9, "smoke": 0.9}
    assert d.alarms(probs) == ["noise"]
    assert d.levels(probs, sev) == {"noise": 4, "smoke": 0}
    assert d.levels({"noise": 0.55}, {"noise": 0.0}) == {"noise": 1}  # present is at least level 1
    assert (d.event_on("smoke"), d.event_off("smoke")) == pytest.approx((0.8, 0.6))
    assert (d.event_on("noise"), d.event_off("noise")) == pytest.approx((0.6, 0.4))
    with pytest.raises(ValueError):
        d.set_threshold("noise", 0.05)
    assert d.threshold("noise") == 0.5


def test_a_threshold_changed_mid_run_counts_from_then_on():
    d = Decision()
    tl = Timeline(("smoke",), d)
    for i in range(10):
        if i == 5:
            d.set_threshold("smoke", 0.7)
        tl(FrameResult("s", i, i, i * 0.2, 0.0, {"smoke": 0.6}, {"smoke": 1}, 90.0))
    [summary], _ = tl.summary()
    assert summary.percent_present == pytest.approx(50.0)


def test_one_rule_names_every_sources_files(tmp_path):
    video = tmp_path / "case one.mp4"
    video.write_bytes(b"")
    beside = output_paths(str(video))
    assert (beside.csv, beside.events) == (tmp_path / "case one.mp4.scopewatch.csv",
                                           tmp_path / "case one.mp4.scopewatch.events.json")
    assert output_paths(video, tmp_path / "out").summary == tmp_path / "out" / "case one.mp4.scopewatch.summary.json"
    stream = output_paths("tcp://127.0.0.1:9", tmp_path)
    assert stream.csv == tmp_path / "tcp___127_0_0_1_9.scopewatch.csv"  # never a path made of the URL
    assert output_paths("synthetic:60").csv == Path("synthetic_60.scopewatch.csv")
    assert feed_stem("///") == "feed"


def test_ray_is_a_flag_and_does_not_swallow_a_path():
    from apps.cli import build_parser
    args = build_parser().parse_args(["analyze", "--ray", "videos", "--out", "o"])
    assert args.ray and args.videos == ["videos"] and args.ray_address is None
    args = build_parser().parse_args(["analyze", "videos", "--out", "o", "--ray", "--ray-address", "auto"])
    assert args.ray_address == "auto"
    r = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", "v.mp4", "--ray-address", "auto"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--ray-address goes with --ray" in r.stderr


def test_archive_analysis_posts_its_events_to_the_webhook(tmp_path):
    from model.predict import load_predictor
    from monitor.archive import analyse_archive, local_executor
    from training.demo import DemoFeed
    from training.synth import ClipWriter

    hook = HookServer()
    clip = tmp_path / "demo.mp4"
    with ClipWriter(clip, (640, 360), 25) as w:
        for _, frame in DemoFeed(10):
            w.write(frame)
    cfg = build_config("recorded", cli={"output.webhook": hook.url})
    predictor = load_predictor()
    analyse_archive([clip], tmp_path / "out", cfg, predictor, local_executor(cfg, predictor))
    hook.close()
    written = json.loads(output_paths(clip, tmp_path / "out").events.read_text())["events"]
    assert written and [e["name"] for e in hook.received] == [e["name"] for e in written]


def test_the_dashboards_feeds_name_their_files_like_every_other_source(tmp_path, tiny_weights):
    from apps.dashboard.hub import SourceHub
    from model.predict import load_predictor
    hub = SourceHub(load_predictor(tiny_weights), build_config("live"), tmp_path)
    session = hub.start("synthetic:1")
    hub.threads["synthetic:1"].join(60)
    hub.stop_all()
    paths = output_paths("synthetic:1", tmp_path)
    assert session.csv.path == paths.csv and paths.csv.exists() and paths.events.exists()
    assert sum(1 for _ in open(paths.csv)) >= 8  # header, two state rows and the 1 s feed at 5 frames a second


def test_the_demo_posts_its_events_to_the_webhook(tmp_path):
    hook = HookServer()
    r = subprocess.run([sys.executable, "-m", "apps.cli", "demo", "--no-browser", "--seconds", "12", "--out",
                        str(tmp_path), "--webhook", hook.url], cwd=ROOT, capture_output=True, text=True, timeout=180)
    hook.close()
    assert r.returncode == 0, r.stderr
    written = json.loads((tmp_path / "demo.mp4.scopewatch.events.json").read_text())["events"]
    assert len(written) >= 3 and [e["name"] for e in hook.received] == [e["name"] for e in written]


def test_version_names_scopewatch_its_weights_and_libraries():
    """Issue 21: hospital IT pins a version."""
    r = subprocess.run([sys.executable, "-m", "apps.cli", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    import av
    import torch
    from model.factory import DEFAULT_MODEL, DEFAULT_TAG
    assert r.returncode == 0 and r.stdout.startswith("scopewatch 0.") and r.stdout.count("\n") == 1
    assert f"weights {DEFAULT_MODEL}.{DEFAULT_TAG}" in r.stdout and torch.__version__ in r.stdout and av.__version__ in r.stdout
