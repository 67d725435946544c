import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from model import load_checkpoint
from model.predict import Predictor
from training.calibrate import GRID, fit_thresholds, fold_thresholds
from training.scene import ProceduralScene

from conftest import ROOT


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_fit_thresholds_finds_the_best_f1_and_keeps_half_when_it_is_already_right():
    y = np.array([[1, 1]] * 4 + [[0, 0]] * 6)
    prob = np.array([[0.40, 0.9], [0.42, 0.8], [0.38, 0.95], [0.6, 0.7],  # faint positives of task a at ~0.4
                     [0.2, 0.1], [0.1, 0.2], [0.3, 0.05], [0.05, 0.3], [0.22, 0.1], [0.1, 0.1]])
    th = fit_thresholds(prob, y, ["a", "b"])
    assert th == {"a": 0.35, "b": 0.5}  # a: every positive, no negative; b: anything in 0.3-0.7 works, 0.5 kept
    assert fit_thresholds(np.full((10, 1), 0.01), y[:, :1], ["a"]) == {"a": 0.5}  # nothing to gain: unchanged
    assert set(GRID) >= {0.25, 0.5, 0.75} and min(GRID) == 0.25 and max(GRID) == 0.75


def test_folded_threshold_moves_the_decision_point_to_one_half(tiny_weights):
    model = load_checkpoint(tiny_weights)
    frames = [ProceduralScene(s, (640, 360)).frame_at(0.5) for s in range(3)]
    before = Predictor(model, "cpu").predict(frames)
    thresholds = {t: 0.3 + 0.1 * j for j, t in enumerate(model.tasks)}
    fold_thresholds(model, thresholds)
    after = Predictor(model, "cpu").predict(frames)

    def logit(p):
        return math.log(p / (1 - p))
    for b, a in zip(before, after):
        for t, th in thresholds.items():
            assert logit(a.probabilities[t]) == pytest.approx(logit(b.probabilities[t]) - logit(th), abs=1e-4)
        assert a.quality == pytest.approx(b.quality, abs=1e-4) and a.severities == pytest.approx(b.severities, abs=1e-6)


@pytest.mark.slow
def test_calibrate_command_writes_a_checkpoint_that_evaluate_scores_as_fitted(tmp_path, tiny_weights):
    data, out = tmp_path / "val", tmp_path / "calibrated.pt"
    r = run_cli("synth", "--out", str(data), "--clips", "10", "--seconds", "0.4", "--size", "320x180", "--seed", "5", "-q")
    assert r.returncode == 0, r.stderr
    r = run_cli("calibrate", str(data), "--weights", str(tiny_weights), "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert "thresholds fitted on 10 clips" in r.stdout and f"wrote {out}" in r.stdout

    model = load_checkpoint(out)  # a valid checkpoint: checksum recomputed over the shifted bias
    record = model.checkpoint_meta["metrics"]["calibration"]
    assert record["clips"] == 10 and set(record["thresholds"]) == set(model.tasks)
    assert all(t in GRID for t in record["thresholds"].values())
    assert record["after"]["micro_f1"] >= record["before"]["micro_f1"]
    original = torch.load(tiny_weights, weights_only=True)["state_dict"]["presence.bias"]
    shift = [math.log(t / (1 - t)) for t in record["thresholds"].values()]
    assert torch.allclose(model.presence.bias, original - torch.tensor(shift), atol=1e-6)

    # At 0.5 the calibrated checkpoint makes exactly the decisions the fit reported.
    r = run_cli("evaluate", str(data), "--weights", str(out), "--out", str(tmp_path / "eval"), "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["micro_f1"] == pytest.approx(record["after"]["micro_f1"])
    assert report["exact_match"] == pytest.approx(record["after"]["exact_match"])

    r = run_cli("calibrate", str(data), "--weights", str(out), "--out", str(tmp_path / "twice.pt"))
    assert r.returncode == 2 and "already calibrated" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "twice.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["missing_folder", "--weights", "w.pt", "--out", "o.pt"], "no such folder"),
    (["tests", "--weights", "missing.pt", "--out", "o.pt"], "no such checkpoint file"),
])
def test_calibrate_bad_input_gives_one_line_and_exit_2(args, message):
    r = run_cli("calibrate", *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
