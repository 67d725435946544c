import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT

from model.tasks import level_to_severity, severity_to_level
from training.compose import Episode, Recipe, compose
from training.distortions import DISTORTIONS, create_distortion, distort, parse_generators
from training.quality import fr_quality

NAMES = DISTORTIONS.names()
LEVELS = (1, 2, 3, 4)


def generators_of(*names):
    return [(n, g) for n in names for g in DISTORTIONS.get(n).generators]


def at_levels(frame, name, seed=1, generator=None):
    d = create_distortion(name, (generator,) if generator else None)
    params = d.sample_params(np.random.default_rng(seed))
    return [d.apply(frame, level_to_severity(lvl), params) for lvl in LEVELS]


def luma(frame):
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float64)


def fov(frame):
    return cv2.blur(luma(frame), (9, 9)) > 20


def laplacian_var(frame):
    return float(cv2.Laplacian(luma(frame), cv2.CV_64F)[fov(frame)].var())


def noise_sigma(frame):
    """Immerkaer's fast noise estimate: a Laplacian-difference mask cancels smooth image structure."""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    r = np.abs(cv2.filter2D(luma(frame), -1, k))
    return float(np.sqrt(np.pi / 2) / 6 * r[fov(frame)].mean())


def rms_contrast(frame):
    """Mean local RMS contrast (std in 15x15 windows): the detail a veil washes out. Patchy smoke
    adds large-scale variation of its own, so a whole-frame std is not the measure."""
    y = luma(frame)
    m = cv2.blur(y, (15, 15))
    local = np.sqrt(np.maximum(cv2.blur(y * y, (15, 15)) - m * m, 0))
    inner = cv2.erode(fov(frame).astype(np.uint8), np.ones((31, 31), np.uint8)) > 0  # not the rim
    return float(local[inner].mean())


def saturation(frame):
    return float(cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)[..., 1][fov(frame)].mean())


def brightness_spread(frame, mask):
    """Std of the mean luma of 8x8 blocks over the field of view."""
    y = luma(frame)
    h, w = y.shape
    blocks = y[: h // 8 * 8, : w // 8 * 8].reshape(8, h // 8, 8, w // 8).mean(axis=(1, 3))
    m = mask[: h // 8 * 8, : w // 8 * 8].reshape(8, h // 8, 8, w // 8).mean(axis=(1, 3)) > 0.9
    return float(blocks[m].std())


def strictly_decreasing(xs):
    return all(a > b for a, b in zip(xs, xs[1:]))


def strictly_increasing(xs):
    return all(a < b for a, b in zip(xs, xs[1:]))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(640, 360), (257, 193), (1280, 720)])
def test_shape_and_dtype_kept(name, size):
    frame = (np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    for lvl in LEVELS:
        out = distort(frame, name, level=lvl, rng=np.random.default_rng(lvl))
        assert out.shape == frame.shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", NAMES)
def test_seeded_determinism(name, scene_frame):
    a = distort(scene_frame, name, severity=0.6, rng=np.random.default_rng(5))
    b = distort(scene_frame, name, severity=0.6, rng=np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, scene_frame)


@pytest.mark.parametrize("name", ["noise", "smoke", "uneven_illumination", "motion_blur", "defocus_blur"])
def test_different_seeds_give_different_random_choices(name, scene_frame):
    outs = [distort(scene_frame, name, severity=0.6, rng=np.random.default_rng(s)) for s in range(3)]
    assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[1], outs[2])


@pytest.mark.parametrize("name,generator", generators_of("defocus_blur", "motion_blur"))
def test_blurs_lower_laplacian_variance_monotonically(name, generator, content_frame):
    clean = laplacian_var(content_frame)
    values = [laplacian_var(f) for f in at_levels(content_frame, name, generator=generator)]
    assert values[0] < 0.85 * clean, values
    assert strictly_decreasing(values), values


@pytest.mark.parametrize("name,generator", generators_of("noise"))
def test_noise_sigma_rises_with_level(name, generator, content_frame):
    frames = at_levels(content_frame, "noise", generator=generator)
    added = [float(np.std(f.astype(float) - content_frame)) for f in frames]
    assert added[0] > 2.0 and strictly_increasing(added), added
    # A coarse grain, demosaiced noise and noise through a codec have little of the finest-scale
    # energy this estimate reads.
    if generator not in ("correlated", "sensor", "compressed"):
        clean = noise_sigma(content_frame)
        values = [noise_sigma(f) for f in frames]
        assert values[0] > clean + 1.0 and strictly_increasing(values), values


@pytest.mark.parametrize("name,generator", generators_of("smoke"))
def test_smoke_lowers_contrast_and_saturation(name, generator, content_frame):
    frames = at_levels(content_frame, "smoke", generator=generator)
    contrast = [rms_contrast(content_frame)] + [rms_contrast(f) for f in frames]
    sat = [saturation(content_frame)] + [saturation(f) for f in frames]
    assert strictly_decreasing(contrast), contrast
    assert strictly_decreasing(sat), sat
    # The veil's own patchiness keeps some local contrast; jets and puffs leave parts of the field clear.
    assert contrast[-1] < (0.7 if generator in ("jet", "puff") else 0.6) * contrast[0]


@pytest.mark.parametrize("generator", [g for g in create_distortion("smoke").generators if g != "column"])
def test_a_lower_smoke_floor_thins_the_faintest_smoke_only(generator, content_frame):
    # TrainConfig.smoke_floor: the faintest smoke of a sample may be thinner than the recipe's. The
    # column keeps its own opacity: a wisp is locally opaque however faint the smoke.
    d = create_distortion("smoke", (generator,))
    params = d.sample_params(np.random.default_rng(3))
    clean = content_frame.astype(float).mean()

    def lift(severity, **floor):
        return d.apply(content_frame, severity, {**params, **floor}).astype(float).mean() - clean

    assert np.array_equal(d.apply(content_frame, 0.05, params), d.apply(content_frame, 0.05, {**params, "floor": 0.08}))
    assert 0 < lift(0.05, floor=0.02) < 0.7 * lift(0.05)
    assert abs(lift(1.0, floor=0.02) - lift(1.0)) < 0.05 * lift(1.0)  # the densest smoke is the same


@pytest.mark.parametrize("generator", ["spot", "vignette", "gradient"])
def test_uneven_light_that_keeps_none_of_the_mean_darkens_the_view_in_the_same_pattern(generator, content_frame):
    # TrainConfig.uneven_keep: a sample's pattern may keep less of the mean brightness than the recipe's.
    d = create_distortion("uneven_illumination", (generator,))
    params = d.sample_params(np.random.default_rng(5))
    kept = d.apply(content_frame, 0.6, params)
    assert np.array_equal(kept, d.apply(content_frame, 0.6, {**params, "keep": 1.0}))
    gain_kept = d.gain(content_frame.shape[:2], 0.6, params, 0.0)
    gain_own = d.gain(content_frame.shape[:2], 0.6, {**params, "keep": 0.0}, 0.0)
    assert gain_kept.mean() == pytest.approx(1.0, abs=0.01)
    assert np.allclose(gain_own / gain_own.mean(), gain_kept, rtol=1e-3)  # the same pattern
    if generator != "gradient":  # a ramp both brightens and darkens; a fall-off only darkens
        assert gain_own.mean() < 0.9
        darker = d.apply(content_frame, 0.6, {**params, "keep": 0.0}).astype(float).mean()
        assert darker < 0.9 * kept.astype(float).mean()


@pytest.mark.parametrize("generator", ["spot", "vignette", "gradient"])
def test_uneven_light_dimmed_to_its_peak_only_darkens_in_the_same_pattern(generator, content_frame):
    # TrainConfig.uneven_dim: the pattern's brightest point brought down to the frame's own exposure.
    d = create_distortion("uneven_illumination", (generator,))
    params = d.sample_params(np.random.default_rng(5))
    shape = content_frame.shape[:2]
    kept, dimmed = d.gain(shape, 0.6, params, 0.0), d.gain(shape, 0.6, {**params, "dim": 1.0}, 0.0)
    assert np.array_equal(kept, d.gain(shape, 0.6, {**params, "dim": 0.0}, 0.0))
    assert kept.max() > 1.05 and dimmed.max() == pytest.approx(1.0, abs=0.01)  # nothing brightened
    assert np.allclose(dimmed / dimmed.mean(), kept / kept.mean(), rtol=1e-3)  # the same pattern
    half = d.gain(shape, 0.6, {**params, "dim": 0.5}, 0.0)
    assert dimmed.mean() < half.mean() < kept.mean()


def test_a_vignette_that_reaches_further_from_the_axis_darkens_one_side_more(content_frame):
    # TrainConfig.vignette_reach: the vignette's centre may lie further from the axis than the recipe's 0.3.
    d = create_distortion("uneven_illumination", ("vignette",))
    params = {**d.sample_params(np.random.default_rng(2)), "angle": 0.0, "offset": 0.5}  # centre to the right
    shape = content_frame.shape[:2]
    near, far = d.gain(shape, 0.6, params, 0.0), d.gain(shape, 0.6, {**params, "reach": 1.2}, 0.0)
    assert np.array_equal(near, d.gain(shape, 0.6, {**params, "reach": 0.3}, 0.0))

    def left_over_right(g):
        return g[:, : g.shape[1] // 4].mean() / g[:, -g.shape[1] // 4:].mean()

    assert left_over_right(far) < 0.8 * left_over_right(near) < 0.8


def test_a_generator_named_twice_is_drawn_twice_as_often():
    d = create_distortion("smoke", ("puff", "column", "column"))
    rng = np.random.default_rng(0)
    drawn = [d.sample_params(rng)["generator"] for _ in range(3000)]
    assert set(drawn) == {"puff", "column"}
    assert 0.62 < drawn.count("column") / len(drawn) < 0.71


@pytest.mark.parametrize("seed", range(5))
def test_column_smoke_is_local_and_visible_when_faint(seed):
    # Real cautery wisps are locally opaque and absent elsewhere; even the faintest column
    # labelled smoke must be seen where it is, and must leave most of the field clear.
    from training.dataset import MIN_SEVERITY
    d = create_distortion("smoke", ("column",))
    trans = d.column_transmission((54, 96), MIN_SEVERITY, d.sample_params(np.random.default_rng(seed)), 0.0)
    assert 1.0 - trans.min() >= 0.2
    assert (trans > 0.98).mean() >= 0.4
    heavy = d.column_transmission((54, 96), 1.0, d.sample_params(np.random.default_rng(seed)), 0.0)
    assert (heavy < 0.9).mean() > 2 * (trans < 0.9).mean()


@pytest.mark.parametrize("seed", range(4))
def test_backscatter_smoke_greys_the_tissue_instead_of_whitening_it(seed, real_frame):
    # Real cautery smoke lit by the scope lifts green and blue, dims the highlights and barely
    # brightens red tissue; its airlight follows the exposure, so a darker picture gets a darker veil.
    d = create_distortion("smoke", ("backscatter",))
    params = d.sample_params(np.random.default_rng(seed))
    mask = fov(real_frame)
    clean = real_frame[mask].astype(float)
    veiled = d.apply(real_frame, level_to_severity(2), params)[mask].astype(float)
    lift = veiled.mean(0) - clean.mean(0)
    assert lift[0] < 0.7 * lift[1] and lift[0] < 0.7 * lift[2], lift
    assert np.percentile(veiled.mean(1), 99) < np.percentile(clean.mean(1), 99)
    dark = (real_frame * 0.6).astype(np.uint8)
    assert (d.scattered_light(dark, 0.5, params) < 0.75 * d.scattered_light(real_frame, 0.5, params)).all()
    dense, thin = d.scattered_light(real_frame, 1.0, params), d.scattered_light(real_frame, 0.1, params)
    assert np.ptp(dense) < np.ptp(thin)  # a dense veil is greyer than a thin one


@pytest.mark.parametrize("name,generator", generators_of("uneven_illumination"))
def test_uneven_illumination_spreads_brightness(name, generator, content_frame):
    mask = fov(content_frame)
    frames = at_levels(content_frame, "uneven_illumination", seed=3, generator=generator)
    spread = [brightness_spread(f, mask) for f in frames]
    # A faint one-sided ramp can cancel the scene's own brightness structure; from there it only grows.
    assert strictly_increasing(spread) and spread[-1] > 1.05 * brightness_spread(content_frame, mask), spread
    if generator != "overexposure":  # over-exposure is brighter overall; the others move light around
        means = [luma(f)[mask].mean() for f in frames]
        assert max(abs(m - luma(content_frame)[mask].mean()) for m in means) < 0.35 * luma(content_frame)[mask].mean()


@pytest.mark.parametrize("name,generator", generators_of(*NAMES))
def test_fr_quality_falls_with_level(name, generator, content_frame):
    q = [fr_quality(content_frame, f) for f in at_levels(content_frame, name, generator=generator)]
    assert strictly_decreasing(q), q
    assert q[0] < 99.5 and q[-1] > 0
    assert fr_quality(content_frame, content_frame) == pytest.approx(100.0)


@pytest.mark.parametrize("name,generator", generators_of("noise", "smoke", "defocus_blur", "motion_blur", "uneven_illumination"))
def test_a_level_looks_the_same_at_360p_and_720p(name, generator, scene_frame):
    big = cv2.resize(scene_frame, (1280, 720), interpolation=cv2.INTER_CUBIC)
    d = create_distortion(name, (generator,))
    params = d.sample_params(np.random.default_rng(2))
    for lvl in (1, 4):
        s = level_to_severity(lvl)
        small_q = fr_quality(scene_frame, d.apply(scene_frame, s, params))
        big_q = fr_quality(big, d.apply(big, s, params))
        # Correlated, demosaiced and coded noise keep their grain in reference pixels, but the FR
        # quality reads their spectrum slightly differently at the two scales.
        tolerance = 9.0 if generator in ("correlated", "sensor", "compressed") else 6.0
        assert abs(small_q - big_q) < tolerance, (lvl, small_q, big_q)


def test_each_episode_draws_one_generator_and_a_choice_narrows_the_draw():
    rng = np.random.default_rng(0)
    for name in NAMES:
        cls = DISTORTIONS.get(name)
        drawn = {create_distortion(name).sample_params(rng)["generator"] for _ in range(60)}
        assert drawn == set(cls.drawn()) == set(cls.generators) - set(cls.optional), name
        if name != "compression":
            assert len(cls.generators) >= 3, name  # issue 18: three physically different generators at least
    only = create_distortion("smoke", ("haze", "veil"))
    assert {only.sample_params(rng)["generator"] for _ in range(30)} == {"haze", "veil"}
    assert create_distortion("smoke", ("backscatter",)).sample_params(rng)["generator"] == "backscatter"  # optional: named
    with pytest.raises(KeyError, match="no generator jets"):
        create_distortion("smoke", ("jets",))
    assert parse_generators("smoke=haze+jet,noise=gaussian") == {"smoke": ("haze", "jet"), "noise": ("gaussian",)}
    with pytest.raises(ValueError, match="DISTORTION=GENERATOR"):
        parse_generators("smoke")


def test_composition_is_ordered_by_the_imaging_chain(scene_frame):
    rng = np.random.default_rng(0)
    params = {n: create_distortion(n).sample_params(rng) for n in ("noise", "smoke", "defocus_blur")}
    a = compose(scene_frame, {"noise": 0.5, "smoke": 0.5, "defocus_blur": 0.4}, params)
    b = compose(scene_frame, {"defocus_blur": 0.4, "smoke": 0.5, "noise": 0.5}, params)
    assert np.array_equal(a, b)
    # Noise comes last (sensor after optics): the result is still noisy, not blurred-away noise.
    blurred_smoke = compose(scene_frame, {"smoke": 0.5, "defocus_blur": 0.4}, params)
    assert noise_sigma(a) > noise_sigma(blurred_smoke) + 3
    assert fr_quality(scene_frame, a) < min(fr_quality(scene_frame, blurred_smoke),
                                           fr_quality(scene_frame, compose(scene_frame, {"noise": 0.5}, params)))
    clean = compose(scene_frame, {"smoke": 0.0}, params)
    assert np.array_equal(clean, scene_frame) and clean is not scene_frame


@pytest.mark.parametrize("name,generator", generators_of("smoke", "uneven_illumination", "defocus_blur", "motion_blur"))
def test_distortions_evolve_smoothly_in_time(name, generator, scene_frame):
    only = {name: (generator,)}
    recipe = Recipe.constant({name: 0.6}, np.random.default_rng(4), only)
    f0, f1 = recipe.render(scene_frame, 2.0), recipe.render(scene_frame, 2.04)
    later = recipe.render(scene_frame, 8.0)
    other = Recipe.constant({name: 0.6}, np.random.default_rng(99), only).render(scene_frame, 2.0)
    step = np.abs(f0.astype(int) - f1).mean()
    assert step < 0.3 * np.abs(f0.astype(int) - other).mean() + 0.2
    assert step <= np.abs(f0.astype(int) - later).mean()


def test_sensor_noise_is_fresh_every_frame(scene_frame):
    recipe = Recipe.constant({"noise": 0.5}, np.random.default_rng(4))
    a, b = recipe.render(scene_frame, 0.0), recipe.render(scene_frame, 0.04)
    diff = a.astype(int) - b
    assert diff.std() > 5  # two independent noise draws differ by ~sqrt(2) sigma


def test_episode_ramps_in_and_out():
    e = Episode("smoke", 0.8, start=10, end=20, ramp=2)
    assert e.severity_at(9.9) == 0 and e.severity_at(20) == 0
    assert e.severity_at(11) == pytest.approx(0.4)
    assert e.severity_at(15) == pytest.approx(0.8)
    assert 0 < e.severity_at(19.5) < 0.8
    with pytest.raises(ValueError):
        Episode("smoke", 0.5, start=5, end=5)


def test_levels_and_severities_round_trip():
    for lvl in range(5):
        assert severity_to_level(level_to_severity(lvl)) == lvl
    assert severity_to_level(0.249) == 1 and severity_to_level(0.251) == 2 and severity_to_level(1.0) == 4


def test_unknown_name_and_bad_inputs_are_refused(scene_frame):
    with pytest.raises(KeyError, match="did you mean smoke"):
        create_distortion("smok")
    with pytest.raises(ValueError, match="RGB uint8"):
        distort(scene_frame.astype(np.float32), "noise", level=1, rng=np.random.default_rng())
    with pytest.raises(ValueError, match="severity"):
        distort(scene_frame, "noise", severity=1.5, rng=np.random.default_rng())
    with pytest.raises(ValueError, match="level"):
        distort(scene_frame, "noise", level=5, rng=np.random.default_rng())


def test_compression_is_a_real_jpeg_round_trip(scene_frame):
    out = distort(scene_frame, "compression", level=4, rng=np.random.default_rng())
    # 8x8 block boundaries: JPEG leaves steps on the block grid.
    y = luma(out)
    at_edges = np.abs(np.diff(y, axis=1))[:, 7::8].mean()
    inside = np.abs(np.diff(y, axis=1))[:, 3::8].mean()
    assert at_edges > 1.1 * inside


def test_contact_sheet_has_a_row_per_generator_and_a_column_per_level(tmp_path, scene_frame):
    from training.contact_sheet import contact_sheet

    sheet = contact_sheet(scene_frame, names=["smoke", "noise"], tile_width=160)
    rows = len(DISTORTIONS.get("smoke").generators) + len(DISTORTIONS.get("noise").generators)
    assert sheet.shape == (rows * 90, 5 * 160, 3)
    r = subprocess.run([sys.executable, "-m", "apps.cli", "contact-sheet", "--out", str(tmp_path / "sheet.png")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    img = cv2.imread(str(tmp_path / "sheet.png"))
    assert img.shape[0] == sum(len(DISTORTIONS.get(n).generators) for n in NAMES) * 180
