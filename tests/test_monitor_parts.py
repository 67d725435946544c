import threading
import time

import numpy as np
import pytest

from model.decision import Decision
from monitor.buffer import Control, RingBuffer
from monitor.capture import Sampler
from monitor.config import EventConfig, ScopeWatchConfig
from monitor.outputs.events import EventDetector
from monitor.outputs.webhook import WebhookSender
from monitor.records import FrameResult, StreamState

from helpers import HookServer, free_port

TASKS = ("noise", "smoke")


class Marker(Control):
    pass


def test_ring_buffer_drops_oldest_for_live_sources():
    buf = RingBuffer(3, drop_oldest=True)
    for i in range(5):
        assert buf.put(i)
    buf.put_control(Marker())
    items, dropped = buf.get_batch(10)
    assert items[:3] == [2, 3, 4] and isinstance(items[3], Marker) and dropped == 2 and buf.dropped == 2


def test_ring_buffer_blocks_for_files_and_never_drops():
    buf = RingBuffer(2, drop_oldest=False)
    assert buf.put(1) and buf.put(2)
    assert not buf.put(3, timeout=0.1)  # full: the producer waits
    got = []
    consumer = threading.Thread(target=lambda: [got.extend(buf.get_batch(1, timeout=1)[0]) for _ in range(3)])
    consumer.start()
    assert buf.put(3, timeout=2)
    consumer.join(3)
    assert got == [1, 2, 3] and buf.dropped == 0


def test_control_items_end_a_batch_and_are_never_dropped():
    buf = RingBuffer(2, drop_oldest=True)
    buf.put(1)
    buf.put_control(Marker())
    for i in range(2, 6):
        buf.put(i)
    first, _ = buf.get_batch(10)
    second, _ = buf.get_batch(10)
    assert isinstance(first[-1], Marker) and second == [4, 5]


def test_sampler_keeps_frames_by_media_time():
    s = Sampler(5.0)
    times = np.arange(0, 2, 0.04)
    kept = [t for t in times if s.keep(t)]
    assert len(kept) == 10 and np.allclose(np.diff(kept), 0.2, atol=0.01)
    vfr = [0.0, 0.05, 0.5, 0.55, 0.61, 1.9]  # the first frame of each 0.2 s slot that has one
    s = Sampler(5.0)
    assert [t for t in vfr if s.keep(t)] == [0.0, 0.5, 0.61, 1.9]
    s = Sampler(5.0)  # slots are fixed in media time: from mid-recording on, what one pass keeps
    late = [t for t in times[23:] if s.keep(t)]  # from 0.92 s
    assert late[0] == times[23] and np.allclose(late[1:], [t for t in kept if t > 0.99])
    assert all(Sampler(None).keep(t) for t in times)


def result(t, noise=0.0, smoke=0.0, quality=90.0, state=StreamState.LIVE):
    probs = {"noise": noise, "smoke": smoke} if state == StreamState.LIVE else {}
    return FrameResult("s", int(t * 10), None, t, 1e9 + t, probs, {"noise": 0, "smoke": 0}, quality if probs else None,
                       10.0, state)


def run_events(signal, image=None, step=0.1):
    det = EventDetector(TASKS, EventConfig(smoothing_s=0.3), "s", Decision(min_duration_s=1.0))
    events = []
    for i, (n, s, q) in enumerate(signal):
        img = image(i) if image else None
        events += det.update(result(i * step, n, s, q), img)
    events += det.flush()
    return events


def test_episode_opens_and_closes_with_hysteresis_and_statistics():
    sig = [(0.05, 0.0, 90)] * 20 + [(0.95, 0.0, 50)] * 30 + [(0.05, 0.0, 90)] * 20
    img = np.full((36, 64, 3), 120, np.uint8)
    events = run_events(sig, image=lambda i: img)
    dist = [e for e in events if e.kind == "distortion"]
    assert len(dist) == 1
    e = dist[0]
    # Boundaries come from the raw signal (rise at 2.0 s, last high frame at 4.9 s), not the lagging smoothing.
    assert e.name == "noise" and e.start_s == pytest.approx(2.0) and e.end_s == pytest.approx(4.9)
    assert e.peak == pytest.approx(0.95) and e.mean > 0.8 and e.mean_quality < 70
    assert e.thumbnail_jpeg[:2] == b"\xff\xd8"  # a JPEG
    assert [x.name for x in events if x.kind == "low_quality"] == ["low_quality"]


def test_flicker_around_the_threshold_is_one_episode_and_blips_are_none():
    flicker = [(0.9 if i % 2 else 0.55, 0, 90) for i in range(40)]
    assert len([e for e in run_events(flicker) if e.kind == "distortion"]) == 1
    blip = [(0.05, 0, 90)] * 10 + [(0.99, 0, 90)] * 3 + [(0.05, 0, 90)] * 10
    assert [e for e in run_events(blip) if e.kind == "distortion"] == []


def test_simultaneous_distortions_are_separate_episodes():
    sig = [(0.9, 0.9, 90)] * 20 + [(0.05, 0.9, 90)] * 20 + [(0.05, 0.05, 90)] * 10
    names = sorted(e.name for e in run_events(sig) if e.kind == "distortion")
    assert names == ["noise", "smoke"]


def test_freeze_and_black_frames():
    rng = np.random.default_rng(0)
    frozen = (rng.random((36, 64, 3)) * 255).astype(np.uint8)

    def image(i):
        if i < 10:
            return (rng.random((36, 64, 3)) * 255).astype(np.uint8)
        if i < 40:
            return frozen
        if i < 60:
            return np.zeros((36, 64, 3), np.uint8)
        return (rng.random((36, 64, 3)) * 255).astype(np.uint8)

    events = run_events([(0.05, 0.05, 90)] * 70, image=image)
    kinds = {e.kind: e for e in events}
    assert 0.9 <= kinds["freeze"].start_s <= 1.1 and kinds["freeze"].duration_s >= 2.0
    assert 3.9 <= kinds["black"].start_s <= 4.1 and kinds["black"].duration_s >= 1.5


def test_a_slow_scene_under_smoke_is_not_a_freeze_but_a_repeated_encoded_picture_is(tmp_path):
    import av
    from training.demo import DemoFeed
    from training.synth import ClipWriter

    def freezes(frames):
        det = EventDetector(TASKS, EventConfig(), "test")
        out = []
        for i, (t, img) in enumerate(frames):
            r = FrameResult("test", i, i, t, 0.0, {"noise": 0.05, "smoke": 0.05}, {}, 90.0)
            out += [e for e in det.update(r, img) if e.kind == "freeze"]
        return out + [e for e in det.flush() if e.kind == "freeze"]

    demo = list(DemoFeed(20))
    assert freezes(demo) == []  # its smoke and blur spells (2-19 s) flatten the picture and its motion
    still = demo[250][1]
    path = tmp_path / "still.mp4"
    with ClipWriter(path, (640, 360), 25) as w:
        for _ in range(75):
            w.write(still)
    with av.open(str(path)) as c:
        decoded = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    found = freezes(decoded)
    assert len(found) == 1 and found[0].duration_s >= 2.0

    det = EventDetector(TASKS, EventConfig(smoothing_s=0.1), "s", Decision(min_duration_s=0.5))
    for i in range(20):
        det.update(result(i * 0.1, 0.95))
    closed = det.update(result(2.0, state=StreamState.RECONNECTING))
    assert len(closed) == 1 and closed[0].end_s == pytest.approx(1.9)


def test_webhook_posts_events_with_retries():
    hook = HookServer(fail_first=1)
    sender = WebhookSender(hook.url, retries=2, backoff_s=0.05)
    t = time.time()
    sender.send({"kind": "distortion", "name": "smoke"})
    assert time.time() - t < 0.05  # never blocks the caller
    for _ in range(50):
        if hook.received:
            break
        time.sleep(0.05)
    sender.close()
    hook.close()
    assert hook.received == [{"kind": "distortion", "name": "smoke"}] and sender.sent == 1


def test_webhook_to_a_dead_url_gives_up_without_blocking():
    sender = WebhookSender(f"http://127.0.0.1:{free_port()}/x", retries=1, backoff_s=0.01, timeout_s=0.5)
    sender.send({"a": 1})
    sender.close(timeout=5)
    assert sender.failed == 1 and sender.sent == 0


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        Decision(hysteresis=0.6)  # episodes could never close
    with pytest.raises(ValueError):
        Decision(thresholds={"smoke": 0.95})
    with pytest.raises(ValueError):
        EventConfig(smoothing_s=-1.0)
    assert ScopeWatchConfig().sampling.fps == 5.0


def test_timeline_memory_is_bounded_while_its_summary_stays_exact():
    from monitor.outputs.timeline import Timeline
    tasks = ("smoke", "noise")
    rng = np.random.default_rng(0)
    tl = Timeline(tasks, recent_s=10.0, archive_points=50)
    every, sizes = [], []
    for i in range(20_000):  # 800 s at 25 fps; one short smoke spike at 100 s
        t = i / 25
        smoke = 0.95 if 100.0 <= t < 100.2 else float(rng.uniform(0, 0.3))
        r = FrameResult("s", i, i, t, 0.0, {"smoke": smoke, "noise": float(rng.uniform(0, 0.3))},
                        {"smoke": 3 if smoke > 0.5 else 0, "noise": 0}, quality=float(rng.uniform(40, 90)))
        tl(r)
        every.append(r)
        sizes.append(len(tl.snapshot()))
    kept = tl.snapshot()
    assert max(sizes[1000:]) <= 10 * 25 + 1 + 50 + 1  # recent window + archive + the bucket being filled
    assert [r.time_s for r in kept] == sorted(r.time_s for r in kept)
    assert kept[0].time_s < 20.0 and kept[-1] is every[-1]  # the whole history is still spanned
    assert any(r.probabilities["smoke"] == 0.95 for r in kept)  # the spike survived downsampling
    summary, overall = tl.summary()
    smoke = next(s for s in summary if s.name == "smoke")
    assert smoke.percent_present == pytest.approx(100.0 * 5 / 20_000)
    assert smoke.worst_level == 3
    assert overall["frames"] == 20_000
    assert overall["mean_quality"] == pytest.approx(np.mean([r.quality for r in every]))
    assert overall["min_quality"] == min(r.quality for r in every)
    assert overall["duration_s"] == pytest.approx(every[-1].time_s)


def test_a_distortion_event_shows_where_in_its_worst_frame():
    import cv2
    boxes = np.array([[0.0, 0.0, 0.25, 0.5], [0.5, 0.5, 0.75, 1.0]], np.float32)
    det = EventDetector(TASKS, EventConfig(smoothing_s=0.1), "s", Decision(min_duration_s=0.5))
    image = np.full((180, 320, 3), 120, np.uint8)
    for i in range(20):
        r = FrameResult("s", i, None, i * 0.1, 1e9, {"noise": 0.95, "smoke": 0.02}, {}, 80.0, 10.0,
                        patch_map={"noise": np.array([0.9, 0.1]), "smoke": np.array([0.0, 0.0])}, patch_boxes=boxes)
        det.update(r, image)
    [event] = [e for e in det.flush() if e.kind == "distortion"]
    assert event.where == [[0.0, 0.0, 0.25, 0.5, 0.9], [0.5, 0.5, 0.75, 1.0, 0.1]]
    thumb = cv2.cvtColor(cv2.imdecode(np.frombuffer(event.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    hot, cool, none = thumb[10:60, 10:40].mean((0, 1)), thumb[100:170, 170:220].mean((0, 1)), thumb[10:60, 200:300].mean((0, 1))
    assert hot[0] - hot[2] > 80 and 0 < cool[0] - cool[2] < 30 and abs(none[0] - none[2]) < 5  # tinted by probability


def test_the_monitor_keeps_the_patch_map_of_each_frame_for_its_events():
    from model import load_predictor
    from model.tasks import level_to_severity
    from monitor.session import Session
    from monitor.sources import ArraySource, SourceInfo
    from training.distortions import create_distortion
    from training.scene import ProceduralScene

    scene = ProceduralScene(3, (640, 360), circular_fov=True)
    noise = create_distortion("noise", ("poisson_gaussian",))
    params = noise.sample_params(np.random.default_rng(1))
    frames = [(i / 5, noise.apply(scene.frame_at(i / 5), level_to_severity(3), params, i / 5)) for i in range(15)]
    source = ArraySource(frames, SourceInfo(640, 360, 5.0, "generated", 3.0), source_id="noisy")
    session = Session(source, load_predictor(device="cpu"), ScopeWatchConfig())
    seen = []
    session.monitor.sinks.append(lambda r, _: seen.append(r) if r.analysed else None)
    session.run()
    assert all(r.patch_map["noise"].shape == (8,) and r.patch_boxes.shape == (8, 4) for r in seen)
    [event] = [e for e in session.events if e.name == "noise"]
    assert len(event.where) == 8 and min(p for *_, p in event.where) > 0.5


def test_webhook_that_never_answers_costs_at_most_the_close_timeout():
    """Issue 22 item 10: a webhook that accepts and never answers added ~5 s to every exit."""
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never reads or answers
    sender = WebhookSender(f"http://127.0.0.1:{silent.getsockname()[1]}/x", retries=3, backoff_s=0.5, timeout_s=5.0)
    sender.send({"a": 1})
    sender.send({"b": 2})
    time.sleep(0.3)  # the first post is under way
    t = time.time()
    sender.close(timeout=1.0)
    took = time.time() - t
    silent.close()
    assert took < 1.5 and sender.sent == 0


def test_status_line_shows_no_stale_rates_while_a_feed_has_no_picture():
    """Issue 22 item 2: while reconnecting, the status line repeated the last fps and latency."""
    from apps.cli.monitoring import feed_status
    from monitor.metrics import PipelineMetrics
    m = PipelineMetrics()
    now = time.time()
    for i in range(20):
        m.record_result(now - 1.0 + i * 0.04, 15.0)
    m.last_result = result(1.0, noise=0.9)
    m.state = StreamState.LIVE
    live = feed_status(m, Decision(), "cam")
    assert "[live]" in live and "latency    15 ms" in live and " 0.0 fps" not in live and "noise 0.90" in live
    m.state, m.state_reason = StreamState.RECONNECTING, "tcp://cam"
    lost = feed_status(m, Decision(), "cam")
    assert "[reconnecting]" in lost and "no picture: tcp://cam" in lost and "fps" not in lost and "noise" not in lost
    m._result_times.clear()  # the rates fall to 0 once nothing has come for their window
    m.record_result(now - 30.0, 15.0)
    m.record_result(now - 29.9, 15.0)
    assert m.inference_fps == 0.0


def state_row(t, state):
    return FrameResult("s", -1, None, t, 0.0, stream_state=state)


def test_each_outage_is_one_signal_lost_event_from_the_gap_to_the_picture_back():
    det = EventDetector(TASKS, EventConfig(smoothing_s=0.1), "s", Decision(min_duration_s=0.5))
    events = det.update(state_row(0.0, StreamState.CONNECTING)) + det.update(state_row(0.0, StreamState.LIVE))
    for i in range(20):
        events += det.update(result(i * 0.1, 0.05))
    events += det.update(state_row(1.9, StreamState.LOST)) + det.update(state_row(1.9, StreamState.RECONNECTING))
    assert events == [] and det.alarms_up() == ["signal_lost"]
    (up,) = det.ongoing()
    assert up.kind == "signal_lost" and up.ongoing and up.start_s == pytest.approx(1.9)
    events += det.update(state_row(1.9, StreamState.RECONNECTING))  # a retry: the same outage
    events += det.update(state_row(5.4, StreamState.LIVE))
    (lost,) = events
    assert (lost.kind, lost.name, lost.start_s, lost.duration_s, lost.ongoing) == ("signal_lost", "lost", 1.9, pytest.approx(3.5), False)
    assert det.alarms_up() == [] and det.ongoing() == []
    for i in range(10):
        assert det.update(result(5.4 + i * 0.1, 0.05)) == []
    # A stall that the feed's end closes is an outage up to the end; the events list keeps both.
    assert det.update(state_row(6.3, StreamState.STALLED)) == []
    (stalled,) = det.update(state_row(8.0, StreamState.ENDED))
    assert (stalled.name, stalled.start_s, stalled.end_s) == ("stalled", 6.3, 8.0)
    assert [e.kind for e in det.events] == ["signal_lost", "signal_lost"]
    assert lost.to_dict()["duration_s"] == 3.5 and lost.to_dict()["thumbnail_jpeg"] is None


def test_a_continued_timeline_drops_a_partial_last_line_and_refuses_other_columns(tmp_path):
    import csv
    from monitor.outputs.export import CsvTimelineWriter
    path = tmp_path / "feed.csv"
    w = CsvTimelineWriter(path, TASKS)
    for i in range(3):
        w.write(result(i * 0.1, 0.5))
    w.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b"0.3,3,2026-")  # a crash mid-row (an older writer, another tool)
    w = CsvTimelineWriter(path, TASKS, append=True)
    w.write(result(0.4, 0.7))
    w.close()
    rows = list(csv.reader(path.open(newline="")))
    assert path.read_bytes().startswith(whole) and len(rows) == 5 and len({len(r) for r in rows}) == 1
    assert [r[0] for r in rows[1:]] == ["0.000", "0.100", "0.200", "0.400"]
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="other columns"):
        CsvTimelineWriter(other, TASKS, append=True)
    assert other.read_text() == "a,b,c\n1,2,3\n"
