"""How faint the val footage's smoke is against the synthesis's levels (training/faint_smoke.py)."""
import json
import subprocess
import sys

import numpy as np

from conftest import ROOT, surgical
from training.distortions import create_distortion
from training.faint_smoke import dark_channel_mean


def test_the_dark_channel_rises_with_smoke_and_ignores_the_black_outside_the_image_circle(scene_frame):
    smoke = create_distortion("smoke", ("haze",))
    params = smoke.sample_params(np.random.default_rng(0))
    lifts = [dark_channel_mean(smoke.apply(scene_frame, s, params)) - dark_channel_mean(scene_frame)
             for s in (0.1, 0.4, 0.8)]
    assert 0 < lifts[0] < lifts[1] < lifts[2], lifts
    # A wider black border (a smaller image circle cut from the same view) leaves the measure alone.
    framed = np.zeros((scene_frame.shape[0], scene_frame.shape[1] + 200, 3), np.uint8)
    framed[:, 100:-100] = scene_frame
    assert abs(dark_channel_mean(framed) - dark_channel_mean(scene_frame)) < 0.01


def test_faint_smoke_sets_the_real_val_smoke_against_the_synthetic_levels(tmp_path, tiny_weights):
    data = surgical("val_smoke").parent
    r = subprocess.run([sys.executable, "-m", "training.faint_smoke", "--weights", str(tiny_weights), "--data", str(data),
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "faint_smoke.json").read_text())
    assert report["weights"] == str(tiny_weights) and f"Weights `{tiny_weights}`" in r.stdout  # the file it read
    real = {row["item"]: row for row in report["real"]}
    # Every val smoke item with clear footage of its view; the dense still frames have none.
    assert set(real) == {"val_smoke/smoke_builds_480p60_a.mp4 1.5-3.2 s", "val_smoke/smoke_builds_480p60_b.mp4 2.5- s",
                         "val_smoke/pairs_added_smoke/*input_*", "train_more/cholec80_clips/video02_130.mp4 0.8-1.8 s",
                         "train_more/cholec80_clips/video02_131.mp4 1-2.2 s"}
    assert real["val_smoke/pairs_added_smoke/*input_*"]["frames"] == 25
    # Separability against every clear val frame (the 62 the operating points keep quiet): the milky
    # field's dark channel stands above all of them, whatever the (untrained) model's score does.
    assert report["clear_frames"] == 62
    assert all(0.0 <= row[k] <= 1.0 for row in real.values() for k in ("auc_score", "auc_patch", "auc_dark"))
    assert real["val_smoke/smoke_builds_480p60_b.mp4 2.5- s"]["auc_dark"] > 0.95
    assert all(row["lift_median"] > 0 and 0.0 <= row["called"] <= 1.0 for row in real.values())
    # The smoke building to a milky field veils more than the added light smoke.
    assert real["val_smoke/smoke_builds_480p60_b.mp4 2.5- s"]["lift_median"] > real["val_smoke/pairs_added_smoke/*input_*"]["lift_median"]
    by_level = [row["lift_median"] for row in report["synthetic_by_level"]]
    assert len(by_level) == 4 and all(a < b for a, b in zip(by_level, by_level[1:])), by_level
    assert {row["generator"] for row in report["synthetic"]} == set(create_distortion("smoke").allowed)
    assert "| AUC, model's smoke score | AUC, smokiest patch | AUC, dark channel |" in (tmp_path / "faint_smoke.md").read_text()


def test_faint_smoke_without_the_data_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "training.faint_smoke", "--data", str(tmp_path / "none")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no such folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_starts_are_ranked_on_the_val_pairs_and_the_best_is_chosen(tmp_path, tiny_weights):
    import torch
    from model import create_model, save_checkpoint

    data = surgical("val_smoke").parent
    torch.manual_seed(1)
    other = save_checkpoint(create_model("scopewatch_lap5_small"), tmp_path / "other.pt")
    r = subprocess.run([sys.executable, "-m", "training.starts", str(tiny_weights), str(other), "--data", str(data),
                        "--out", str(tmp_path / "starts")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "starts" / "starts.json").read_text())
    aucs = {s["weights"]: s["auc"] for s in report["starts"]}
    assert set(aucs) == {str(tiny_weights), str(other)} and all(0.0 <= a <= 1.0 for a in aucs.values())
    # Two networks from different initial weights read the pairs differently; the better is chosen.
    assert report["chosen"] == max(aucs, key=aucs.get) and r.stdout.strip().splitlines()[-1] == f"chosen: {report['chosen']}"
    row = next(s for s in report["starts"] if s["weights"] == str(tiny_weights))
    pairs = next(x for x in row["real"] if "pairs_added_smoke" in x["item"])
    assert pairs["auc_score"] == row["auc"] and row["clear_frames"] == 62


def test_starts_with_a_missing_snapshot_is_one_line(tmp_path, tiny_weights):
    r = subprocess.run([sys.executable, "-m", "training.starts", str(tiny_weights), str(tmp_path / "none.pt")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no such snapshot" in r.stderr and len(r.stderr.strip().splitlines()) == 1
