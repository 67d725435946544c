"""The decision object: feed references (relative and absolute rules, refusal) and the per-distortion
event policy (minimum duration, merge gap, cool-down), read by the events detector."""
import json

import pytest

from model.decision import Decision, Reference, ReferenceRefused, logit, sigmoid
from monitor.config import ConfigError, EventConfig, build_config
from monitor.outputs.events import EventDetector
from monitor.records import FrameResult

TASKS = ("noise", "smoke")


def frames(**levels):
    """20 frames of constant probabilities, e.g. frames(noise=0.3, smoke=0.05)."""
    return [{t: levels.get(t, 0.02) for t in TASKS} for _ in range(20)]


def reference(probabilities, feed="feed"):
    return Reference.measure(feed, 0.0, 3.0, probabilities, [80.0] * len(probabilities))


def test_a_reference_raises_the_alarm_level_to_the_feeds_normal_plus_a_margin():
    d = Decision()
    noisy_normal = frames(noise=0.6)  # a scope that always reads a little noisy, enough to alarm
    d.take_reference(reference(noisy_normal), noisy_normal)
    level = d.alarm_level("noise", "feed")
    assert level == pytest.approx(sigmoid(logit(0.6) + d.reference_margin), abs=1e-3)
    assert not d.present("noise", level - 0.01, "feed") and d.present("noise", level - 0.01, "other feed")
    assert d.present("noise", level + 0.01, "feed") and d.rule("noise", "feed") == "relative"
    # a reference never lowers the bar below the plain threshold
    assert d.alarm_level("smoke", "feed") == 0.5 and d.alarms({"noise": level - 0.01, "smoke": 0.55}, "feed") == ["smoke"]


def test_a_reference_moves_only_what_the_feeds_normal_alarms_on():
    # A normal that opens no episode has nothing to quiet: a reference there would only cost detection
    # (a mild distortion arriving later reads about as high as the normal's peaks).
    d = Decision()
    normal = [{"noise": 0.55, "smoke": 0.02, "motion_blur": 0.7} for _ in range(20)]
    d.take_reference(reference(normal), normal)
    assert d.alarm_level("noise", "feed") == 0.5 and d.rule("noise", "feed") == "threshold"
    assert d.present("noise", 0.5, "feed")  # 0.55 alarms now and then, but opens no episode (0.6)
    # motion blur is a camera move, not the feed's normal: never moved, even when the window had some
    assert d.alarm_level("motion_blur", "feed") == 0.5 and d.present("motion_blur", 0.55, "feed")
    d = Decision(unreferenced=())
    d.take_reference(reference(normal), normal)
    assert d.alarm_level("motion_blur", "feed") == pytest.approx(sigmoid(logit(0.7) + d.reference_margin), abs=1e-3)


def test_the_absolute_rule_caps_what_a_reference_can_hide():
    d = Decision(absolute=0.85)
    high = frames(noise=0.8)
    d.take_reference(reference(high), high, force=True)  # 0.8 < absolute: not refused anyway
    assert d.alarm_level("noise", "feed") == 0.85 and d.rule("noise", "feed") == "absolute"
    assert d.present("noise", 0.86, "feed")


def test_a_distorted_window_is_refused_unless_forced():
    d = Decision(absolute=0.85)
    smoky = frames(smoke=0.95)
    with pytest.raises(ReferenceRefused, match=r"smoke on 100% of its frames"):
        d.take_reference(reference(smoky), smoky)
    assert d.references == {}
    forced = d.take_reference(reference(smoky), smoky, force=True)
    assert forced.forced and d.references["feed"] is forced
    d.clear_reference("feed")
    assert d.alarm_level("smoke", "feed") == 0.5


def test_a_reference_round_trips_through_its_file(tmp_path):
    normal = frames(noise=0.3)
    ref = reference(normal)
    ref.save(tmp_path / "r.json")
    again = Reference.load(tmp_path / "r.json")
    assert again == ref and again.logits["noise"]["high"] == pytest.approx(logit(0.3), abs=1e-3)
    assert again.quality == {"median": 80.0, "low": 80.0} and "0-3 s (20 frames)" in again.describe()
    (tmp_path / "bad.json").write_text(json.dumps({"feed": "x"}))
    with pytest.raises(ValueError, match="not a ScopeWatch reference"):
        Reference.load(tmp_path / "bad.json")


def test_policies_are_per_distortion_and_checked():
    d = Decision(policies={"smoke": {"merge_gap_s": 5.0}})  # the defaults have none
    assert d.policy("smoke").merge_gap_s == 5.0 and d.policy("noise").merge_gap_s == d.merge_gap_s
    with pytest.raises(ValueError, match="unknown setting 'gap'"):
        Decision(policies={"smoke": {"gap": 1.0}})
    with pytest.raises(ValueError):
        Decision(policies={"smoke": {"cooldown_s": -1.0}})
    with pytest.raises(ValueError):
        Decision(policies={"smoke": {"hysteresis": 0.6}})


def test_policies_come_from_the_settings_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"decision": {"policies": {"smoke": {"min_duration_s": 2.5}}, "unreferenced": []}}))
    cfg = build_config("recorded", path)
    assert cfg.decision.policy("smoke").min_duration_s == 2.5 and cfg.decision.unreferenced == ()
    path.write_text(json.dumps({"decision": {"policies": {"smoke": {"gap": 1}}}}))
    with pytest.raises(ConfigError, match="unknown setting 'gap'"):
        build_config("recorded", path)


def run(signal, decision, step=0.1):
    """Events of a noise probability signal (one value per analysed frame, `step` s apart)."""
    det = EventDetector(TASKS, EventConfig(smoothing_s=0.2), "feed", decision)
    out = []
    for i, p in enumerate(signal):
        out += det.update(FrameResult("feed", i, None, i * step, 1e9 + i * step, {"noise": p, "smoke": 0.02},
                                      {}, 90.0, 10.0))
    return [e for e in out + det.flush() if e.kind == "distortion"]


def test_episodes_closer_than_the_merge_gap_are_one_event():
    burst = [0.9] * 15 + [0.05] * 10 + [0.9] * 15 + [0.05] * 40  # 1.5 s on, 1 s off, 1.5 s on
    merged = run(burst, Decision(merge_gap_s=2.0, cooldown_s=0.0))
    assert [(e.start_s, round(e.end_s, 1)) for e in merged] == [(0.0, 3.9)]
    apart = run(burst, Decision(merge_gap_s=0.5, cooldown_s=0.0))
    assert len(apart) == 2 and not any(e.repeat for e in apart)


def test_an_event_inside_the_cooldown_is_a_repeat_and_is_not_raised():
    burst = [0.9] * 15 + [0.05] * 30 + [0.9] * 15 + [0.05] * 40  # 3 s apart
    events = run(burst, Decision(merge_gap_s=1.0, cooldown_s=10.0))
    assert [e.repeat for e in events] == [False, True]
    assert [e.repeat for e in run(burst, Decision(merge_gap_s=1.0, cooldown_s=1.0))] == [False, False]


def test_minimum_duration_is_per_distortion():
    short = [0.05] * 5 + [0.9] * 12 + [0.05] * 30  # 1.2 s
    assert len(run(short, Decision(min_duration_s=1.0))) == 1
    assert run(short, Decision(policies={"noise": {"min_duration_s": 1.5}})) == []


def test_events_say_which_rule_fired_them():
    d = Decision(merge_gap_s=0.0)
    assert run([0.9] * 20 + [0.05] * 20, d)[0].rule == "threshold"
    normal = frames(noise=0.6)
    d.take_reference(reference(normal), normal)
    fired = run([0.6] * 10 + [0.99] * 20 + [0.05] * 20, d)
    assert [e.rule for e in fired] == ["relative"]
    # this feed's normal plus less than the margin and the hysteresis
    assert run([0.6] * 10 + [d.event_on("noise", "feed") - 0.02] * 20 + [0.6] * 20, d) == []


def test_a_mute_lasts_its_minutes_on_its_feed_only_and_zero_unmutes():
    d = Decision()
    until = d.mute("smoke", "feed", 10, now=1000.0)
    assert until == 1600.0
    assert d.muted_until("smoke", "feed", now=1599.0) == 1600.0
    assert d.muted_until("smoke", "feed", now=1600.0) is None  # over
    assert d.muted_until("smoke", "other", now=1100.0) is None and d.muted_until("noise", "feed", now=1100.0) is None
    d.mute("smoke", "feed", 0, now=1100.0)
    assert d.muted_until("smoke", "feed", now=1100.0) is None
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            d.mute("smoke", "feed", bad)


def test_open_episodes_are_listed_ongoing_and_can_be_acknowledged_and_muted():
    d = Decision(merge_gap_s=0.0)
    det = EventDetector(TASKS, EventConfig(smoothing_s=0.2), "feed", d)

    def feed(values, start):
        for i, p in enumerate(values):
            det.update(FrameResult("feed", start + i, None, (start + i) * 0.1, 1e9, {"noise": p, "smoke": 0.02},
                                   {}, 90.0, 10.0))

    feed([0.05] * 5, 0)
    assert det.ongoing() == [] and det.acknowledge("ann") == []
    feed([0.95] * 10, 5)  # 1 s of noise: the episode is open, not yet an event
    (up,) = det.ongoing()
    assert up.ongoing and up.name == "noise" and up.start_s == pytest.approx(0.5) and up.acknowledged_by is None
    assert det.events == []
    assert det.acknowledge("ann") == ["noise"] and det.acknowledge("bob") == []  # once per alarm
    d.mute("noise", "feed", 5)
    feed([0.95] * 10 + [0.05] * 10, 15)
    (ev,) = det.events
    assert not ev.ongoing and ev.acknowledged_by == "ann" and ev.acknowledged_at and ev.muted
    assert ev.to_dict()["muted"] is True and det.ongoing() == []
    # the next alarm is a new one: not acknowledged
    d.mute("noise", "feed", 0)
    feed([0.95] * 10, 35)
    (up,) = det.ongoing()
    assert up.acknowledged_by is None and not up.muted
