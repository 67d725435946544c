"""The quality error by distortion that `scopewatch evaluate` reports (training/evaluate.py)."""
from pathlib import Path

import numpy as np

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
