import json

import numpy as np
import pytest
import torch

from model import load_checkpoint, save_checkpoint
from model.predict import Predictor
from training.calibrate import (clip_probability, clip_scores, fit_decision_layer, fold_decision_layer,
                                 with_directional_mix)
from training.scene import ProceduralScene

from helpers import run_cli


def test_decision_layer_lifts_faint_positives_and_stops_one_head_firing_for_another():
    # Task 0: its positives are faint (logit -0.6 where negatives sit at -3). Task 1: its head also
    # fires on every clip with task 0, while the directional logit u[:, 1] tells the truth.
    rng = np.random.default_rng(0)
    clips, frames = 80, 4
    y = np.zeros((clips, 2), bool)
    y[:40, 0] = True
    y[20:60, 1] = True
    clip = torch.arange(clips).repeat_interleave(frames)
    yf = torch.as_tensor(y, dtype=torch.float32)[clip]
    noise = lambda: torch.as_tensor(rng.normal(0, 0.2, (clips * frames, 2)), dtype=torch.float32)
    z = torch.stack([-3 + 2.4 * yf[:, 0], -3 + 6 * torch.maximum(yf[:, 0], yf[:, 1])], 1) + noise()
    u = 4 * yf - 2 + noise()
    assert clip_scores(clip_probability(z, clip, clips).numpy(), y)["exact_match"] < 0.6
    a, b, c = fit_decision_layer(z, u, clip, y)
    after = clip_probability(z @ a + u @ b + c, clip, clips).numpy()
    scores = clip_scores(after, y)
    assert (scores["micro_f1"], scores["exact_match"]) == (1.0, 1.0) and scores["bce"] < 0.05
    assert b[1, 1] > 0.5  # task 1 now rests on its directional logit
    assert (after[y] > 0.6).all() and (after[~y] < 0.4).all()


def test_folded_decision_layer_gives_the_fitted_logits_and_round_trips(tiny_weights, tmp_path):
    model = load_checkpoint(tiny_weights)
    frames = [ProceduralScene(s, (640, 360)).frame_at(0.5) for s in range(3)]
    predictor = Predictor(model, "cpu")
    before = predictor.outputs([predictor.prepare(f) for f in frames])
    mixed = with_directional_mix(model)
    same = Predictor(mixed, "cpu").outputs([predictor.prepare(f) for f in frames])
    assert torch.equal(same["presence_logits"], before["presence_logits"])  # zero mix: nothing changes

    n = len(model.tasks)
    g = torch.Generator().manual_seed(0)
    a, b, c = torch.eye(n) + 0.3 * torch.randn(n, n, generator=g), torch.randn(n, n, generator=g), torch.randn(n, generator=g)
    fold_decision_layer(mixed, a, b, c)
    after = Predictor(mixed, "cpu").outputs([predictor.prepare(f) for f in frames])
    expected = before["presence_logits"] @ a + before["directional_logits"] @ b + c
    assert torch.allclose(after["presence_logits"], expected, atol=1e-4)
    for k in ("severity", "quality", "directional_logits"):
        assert torch.allclose(after[k], before[k], atol=1e-5)

    save_checkpoint(mixed, tmp_path / "mixed.pt")
    again = load_checkpoint(tmp_path / "mixed.pt")
    assert again.model_args["directional_mix"] and torch.equal(again.directional_mix.weight, b.T)


@pytest.mark.slow
def test_calibrate_command_writes_a_checkpoint_that_evaluate_scores_as_fitted(tmp_path, tiny_weights):
    data, out = tmp_path / "val", tmp_path / "calibrated.pt"
    r = run_cli("synth", "--out", str(data), "--clips", "10", "--seconds", "0.4", "--size", "320x180", "--seed", "5", "-q")
    assert r.returncode == 0, r.stderr
    r = run_cli("calibrate", str(data), "--weights", str(tiny_weights), "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert "decision layer fitted on 10 clips" in r.stdout and f"wrote {out}" in r.stdout
    assert all(t in r.stdout for t in ("noise", "motion_blur"))

    model = load_checkpoint(out)  # a valid checkpoint: checksum recomputed over the folded layer
    record = model.checkpoint_meta["metrics"]["calibration"]
    assert record["clips"] == 10 and record["tasks"] == list(model.tasks)
    assert np.array(record["presence_mix"]).shape == (5, 5) and np.array(record["directional_mix"]).shape == (5, 5)
    assert torch.equal(model.directional_mix.weight, torch.tensor(record["directional_mix"]).T)
    # What the fit minimises falls (the decisions themselves need not improve on 10 clips of an untrained model).
    assert record["after"]["bce"] < record["before"]["bce"]

    # At 0.5 the calibrated checkpoint makes exactly the decisions the fit reported.
    r = run_cli("evaluate", str(data), "--weights", str(out), "--out", str(tmp_path / "eval"), "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["micro_f1"] == pytest.approx(record["after"]["micro_f1"])
    assert report["exact_match"] == pytest.approx(record["after"]["exact_match"])
    # Every present distortion is counted at its level once: the levels' clips add up to its support.
    for task, by in report["recall_by_level"].items():
        assert sum(v["support"] for v in by.values()) == report["per_task"][task]["support"]
    assert "Recall by true level" in (tmp_path / "eval" / "evaluation.md").read_text()

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
