"""The quality error by distortion that `scopewatch evaluate` reports (training/evaluate.py)."""
from pathlib import Path

import numpy as np
import pytest

from training.evaluate import markdown, quality_bias
from training.labels import LabelledItem


def test_quality_bias_is_the_mean_error_over_clean_clips_and_over_each_single_distortion():
    tasks = ("noise", "smoke")
    items = [LabelledItem(Path("a"), {"noise": 0, "smoke": 0}, 100.0), LabelledItem(Path("b"), {"noise": 2, "smoke": 0}, 60.0),
             LabelledItem(Path("c"), {"noise": 3, "smoke": 0}, 50.0), LabelledItem(Path("d"), {"noise": 1, "smoke": 1}, 70.0)]
    bias = quality_bias(items, np.array([98.0, 64.0, 58.0, 10.0]), tasks)
    # The two-distortion clip d is in no group; smoke has no single clip.
    assert bias == {"none": {"clips": 1, "bias": -2.0}, "noise": {"clips": 2, "bias": 6.0}, "smoke": {"clips": 0, "bias": None}}
    report = {"data": "d", "clips": 4, "frames_per_clip": 8, "model": "m", "device": "cpu", "micro_f1": 1.0,
              "micro_f1_single": 1.0, "exact_match": 1.0, "frames_per_s": 1.0, "per_task": {},
              "quality": {"srocc": 1.0, "plcc": 1.0, "krocc": 1.0, "rmse": 0.0, "bias": bias}}
    text = markdown(report)
    assert "| none | -2.0 (1) |" in text and "| noise | +6.0 (2) |" in text and "| smoke | n/a (0) |" in text


def test_a_paired_bootstrap_gives_the_difference_and_a_range_that_holds_it():
    from training.metrics import exact_match, micro_f1, paired_bootstrap

    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 10, bool)
    same = paired_bootstrap(micro_f1, truth, truth, truth)
    assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)  # one model against itself
    worse = truth.copy()
    worse[:4, 0] = ~worse[:4, 0]  # 4 of 40 clips wrong on the first task
    d = paired_bootstrap(exact_match, truth, truth, worse, resamples=500)
    assert d["difference"] == pytest.approx(0.1) and 0.0 < d["low"] < 0.1 < d["high"] <= 0.25
    assert paired_bootstrap(exact_match, truth, worse, truth, resamples=500)["high"] < 0  # the other way round


def test_the_shipping_report_compares_a_candidate_with_the_shipped_weights_clip_by_clip():
    from training.shipping import markdown, synthetic_against

    def report(called, clips=("a.mp4", "b.mp4", "c.mp4", "d.mp4")):
        return {"decisions": {"clips": list(clips), "present": [[1, 0], [0, 1], [1, 1], [0, 0]], "called": called}}
    shipped = report([[1, 0], [0, 1], [1, 1], [0, 0]])
    candidate = report([[1, 0], [0, 0], [1, 1], [0, 0]])
    d = synthetic_against(candidate, shipped)
    assert d["exact_match"]["difference"] == -0.25 and d["exact_match"]["low"] <= -0.25 <= d["exact_match"]["high"]
    assert d["micro_f1"]["difference"] < 0
    assert synthetic_against(report(candidate["decisions"]["called"], clips=("a", "b", "c", "e")), shipped) is None
    assert synthetic_against({}, shipped) is None  # a report from before the decisions were kept
    c = {"weights": "w.pt", "failed": 0, "checks": [], "against_shipped": d}
    assert "exact_match -0.250 (" in markdown([c], None, "w.pt", "passes every check")
