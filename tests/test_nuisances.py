"""Nuisances of normal surgery: each changes the frame the way it should, and all stay labelled clean."""
import numpy as np
import pytest

from model.preprocess import InputConfig
from model.tasks import DEFAULT_TASKS
from training.dataset import SynthPatchDataset
from training.nuisances import (AFTER_CAMERA, SCENE, Nuisances, camera_noise, colour_cast, instrument, scope_mask, specular_highlights,
                                stored_stretched, ui_overlay)
from training.scene import ProceduralScene


def test_specular_highlights_are_small_saturated_glints(scene_frame):
    out = specular_highlights(scene_frame, np.random.default_rng(0))
    white = (out.min(axis=2) >= 250) & (scene_frame.min(axis=2) < 250)
    assert 0 < white.mean() < 0.05


@pytest.mark.parametrize("seed", range(6))
def test_scope_mask_blacks_out_a_border_or_a_box_and_keeps_the_centre(scene_frame, seed):
    frame = np.full_like(scene_frame, 128)
    out = scope_mask(frame, np.random.default_rng(seed))
    h, w = out.shape[:2]
    assert (out.max(axis=2) == 0).mean() > 0.004
    assert np.array_equal(out[h // 2 - 10:h // 2 + 10, w // 2 - 10:w // 2 + 10], frame[h // 2 - 10:h // 2 + 10, w // 2 - 10:w // 2 + 10])


def test_an_instrument_enters_from_the_border_with_sharp_edges(scene_frame):
    out = instrument(scene_frame, np.random.default_rng(3))
    changed = np.abs(out.astype(int) - scene_frame).max(axis=2) > 20
    assert 0.01 < changed.mean() < 0.4
    edge = changed[0].any() or changed[-1].any() or changed[:, 0].any() or changed[:, -1].any()
    assert edge


def test_camera_noise_stays_below_the_faintest_labelled_noise(scene_frame):
    out = camera_noise(scene_frame, np.random.default_rng(1))
    assert 0.3 < float(np.std(out.astype(float) - scene_frame)) < 2.5


def test_ui_overlay_burns_in_text_or_a_bar():
    frame = np.full((360, 640, 3), 100, np.uint8)
    outs = [ui_overlay(frame, np.random.default_rng(s)) for s in range(8)]
    assert sum(not np.array_equal(o, frame) for o in outs) >= 6


@pytest.mark.parametrize("shape", [(360, 640), (256, 256), (140, 200)])
def test_stored_stretched_squeezes_one_side_and_never_below_128(shape):
    frame = np.full((*shape, 3), 90, np.uint8)
    outs = [stored_stretched(frame, np.random.default_rng(s)) for s in range(12)]
    for out in outs:
        h, w = out.shape[:2]
        assert (h == shape[0]) != (w == shape[1]) or out is frame  # one side squeezed, or left alone
        assert min(h, w) >= min(128, *shape) and h <= shape[0] and w <= shape[1]
    if min(shape) >= 256:
        assert sum(o.shape[1] < shape[1] for o in outs) > sum(o.shape[0] < shape[0] for o in outs) > 0


def test_after_camera_draws_the_same_for_the_same_seed(scene_frame):
    n = Nuisances(scale=5.0)  # every after-camera nuisance drawn
    a, b = n.after_camera(scene_frame, 7), n.after_camera(scene_frame, 7)
    assert np.array_equal(a, b) and not np.array_equal(a, scene_frame)
    assert not np.array_equal(a, n.after_camera(scene_frame, 8))


def test_scale_zero_leaves_the_frame_alone(scene_frame):
    n = Nuisances(scale=0.0)
    assert np.array_equal(n.scene(scene_frame, np.random.default_rng(0)), scene_frame)
    assert np.array_equal(n.after_camera(scene_frame, 0), scene_frame)
    assert set(SCENE) | set(AFTER_CAMERA) >= {"specular_highlights", "scope_mask", "ui_overlay", "colour_cast",
                                              "camera_noise", "lens_distortion", "instrument", "stored_stretched"}


def test_clean_samples_with_every_nuisance_stay_labelled_clean_at_high_quality():
    contents = [ProceduralScene(0, (640, 360))]
    ds = SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), seed=2, p_clean=1.0, nuisances=Nuisances(scale=5.0), length=6)
    for s in ds:
        assert s["presence"].sum() == 0 and s["quality"] > 90  # the overlay sits on both frames alike


def test_generator_choice_reaches_the_samples():
    contents = [ProceduralScene(0, (640, 360))]
    ds = SynthPatchDataset(contents, ("smoke",), InputConfig(), seed=3, p_clean=0.0, generators={"smoke": ("veil",)}, length=2)
    assert all(s["presence"].item() == 1 for s in ds)
    bad = SynthPatchDataset(contents, ("smoke",), InputConfig(), seed=3, p_clean=0.0, generators={"smoke": ("fog",)}, length=1)
    with pytest.raises(KeyError, match="no generator fog"):
        list(bad)


def test_a_cast_in_camera_is_drawn_after_the_distortions_on_clean_and_distorted_alike():
    grey = np.full((96, 128, 3), 128, np.uint8)

    def cast(frame):  # a cast moves every pixel's channel balance; glints, text and borders only some
        m = np.median(frame.reshape(-1, 3), axis=0)
        return float(np.abs(m / max(m.mean(), 1.0) - 1.0).max()) > 0.02

    seeds = range(40)
    in_camera, on_scene = Nuisances(cast_in_camera=True), Nuisances()
    drawn = [cast(in_camera.after_camera(grey, s)) for s in seeds]
    assert 0.3 < np.mean(drawn) < 0.9  # drawn as often as on the scene (0.6)
    assert not any(cast(on_scene.after_camera(grey, s)) for s in seeds)
    assert not any(cast(in_camera.scene(grey, np.random.default_rng(s))) for s in seeds)
    assert np.mean([cast(on_scene.scene(grey, np.random.default_rng(s))) for s in seeds]) > 0.3
    smoky = np.full_like(grey, 200)  # the same camera seed: the same cast on the distorted frame
    for s in seeds:
        a, b = in_camera.after_camera(grey, s), in_camera.after_camera(smoky, s)
        assert cast(a) == cast(b)


def test_a_veil_free_cast_never_lifts_the_shadows_nor_pales_the_colours():
    class Lowest:  # every draw at the low end: the default cast lifts shadows (gamma 0.85) and pales (0.8)
        def uniform(self, low, high, size=None):
            return np.full(size, low) if size else low

    frame = np.zeros((8, 8, 3), np.uint8)
    frame[:4] = (150, 60, 40)  # tissue red
    frame[4:] = (30, 12, 8)  # its shadow

    def pallor(x):  # darkest channel against brightest: 1 is grey
        x = x.reshape(-1, 3).astype(float)
        return x.min(1) / x.max(1)

    def shadow(x):
        return float(x[4:].astype(float).mean())

    veiled, free = colour_cast(frame, Lowest()), colour_cast(frame, Lowest(), veil_free=True)
    assert (pallor(veiled) > pallor(frame) + 0.05).all() and shadow(veiled) > shadow(frame)
    assert (pallor(free) <= pallor(frame) + 0.02).all() and shadow(free) < shadow(frame)
    # The setting reaches the scene's cast: the same draws, other frames where a cast was veil-like.
    differs = [not np.array_equal(Nuisances(veil_free_cast=True).scene(frame, np.random.default_rng(s)),
                                  Nuisances().scene(frame, np.random.default_rng(s))) for s in range(30)]
    assert 0 < sum(differs) < 30
    assert np.array_equal(Nuisances().scene(frame, np.random.default_rng(3)),
                          Nuisances(veil_free_cast=False).scene(frame, np.random.default_rng(3)))
