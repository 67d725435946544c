import cv2
import pytest
import numpy as np
import torch

from model.preprocess import InputConfig
from model.tasks import DEFAULT_TASKS
from model.preprocess import extract
from training.dataset import (MIN_SEVERITY, SynthPatchDataset, draw_severity, h264_roundtrip, patch_effects,
                              patch_targets, scene_shading, scope_falloff, smaller_picture, soft_capture)
from training.distortions import create_distortion
from training.nss import NUM_FEATURES
from training.scene import ProceduralScene


def make(seed=0, length=24):
    contents = [ProceduralScene(i, (640, 360)) for i in range(2)]
    return SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), seed=seed, length=length)


def test_samples_carry_inputs_and_every_target():
    samples = list(make())
    assert len(samples) == 24
    s = samples[0]
    assert s["patches"].shape == (8, 64, 64, 3) and s["patches"].dtype == torch.uint8
    assert s["context"].shape == (96, 160, 3)
    assert s["nss"].shape == (8, NUM_FEATURES) and s["quality"].shape == ()
    sev = torch.stack([x["severity"] for x in samples])
    pres = torch.stack([x["presence"] for x in samples])
    assert torch.equal(pres, (sev > 0).float())
    assert ((sev == 0) | (sev >= MIN_SEVERITY)).all() and (sev <= 1).all()
    n_present = pres.sum(1)
    assert (n_present == 0).any() and (n_present == 1).any() and (n_present >= 2).any()
    q = torch.stack([x["quality"] for x in samples])
    assert (q[n_present == 0] > 90).all() and q[n_present >= 2].mean() < q[n_present == 0].mean()


def test_stream_is_reproducible_from_its_seed():
    a = [x["severity"] for x in make(seed=4, length=5)]
    b = [x["severity"] for x in make(seed=4, length=5)]
    c = [x["severity"] for x in make(seed=5, length=5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_h264_roundtrip_codes_the_frame_at_the_asked_quality():
    frame = ProceduralScene(3, (640, 360)).frame_at(1.0)
    coded = {crf: h264_roundtrip(frame, crf) for crf in (12, 20, 28)}
    assert all(c.shape == frame.shape and c.dtype == np.uint8 for c in coded.values())
    error = [np.abs(coded[crf].astype(float) - frame).mean() for crf in (12, 20, 28)]
    assert 0.3 < error[0] < error[1] < error[2] < 6.0  # changed, and more so at a higher CRF


def test_scope_falloff_is_centred_and_symmetric():
    g = scope_falloff((360, 640), reach=2.0)
    assert g.max() == g[179:181, 319:321].max() and abs(float(g[180, 320]) - 1.0) < 1e-3
    assert np.allclose(g, g[::-1, ::-1]) and np.allclose(g, g[:, ::-1])
    assert abs(float(g[180, 320 + 180]) - (1 + 1 / 4) ** -2) < 0.01  # one half short side out: (1 + 1/2^2)^-2


def test_scene_shading_spans_its_range_in_smooth_blobs_unlike_an_off_axis_light():
    g = scene_shading((360, 640), span=0.8, rng=np.random.default_rng(3))
    assert g.shape == (360, 640) and g.dtype == np.float32 and (g > 0).all()
    assert abs(float(np.log(g.max() / g.min())) - 0.8) < 0.05  # the span is the range of the log gain
    assert np.abs(np.diff(np.log(g), axis=1)).max() < 0.02  # low frequency: no edges of its own
    assert not np.array_equal(g, scene_shading((360, 640), 0.8, np.random.default_rng(4)))
    # The light's gain decreases monotonically away from its axis; the scene's relief has more than
    # one bright region (a light field has one local maximum, these blobs have several).
    uneven = create_distortion("uneven_illumination")
    rng = np.random.default_rng(0)
    light = uneven.gain((360, 640), 0.5, uneven.sample_params(rng), 0.0)

    def local_maxima(field):
        small = field[::20, ::20]
        inner = small[1:-1, 1:-1]
        around = np.stack([small[1 + dy:small.shape[0] - 1 + dy, 1 + dx:small.shape[1] - 1 + dx]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
        return int((inner > around.max(0)).sum())

    assert local_maxima(light) <= 1
    assert max(local_maxima(scene_shading((360, 640), 0.8, np.random.default_rng(s))) for s in range(5)) >= 2


def test_shaded_clean_frames_stay_labelled_clean():
    contents = [ProceduralScene(0, (640, 360))]
    plain = SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), seed=1, p_clean=1.0, p_shading=0.0, length=4)
    shaded = SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), seed=1, p_clean=1.0, p_shading=1.0, length=4)
    for a, b in zip(plain, shaded):
        assert a["presence"].sum() == 0 and b["presence"].sum() == 0 and b["quality"] > 90
        assert not torch.equal(a["context"], b["context"])


def test_severity_skew_moves_samples_to_the_faint_end_and_keeps_every_level():
    def levels(skew):
        rng = np.random.default_rng(0)
        s = np.array([draw_severity(rng, skew) for _ in range(20000)])
        assert s.min() >= MIN_SEVERITY and s.max() <= 1.0
        return np.histogram(s, [0, 0.25, 0.5, 0.75, 1.0])[0] / len(s)
    uniform, skewed = levels(1.0), levels(1.7)
    assert abs(uniform[0] - (0.25 - MIN_SEVERITY) / (1 - MIN_SEVERITY)) < 0.01  # uniform: ~20% in level 1
    assert 0.36 < skewed[0] < 0.42 and skewed[3] > 0.14  # twice as many faint ones, strong ones still seen
    assert list(skewed) == sorted(skewed, reverse=True)


def test_smaller_pictures_shrink_the_view_to_a_low_resolution_frame_and_keep_its_labels():
    frame = ProceduralScene(0, (640, 360)).frame_at(0.0)
    rng = np.random.default_rng(0)
    shrunk = [smaller_picture(frame, rng) for _ in range(50)]
    shorts = np.array([s.shape[0] for s in shrunk])
    assert 192 <= shorts.min() and shorts.max() <= 300 and shorts.max() - shorts.min() > 60
    assert all(s.shape[0] % 2 == 0 and s.shape[1] % 2 == 0 for s in shrunk)  # the H.264 round trip needs even sides
    assert all(abs(s.shape[1] / s.shape[0] - 640 / 360) < 0.02 for s in shrunk)  # the same view, not a crop
    tiny = frame[:200, :300]
    assert smaller_picture(tiny, np.random.default_rng(1), (250, 300)) is tiny  # never upscaled
    samples = list(SynthPatchDataset([ProceduralScene(1, (640, 360))], DEFAULT_TASKS, InputConfig(), seed=2,
                                     p_small=1.0, length=8))
    assert all(s["patches"].shape == (8, 64, 64, 3) for s in samples)
    assert any(s["presence"].sum() == 0 for s in samples) and any(s["presence"].sum() > 0 for s in samples)


def test_a_soft_capture_is_softer_than_the_frame_and_sharper_than_defocus_level_1(content_frame):
    """A web capture is soft at its own size, and labelled clean: it must stay on the clean side of
    the faintest defocus the model is taught, or the two labels would overlap."""
    from model.tasks import level_to_severity

    def detail(x):
        return float(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var())

    rng = np.random.default_rng(0)
    softest = soft_capture(content_frame, rng, (0.55, 0.55))
    assert softest.shape == content_frame.shape and softest.dtype == np.uint8
    defocus = create_distortion("defocus_blur", ("gaussian",))
    faintest = defocus.apply(content_frame, level_to_severity(1), defocus.sample_params(rng))
    assert detail(faintest) < detail(softest) < 0.8 * detail(content_frame)
    samples = list(SynthPatchDataset([ProceduralScene(1, (640, 360))], DEFAULT_TASKS, InputConfig(), seed=2,
                                     p_soft=1.0, length=8))
    assert any(s["presence"].sum() == 0 for s in samples)  # soft clean samples stay clean
    # The softness is the reference's own, not a distortion: a soft clean sample keeps full quality.
    assert all(float(s["quality"]) == 100.0 for s in samples if s["presence"].sum() == 0)


def test_patch_effects_measure_the_change_inside_each_patch():
    frame = ProceduralScene(2, (640, 360)).frame_at(0.0)
    x = extract(frame, InputConfig())
    assert np.array_equal(patch_effects(frame, frame, x), np.zeros(8))
    changed = frame.copy()
    changed[:, :320] = np.clip(changed[:, :320].astype(int) + 51, 0, 255)  # +0.2 of full scale, left half only
    effects = patch_effects(frame, changed, x)
    left = x.corners[:, 0] + 64 <= 320
    right = x.corners[:, 0] >= 320
    assert left.any() and right.any()
    assert (effects[left] > 0.15).all() and (effects[right] == 0).all()
    assert np.allclose(patch_targets(np.array([0.0, 0.005, 0.015, 0.025, 0.3])), [0, 0, 0.5, 1, 1])


def smoke_patches(generator, seed=0, length=12):
    contents = [ProceduralScene(i, (640, 360)) for i in range(3)]
    ds = SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), seed=seed, p_clean=0.2, length=length,
                           generators={"smoke": (generator,)}, patch_tasks=("smoke",))
    return list(ds)


def test_patch_targets_mark_local_smoke_where_it_lies_and_global_smoke_everywhere():
    column = smoke_patches("column")
    haze = smoke_patches("haze")
    for s in column + haze:
        assert s["patch_presence"].shape == (8, 1)
        if s["presence"][DEFAULT_TASKS.index("smoke")] == 0:
            assert (s["patch_presence"] == 0).all()  # no smoke, no smoky patch, whatever else is there
    smoky = lambda samples: torch.stack([s["patch_presence"][:, 0] for s in samples
                                         if s["presence"][DEFAULT_TASKS.index("smoke")] > 0])
    col, hz = smoky(column), smoky(haze)
    assert len(col) >= 3 and len(hz) >= 3
    both = ((col < 0.05).any(1) & (col > 0.95).any(1)).sum()
    assert both >= 2  # frames with clear air beside the column and smoke under it
    assert (hz > 0.5).float().mean() > 0.8  # a haze veils every patch
    plain = SynthPatchDataset([ProceduralScene(0, (640, 360))], DEFAULT_TASKS, InputConfig(), length=2)
    assert all("patch_presence" not in s for s in plain)  # the default recipe has no per-patch targets
    with pytest.raises(ValueError, match="patch_tasks glare not among the tasks"):
        SynthPatchDataset([ProceduralScene(0, (640, 360))], DEFAULT_TASKS, InputConfig(), patch_tasks=("glare",))


def test_per_patch_targets_leave_the_sample_stream_unchanged():
    contents = [ProceduralScene(i, (640, 360)) for i in range(2)]
    a = list(SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), seed=3, length=4))
    b = list(SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), seed=3, length=4, patch_tasks=("smoke",)))
    assert all(torch.equal(x["patches"], y["patches"]) and torch.equal(x["severity"], y["severity"]) for x, y in zip(a, b))


def test_real_degraded_content_is_labelled_present_with_its_severity_and_quality_unknown():
    contents = [ProceduralScene(i, (640, 360)) for i in range(2)]
    smoky = [(ProceduralScene(9, (640, 360)), "smoke")]  # stands in for a real smoky frame
    samples = list(SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), seed=1, length=40, degraded=smoky, p_degraded=0.3))
    smoke = DEFAULT_TASKS.index("smoke")
    real = [s for s in samples if s["quality_known"] == 0]
    synthetic = [s for s in samples if s["quality_known"] == 1]
    assert 4 <= len(real) <= 20 and len(real) + len(synthetic) == 40
    for s in real:
        assert s["presence"][smoke] == 1 and s["severity_known"][smoke] == 0 and s["severity"][smoke] == 0
        assert s["severity_known"].sum() == len(DEFAULT_TASKS) - 1
    assert any(s["presence"].sum() > 1 for s in real)  # synthetic distortions are added beside it
    assert all(s["severity_known"].all() and torch.equal(s["presence"], (s["severity"] > 0).float()) for s in synthetic)
    with pytest.raises(ValueError, match="none found"):
        SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), p_degraded=0.1)
    with pytest.raises(ValueError, match="shows glare, not a task"):
        SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), degraded=[(contents[0], "glare")], p_degraded=0.1)
