"""The surgical distortions, synthesised the way they arise in a laparoscopic imaging chain.

Every distortion takes an RGB uint8 frame of any size and a continuous severity in [0, 1] (level L
of 1..4 is the centre of its bin, see `model.tasks.level_to_severity`) and returns a frame of the same
shape and dtype. Random choices (blur direction, where the light source sits, the smoke's structure)
are drawn once per episode by `sample_params(rng)`; `apply(frame, severity, params, t)` then renders
time t, so a clip varies smoothly between frames instead of jumping (smoke drifts, focus breathes).

Sizes are in *reference pixels*: one reference pixel is 1/360 of the frame's short side (and at
least one pixel), so a level looks the same at 360p and at 1080p (`frame_scale`). Each distortion is registered by name in
`DISTORTIONS`; `create_distortion("smoke")` builds one and suggests close names for typos.
"""
from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import cv2
import numpy as np

from model.preprocess import check_frame as _check_frame
from model.registry import Registry
from model.tasks import NUM_LEVELS, level_to_severity
from training.fields import FractalField, low_res_shape, resize_field

REFERENCE_SHORT_SIDE = 360

Params = dict[str, Any]


def frame_scale(frame: np.ndarray) -> float:
    """Frame pixels per reference pixel. Never below 1: a frame smaller than the reference is
    analysed at its own size (the model never upscales), so there a reference pixel is a pixel."""
    return max(1.0, min(frame.shape[:2]) / REFERENCE_SHORT_SIDE)


def check_frame(frame: np.ndarray) -> None:
    _check_frame(frame, min_side=1)


def check_severity(severity: float) -> float:
    if not 0.0 <= severity <= 1.0 or math.isnan(severity):
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    return float(severity)


def field_of_view(frame: np.ndarray) -> np.ndarray:
    """Soft (h, w) float mask of where the scope images anything: 0 in the black corners outside a
    circular image, 1 on tissue (even dark tissue, judged on a smoothed low-resolution luma)."""
    h, w = frame.shape[:2]
    luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(luma, low_res_shape((h, w), 90)[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
    return resize_field(np.clip((cv2.blur(small, (3, 3)) - 4.0) / 8.0, 0.0, 1.0), (h, w))


class Distortion(ABC):
    name: ClassVar[str]
    # Position in the imaging chain (scene -> medium -> optics -> exposure -> sensor -> codec);
    # `compose` applies distortions in this order whatever order they are listed in.
    order: ClassVar[int]

    def sample_params(self, rng: np.random.Generator) -> Params:
        return {}

    @abstractmethod
    def apply(self, frame: np.ndarray, severity: float, params: Params, t: float = 0.0) -> np.ndarray:
        ...

    def __call__(self, frame: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
        check_frame(frame)
        severity = check_severity(severity)
        if severity == 0.0:
            return frame.copy()
        return self.apply(frame, severity, self.sample_params(rng))


DISTORTIONS: Registry[type[Distortion]] = Registry("distortion")


def register(cls: type[Distortion]) -> type[Distortion]:
    return DISTORTIONS.register(cls.name)(cls)


def create_distortion(name: str) -> Distortion:
    return DISTORTIONS.get(name)()


def distort(frame: np.ndarray, name: str, *, severity: float | None = None, level: int | None = None,
            rng: np.random.Generator) -> np.ndarray:
    """One-shot: distort `frame` by `name` at a continuous `severity` or a `level` (1..4)."""
    if (severity is None) == (level is None):
        raise ValueError("give exactly one of severity or level")
    if level is not None:
        if not 1 <= level <= NUM_LEVELS:
            raise ValueError(f"level must be 1..{NUM_LEVELS}, got {level}")
        severity = level_to_severity(level)
    return create_distortion(name)(frame, severity, rng)


@register
class UnevenIllumination(Distortion):
    """Off-centre endoscope light: inverse-square-like fall-off to dark regions and an over-lit,
    clipped hot spot near the light axis. The gain is normalised to keep the mean brightness, so
    what grows with severity is the spread across the frame, not the overall level."""

    name = "uneven_illumination"
    order = 10

    def sample_params(self, rng):
        return {"angle": float(rng.uniform(0, 2 * np.pi)), "offset": float(rng.uniform(0.25, 0.5)),
                "hot": float(rng.uniform(0.4, 1.0)), "power": float(rng.uniform(1.5, 2.5)),
                "phase": float(rng.uniform(0, 2 * np.pi))}

    def gain(self, shape: tuple[int, int], severity: float, params: Params, t: float) -> np.ndarray:
        gh, gw = low_res_shape(shape, 48)
        short = min(gh, gw)
        ys = (np.arange(gh, dtype=np.float32) - (gh - 1) / 2) / short
        xs = (np.arange(gw, dtype=np.float32) - (gw - 1) / 2) / short
        wobble = 0.04 * np.array([np.sin(0.5 * t + params["phase"]), np.cos(0.4 * t + params["phase"])])
        cy = params["offset"] * np.sin(params["angle"]) + wobble[0]
        cx = params["offset"] * np.cos(params["angle"]) * (gw / gh) ** 0.5 + wobble[1]
        d2 = (ys[:, None] - cy) ** 2 + (xs[None, :] - cx) ** 2
        radius = 1.6 - 1.25 * severity
        falloff = (1.0 + d2 / radius**2) ** -params["power"]
        hot = 1.0 + 1.8 * severity * params["hot"] * np.exp(-d2 / 0.05)
        g = falloff * hot
        return resize_field((g / g.mean()).astype(np.float32), shape)

    def apply(self, frame, severity, params, t=0.0):
        g = self.gain(frame.shape[:2], severity, params, t)
        return cv2.multiply(frame, cv2.merge([g, g, g]), dtype=cv2.CV_8U)


@register
class Smoke(Distortion):
    """Surgical smoke as atmospheric scattering, I = J t + A (1 - t): a drifting, turbulent
    transmission map t (fractal noise), a whitish-to-tissue-tinted airlight A that veils the scene
    and a slight forward-scattering blur. Contrast and saturation fall as the veil thickens."""

    name = "smoke"
    order = 20

    def sample_params(self, rng):
        white = np.array([0.90, 0.88, 0.86]) + rng.uniform(-0.05, 0.05, 3)
        tissue = np.array([0.85, 0.55, 0.50]) + rng.uniform(-0.05, 0.05, 3)
        tint = rng.uniform(0.0, 0.7)  # real smoke picks up the red of the lit tissue
        angle = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(0.05, 0.25)
        return {"seed": int(rng.integers(2**31)), "airlight": ((1 - tint) * white + tint * tissue).tolist(),
                "drift": [speed * np.sin(angle), speed * np.cos(angle)], "cells": float(rng.uniform(1.5, 3.5))}

    def transmission(self, shape, severity, params, t):
        field = FractalField(np.random.default_rng(params["seed"]), octaves=3, cells=params["cells"],
                             drift=tuple(params["drift"]))
        density = np.clip((field.at(low_res_shape(shape, 48), t) - 0.5) * 2.2 + 0.5, 0.0, 1.0)
        mean_transmission = 1.0 - (0.08 + 0.82 * severity)
        tau = -math.log(mean_transmission) * (0.35 + 1.3 * density)
        return resize_field(np.exp(-tau).astype(np.float32), shape)

    def apply(self, frame, severity, params, t=0.0):
        # No light reaches the sensor outside the scope's image circle, smoke or not.
        trans = 1.0 - (1.0 - self.transmission(frame.shape[:2], severity, params, t)) * field_of_view(frame)
        sigma = 1.2 * severity * frame_scale(frame)
        scene = cv2.GaussianBlur(frame, (0, 0), sigma) if sigma >= 0.5 else frame
        airlight = np.empty_like(frame)
        airlight[:] = np.round(np.asarray(params["airlight"]) * 255.0).astype(np.uint8)
        return cv2.blendLinear(scene, airlight, trans, 1.0 - trans)


def disk_kernel(radius: float) -> np.ndarray:
    """Anti-aliased uniform disk (the PSF of an out-of-focus circular aperture)."""
    r = max(radius, 0.5)
    n = int(math.ceil(r))
    sub = 4  # supersampling for a smooth rim at sub-pixel radii
    coords = (np.arange((2 * n + 1) * sub) + 0.5) / sub - (n + 0.5)
    inside = (coords[:, None] ** 2 + coords[None, :] ** 2 <= r * r).astype(np.float32)
    k = inside.reshape(2 * n + 1, sub, 2 * n + 1, sub).mean(axis=(1, 3))
    return k / k.sum()


def disk_blur(frame: np.ndarray, radius: float, spread: float = 0.0, depth: np.ndarray | None = None) -> np.ndarray:
    """Disk blur. Large radii are computed at reduced scale (the result has no detail finer than the
    disk), which keeps the kernel small and the cost flat in the radius. With a `depth` map in [0, 1]
    (reduced-scale, any size) the radius varies over the frame between radius*(1 -/+ spread)."""
    if radius < 0.5:
        return frame.copy()
    h, w = frame.shape[:2]
    r_min = radius * (1.0 - spread)
    f = max(1.0, r_min / 2.0)
    # INTER_AREA is needed against aliasing at large reductions but is slow at non-integer factors;
    # below 2x, linear sampling aliases less than the radius-2 disk that follows removes.
    interp = cv2.INTER_AREA if f >= 2.0 else cv2.INTER_LINEAR
    small = frame if f == 1.0 else cv2.resize(frame, (max(1, round(w / f)), max(1, round(h / f))),
                                              interpolation=interp)
    out = cv2.filter2D(small, -1, disk_kernel(r_min / f), borderType=cv2.BORDER_REFLECT)
    if depth is not None and spread > 0:
        far = cv2.filter2D(small, -1, disk_kernel(radius * (1.0 + spread) / f), borderType=cv2.BORDER_REFLECT)
        alpha = resize_field(depth, small.shape[:2])
        out = cv2.blendLinear(far, out, alpha, 1.0 - alpha)
    return out if f == 1.0 else cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


@register
class DefocusBlur(Distortion):
    """Out-of-focus optics: a disk PSF whose radius grows with severity; optionally the radius varies
    over the frame with a smooth depth map (tissue at different distances), and the focus breathes
    slowly over time."""

    name = "defocus_blur"
    order = 30

    def sample_params(self, rng):
        return {"depth": bool(rng.random() < 0.5), "seed": int(rng.integers(2**31)),
                "phase": float(rng.uniform(0, 2 * np.pi))}

    @staticmethod
    def radius(frame, severity, params, t):
        return frame_scale(frame) * (1.0 + 6.0 * severity) * (1 + 0.06 * math.sin(0.8 * t + params["phase"]))

    def apply(self, frame, severity, params, t=0.0):
        r = self.radius(frame, severity, params, t)
        if not params["depth"]:
            return disk_blur(frame, r)
        field = FractalField(np.random.default_rng(params["seed"]), octaves=2, cells=1.5)
        return disk_blur(frame, r, spread=0.25, depth=field.at(low_res_shape(frame.shape[:2], 32)))


def line_kernel(length: float, angle: float) -> np.ndarray:
    """Anti-aliased straight-line PSF of `length` pixels (drawn 8x supersampled, then area-reduced)."""
    n = int(math.ceil(length)) | 1
    sub = 8
    canvas = np.zeros((n * sub, n * sub), np.float32)
    c = (n * sub - 1) / 2
    dx, dy = 0.5 * length * sub * math.cos(angle), -0.5 * length * sub * math.sin(angle)
    cv2.line(canvas, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, thickness=sub)
    k = cv2.resize(canvas, (n, n), interpolation=cv2.INTER_AREA)
    return k / k.sum()


def line_blur(frame: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Linear motion PSF: rotate so the motion runs along rows, box-filter the rows, rotate back.
    The rotated canvas is also squeezed along the motion (the blur removes that detail anyway), and
    a box filter costs the same at any length, unlike a large rotated kernel in filter2D."""
    if length < 1.5:
        return frame.copy()
    if length <= 11.0:  # kernels up to 11x11 stay on filter2D's direct (non-DFT) path
        return cv2.filter2D(frame, -1, line_kernel(length, angle), borderType=cv2.BORDER_REFLECT)
    h, w = frame.shape[:2]
    squeeze = max(1.0, length / 6.0)
    n = max(2, int(round(length / squeeze)))
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    cw = int(math.ceil((w * c + h * s + length) / squeeze))
    ch = int(math.ceil(w * s + h * c + length))
    fwd = np.diag([1.0 / squeeze, 1.0, 1.0]) @ np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), math.degrees(angle), 1.0), [0, 0, 1]])
    fwd[0, 2] += cw / 2 - w / (2 * squeeze)
    fwd[1, 2] += (ch - h) / 2
    canvas = cv2.warpAffine(frame, fwd[:2], (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    canvas = cv2.blur(canvas, (n, 1), borderType=cv2.BORDER_REFLECT)
    return cv2.warpAffine(canvas, fwd[:2], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


@register
class MotionBlur(Distortion):
    """Camera (or instrument) motion during the exposure: a linear PSF of random direction whose
    length grows with severity; direction and length wander smoothly over time."""

    name = "motion_blur"
    order = 40

    def sample_params(self, rng):
        return {"angle": float(rng.uniform(0, np.pi)), "wobble": float(rng.uniform(0.0, 0.3)),
                "phase": float(rng.uniform(0, 2 * np.pi))}

    @staticmethod
    def length(frame, severity, params, t):
        return frame_scale(frame) * (2.0 + 22.0 * severity) * (1 + 0.1 * math.sin(0.9 * t + params["phase"]))

    def apply(self, frame, severity, params, t=0.0):
        angle = params["angle"] + params["wobble"] * math.sin(0.7 * t + params["phase"])
        return line_blur(frame, self.length(frame, severity, params, t), angle)


_GAUSS_TABLE_SIZE = 1 << 21


@functools.lru_cache(maxsize=1)
def _gauss_table() -> np.ndarray:
    return np.random.default_rng(0x5C09E).standard_normal(_GAUSS_TABLE_SIZE, dtype=np.float32)


def gaussian_block(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard-normal samples read from a fixed table at a random offset (the way AV1 film-grain
    synthesis reuses a grain table): drawing fresh normals costs more than the rest of the noise."""
    n = math.prod(shape)
    if n > _GAUSS_TABLE_SIZE // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, _GAUSS_TABLE_SIZE - n))
    return _gauss_table()[start:start + n].reshape(shape)


@functools.lru_cache(maxsize=32)
def _upsampled_noise_std(small: tuple[int, int], full: tuple[int, int]) -> float:
    """Std of unit white noise after bilinear upsampling from `small` to `full` (it averages
    neighbours, so it shrinks); depends only on the geometry, hence cached."""
    n = gaussian_block(np.random.default_rng(1), small)
    return float(cv2.resize(n, (full[1], full[0]), interpolation=cv2.INTER_LINEAR).std())


@register
class SensorNoise(Distortion):
    """Image-sensor noise: signal-dependent Poisson-Gaussian luminance noise (variance = read noise
    plus a term proportional to the signal) and chroma noise. The grain is one reference pixel, so
    noise looks the same at any resolution. Sensor noise is independent from frame to frame, so
    each time t draws fresh (seeded, hence reproducible) noise."""

    name = "noise"
    order = 50
    # Zero-sum RGB directions: chroma noise moves colour without changing luminance.
    _CHROMA = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]], np.float32).T / np.array([2**0.5, 6**0.5], np.float32)

    def sample_params(self, rng):
        return {"seed": int(rng.integers(2**31)), "shot": float(rng.uniform(0.5, 0.85)),
                "chroma": float(rng.uniform(0.3, 0.7))}

    def apply(self, frame, severity, params, t=0.0):
        h, w = frame.shape[:2]
        k = frame_scale(frame)
        small = (max(1, round(h / k)), max(1, round(w / k)))
        rng = np.random.default_rng([params["seed"], int(round(t * 1000))])
        sigma = 3.0 + 22.0 * severity  # at mid-grey, in 8-bit levels
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if small != (h, w):
            luma = cv2.resize(luma, small[::-1], interpolation=cv2.INTER_AREA)
        std = np.sqrt((1.0 - params["shot"]) + (params["shot"] / 128.0) * luma.astype(np.float32))
        unit = gaussian_block(rng, (*small, 3))  # channels: luminance, two chroma directions
        mix = np.concatenate([np.ones((3, 1), np.float32), params["chroma"] * self._CHROMA], axis=1)
        noise = cv2.transform(unit, mix) * (sigma * std)[..., None]
        if small != (h, w):
            noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR) / _upsampled_noise_std(small, (h, w))
        return cv2.add(frame, noise, dtype=cv2.CV_8U)  # saturating add: the sensor clips too


@register
class Compression(Distortion):
    """Codec artefacts from a real JPEG round trip (blocking, ringing, chroma bleeding)."""

    name = "compression"
    order = 60

    def apply(self, frame, severity, params, t=0.0):
        quality = int(round(60 - 52 * severity))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
