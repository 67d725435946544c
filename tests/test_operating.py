"""Operating points chosen on val: quiet on clean frames first, lowered only with evidence, folded exactly."""
import numpy as np
import pytest
import torch

from model import create_model
from model.predict import Predictor
from training.operating import choose, fold
from training.scene import ProceduralScene


def test_without_val_footage_a_threshold_only_rises_to_keep_clean_frames_quiet():
    assert choose(np.array([0.1, 0.2]), [])["threshold"] == 0.5
    assert choose(np.array([0.1, 0.7]), [])["threshold"] == 0.71  # the lowest that alarms on none of them
    assert choose(np.full(10, 0.99), [])["threshold"] == 0.95  # nothing is quiet: the highest


def test_with_val_footage_it_is_lowered_to_the_middle_of_what_detects_most_and_stays_quiet():
    clean = np.array([0.05, 0.1, 0.24])
    faint = np.array([0.2, 0.4, 0.45, 0.1])  # detected (half its frames) up to 0.40
    r = choose(clean, [faint])
    assert r["threshold"] == pytest.approx((0.25 + 0.40) / 2, abs=0.011) and "1 of 1" in r["how"]
    assert choose(np.array([0.01]), [np.array([0.1, 0.15])])["threshold"] == 0.5  # never below 0.2: not lowered
    strong = np.array([0.8, 0.9])
    assert choose(clean, [strong])["threshold"] == 0.5  # detected at 0.5 already: not lowered
    hidden = np.array([0.01, 0.02])  # below the clean frames: not detectable quietly
    assert choose(clean, [strong, hidden])["threshold"] == 0.5


def test_a_lower_floor_lets_a_model_that_scores_real_frames_low_be_fitted_between_them():
    clean = np.array([0.02, 0.05, 0.067])
    faint = np.array([0.09, 0.12, 0.14, 0.3])  # half its frames up to 0.14
    assert choose(clean, [faint])["threshold"] == 0.5  # below the default floor: nothing to lower to
    r = choose(clean, [faint], lowest=0.05)
    assert r["threshold"] == pytest.approx((0.07 + 0.14) / 2, abs=0.011) and "1 of 1" in r["how"]


def test_the_command_line_floor_is_the_default_one():
    from apps.cli import build_parser
    from training.operating import LOWEST
    args = build_parser().parse_args(["operating-points", "--weights", "w.pt", "--out", "o.pt"])
    assert args.lowest == LOWEST and not args.refit


def test_folding_moves_the_decision_to_0_5_where_the_threshold_was():
    torch.manual_seed(0)
    model = create_model("scopewatch_lap5_small").eval()
    frames = [ProceduralScene(s, (640, 360)).frame_at(0.5) for s in range(2)]
    before = Predictor(model, "cpu").predict(frames)
    thresholds = {"smoke": 0.2, "noise": 0.8}
    fold(model, thresholds)
    after = Predictor(model, "cpu").predict(frames)
    for b, a in zip(before, after):
        for task, t in thresholds.items():
            logit_b = np.log(b.probabilities[task] / (1 - b.probabilities[task]))
            logit_a = np.log(a.probabilities[task] / (1 - a.probabilities[task]))
            assert logit_a == pytest.approx(logit_b - np.log(t / (1 - t)), abs=1e-3)
        assert a.probabilities["motion_blur"] == pytest.approx(b.probabilities["motion_blur"], abs=1e-6)


def test_refitting_the_shipped_weights_on_val_finds_their_own_operating_points(tmp_path):
    """`--refit` takes the fitted thresholds back out before fitting: on the same val footage it
    lands where the shipped weights were fitted, and a second fit without it is refused."""
    from conftest import surgical
    from helpers import run_cli
    from model import load_checkpoint
    from model.factory import DEFAULT_MODEL, weights_path
    surgical("val_smoke")
    shipped = weights_path(DEFAULT_MODEL)
    refused = run_cli("operating-points", "--weights", str(shipped), "--out", str(tmp_path / "x.pt"))
    assert refused.returncode == 2 and "--refit" in refused.stderr and not (tmp_path / "x.pt").exists()
    r = run_cli("operating-points", "--weights", str(shipped), "--out", str(tmp_path / "refit.pt"), "--refit", "-q")
    assert r.returncode == 0, r.stderr
    chosen = {t: c["threshold"] for t, c in
              load_checkpoint(tmp_path / "refit.pt").checkpoint_meta["metrics"]["operating_points"]["chosen"].items()}
    assert chosen == {t: c["threshold"] for t, c in
                      load_checkpoint(shipped).checkpoint_meta["metrics"]["operating_points"]["chosen"].items()}
