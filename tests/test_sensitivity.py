"""What the model calls of each generator, level by level, on clear real views (training/sensitivity.py)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, surgical
from model.tasks import NUM_LEVELS
from training.distortions import create_distortion


def test_every_generator_of_every_distortion_is_drawn_at_every_level_on_the_clear_val_frames(tmp_path, tiny_weights):
    data = surgical("val_smoke").parent
    r = subprocess.run([sys.executable, "-m", "training.sensitivity", "--weights", str(tiny_weights), "--data", str(data),
                        "--frames", "1", "--out", str(tmp_path), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "sensitivity.json").read_text())
    # One frame of each clean val item: the two clear openings, the clean twins, the two Cholec80 clips' clear ends.
    assert report["frames"] == 5
    tasks = ("noise", "smoke", "uneven_illumination", "defocus_blur", "motion_blur")
    expected = {(t, g, lv) for t in tasks for g in create_distortion(t).allowed for lv in range(1, NUM_LEVELS + 1)}
    assert {(row["distortion"], row["generator"], row["level"]) for row in report["rows"]} == expected
    for row in report["rows"]:
        assert 0.0 <= row["called"] <= 1.0 and set(row["others"]) == set(tasks) - {row["distortion"]}
        assert row["other"] >= max(row["others"].values())  # any other alarm covers each one
        assert 0.0 <= row["quality"] <= 100.0
    assert {(q["distortion"], q["generator"]) for q in report["quality_srocc"]} == {(t, g) for t, g, _ in expected}
    assert all(-1.0 <= q["srocc"] <= 1.0 for q in report["quality_srocc"])
    draws = {t: len(create_distortion(t).allowed) * NUM_LEVELS * report["frames"] for t in tasks}
    assert {b["distortion"]: b["draws"] for b in report["quality_bias"]} == draws
    for b in report["quality_bias"]:
        assert b["called_draws"] + b["missed_draws"] == b["draws"]
        assert all(b[k] is None if b[k + "_draws"] == 0 else -100.0 <= b[k] <= 100.0 for k in ("called", "missed"))
    text = (tmp_path / "sensitivity.md").read_text()
    assert "## motion_blur" in text and "| zoom |" in text and "## quality" in text and r.stdout == text
    assert "| distortion | called: score - target (draws) |" in text


def test_the_shipped_weights_call_strong_noise_and_smoke_and_leave_clear_frames_alone(scene_frame):
    from model import load_predictor
    from training.scene import ProceduralScene
    from training.sensitivity import measure
    other = ProceduralScene(7, (854, 480), circular_fov=False).frame_at(2.0)
    report = measure(load_predictor(device="cpu"), [scene_frame, other])
    assert report["frames"] == 2 and report["clear_alarmed"] == 0.0
    strong = {(r["distortion"], r["generator"]): r["called"] for r in report["rows"] if r["level"] == NUM_LEVELS}
    assert all(called == 1.0 for (task, _), called in strong.items() if task == "noise")
    assert sum(called for (task, _), called in strong.items() if task == "smoke") / len(create_distortion("smoke").allowed) >= 0.75
    # Strong noise is rated far below the clear frames, and its quality falls with the level.
    noise = {q["generator"]: q["srocc"] for q in report["quality_srocc"] if q["distortion"] == "noise"}
    assert min(noise.values()) > 0.5, noise
    assert max(r["quality"] for r in report["rows"] if r["distortion"] == "noise" and r["level"] == NUM_LEVELS) \
        < report["clear_quality"] - 20
    # Split either way or not, the draws of a distortion err by the same mean: the splits only sort them.
    for b in report["quality_bias"]:
        rows = [r for r in report["rows"] if r["distortion"] == b["distortion"]]
        pooled = sum((b[k] or 0.0) * b[k + "_draws"] for k in ("called", "missed")) / b["draws"]
        assert pooled == pytest.approx(np.mean([r["quality"] - r["target"] for r in rows]), abs=1e-4)
        sides = [s for s in report["quality_bias_by_side"] if s["distortion"] == b["distortion"]]
        assert sorted(s["short_side"] for s in sides) == [360, 480]  # the two frames' short sides
        assert sum(s["draws"] for s in sides) == b["draws"]
        assert sum(s["bias"] * s["draws"] for s in sides) / b["draws"] == pytest.approx(pooled, abs=1e-4)


@pytest.mark.parametrize("args, message", [(["--data", "{tmp}/none"], "no such folder"),
                                           (["--frames", "0"], "--frames must be at least 1")])
def test_sensitivity_refuses_bad_input_in_one_line(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "training.sensitivity", *(a.format(tmp=tmp_path) for a in args)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
