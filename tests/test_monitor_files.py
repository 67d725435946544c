"""The monitor on real encoded files: codecs, containers, VFR, odd sizes, bad input, truncation."""
import csv
import json
import re

import numpy as np
import pytest

from model.tasks import DEFAULT_TASKS
from monitor.config import ScopeWatchConfig
from monitor.records import csv_columns
from monitor.session import Session
from monitor.sources import FileSource, RawFrame, SourceError, open_source

from helpers import run_cli, write_audio_only, write_video


@pytest.fixture(scope="module")
def weights(tiny_weights):
    return tiny_weights


@pytest.fixture(scope="module")
def predictor(tiny_predictor):
    return tiny_predictor


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def analyse(path, predictor, fps=None, tmp=None):
    cfg = ScopeWatchConfig()
    cfg.sampling.fps = fps
    source = open_source(str(path), cfg.source)
    source.open()
    session = Session(source, predictor, cfg, csv_path=tmp / "t.csv" if tmp else None)
    session.run()
    return session


@pytest.mark.parametrize("codec, container, size", [
    ("libx264", "mp4", (320, 180)), ("libx265", "mkv", (322, 182)), ("libvpx-vp9", "webm", (320, 180)),
    ("mpeg4", "avi", (320, 240)), ("libx264", "mov", (256, 144)), ("libx264", "ts", (320, 180)),
])
def test_every_codec_and_container_is_analysed(tmp_path, predictor, codec, container, size):
    path = write_video(tmp_path / f"clip.{container}", codec, size, n=20)
    s = analyse(path, predictor, tmp=tmp_path)
    rows = [r for r in s.timeline.snapshot() if r.analysed]
    assert len(rows) == 20 and s.monitor.failed is None
    assert [r.frame_index for r in rows] == list(range(20))
    assert np.allclose([r.time_s for r in rows], np.arange(20) / 25, atol=0.002)
    assert all(set(r.probabilities) == set(DEFAULT_TASKS) for r in rows)
    assert s.timeline.snapshot()[-1].stream_state.value == "ended"


def test_variable_frame_rate_time_comes_from_pts(tmp_path, predictor):
    times = [0.0, 0.04, 0.08, 0.5, 0.52, 1.3, 1.34, 2.0]
    path = write_video(tmp_path / "vfr.mkv", "libx264", n=len(times), times=times)
    s = analyse(path, predictor)
    got = [r.time_s for r in s.timeline.snapshot() if r.analysed]
    assert np.allclose(got, times, atol=0.002)


def test_sampling_by_media_time(tmp_path, predictor):
    path = write_video(tmp_path / "clip.mp4", n=50, fps=25)  # 2 s
    s = analyse(path, predictor, fps=5)
    rows = [r for r in s.timeline.snapshot() if r.analysed]
    assert len(rows) == 10
    assert np.allclose(np.diff([r.time_s for r in rows]), 0.2, atol=0.005)
    assert s.monitor.metrics.decoded == 50


def decoded(source: FileSource, step_s: float | None) -> dict[int, np.ndarray]:
    source.open()
    source.keeping_every(step_s)
    return {f.pts: f.av_frame.to_ndarray(format="rgb24") for f in source.frames() if isinstance(f, RawFrame)}


def test_sampled_recordings_skip_only_the_frames_nothing_refers_to(tmp_path, predictor):
    """x264's default B-frames: at 5 analysed frames a second they are not decoded; what is
    decoded is bit for bit what a full decode gives, and every 0.2 s slot still has its row."""
    path = write_video(tmp_path / "b.mp4", n=50, options={"preset": "veryfast", "bf": "3"})  # 2 s
    whole, refs = decoded(FileSource(path), None), decoded(FileSource(path), 0.2)
    assert len(whole) == 50 and 15 < len(refs) < 40  # I and P frames only
    assert all(np.array_equal(frame, whole[pts]) for pts, frame in refs.items())
    s = analyse(path, predictor, fps=5)
    rows = [r for r in s.timeline.snapshot() if r.analysed]
    assert [int(r.time_s / 0.2 + 1e-6) for r in rows] == list(range(10))
    assert s.monitor.metrics.decoded == len(refs)
    assert [r.frame_index for r in rows] == [round(r.time_s * 25) for r in rows]  # numbered as in the file
    assert len(decoded(FileSource(path), 0.1)) == 50  # 2.5 frames apart: a reference might not fall between


def test_every_frame_of_a_recording_decodes_on_frame_threads_bit_for_bit(tmp_path):
    """Analysing every frame, a recording decodes several frames at once (FRAME threads), in order
    and bit for bit as one thread decodes it; sampled, it keeps the decoder's default."""
    import av
    path = write_video(tmp_path / "b.mp4", n=50, options={"preset": "veryfast", "bf": "3"})
    with av.open(str(path)) as c:
        c.streams.video[0].codec_context.thread_count = 1
        one = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]

    def decoding(step_s):
        source = FileSource(path)
        source.open()
        source.keeping_every(step_s)
        frames = (f for f in source.frames() if isinstance(f, RawFrame))
        first = next(frames)
        threads = source.container.streams.video[0].codec_context.thread_type
        return threads, [f.av_frame.to_ndarray(format="rgb24") for f in (first, *frames)]

    threads, every = decoding(None)
    assert threads.name == "FRAME"
    assert len(every) == 50 and all(np.array_equal(a, b) for a, b in zip(every, one))
    assert decoding(0.2)[0].name != "FRAME"


def test_a_transport_stream_recording_is_decoded_whole(tmp_path, predictor):
    """Its lost frames are found by gaps in the timestamps, which skipped frames would imitate."""
    path = write_video(tmp_path / "b.ts", n=50, options={"preset": "veryfast", "bf": "3"})
    assert len(decoded(FileSource(path), 0.2)) == 50
    s = analyse(path, predictor, fps=5)
    slots = [int(r.time_s / 0.2 + 1e-6) for r in s.timeline.snapshot() if r.analysed]
    assert slots == list(range(slots[0], slots[0] + len(slots))) and len(slots) >= 10  # its times start at 1.4 s
    assert s.monitor.failed is None and s.monitor.metrics.decoded == 50


def test_audio_track_is_ignored(tmp_path, predictor):
    path = write_video(tmp_path / "av.mp4", n=10, audio=True)
    assert sum(r.analysed for r in analyse(path, predictor).timeline.snapshot()) == 10


def test_csv_columns_rows_and_events_through_the_cli(tmp_path, weights):
    path = write_video(tmp_path / "clip.mp4", n=30)
    r = run_cli("analyze", str(path), "--every-frame", "--weights", str(weights), "-q")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "clip.mp4.scopewatch.csv"
    rows = read_csv(out)
    assert list(rows[0]) == csv_columns(DEFAULT_TASKS) == [
        "time_s", "frame_index", "wallclock", "noise", "smoke", "uneven_illumination", "defocus_blur", "motion_blur",
        "noise_level", "smoke_level", "uneven_illumination_level", "defocus_blur_level", "motion_blur_level",
        "quality", "latency_ms", "stream_state"]
    frames = [x for x in rows if x["noise"] != ""]
    assert len(frames) == 30
    for x in frames:
        assert all(0.0 <= float(x[t]) <= 1.0 for t in DEFAULT_TASKS)
        assert all(x[f"{t}_level"] in "01234" for t in DEFAULT_TASKS)
        assert 0.0 <= float(x["quality"]) <= 100.0 and float(x["latency_ms"]) >= 0 and x["stream_state"] == "live"
        assert x["wallclock"].endswith("+00:00")
    assert rows[-1]["stream_state"] == "ended"
    events = json.loads((tmp_path / "clip.mp4.scopewatch.events.json").read_text())
    assert events["tasks"] == list(DEFAULT_TASKS) and isinstance(events["events"], list)
    assert "% of time" in r.stdout and "quality: mean" in r.stdout


def test_truncated_transport_stream_keeps_the_intact_part_and_says_so(tmp_path, weights):
    # MPEG-TS declares no duration and FFmpeg skips the garbage without flagging a packet: the
    # tail of the file that gave no frame is what tells (issue 22 item 10).
    path = write_video(tmp_path / "full.ts", n=100, size=(320, 180))
    data = path.read_bytes()
    cut = tmp_path / "cut.ts"
    # The first 40% intact, then garbage where the rest of the stream should be.
    cut.write_bytes(data[: len(data) * 4 // 10] + bytes(np.random.default_rng(0).integers(0, 256, 60000, dtype=np.uint8)))
    r = run_cli("analyze", str(cut), "--every-frame", "--weights", str(weights), "-q")
    rows = [x for x in read_csv(tmp_path / "cut.ts.scopewatch.csv") if x["noise"] != ""]
    assert 30 <= len(rows) < 100 and "Traceback" not in r.stderr
    assert "KB hold no decodable video (cut or corrupted)" in r.stderr
    whole = run_cli("analyze", str(path), "--every-frame", "--weights", str(weights), "-q")
    assert whole.returncode == 0 and "warning" not in whole.stderr


def test_frames_lost_inside_a_transport_stream_are_a_counted_gap(tmp_path, weights):
    data = write_video(tmp_path / "full.ts", n=100, size=(320, 180)).read_bytes()
    (tmp_path / "mid.ts").write_bytes(_damage(data, len(data) // 2, 20000))
    r = run_cli("analyze", str(tmp_path / "mid.ts"), "--every-frame", "--weights", str(weights), "-q")
    assert r.returncode == 0 and "frames missing" in r.stderr, r.stderr
    rows = read_csv(tmp_path / "mid.ts.scopewatch.csv")
    assert [x["stream_state"] for x in rows if x["frame_index"] == "-1"] == ["live", "stalled", "live", "ended"]
    missing = int(re.search(r"(\d+) frames missing \(", r.stderr).group(1))
    assert missing + len([x for x in rows if x["noise"] != ""]) == 100


@pytest.mark.parametrize("name, options", [("full.mkv", None), ("full.mp4", {"movflags": "faststart"})])
def test_truncated_file_keeps_rows_before_the_damage_and_fails(tmp_path, weights, name, options):
    path = write_video(tmp_path / name, n=100, container_options=options)
    if options:  # faststart puts the index first, so the cut file still opens (and says how long it was)
        import av
        with av.open(str(path)) as c:
            assert c.streams.video[0].frames == 100
    data = path.read_bytes()
    cut = tmp_path / f"cut{path.suffix}"
    cut.write_bytes(data[: len(data) // 2])
    r = run_cli("analyze", str(cut), "--every-frame", "--weights", str(weights), "-q")
    rows = read_csv(tmp_path / f"{cut.name}.scopewatch.csv")
    analysed = [x for x in rows if x["noise"] != ""]
    assert 20 < len(analysed) < 100
    assert r.returncode == 1 and "keeps" in r.stderr and "Traceback" not in r.stderr
    assert rows[-1]["stream_state"] == "failed"


def _bad_inputs(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "random.mp4").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8)))
    (tmp_path / "text.mp4").write_text("this is a text file, not a video\n" * 50)
    write_audio_only(tmp_path / "audio.m4a")
    return {
        "missing": (str(tmp_path / "nope.mp4"), "no such file"),
        "folder": (str(tmp_path / "folder"), "is a folder"),
        "empty": (str(tmp_path / "empty.mp4"), "empty file"),
        "random": (str(tmp_path / "random.mp4"), "not a readable video"),
        "text": (str(tmp_path / "text.mp4"), "not a readable video"),
        "audio": (str(tmp_path / "audio.m4a"), "no video stream"),
        "scheme": ("ftp://127.0.0.1/x.mp4", "unsupported scheme"),
    }


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "random", "text", "audio", "scheme"])
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, weights, case):
    target, message = _bad_inputs(tmp_path)[case]
    r = run_cli("analyze", target, "--weights", str(weights), "-q")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--fps", "0"], "positive"), (["--fps", "x"], "positive"), (["--fps", "5", "--every-frame"], "not allowed"),
    (["--device", "tpu"], "invalid choice"), (["--weights", "/no/such.pt"], "no such checkpoint"),
])
def test_bad_option_values(tmp_path, args, message):
    path = write_video(tmp_path / "clip.mp4", n=5)
    r = run_cli("analyze", str(path), *args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unreachable_url_fails_after_the_timeout(tmp_path, weights):
    from helpers import free_port
    r = run_cli("watch", f"tcp://127.0.0.1:{free_port()}", "--timeout", "2", "--weights", str(weights), timeout=60)
    assert r.returncode == 1 and "cannot open" in r.stderr and "Traceback" not in r.stderr
    assert "0.0%" not in r.stdout and "quality" not in r.stdout  # no summary of a feed that never gave a frame


def test_analyze_of_an_unreachable_stream_says_so_in_one_line(tmp_path, weights):
    # Issue 21: a stream address is not a file path; it is reached, or said unreachable, once.
    from helpers import free_port
    port = free_port()
    r = run_cli("analyze", f"tcp://127.0.0.1:{port}", "--csv", str(tmp_path / "t.csv"),
                "--events", str(tmp_path / "t.json"), "--weights", str(weights), "-q", timeout=60)
    assert r.returncode == 1 and r.stdout.strip() == "", r.stdout
    assert r.stderr.strip().splitlines() == [
        f"scopewatch analyze: error: cannot open tcp://127.0.0.1:{port}: [Errno 111] Connection refused: "
        f"'tcp://127.0.0.1:{port}'; nothing analysed ({tmp_path / 't.csv'} records the attempt)"]


def test_open_source_picks_by_scheme(tmp_path):
    from apps.feeds import open_feed
    from monitor.sources import ArraySource, DeviceSource, StreamSource
    assert isinstance(open_source("rtsp://127.0.0.1/x"), StreamSource)
    assert isinstance(open_source("udp://127.0.0.1:5000"), StreamSource)
    assert isinstance(open_source("/dev/video0"), DeviceSource)
    assert isinstance(open_feed("synthetic:5"), ArraySource)  # the apps' demo feed, an ordinary source
    with pytest.raises(SourceError, match="unsupported scheme"):
        open_source("synthetic:5")  # the monitor itself knows no synthesis
    assert isinstance(open_source(str(tmp_path / "a.mp4")), FileSource)
    with pytest.raises(SourceError, match="unsupported scheme"):
        open_source("gopher://x/y")
    with pytest.raises(SourceError, match="cannot open capture device"):
        open_source("/dev/video99").open()


@pytest.mark.parametrize("case", ["csv_folder", "events_folder", "out_file", "csv_proc"])
def test_unwritable_output_paths_are_refused_before_decoding(tmp_path, weights, case):
    """Issue 22 item 1: each of these was a traceback; each is one line and exit 2, and nothing is left behind."""
    path = write_video(tmp_path / "clip.mp4", n=5)
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    args, message = {
        "csv_folder": (["--csv", str(tmp_path / "a_folder")], "is a folder"),
        "events_folder": (["--events", str(tmp_path / "a_folder")], "is a folder"),
        "out_file": (["--out", str(tmp_path / "a_file")], "a file of that name is in the way"),
        "csv_proc": (["--csv", "/proc/scopewatch_t.csv"], "cannot write /proc/scopewatch_t.csv"),
    }[case]
    r = run_cli("analyze", str(path), *args, "--weights", str(weights), "-q")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (r.stdout, r.stderr)
    assert not (tmp_path / "clip.mp4.scopewatch.csv").exists()  # refused before a header was written
    assert not list((tmp_path / "a_folder").iterdir())


@pytest.mark.parametrize("args, message", [
    (["--fps", "inf"], "positive finite"), (["--fps", "nan"], "positive finite"),
    (["--webhook", "file:///etc/passwd"], "http:// or https://"), (["--webhook", "localhost:8080"], "http:// or https://"),
])
def test_nonsense_option_values_are_refused(tmp_path, weights, args, message):
    """Issue 22 item 10: --fps inf was taken as every frame, a file:// webhook was accepted."""
    path = write_video(tmp_path / "clip.mp4", n=5)
    r = run_cli("analyze", str(path), *args, "--weights", str(weights), "-q")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (r.stdout, r.stderr)


def test_the_same_file_named_twice_is_analysed_once(tmp_path, weights):
    path = write_video(tmp_path / "clip.mp4", n=10)
    other = tmp_path / "sub" / ".." / "clip.mp4"  # the same file by another path
    (tmp_path / "sub").mkdir()
    r = run_cli("analyze", str(path), str(other), "--every-frame", "--weights", str(weights))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("given more than once") == 1
    assert r.stdout.count("frames analysed of") == 1  # one summary, not two
    assert len([x for x in read_csv(tmp_path / "clip.mp4.scopewatch.csv") if x["noise"] != ""]) == 10


@pytest.mark.parametrize("size", [(2, 2), (16, 16), (320, 40)])
def test_frames_too_small_to_judge_are_refused(tmp_path, weights, size):
    """Issue 22 item 4: 1x1 and 2x2 videos were scored 100% defocus and motion blur at level 4."""
    path = write_video(tmp_path / "tiny.mp4", n=5, size=size)
    r = run_cli("analyze", str(path), "--weights", str(weights), "-q")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "too small to judge" in lines[0], (r.stdout, r.stderr)
    assert f"{size[0]}x{size[1]}" in lines[0] and not (tmp_path / "tiny.mp4.scopewatch.csv").exists()


def test_a_feed_whose_frames_shrink_below_the_minimum_stops_with_the_reason(predictor):
    """A live feed is opened before its first frame is seen: the capture stage refuses the frames."""
    from monitor.sources import ArraySource, SourceInfo
    frames = [(i / 25, np.full((8, 8, 3), 120, np.uint8)) for i in range(10)]
    session = Session(ArraySource(frames, SourceInfo(8, 8, 25.0, "raw")), predictor, ScopeWatchConfig())
    session.run()
    assert session.monitor.failed and "too small to judge" in session.monitor.failed
    assert session.timeline.frames_analysed == 0


def _damage(data: bytes, start: int, length: int) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:start] + noise + data[start + length:]


def test_damage_mid_file_is_skipped_and_the_rest_analysed(tmp_path, weights):
    """Issue 22 item 3: damage in the middle of an MP4 ended the analysis there (exit 1); the intact
    second half is now analysed, the damaged stretch is a gap, and the count is said."""
    data = write_video(tmp_path / "ten.mp4", n=250).read_bytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(_damage(data, len(data) // 2, len(data) // 5))
    r = run_cli("analyze", str(damaged), "--every-frame", "--weights", str(weights), "-q")
    assert r.returncode == 0 and "damaged packets skipped" in r.stderr and "Traceback" not in r.stderr, r.stderr
    rows = read_csv(tmp_path / "damaged.mp4.scopewatch.csv")
    states = [(float(x["time_s"]), x["stream_state"]) for x in rows if x["frame_index"] == "-1"]
    assert [s for _, s in states] == ["live", "stalled", "live", "ended"]
    gap_start, gap_end = states[1][0], states[2][0]
    analysed = [float(x["time_s"]) for x in rows if x["noise"] != ""]
    assert 3.0 < gap_start < gap_end < 9.0 and not [t for t in analysed if gap_start < t < gap_end]
    assert len([t for t in analysed if t >= gap_end]) > 50  # the intact second half
    assert 150 < len(analysed) < 250


def test_damage_to_the_end_of_the_file_fails_keeping_the_rows(tmp_path, weights):
    data = write_video(tmp_path / "ten.mp4", n=100, container_options={"movflags": "faststart"}).read_bytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(_damage(data, len(data) // 2, len(data) - len(data) // 2))
    r = run_cli("analyze", str(damaged), "--every-frame", "--weights", str(weights), "-q")
    rows = read_csv(tmp_path / "damaged.mp4.scopewatch.csv")
    assert r.returncode == 1 and "keeps" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert rows[-1]["stream_state"] == "failed" and 20 < len([x for x in rows if x["noise"] != ""]) < 100


def test_a_recording_whose_folder_cannot_take_files_writes_to_scopewatch_out(tmp_path, weights):
    # /dev/fd cannot take a new file, even for root: a read-only folder that holds a real recording.
    import os
    import subprocess
    import sys
    video = write_video(tmp_path / "clip.mp4", n=25)
    fd = os.open(video, os.O_RDONLY)
    try:
        r = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", f"/dev/fd/{fd}", "--weights", str(weights), "-q"],
                           cwd=tmp_path, pass_fds=(fd,), capture_output=True, text=True, timeout=120)
    finally:
        os.close(fd)
    assert r.returncode == 0, r.stderr
    assert f"/dev/fd cannot take files; {fd}'s go to scopewatch-out/" in r.stderr
    rows = read_csv(tmp_path / "scopewatch-out" / f"{fd}.scopewatch.csv")
    assert sum(1 for row in rows if row["noise"]) >= 5
    assert (tmp_path / "scopewatch-out" / f"{fd}.scopewatch.events.json").is_file()
