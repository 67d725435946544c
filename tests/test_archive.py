"""Archive analysis: chunked and stitched (here and on a local Ray instance) it writes what the
local `analyze` writes; a corrupt video fails alone; a rerun skips finished videos; a Ray worker
killed mid-task is retried."""
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT
from helpers import write_video

from monitor.archive import analyse_archive, find_videos, local_executor, ray_executor
from monitor.config import ScopeWatchConfig


def every_frame_config() -> ScopeWatchConfig:
    cfg = ScopeWatchConfig()
    cfg.sampling.fps = None
    return cfg


def local_analyze(video: Path, weights: Path | None = None, *extra) -> tuple[Path, Path]:
    """The reference: the local `scopewatch analyze` on one video, beside it."""
    cmd = [sys.executable, "-m", "apps.cli", "analyze", str(video), "-q", *extra]
    r = subprocess.run(cmd + (["--weights", str(weights)] if weights else []), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return Path(f"{video}.scopewatch.csv"), Path(f"{video}.scopewatch.events.json")


def assert_same_csv(a: Path, b: Path) -> None:
    ra, rb = list(csv.DictReader(open(a))), list(csv.DictReader(open(b)))
    assert len(ra) == len(rb) > 5
    for x, y in zip(ra, rb):
        for k in x:
            if k in ("wallclock", "latency_ms"):
                continue
            if x[k] and k not in ("frame_index", "stream_state") and not k.endswith("_level"):
                assert abs(float(x[k]) - float(y[k])) < 1e-3, (k, x["time_s"])
            else:
                assert x[k] == y[k], (k, x["time_s"])


def same_events(a: Path, b: Path) -> None:
    ea, eb = json.loads(a.read_text()), json.loads(b.read_text())
    assert (ea["source"], ea["tasks"]) == (eb["source"], eb["tasks"])
    assert [(e["kind"], e["name"]) for e in ea["events"]] == [(e["kind"], e["name"]) for e in eb["events"]]
    for x, y in zip(ea["events"], eb["events"]):
        assert abs(x["start_s"] - y["start_s"]) < 1e-6 and abs(x["end_s"] - y["end_s"]) < 1e-6
        assert abs(x["peak"] - y["peak"]) < 1e-3 and x["frames"] == y["frames"]
        assert bool(x["thumbnail_jpeg"]) == bool(y["thumbnail_jpeg"])


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Three small videos in nested folders, and one that is not a video at all."""
    root = tmp_path_factory.mktemp("archive")
    (root / "or2").mkdir()
    for name, n in (("a.mp4", 60), ("b.mp4", 100), ("or2/c.mkv", 40)):
        write_video(root / name, n=n, options={"preset": "ultrafast", "g": "10"})
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    return root


def test_find_videos_searches_folders_and_refuses_colliding_names(archive, tmp_path):
    from monitor.archive import ArchiveError
    assert [p.name for p in find_videos([archive])] == ["a.mp4", "b.mp4", "broken.mp4", "c.mkv"]
    (tmp_path / "x").mkdir()
    write_video(tmp_path / "x" / "a.mp4", n=5)
    with pytest.raises(ArchiveError, match="a.mp4"):
        find_videos([archive, tmp_path / "x"])
    with pytest.raises(ArchiveError, match="no such"):
        find_videos([tmp_path / "missing"])


@pytest.mark.parametrize("sampling", [["--every-frame"], []])
def test_chunked_analysis_writes_what_one_pass_writes_events_included(tmp_path, sampling):
    """A clip with scheduled episodes, cut into 1.5 s chunks decoded three at a time: same rows,
    same events, analysing every frame and at the default sampling (frames nothing refers to
    skipped: the 0.2 s slots are fixed in media time, so chunks keep what one pass keeps)."""
    from model.predict import load_predictor
    from training.demo import DemoFeed
    from training.synth import ClipWriter
    clip = tmp_path / "episodes.mp4"
    with ClipWriter(clip, (640, 360), 25) as w:
        for _, frame in DemoFeed(10):
            w.write(frame)
    ref_csv, ref_events = local_analyze(clip, None, *sampling)
    assert json.loads(ref_events.read_text())["events"]  # there is something to compare
    out = tmp_path / "out"
    cfg = every_frame_config() if sampling else ScopeWatchConfig()
    predictor = load_predictor(precision=cfg.model.precision)  # as the CLI's
    rows = analyse_archive([clip], out, cfg, predictor, local_executor(cfg, predictor, at_once=3), chunk_s=1.5)
    assert rows[0]["status"] == "ok" and rows[0]["frames"] == (250 if sampling else 50)
    assert_same_csv(ref_csv, out / "episodes.mp4.scopewatch.csv")
    same_events(ref_events, out / "episodes.mp4.scopewatch.events.json")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def chunk_workers() -> list[int]:
    """Pids of Ray workers running a chunk task now (Ray titles them after the task)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "cmdline").read_bytes().startswith(b"ray::_chunk_task"):
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def test_on_ray_same_files_as_local_corrupt_fails_alone_and_rerun_skips(local_ray, archive, tiny_weights, tmp_path):
    from model.predict import load_predictor
    cfg = every_frame_config()
    predictor = load_predictor(tiny_weights, "cpu")
    out = tmp_path / "out"
    executor = ray_executor(None, cfg, str(tiny_weights), "cpu")
    rows = {Path(r["video"]).name: r for r in analyse_archive(find_videos([archive]), out, cfg, predictor, executor, 1.5)}
    assert rows["broken.mp4"]["status"] == "failed" and "not a readable video" in rows["broken.mp4"]["error"]
    for name in ("a.mp4", "b.mp4", "c.mkv"):
        assert rows[name]["status"] == "ok"
        video = next(archive.rglob(name))
        ref_csv, ref_events = local_analyze(video, tiny_weights, "--every-frame")
        assert_same_csv(ref_csv, out / f"{name}.scopewatch.csv")
        same_events(ref_events, out / f"{name}.scopewatch.events.json")
    summary = list(csv.DictReader(open(out / "archive_summary.csv")))
    assert [r["video"].rsplit("/", 1)[-1] for r in summary] == ["a.mp4", "b.mp4", "broken.mp4", "c.mkv"]
    assert summary[1]["frames"] == "100" and float(summary[1]["duration_s"]) == pytest.approx(3.96)
    # A rerun analyses only what is not complete: here, nothing but the broken file again.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.scopewatch.csv")}
    again = analyse_archive(find_videos([archive]), out, cfg, predictor, executor, 1.5)
    assert len(again) == 4 and {p: p.stat().st_mtime_ns for p in out.glob("*.scopewatch.csv")} == stamps


def test_a_ray_worker_killed_mid_task_is_retried(local_ray, tiny_weights, tmp_path):
    from model.predict import load_predictor
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_video(videos / f"long{i}.mp4", n=250, size=(640, 360), options={"preset": "ultrafast", "g": "25"})
    cfg = every_frame_config()
    predictor = load_predictor(tiny_weights, "cpu")
    out = tmp_path / "out"
    result = {}
    job = threading.Thread(target=lambda: result.update(rows=analyse_archive(
        find_videos([videos]), out, cfg, predictor, ray_executor(None, cfg, str(tiny_weights), "cpu"), 4.0)))
    job.start()
    killed = None
    end = time.time() + 60
    while killed is None and time.time() < end:
        pids = chunk_workers()
        if pids:
            time.sleep(0.5)  # let it get into the chunk
            try:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    job.join(240)
    assert killed is not None, "no chunk task was seen running"
    assert all(r["status"] == "ok" for r in result["rows"]), result["rows"]
    for i in range(3):
        ref_csv, _ = local_analyze(videos / f"long{i}.mp4", tiny_weights, "--every-frame")
        assert_same_csv(ref_csv, out / f"long{i}.mp4.scopewatch.csv")


def test_archive_mode_from_the_command_line(archive, tiny_weights, tmp_path):
    r = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", str(archive), "--out", str(tmp_path),
                        "--weights", str(tiny_weights), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1  # one video failed
    assert "3 of 4 videos analysed" in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("scopewatch analyze: error:") and "broken.mp4" in r.stderr
    r = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", str(archive), "--ray"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--ray needs --out" in r.stderr
