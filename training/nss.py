"""Natural-scene-statistics features in the wavelet domain: the auxiliary regression target.

Bourbia et al. regress NSS features of each patch beside the quality score so the shared features
stay tied to how natural the picture is. Their exact statistics are unpublished; ScopeWatch uses
this documented, fixed 33-dimensional layout (`FEATURE_NAMES`), per grayscale patch:

* a 3-level 2-D Haar DWT (every level halves exactly, no coefficient crosses the patch border), 3 scales x 3
  orientations (H, V, D);
* for each of the 9 subbands, the generalised-Gaussian shape alpha (moment matching:
  E[x^2] / E[|x|]^2 = G(1/a) G(3/a) / G(2/a)^2) and log of its scale (the coefficient RMS) -> 18;
* parent-child dependency: correlation of coefficient magnitudes between scale s and s+1 for each
  orientation (parent upsampled x2) -> 6;
* cross-orientation dependency: correlation of magnitudes H-V, H-D, V-D at each scale -> 9.

Blur removes fine-scale energy (log-scale of scale 1 falls); noise makes fine subbands Gaussian
(alpha -> 2) and decorrelates their magnitudes. Everything is vectorised over a batch of patches.
"""
from __future__ import annotations

import math

import numpy as np
import pywt

WAVELET = "haar"  # support 2: no coefficient straddles the patch border (db2 with
# periodisation wraps the patch around and its edge discontinuity swamps the finest subbands)
LEVELS = 3
ORIENTATIONS = ("h", "v", "d")
_ALPHAS = np.linspace(0.15, 10.0, 4000)
_RHO = np.array([math.gamma(1 / a) * math.gamma(3 / a) / math.gamma(2 / a) ** 2 for a in _ALPHAS])
# _RHO decreases with alpha; np.interp needs increasing x, so the table is reversed.
_RHO_INC, _ALPHA_FOR_RHO = _RHO[::-1], _ALPHAS[::-1]


def _names() -> tuple[str, ...]:
    names = []
    for s in range(1, LEVELS + 1):
        for o in ORIENTATIONS:
            names += [f"ggd_shape_s{s}{o}", f"log_scale_s{s}{o}"]
    names += [f"parent_corr_s{s}{o}" for s in range(1, LEVELS) for o in ORIENTATIONS]
    names += [f"orient_corr_s{s}{a}{b}" for s in range(1, LEVELS + 1) for a, b in (("h", "v"), ("h", "d"), ("v", "d"))]
    return tuple(names)


FEATURE_NAMES = _names()
NUM_FEATURES = len(FEATURE_NAMES)  # 33


def ggd_fit(coeffs: np.ndarray, axis=(-2, -1)) -> tuple[np.ndarray, np.ndarray]:
    """Generalised-Gaussian (zero-mean) shape alpha and RMS scale along `axis`, by moment matching."""
    c = np.asarray(coeffs, dtype=np.float64)
    m2 = np.mean(c * c, axis=axis)
    m1 = np.mean(np.abs(c), axis=axis)
    rho = m2 / np.maximum(m1 * m1, 1e-20)
    alpha = np.interp(rho, _RHO_INC, _ALPHA_FOR_RHO)
    return alpha, np.sqrt(m2)


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    b = b - b.mean(axis=(-2, -1), keepdims=True)
    num = (a * b).mean(axis=(-2, -1))
    den = np.sqrt((a * a).mean(axis=(-2, -1)) * (b * b).mean(axis=(-2, -1)))
    return np.where(den > 1e-12, num / np.maximum(den, 1e-12), 0.0)


def to_gray(patches: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 RGB or (B, H, W) gray -> (B, H, W) float64 in [0, 1]."""
    p = np.asarray(patches)
    if p.ndim == 4 and p.shape[-1] == 3:
        p = p @ np.array([0.299, 0.587, 0.114])
    elif p.ndim != 3:
        raise ValueError(f"expected (B, H, W, 3) or (B, H, W) patches, got shape {p.shape}")
    return p.astype(np.float64) / (255.0 if np.asarray(patches).dtype == np.uint8 else 1.0)


def nss_features(patches: np.ndarray) -> np.ndarray:
    """(B, NUM_FEATURES) float32 features of a batch of patches (side a multiple of 8, >= 32)."""
    x = to_gray(patches)
    h, w = x.shape[-2:]
    if h % (2**LEVELS) or w % (2**LEVELS) or min(h, w) < 32:
        raise ValueError(f"patch sides must be multiples of {2**LEVELS} and >= 32, got {h}x{w}")
    coeffs = pywt.wavedec2(x, WAVELET, mode="periodization", level=LEVELS, axes=(-2, -1))
    # wavedec2 lists the coarsest level first; scale 1 here is the finest.
    bands = [coeffs[LEVELS - s + 1] for s in range(1, LEVELS + 1)]
    feats = []
    for hvd in bands:
        for band in hvd:
            alpha, scale = ggd_fit(band)
            feats += [alpha, np.log(scale + 1e-4)]
    mags = [[np.abs(b) for b in hvd] for hvd in bands]
    for s in range(LEVELS - 1):
        for o in range(3):
            parent = np.repeat(np.repeat(mags[s + 1][o], 2, axis=-2), 2, axis=-1)
            feats.append(_corr(mags[s][o], parent))
    for s in range(LEVELS):
        for a, b in ((0, 1), (0, 2), (1, 2)):
            feats.append(_corr(mags[s][a], mags[s][b]))
    return np.stack(feats, axis=-1).astype(np.float32)
