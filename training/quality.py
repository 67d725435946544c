"""Full-reference quality of a synthesised frame against its clean source: the quality head's target.

Quality = 100 x mean SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 = 0.01, K2 = 0.03) of
the luma, computed at the 360p reference scale so the score does not depend on the frame size, and
averaged over the endoscope's field of view only: the black corners outside the circular image are
identical in both frames and would otherwise inflate every score. 100 = identical to the clean frame.
"""
from __future__ import annotations

import cv2
import numpy as np

from training.distortions import REFERENCE_SHORT_SIDE, check_frame

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
FOV_LUMA = 12.0  # 8-bit luma below which a reference pixel is outside the field of view


def _luma(frame: np.ndarray) -> np.ndarray:
    y = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    short = min(y.shape)
    if short > REFERENCE_SHORT_SIDE:
        k = REFERENCE_SHORT_SIDE / short
        y = cv2.resize(y, (round(y.shape[1] * k), round(y.shape[0] * k)), interpolation=cv2.INTER_AREA)
    return y.astype(np.float32)


def ssim_map(reference: np.ndarray, distorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel SSIM of the luma at reference scale, and the reference luma it was computed on."""
    check_frame(reference)
    check_frame(distorted)
    if reference.shape != distorted.shape:
        raise ValueError(f"frames differ in shape: {reference.shape} vs {distorted.shape}")
    x, y = _luma(reference), _luma(distorted)

    def blur(a):
        return cv2.GaussianBlur(a, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    num = (2 * mx * my + _C1) * (2 * sxy + _C2)
    den = (mx * mx + my * my + _C1) * (sxx + syy + _C2)
    return num / den, x


def fr_quality(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Quality of `distorted` against its clean `reference`, 0..100 (higher is better)."""
    smap, ref_luma = ssim_map(reference, distorted)
    fov = cv2.blur(ref_luma, (9, 9)) > FOV_LUMA
    values = smap[fov] if fov.mean() > 0.2 else smap
    return float(np.clip(values.mean(), 0.0, 1.0) * 100.0)
