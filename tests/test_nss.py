import cv2
import numpy as np
import pytest

from training.distortions import distort
from training.nss import FEATURE_NAMES, NUM_FEATURES, ggd_fit, nss_features


def test_ggd_shape_recovers_known_distributions():
    rng = np.random.default_rng(0)
    gauss = rng.standard_normal((200, 64, 64))
    laplace = rng.laplace(size=(200, 64, 64))
    a_g, s_g = ggd_fit(gauss)
    a_l, _ = ggd_fit(laplace)
    assert np.median(a_g) == pytest.approx(2.0, rel=0.10)
    assert np.median(a_l) == pytest.approx(1.0, rel=0.10)
    assert np.median(s_g) == pytest.approx(1.0, rel=0.05)
    # A heavier-tailed shape is told apart from both.
    heavy = rng.standard_t(df=3, size=(200, 64, 64))
    assert np.median(ggd_fit(heavy)[0]) < np.median(a_l)


def test_fixed_dimension_and_batch_vectorisation(scene_frame):
    patches = np.stack([scene_frame[y:y + 64, x:x + 64] for y, x in [(100, 200), (150, 300), (200, 250)]])
    f = nss_features(patches)
    assert f.shape == (3, NUM_FEATURES) == (3, 33) and len(FEATURE_NAMES) == 33 and f.dtype == np.float32
    assert np.allclose(f[1], nss_features(patches[1:2])[0], atol=1e-5)
    assert np.isfinite(f).all()
    with pytest.raises(ValueError, match="multiples"):
        nss_features(patches[:, :60, :60])


def _patches(frame):
    return np.stack([frame[y:y + 64, x:x + 64] for y in (96, 160, 224) for x in (192, 288, 384)])


def test_features_move_with_blur_and_noise(real_frame):
    clean = nss_features(_patches(real_frame))
    # Generators that act on every patch alike (a tilted focal plane leaves a band sharp).
    blurred = nss_features(_patches(distort(real_frame, "defocus_blur", level=3, rng=np.random.default_rng(0),
                                            generator="disk")))
    noisy = nss_features(_patches(distort(real_frame, "noise", level=3, rng=np.random.default_rng(0),
                                          generator="poisson_gaussian")))
    i_scale = FEATURE_NAMES.index("log_scale_s1h")
    i_shape = FEATURE_NAMES.index("ggd_shape_s1h")
    i_parent = FEATURE_NAMES.index("parent_corr_s1h")
    # Blur removes fine-scale energy; noise adds it.
    assert (blurred[:, i_scale] < clean[:, i_scale] - 0.5).all()
    assert (noisy[:, i_scale] > clean[:, i_scale] + 0.5).all()
    # Noise makes the finest subband Gaussian (shape -> 2) and unrelated to its parent.
    assert np.abs(noisy[:, i_shape] - 2.0).mean() < np.abs(clean[:, i_shape] - 2.0).mean()
    assert noisy[:, i_parent].mean() < clean[:, i_parent].mean()


def test_gray_and_rgb_inputs_agree(scene_frame):
    rgb = _patches(scene_frame)
    gray = (rgb @ np.array([0.299, 0.587, 0.114])) / 255.0
    assert np.allclose(nss_features(rgb), nss_features(gray), atol=1e-4)
    assert np.isfinite(nss_features(cv2.GaussianBlur(rgb[0], (0, 0), 5)[None])).all()
