"""A feed's reference through the real CLI on encoded files: taken from a window and saved, reused
from its file, refused on a window of real smoke (a `val` clip; skipped when the footage is absent)."""
import json

import pytest

from conftest import surgical
from helpers import run_cli, write_video


def test_a_reference_is_taken_saved_and_reused(tmp_path, tiny_weights):
    clip = write_video(tmp_path / "clip.mp4", n=50)
    r = run_cli("analyze", str(clip), "--every-frame", "--weights", str(tiny_weights), "--reference", "0:1", "-q")
    assert r.returncode == 0, r.stderr
    saved = tmp_path / "clip.mp4.scopewatch.reference.json"
    ref = json.loads(saved.read_text())
    assert ref["feed"] == "clip.mp4" and ref["frames"] == 25 and (ref["start_s"], ref["end_s"]) == (0.0, 1.0)
    assert set(ref["logits"]) == {"noise", "smoke", "uneven_illumination", "defocus_blur", "motion_blur"}
    assert "reference of clip.mp4: 0-1 s (25 frames)" in r.stdout and str(saved) in r.stdout
    again = run_cli("analyze", str(clip), "--weights", str(tiny_weights), "--reference", str(saved), "-q")
    assert again.returncode == 0 and "alarms relative to the reference of clip.mp4" in again.stderr


@pytest.mark.parametrize("spec, message", [("3:1", "0 <= START < END"), ("a:b", "START:END"),
                                           ("missing.json", "cannot read the reference")])
def test_a_bad_reference_is_one_line_and_exit_2(tmp_path, tiny_weights, spec, message):
    clip = write_video(tmp_path / "clip.mp4", n=5)
    r = run_cli("analyze", str(clip), "--weights", str(tiny_weights), "--reference", spec, "-q")
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_window_that_ends_after_the_feed_is_an_error(tmp_path, tiny_weights):
    clip = write_video(tmp_path / "clip.mp4", n=25)
    r = run_cli("analyze", str(clip), "--weights", str(tiny_weights), "--reference", "0:5", "-q")
    assert r.returncode == 1 and "before the reference window 0-5 s closed" in r.stderr and "Traceback" not in r.stderr


def test_a_reference_in_real_smoke_is_refused_unless_forced(tmp_path):
    # Smoke from 2.5 s (training.realcheck), a milky field by 4 s. The window is the thick part: the
    # absolute rule (0.85) refuses a reference there; synth_v12 reads the thinner smoke of 2.5-4 s
    # mostly under 0.85, so it would accept that window as a feed's normal (docs/MODEL.md).
    smoky = surgical("val_smoke/smoke_builds_480p60_b.mp4")
    clip = tmp_path / smoky.name
    clip.symlink_to(smoky)  # the outputs go beside it, never into ../shared
    r = run_cli("analyze", str(clip), "--reference", "3.4:4.3", "-q")
    assert r.returncode == 1 and "the window 3.4-4.3 s is not normal: smoke on" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / f"{clip.name}.scopewatch.reference.json").exists()
    forced = run_cli("analyze", str(clip), "--reference", "3.4:4.3", "--force-reference", "-q")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((tmp_path / f"{clip.name}.scopewatch.reference.json").read_text())["forced"] is True


def test_check_reference_scores_each_val_clip_with_and_without_a_reference(tmp_path):
    surgical("val_smoke/smoke_builds_480p60_b.mp4")
    r = run_cli("check-reference", "val", "--out", str(tmp_path), "-q", timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "reference_val.json").read_text())
    smoke = [c for c in report["cases"] if c["present"] == "smoke"]
    clean = [c for c in report["cases"] if c["present"] is None]
    assert len(smoke) == 2 and len(clean) == 2
    for case in smoke:  # the real smoke after the window: one run, scored with and without the reference
        assert [run["with_reference"] for run in case["runs"]] == [False, True]
        assert all(0.0 <= run["recall"] <= 1.0 for run in case["runs"])
    for case in clean:  # as it is, then each distortion added after the window at levels 1-3, 3 seeds each
        added = [run["added"] for run in case["runs"][::2]]
        assert added == [None] + [t for t in ("noise", "smoke", "uneven_illumination", "defocus_blur",
                                              "motion_blur") for _ in range(9)]
        assert [run["level"] for run in case["runs"][2:20:2]] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert all(a["with_reference"] != b["with_reference"] for a, b in zip(case["runs"][::2], case["runs"][1::2]))
    assert "| `val_smoke/smoke_builds_480p60_b.mp4` | 0-2 s | 2.5- s | smoke | 1 | without |" in r.stdout
    assert "| noise (added) | 9 | with |" in r.stdout


def test_an_abandoned_window_is_never_taken_later():
    """The dashboard stops waiting for a window of a late feed and says it was refused: the window
    must not then be taken behind the operator's back when the feed catches up."""
    from model.decision import Decision
    from monitor.records import FrameResult
    from monitor.reference import ReferenceWindow
    decision = Decision()
    window = ReferenceWindow(decision, "cam", 1.0, 2.0)
    clean = {"noise": 0.05, "smoke": 0.05}
    for i in range(15):  # up to 1.4 s: the window is open
        window(FrameResult("cam", i, i, i / 10, 0.0, clean, {}, 90.0))
    window.abandon("cam: too late")
    for i in range(15, 30):
        window(FrameResult("cam", i, i, i / 10, 0.0, clean, {}, 90.0))
    assert window.done and window.reference is None and window.refused == "cam: too late"
    assert "cam" not in decision.references
    window.abandon("again")  # a closed window keeps its verdict
    assert window.refused == "cam: too late"
