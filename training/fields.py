"""Smooth random fields: the low-frequency structure behind smoke density, depth and tissue texture.

Value noise on a random lattice, sampled at continuous coordinates, so a field can drift in time
(smoke moving, a camera panning over tissue) without popping. Fields are built at low resolution
and resized by the caller: they are smooth, so that costs nothing visible and keeps synthesis fast.
"""
from __future__ import annotations

import cv2
import numpy as np


class ValueNoise:
    """A periodic random lattice; `sample` returns bilinear-smoothstep interpolated values in [0, 1]."""

    def __init__(self, rng: np.random.Generator, period: int = 64):
        self.period = period
        self.lattice = rng.random((period, period), dtype=np.float32)

    def sample(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Field at lattice coordinates (ys[:, None], xs[None, :]): a (len(ys), len(xs)) array."""
        y0 = np.floor(ys).astype(np.int64)
        x0 = np.floor(xs).astype(np.int64)
        fy = _smoothstep(ys - y0)[:, None]
        fx = _smoothstep(xs - x0)[None, :]
        p = self.period
        y0, y1 = y0 % p, (y0 + 1) % p
        x0, x1 = x0 % p, (x0 + 1) % p
        lat = self.lattice
        top = lat[np.ix_(y0, x0)] * (1 - fx) + lat[np.ix_(y0, x1)] * fx
        bottom = lat[np.ix_(y1, x0)] * (1 - fx) + lat[np.ix_(y1, x1)] * fx
        return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _smoothstep(f: np.ndarray) -> np.ndarray:
    return f * f * (3.0 - 2.0 * f)


class FractalField:
    """Fractal (fBm) value noise: octaves of doubling frequency and halving amplitude, in [0, 1].

    `at(shape, t)` renders the field on a grid of `shape` spanning `cells` lattice cells across the
    short side; each octave drifts with its own velocity so the pattern evolves, not just slides.
    """

    def __init__(self, rng: np.random.Generator, octaves: int = 3, cells: float = 3.0,
                 drift: tuple[float, float] = (0.0, 0.0), persistence: float = 0.5):
        self.octaves = [ValueNoise(rng) for _ in range(octaves)]
        self.offsets = rng.random((octaves, 2)) * 64
        self.cells = cells
        self.persistence = persistence
        angles = rng.uniform(-0.6, 0.6, size=octaves)
        base = np.asarray(drift, dtype=np.float64)
        # Finer octaves drift a little faster and in slightly different directions: turbulence.
        self.velocities = [
            (1 + 0.5 * i) * np.array([base[0] * np.cos(a) - base[1] * np.sin(a),
                                      base[0] * np.sin(a) + base[1] * np.cos(a)])
            for i, a in enumerate(angles)
        ]

    def at(self, shape: tuple[int, int], t: float = 0.0) -> np.ndarray:
        h, w = shape
        short = min(h, w)
        out = np.zeros((h, w), np.float32)
        total = 0.0
        amp = 1.0
        for i, noise in enumerate(self.octaves):
            freq = self.cells * (2 ** i) / short
            vy, vx = self.velocities[i]
            ys = np.arange(h) * freq + self.offsets[i, 0] + vy * t
            xs = np.arange(w) * freq + self.offsets[i, 1] + vx * t
            out += amp * noise.sample(ys, xs)
            total += amp
            amp *= self.persistence
        return out / total


def low_res_shape(shape: tuple[int, int], short_side: int = 64) -> tuple[int, int]:
    """Grid on which a smooth field is rendered before being resized to `shape`."""
    h, w = shape
    k = short_side / min(h, w)
    return max(2, round(h * k)), max(2, round(w * k))


def resize_field(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(field, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def stretch(field: np.ndarray) -> np.ndarray:
    """Rescale a field to span [0, 1] (fBm values cluster around 0.5)."""
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)
