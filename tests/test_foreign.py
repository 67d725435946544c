"""Distortions made by FFmpeg's filters on real frames (training/foreign.py)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, surgical
from model.tasks import NUM_LEVELS
from training.foreign import (DBLUR_PER_RADIUS, GENERATORS, LUMA_NOISE_PER_STRENGTH, NOISE_PER_STRENGTH,
                              PAIRS_PER_FRAME, Layer, draw, filtered, with_mean_of)
from training.quality import fr_quality

TASKS = ("noise", "smoke", "uneven_illumination", "defocus_blur", "motion_blur")


def spread(profile: np.ndarray) -> float:
    """Standard deviation of a 1-D profile taken as a distribution."""
    p = profile.astype(float) / profile.sum()
    x = np.arange(len(p))
    mean = (p * x).sum()
    return float(np.sqrt((p * (x - mean) ** 2).sum()))


def test_the_filters_add_the_spread_their_levels_are_set_by():
    grey = np.full((128, 128, 3), 128, np.uint8)
    noisy = filtered(grey, [("noise", "alls=20:allf=t")]).astype(float)
    assert noisy.std() == pytest.approx(20 * NOISE_PER_STRENGTH, rel=0.05)
    luma = filtered(grey, [("format", "yuv444p"), ("noise", "c0s=30:c0f=t+u")]).astype(float)
    assert luma.std() == pytest.approx(30 * LUMA_NOISE_PER_STRENGTH, rel=0.08)
    line = np.zeros((129, 129, 3), np.uint8)
    line[:, 64] = 255
    smeared = filtered(line, [("dblur", "angle=0:radius=8")])[64, :, 0]
    assert spread(smeared) == pytest.approx(8 * DBLUR_PER_RADIUS, rel=0.05)
    boxed = filtered(line, [("avgblur", "sizeX=3")])[64, :, 0]
    assert np.count_nonzero(boxed) == 7  # a box of 2r + 1 px


def test_a_layer_is_blended_over_the_frame_by_its_own_share():
    dark = np.full((32, 32, 3), 50, np.uint8)
    veiled = filtered(dark, [], Layer("color", "c=0xFFFFFF:size=32x32", "all_expr=A*0.90+B*0.10"))
    assert veiled.mean() == pytest.approx(0.9 * 50 + 0.1 * 255, abs=1)
    screened = filtered(dark, [], Layer("color", "c=0xFFFFFF:size=32x32", "all_mode=screen:all_opacity=0.5"))
    assert screened.mean() == pytest.approx((50 + 255) / 2, abs=1)


@pytest.mark.parametrize("generator", GENERATORS, ids=lambda g: g.name)
def test_every_generator_damages_the_frame_more_at_every_level(generator, scene_frame):
    quality = [fr_quality(scene_frame, draw(scene_frame, generator, level, np.random.default_rng(level)))
               for level in range(1, NUM_LEVELS + 1)]
    assert quality[0] < 99.8, quality  # level 1 changes the frame
    assert all(a > b for a, b in zip(quality, quality[1:])), quality


def test_keep_mean_scales_a_draw_back_to_its_clear_frames_brightness(scene_frame):
    vignette = next(g for g in GENERATORS if g.name == "vignette")
    dark = draw(scene_frame, vignette, NUM_LEVELS, np.random.default_rng(0))
    assert dark.mean() < 0.9 * scene_frame.mean()
    assert with_mean_of(dark, scene_frame).mean() == pytest.approx(scene_frame.mean(), abs=2.0)


def test_the_report_draws_every_generator_at_every_level_on_the_clear_val_frames(tmp_path, tiny_weights):
    data = surgical("val_smoke").parent
    r = subprocess.run([sys.executable, "-m", "training.foreign", "--weights", str(tiny_weights), "--data", str(data),
                        "--frames", "1", "--out", str(tmp_path), "-q"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "foreign_val.json").read_text())
    assert report["split"] == "val" and report["frames"] == 5  # one frame of each clean val item
    per_frame = 1 + len(GENERATORS) * NUM_LEVELS + PAIRS_PER_FRAME
    assert report["draws"] == 5 * per_frame
    assert {(row["generator"], row["level"]) for row in report["rows"]} == \
        {(g.name, lv) for g in GENERATORS for lv in range(1, NUM_LEVELS + 1)}
    assert all(row["draws"] == 5 and 0.0 <= row["called"] <= 1.0 for row in report["rows"])
    assert report["fov_luma"] == 18.0 and all(0.0 <= row["in_view"] <= 1.0 for row in report["rows"])
    assert {g.distortion for g in GENERATORS} == set(TASKS)
    supports = {t: report["per_task"][t]["support"] for t in TASKS}
    # Each distortion: 2 generators x 4 levels on each frame, plus its share of the pairs.
    assert all(s >= 5 * 2 * NUM_LEVELS for s in supports.values())
    assert sum(supports.values()) == 5 * (len(GENERATORS) * NUM_LEVELS + 2 * PAIRS_PER_FRAME)
    assert report["macro_f1"] == pytest.approx(np.mean([report["per_task"][t]["f1"] for t in TASKS]))
    text = (tmp_path / "foreign_val.md").read_text()
    assert r.stdout == text and "| motion_blur | dblur |" in text and "| macro-F1 |" in text


def test_the_shipped_weights_leave_the_clear_frame_alone_and_call_strong_noise(scene_frame):
    from model import load_predictor
    from training.foreign import measure
    report = measure(load_predictor(device="cpu"), [scene_frame])
    assert report["frames"] == 1 and report["draws"] == 1 + len(GENERATORS) * NUM_LEVELS + PAIRS_PER_FRAME
    assert report["clear_alarmed"] == 0.0
    strong = {row["generator"]: row["called"] for row in report["rows"] if row["level"] == NUM_LEVELS}
    assert strong["ffmpeg_noise"] == 1.0 and strong["luma_uniform"] == 1.0
    # Blur leaves the field of view as it is; the strongest vignette darkens part of it out of view.
    in_view = {(row["generator"], row["level"]): row["in_view"] for row in report["rows"]}
    assert in_view["gblur", 1] > 0.97 and in_view["vignette", NUM_LEVELS] < in_view["vignette", 1] <= 1.0


@pytest.mark.parametrize("args, message", [(["--data", "{tmp}/none"], "no such folder"),
                                           (["--frames", "0"], "--frames must be at least 1")])
def test_foreign_refuses_bad_input_in_one_line(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "training.foreign", *(a.format(tmp=tmp_path) for a in args)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
