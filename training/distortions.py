"""The surgical distortions, synthesised the way they arise in a laparoscopic imaging chain.

Every distortion takes an RGB uint8 frame of any size and a continuous severity in [0, 1] (level L
of 1..4 is the centre of its bin, see `model.tasks.level_to_severity`) and returns a frame of the same
shape and dtype. Each distortion has several physically different generators (smoke as a turbulent
plume, a depth haze, bright jets or a plain veil; see each class), so that a model trained on them
learns the distortion rather than one implementation of it. The generator and its random choices
(blur direction, where the light source sits, the smoke's structure) are drawn once per episode by
`sample_params(rng)`; `apply(frame, severity, params, t)` then renders
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
from training.fields import FractalField, low_res_shape, resize_field, stretch

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
    """One distortion, rendered by any of several physically different `generators` (methods
    `render_<generator>`). `sample_params` draws one generator per episode, so a model trained on
    the mix cannot learn one implementation's signature; `allowed` narrows the draw (a
    leave-one-generator-out run trains without one and tests on it alone) and weights it (a
    generator named twice is drawn twice as often). `optional` generators are drawn only when
    named: ablated, and not (yet) in the recipe of the shipped weights."""

    name: ClassVar[str]
    # Position in the imaging chain (scene -> medium -> optics -> exposure -> sensor -> codec);
    # `compose` applies distortions in this order whatever order they are listed in.
    order: ClassVar[int]
    generators: ClassVar[tuple[str, ...]]
    optional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, allowed: tuple[str, ...] | None = None):
        unknown = sorted(set(allowed or ()) - set(self.generators))
        if unknown:
            raise KeyError(f"{self.name} has no generator {', '.join(unknown)} (it has {', '.join(self.generators)})")
        self.allowed = tuple(allowed) if allowed else self.drawn()

    @classmethod
    def drawn(cls) -> tuple[str, ...]:
        """The generators drawn when none are named (the recipe's)."""
        return tuple(g for g in cls.generators if g not in cls.optional)

    def sample_params(self, rng: np.random.Generator) -> Params:
        generator = self.allowed[int(rng.integers(len(self.allowed)))]
        return {"generator": generator, **self.generator_params(generator, rng)}

    @abstractmethod
    def generator_params(self, generator: str, rng: np.random.Generator) -> Params:
        ...

    def apply(self, frame: np.ndarray, severity: float, params: Params, t: float = 0.0) -> np.ndarray:
        return getattr(self, f"render_{params['generator']}")(frame, severity, params, t)

    def __call__(self, frame: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
        check_frame(frame)
        severity = check_severity(severity)
        if severity == 0.0:
            return frame.copy()
        return self.apply(frame, severity, self.sample_params(rng))


DISTORTIONS: Registry[type[Distortion]] = Registry("distortion")


def register(cls: type[Distortion]) -> type[Distortion]:
    return DISTORTIONS.register(cls.name)(cls)


def create_distortion(name: str, allowed: tuple[str, ...] | None = None) -> Distortion:
    return DISTORTIONS.get(name)(allowed)


def parse_generators(text: str) -> dict[str, tuple[str, ...]]:
    """"smoke=haze+jet,noise=gaussian" -> {"smoke": ("haze", "jet"), "noise": ("gaussian",)};
    each named generator is checked against its distortion."""
    out: dict[str, tuple[str, ...]] = {}
    for part in filter(None, text.split(",")):
        name, sep, gens = part.partition("=")
        if not sep or not gens:
            raise ValueError(f"{part!r}: expected DISTORTION=GENERATOR[+GENERATOR...]")
        out[name.strip()] = tuple(g.strip() for g in gens.split("+"))
        create_distortion(name.strip(), out[name.strip()])
    return out


def distort(frame: np.ndarray, name: str, *, severity: float | None = None, level: int | None = None,
            rng: np.random.Generator, generator: str | None = None) -> np.ndarray:
    """One-shot: distort `frame` by `name` at a continuous `severity` or a `level` (1..4), by
    `generator` (default: one drawn at random)."""
    if (severity is None) == (level is None):
        raise ValueError("give exactly one of severity or level")
    if level is not None:
        if not 1 <= level <= NUM_LEVELS:
            raise ValueError(f"level must be 1..{NUM_LEVELS}, got {level}")
        severity = level_to_severity(level)
    return create_distortion(name, (generator,) if generator else None)(frame, severity, rng)


def _centred_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of a (h, w) grid in short sides, 0 at the centre: ys (h, 1) and xs (1, w)."""
    h, w = shape
    short = min(h, w)
    ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / short
    xs = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / short
    return ys[:, None], xs[None, :]


@register
class UnevenIllumination(Distortion):
    """Light that does not fall evenly on the field, as a smooth gain over the frame:
    * spot: the endoscope's light off its axis, an inverse-square-like fall-off and a clipped hot spot;
    * vignette: strong, elliptical darkening around a centre near the axis (corners lost to black);
    * gradient: one-sided shading, light from one side, a soft ramp across the frame;
    * overexposure: a broad over-lit region that clips, on a lifted exposure.
    All but overexposure keep the mean brightness, so what grows with severity is the spread
    across the frame, not the overall level; a sample's params may carry "keep"
    (TrainConfig.uneven_keep), the power of the mean the gain is divided by: 0 leaves the pattern's
    own darkening (a dim or off-axis light darkens the view; it does not lend the centre what it
    takes from the edges), and "dim" (TrainConfig.uneven_dim), the power of the gain's peak it is
    then divided by: 1 leaves the brightest point at the frame's own exposure, so the pattern only
    darkens (a shading from one side that lends nothing to the other). The pattern wanders slowly
    over time."""

    name = "uneven_illumination"
    order = 10
    generators = ("spot", "vignette", "gradient", "overexposure")

    def generator_params(self, generator, rng):
        return {"angle": float(rng.uniform(0, 2 * np.pi)), "offset": float(rng.uniform(0.25, 0.5)),
                "hot": float(rng.uniform(0.4, 1.0)), "power": float(rng.uniform(1.5, 2.5)),
                "phase": float(rng.uniform(0, 2 * np.pi)), "aspect": float(rng.uniform(0.75, 1.35)),
                "width": float(rng.uniform(0.15, 0.5))}

    def gain(self, shape: tuple[int, int], severity: float, params: Params, t: float) -> np.ndarray:
        small = low_res_shape(shape, 48)
        ys, xs = _centred_grid(small)
        wobble = 0.04 * np.array([np.sin(0.5 * t + params["phase"]), np.cos(0.4 * t + params["phase"])])
        angle = params["angle"] + 0.05 * math.sin(0.3 * t + params["phase"])
        generator = params["generator"]
        if generator == "spot":
            cy = params["offset"] * np.sin(angle) + wobble[0]
            cx = params["offset"] * np.cos(angle) * (small[1] / small[0]) ** 0.5 + wobble[1]
            d2 = (ys - cy) ** 2 + (xs - cx) ** 2
            falloff = (1.0 + d2 / (1.6 - 1.25 * severity) ** 2) ** -params["power"]
            g = falloff * (1.0 + 1.8 * severity * params["hot"] * np.exp(-d2 / 0.05))
        elif generator == "vignette":
            reach = params.get("reach", 0.3) * params["offset"]  # "reach": TrainConfig.vignette_reach
            cy, cx = reach * np.sin(angle) + wobble[0], reach * np.cos(angle) + wobble[1]
            d2 = ((ys - cy) * params["aspect"]) ** 2 + ((xs - cx) / params["aspect"]) ** 2
            dark = 1.0 - (1.0 + d2 / 0.36) ** -params["power"]  # 0 at the centre, ~0.9 in the corners
            g = 1.0 - (0.3 + 0.7 * severity) * dark
        elif generator == "gradient":
            s = (xs * np.cos(angle) + ys * np.sin(angle)) + wobble[0]
            g = np.exp((0.2 + 1.1 * severity) * np.tanh(s / params["width"]))
        else:  # overexposure
            cy, cx = params["offset"] * np.sin(angle) + wobble[0], params["offset"] * np.cos(angle) + wobble[1]
            d2 = ((ys - cy) * params["aspect"]) ** 2 + ((xs - cx) / params["aspect"]) ** 2
            hot = (0.15 + 2.0 * severity) * np.exp(-d2 / (2 * (0.15 + params["width"] / 2) ** 2))
            return resize_field(((1.0 + 0.3 * severity) * (1.0 + hot)).astype(np.float32), shape)
        g = g / g.mean() ** params.get("keep", 1.0)
        if "dim" in params:
            g = g / g.max() ** params["dim"]
        return resize_field(g.astype(np.float32), shape)

    def _render(self, frame, severity, params, t):
        g = self.gain(frame.shape[:2], severity, params, t)
        return cv2.multiply(frame, cv2.merge([g, g, g]), dtype=cv2.CV_8U)

    render_spot = render_vignette = render_gradient = render_overexposure = _render


@register
class Smoke(Distortion):
    """Surgical smoke as scattering, I = J t + A (1 - t), with a transmission t that thins the
    scene and an airlight A that veils it (contrast and saturation fall as the veil thickens):
    * plume: a drifting, turbulent transmission (fractal noise) and a whitish-to-tissue-tinted airlight;
    * haze: a near-uniform veil thicker with depth (far, darker tissue is veiled more) and along a slope;
    * jet: bright jets rising from one to three instrument tips, scattering blue more than red;
    * veil: a soft grey-white layer blended over a desaturated scene (no scattering model);
    * puff: one to three local clouds with ragged edges (the puff a burn leaves before it spreads),
      dense at their core and absent elsewhere, the scene under them softened by the scattering;
    * column: one or two smooth columns rising from instrument tips (cautery smoke seen close up),
      dense and narrow at the tip, widening, bending and thinning as they rise, streaked along the
      flow, bluish white (small particles scatter blue forward); the rest of the field stays clear,
      and even a faint column is locally opaque, as real wisps are where they lie;
    * backscatter: a soft, drifting veil lit by the scope's own light, whose airlight is that light
      scattered back: about as bright as the tissue's highlights, not white, and grey to bluish
      (fine particles scatter blue more). Where the other generators whiten the frame, this veil
      lifts green and blue, dims the highlights and barely brightens red tissue, as the real
      cautery smoke of the val clips does (their smoky frames, set against their clear ones, fit a
      grey-blue airlight somewhat brighter than the tissue).
    No smoke appears outside the scope's image circle (no light reaches the sensor there)."""

    name = "smoke"
    order = 20
    generators = ("plume", "haze", "jet", "veil", "puff", "column", "backscatter")
    # Ablated (training/ablations/backscatter.json): it lifted the val pairs' light smoke but cost
    # the synthetic test's exact match more than the shipping rule allows (docs/MODEL.md).
    optional = ("backscatter",)
    local = ("puff", "column")  # clouds with clear air around them: only what lies under them is softened

    def generator_params(self, generator, rng):
        white = np.array([0.90, 0.88, 0.86]) + rng.uniform(-0.05, 0.05, 3)
        tissue = np.array([0.85, 0.55, 0.50]) + rng.uniform(-0.05, 0.05, 3)
        tint = rng.uniform(0.0, 0.7) if generator in ("plume", "haze") else rng.uniform(0.0, 0.25)
        angle = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(0.05, 0.25)
        n_jets = int(rng.integers(1, 4))
        airlight = (1 - tint) * white + tint * tissue
        if generator == "column":
            airlight = rng.uniform(0.82, 0.95) * np.array([0.95, 0.97, 1.03]) + rng.uniform(-0.015, 0.015, 3)
        # backscatter's airlight follows the frame (`scattered_light`): a gain over the tissue's
        # brightness, a blue tint and a grey shift, drawn here in the place of a fixed colour.
        scatter = None
        if generator == "backscatter":
            scatter = [rng.uniform(1.1, 1.9), rng.uniform(0.03, 0.16), rng.uniform(-0.03, 0.03)]
        return {"seed": int(rng.integers(2**31)), "airlight": airlight.tolist(), "scatter": scatter,
                "drift": [speed * np.sin(angle), speed * np.cos(angle)], "cells": float(rng.uniform(1.5, 3.5)),
                "slope": [float(np.sin(angle)), float(np.cos(angle))], "depth": float(rng.uniform(0.3, 1.0)),
                "tips": rng.uniform(-0.6, 0.6, (n_jets, 2)).tolist(), "rise": float(rng.uniform(-np.pi, np.pi)),
                "desaturate": float(rng.uniform(0.3, 0.9)), "sizes": rng.uniform(0.6, 1.4, n_jets).tolist(),
                "bend": float(rng.uniform(-1.5, 1.5)), "width": float(rng.uniform(0.05, 0.12))}

    # Opacity of the faintest smoke (severity 0): mean transmission 0.92. A sample's params may carry
    # its own "floor" (TrainConfig.smoke_floor): the real smoke of the val footage that the model
    # misses veils the scene less than the faintest smoke drawn at this one (training.faint_smoke).
    FLOOR = 0.08

    @classmethod
    def optical_depth(cls, severity: float, floor: float = FLOOR) -> float:
        return -math.log(1.0 - (floor + (0.9 - floor) * severity))  # mean transmission 1 - floor .. 0.10

    def transmission(self, frame: np.ndarray, severity: float, params: Params, t: float) -> np.ndarray:
        """(h, w) or (h, w, 3) transmission in (0, 1] for the plume, haze and jet generators."""
        shape = frame.shape[:2]
        small = low_res_shape(shape, 48)
        tau = self.optical_depth(severity, params.get("floor", self.FLOOR))
        generator = params["generator"]
        if generator == "plume":
            field = FractalField(np.random.default_rng(params["seed"]), octaves=3, cells=params["cells"],
                                 drift=tuple(params["drift"]))
            density = np.clip((field.at(small, t) - 0.5) * 2.2 + 0.5, 0.0, 1.0)
            return resize_field(np.exp(-tau * (0.35 + 1.3 * density)).astype(np.float32), shape)
        if generator == "haze":
            luma = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), small[::-1], interpolation=cv2.INTER_AREA)
            far = 1.0 - cv2.GaussianBlur(luma.astype(np.float32) / 255.0, (0, 0), 3.0)
            ys, xs = _centred_grid(small)
            slope = 0.5 + 0.5 * np.tanh(2.0 * (ys * params["slope"][0] + xs * params["slope"][1]) + 0.2 * math.sin(0.2 * t))
            density = (1.0 - params["depth"]) + params["depth"] * (0.6 * far + 0.4 * slope)
            return resize_field(np.exp(-tau * density / max(float(density.mean()), 1e-3)).astype(np.float32), shape)
        if generator == "puff":
            ys, xs = _centred_grid(small)
            ragged = FractalField(np.random.default_rng(params["seed"]), octaves=3, cells=2 * params["cells"],
                                  drift=tuple(params["drift"])).at(small, t)
            density = np.zeros(small, np.float32)
            for (cy, cx), size in zip(params["tips"], params["sizes"]):
                cy, cx = cy + 0.3 * params["drift"][0] * t, cx + 0.3 * params["drift"][1] * t  # the cloud drifts
                radius = (0.3 + 0.45 * severity ** 2) * size  # heavy smoke fills the cavity
                d2 = ((ys - cy) ** 2 + (xs - cx) ** 2) / radius ** 2
                density += np.exp(-d2 * (0.4 + 1.2 * ragged)) * (0.55 + 0.9 * ragged)  # wisps inside
            return resize_field(np.exp(-3.0 * tau * np.clip(density, 0.0, 1.5)).astype(np.float32), shape)
        if generator == "column":
            return resize_field(self.column_transmission(low_res_shape(shape, 96), severity, params, t), shape)
        if generator == "backscatter":  # a soft veil over the whole field, thicker in drifting banks
            field = FractalField(np.random.default_rng(params["seed"]), octaves=2, cells=params["cells"] / 2,
                                 drift=tuple(params["drift"]))
            density = 0.55 + 0.9 * np.clip(field.at(small, t), 0.0, 1.0)
            return resize_field(np.exp(-tau * density / max(float(density.mean()), 1e-3)).astype(np.float32), shape)
        # jet: elongated Gaussian plumes from each tip along a rising direction, widening as they go.
        ys, xs = _centred_grid(small)
        density = np.zeros(small, np.float32)
        for i, (ty, tx) in enumerate(params["tips"]):
            a = params["rise"] + 0.3 * math.sin(0.6 * t + i)
            along = (xs - tx) * math.cos(a) + (ys - ty) * math.sin(a)
            across = -(xs - tx) * math.sin(a) + (ys - ty) * math.cos(a)
            spread = 0.08 + 0.35 * np.clip(along, 0, None)
            behind, ahead = np.clip(-along, 0, None), np.clip(along, 0, None)  # the jet starts at the tip
            density += np.exp(-(across / spread) ** 2) * np.exp(-behind ** 2 / 0.01) * np.exp(-ahead / 1.2)
        density = 0.25 + density / max(float(density.mean()), 1e-3) * 0.75
        # Rayleigh-like: shorter wavelengths scatter more (relative to green: red 0.8, blue 1.25).
        return np.stack([resize_field(np.exp(-tau * k * density).astype(np.float32), shape) for k in (0.8, 1.0, 1.25)], axis=-1)

    @staticmethod
    def column_transmission(small: tuple[int, int], severity: float, params: Params, t: float) -> np.ndarray:
        ys, xs = _centred_grid(small)
        streaks = FractalField(np.random.default_rng(params["seed"]), octaves=3, cells=2 * params["cells"],
                               drift=tuple(params["drift"])).at(small, t)
        density = np.zeros(small, np.float32)
        for i, ((ty, tx), size) in enumerate(zip(params["tips"][:2], params["sizes"])):
            # Into the field, within 60 degrees of the centre's direction (a column leaving the view
            # at once would be a "smoky" sample showing no smoke); it sways.
            a = math.atan2(-ty, -tx) + params["rise"] / 3 + 0.15 * math.sin(0.8 * t + i)
            along = (xs - tx) * math.cos(a) + (ys - ty) * math.sin(a)
            ahead = np.clip(along, 0, None)
            across = -(xs - tx) * math.sin(a) + (ys - ty) * math.cos(a) - params["bend"] * 0.3 * ahead ** 2
            # Heavier smoke rises further and spreads wider (at full severity it fills much of the field).
            length = (0.4 + 0.8 * severity) * size
            width = params["width"] * (1.0 + 2.0 * severity) + (0.35 + 0.5 * severity) * ahead
            core = np.exp(-(across / width) ** 2) * np.exp(-(ahead / length) ** 2) * np.exp(-np.clip(-along, 0, None) ** 2 / 0.002)
            along_flow = cv2.filter2D(streaks, -1, line_kernel(0.3 * min(small), -a), borderType=cv2.BORDER_REFLECT)
            density += core * (0.6 + 0.8 * stretch(along_flow))
        opacity = 0.25 + 0.7 * severity  # at the core, where the column leaves the tip
        return np.exp(math.log(1.0 - opacity) * np.clip(density, 0.0, 1.3)).astype(np.float32)

    def _scatter(self, frame, severity, params, t):
        trans = self.transmission(frame, severity, params, t)
        inside = field_of_view(frame)
        if trans.ndim == 3:
            inside = inside[..., None]
        trans = 1.0 - (1.0 - trans) * inside
        sigma = 1.2 * severity * frame_scale(frame)
        scene = cv2.GaussianBlur(frame, (0, 0), sigma).astype(np.float32) if sigma >= 0.5 else frame.astype(np.float32)
        if params["generator"] == "backscatter":
            airlight = self.scattered_light(frame, severity, params)
        else:
            airlight = np.asarray(params["airlight"], np.float32) * 255.0
        trans3 = trans if trans.ndim == 3 else trans[..., None]
        if params["generator"] in self.local:
            scene = frame.astype(np.float32) * trans3 + scene * (1.0 - trans3)
        return np.clip(scene * trans3 + airlight * (1.0 - trans3) + 0.5, 0, 255).astype(np.uint8)

    @staticmethod
    def scattered_light(frame: np.ndarray, severity: float, params: Params) -> np.ndarray:
        """The backscatter generator's airlight (RGB, 0..255): its gain times the brightness of the
        tissue (the 75th percentile of luma inside the image circle), so that it follows the
        exposure as the scope's light does, and never white. A thin veil is tinted blue (single
        scattering by fine particles); a dense one turns grey (multiple scattering evens it out)."""
        luma = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), low_res_shape(frame.shape[:2], 64)[::-1],
                          interpolation=cv2.INTER_AREA)
        inside = luma[luma > 12]
        tissue = float(np.percentile(inside, 75)) if inside.size else 128.0
        gain, blue, shift = params["scatter"]
        blue *= 1.0 - severity
        colour = np.array([1.0 - blue + shift, 1.0 + shift, 1.0 + 1.8 * blue + shift], np.float32)
        return np.clip(gain * tissue * colour, 40.0, 235.0)

    render_plume = render_haze = render_jet = render_puff = render_column = render_backscatter = _scatter

    def render_veil(self, frame, severity, params, t):
        shape = frame.shape[:2]
        field = FractalField(np.random.default_rng(params["seed"]), octaves=2, cells=params["cells"] / 2,
                             drift=tuple(params["drift"]))
        floor = 1.25 * params.get("floor", self.FLOOR)  # 0.1 at the recipe's floor, thinner with the sample's
        alpha = (floor + (0.85 - floor) * severity) * (0.7 + 0.6 * field.at(low_res_shape(shape, 32), t))
        alpha = resize_field(np.clip(alpha, 0.0, 0.95).astype(np.float32), shape) * field_of_view(frame)
        grey = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        keep = 1.0 - params["desaturate"] * min(1.0, 1.5 * severity)
        scene = cv2.addWeighted(frame, keep, grey, 1.0 - keep, 0.0).astype(np.float32)
        layer = np.asarray(params["airlight"], np.float32) * 255.0
        a3 = alpha[..., None]
        return np.clip(scene * (1.0 - a3) + layer * a3 + 0.5, 0, 255).astype(np.uint8)


def _radial_kernel(radius: float, rim: float) -> np.ndarray:
    """Anti-aliased round PSF of `radius` pixels whose weight rises from 1 - rim at the centre
    to 1 at the edge (rim 0: a uniform disk)."""
    r = max(radius, 0.5)
    n = int(math.ceil(r))
    sub = 4  # supersampling for a smooth rim at sub-pixel radii
    coords = (np.arange((2 * n + 1) * sub) + 0.5) / sub - (n + 0.5)
    rho2 = (coords[:, None] ** 2 + coords[None, :] ** 2) / (r * r)
    weight = (rho2 <= 1.0) * (1.0 - rim + rim * rho2)
    k = weight.reshape(2 * n + 1, sub, 2 * n + 1, sub).mean(axis=(1, 3)).astype(np.float32)
    return k / k.sum()


def disk_kernel(radius: float) -> np.ndarray:
    """Uniform disk: the geometric PSF of an out-of-focus circular aperture."""
    return _radial_kernel(radius, 0.0)


def ring_kernel(radius: float) -> np.ndarray:
    """A real lens's defocus PSF: a disk brighter at its rim than at its centre (spherical aberration)."""
    return _radial_kernel(radius, 0.6)


def psf_blur(frame: np.ndarray, radius: float, kernel=disk_kernel, spread: float = 0.0,
             depth: np.ndarray | None = None) -> np.ndarray:
    """Blur by a PSF `kernel(radius)` (a disk by default). Large radii are computed at reduced scale
    (the result has no detail finer than the PSF), which keeps the kernel small and the cost flat in
    the radius. With a `depth` map in [0, 1] (reduced-scale, any size) the radius varies over the
    frame between radius*(1 -/+ spread)."""
    if radius < 0.5:
        return frame.copy()
    h, w = frame.shape[:2]
    r_min = max(radius * (1.0 - spread), 0.5)
    f = max(1.0, r_min / 2.0)
    # INTER_AREA is needed against aliasing at large reductions but is slow at non-integer factors;
    # below 2x, linear sampling aliases less than the radius-2 PSF that follows removes.
    interp = cv2.INTER_AREA if f >= 2.0 else cv2.INTER_LINEAR
    small = frame if f == 1.0 else cv2.resize(frame, (max(1, round(w / f)), max(1, round(h / f))),
                                              interpolation=interp)
    out = cv2.filter2D(small, -1, kernel(r_min / f), borderType=cv2.BORDER_REFLECT)
    if depth is not None and spread > 0:
        far = cv2.filter2D(small, -1, kernel(radius * (1.0 + spread) / f), borderType=cv2.BORDER_REFLECT)
        alpha = resize_field(depth, small.shape[:2])
        out = cv2.blendLinear(far, out, alpha, 1.0 - alpha)
    return out if f == 1.0 else cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


@register
class DefocusBlur(Distortion):
    """Out-of-focus optics; the blur radius grows with severity and the focus breathes slowly:
    * disk: the geometric PSF of a circular aperture, at one radius or varying with a smooth depth map;
    * gaussian: a Gaussian PSF (diffraction and aberrations smooth the disk's rim);
    * lens: a real lens's PSF, a bright-rimmed disk, with lateral colour (each channel its own radius);
    * tilt: a focal plane at an angle to the tissue, sharp along one band and blurred away from it."""

    name = "defocus_blur"
    order = 30
    generators = ("disk", "gaussian", "lens", "tilt")

    def generator_params(self, generator, rng):
        return {"depth": bool(rng.random() < 0.5), "seed": int(rng.integers(2**31)),
                "phase": float(rng.uniform(0, 2 * np.pi)), "angle": float(rng.uniform(0, 2 * np.pi)),
                "band": float(rng.uniform(-0.4, 0.4)), "colour": float(rng.uniform(0.05, 0.15))}

    @staticmethod
    def radius(frame, severity, params, t):
        return frame_scale(frame) * (1.0 + 6.0 * severity) * (1 + 0.06 * math.sin(0.8 * t + params["phase"]))

    def render_disk(self, frame, severity, params, t=0.0):
        r = self.radius(frame, severity, params, t)
        if not params["depth"]:
            return psf_blur(frame, r)
        field = FractalField(np.random.default_rng(params["seed"]), octaves=2, cells=1.5)
        return psf_blur(frame, r, spread=0.25, depth=field.at(low_res_shape(frame.shape[:2], 32)))

    def render_gaussian(self, frame, severity, params, t=0.0):
        return cv2.GaussianBlur(frame, (0, 0), 0.6 * self.radius(frame, severity, params, t), borderType=cv2.BORDER_REFLECT)

    def render_lens(self, frame, severity, params, t=0.0):
        r = self.radius(frame, severity, params, t)
        k = params["colour"]
        return cv2.merge([psf_blur(np.ascontiguousarray(frame[..., c]), r * s, ring_kernel)
                          for c, s in enumerate((1.0 + k, 1.0, 1.0 - k))])

    def render_tilt(self, frame, severity, params, t=0.0):
        small = low_res_shape(frame.shape[:2], 32)
        ys, xs = _centred_grid(small)
        s = xs * math.cos(params["angle"]) + ys * math.sin(params["angle"]) - params["band"]
        depth = np.clip(np.abs(s) / 0.6, 0.0, 1.0).astype(np.float32)
        return psf_blur(frame, self.radius(frame, severity, params, t), spread=0.8, depth=depth)


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


def path_kernel(points: np.ndarray) -> np.ndarray:
    """Anti-aliased PSF of a camera path: (n, 2) points in pixels (x, y) around 0, drawn 8x
    supersampled and area-reduced; equal time per segment, so slow parts of the path weigh more."""
    sub = 8
    half = int(math.ceil(np.abs(points).max())) + 1
    n = 2 * half + 1
    canvas = np.zeros((n * sub, n * sub), np.float32)
    pts = np.round((points + half + 0.5) * sub).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], False, 1.0, thickness=sub)
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


def warp_average(frame: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
    """Mean of the frame warped by each 2x3 matrix: the exposure integrated along a camera move."""
    h, w = frame.shape[:2]
    acc = np.zeros(frame.shape, np.float32)
    for m in matrices:
        acc += cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(acc / len(matrices) + 0.5, 0, 255).astype(np.uint8)


@register
class MotionBlur(Distortion):
    """Camera (or instrument) motion during the exposure, over a path whose length grows with
    severity and wanders smoothly over time:
    * linear: a straight path of random direction;
    * curved: an arc (the scope swung about its port);
    * shake: a random, jittery path (a hand-held tremor);
    * rotation: the scope rolled about its axis (blur grows away from the centre of rotation);
    * zoom: the scope pushed in or pulled out (radial blur from the centre of expansion)."""

    name = "motion_blur"
    order = 40
    generators = ("linear", "curved", "shake", "rotation", "zoom")

    def generator_params(self, generator, rng):
        return {"angle": float(rng.uniform(0, np.pi)), "wobble": float(rng.uniform(0.0, 0.3)),
                "phase": float(rng.uniform(0, 2 * np.pi)), "bend": float(rng.uniform(0.3, 1.2) * rng.choice([-1, 1])),
                "seed": int(rng.integers(2**31)), "centre": rng.uniform(-0.25, 0.25, 2).tolist()}

    @staticmethod
    def length(frame, severity, params, t):
        return frame_scale(frame) * (2.0 + 22.0 * severity) * (1 + 0.1 * math.sin(0.9 * t + params["phase"]))

    def _angle(self, params, t):
        return params["angle"] + params["wobble"] * math.sin(0.7 * t + params["phase"])

    def render_linear(self, frame, severity, params, t=0.0):
        return line_blur(frame, self.length(frame, severity, params, t), self._angle(params, t))

    def _path_blur(self, frame, path: np.ndarray, length: float, angle: float) -> np.ndarray:
        """Blur along `path` ((n, 2) points), scaled to `length` pixels of travel and turned by `angle`."""
        if length < 1.5:
            return frame.copy()
        travel = np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1))
        c, s = math.cos(angle), math.sin(angle)
        pts = (path - path.mean(axis=0)) * (length / max(travel, 1e-6)) @ np.array([[c, -s], [s, c]])
        return cv2.filter2D(frame, -1, path_kernel(pts), borderType=cv2.BORDER_REFLECT)

    def render_curved(self, frame, severity, params, t=0.0):
        u = np.linspace(-1.0, 1.0, 33)
        path = np.stack([u, params["bend"] * (u ** 2 - 1 / 3)], axis=1)
        return self._path_blur(frame, path, self.length(frame, severity, params, t), self._angle(params, t))

    def render_shake(self, frame, severity, params, t=0.0):
        rng = np.random.default_rng(params["seed"])
        steps = rng.standard_normal((48, 2)) + np.array([1.0, 0.0])  # a drift plus tremor
        smooth = np.stack([np.convolve(steps[:, i], np.ones(4) / 4, mode="valid") for i in range(2)], axis=1)
        path = np.cumsum(smooth, axis=0)
        return self._path_blur(frame, path, self.length(frame, severity, params, t), self._angle(params, t))

    def _moves(self, frame, severity, params, t, kind: str) -> list[np.ndarray]:
        h, w = frame.shape[:2]
        centre = (w / 2 * (1 + params["centre"][0]), h / 2 * (1 + params["centre"][1]))
        reach = 0.3 * math.hypot(w, h)  # the travel is `length` pixels 60% of the way to the corners
        span = self.length(frame, severity, params, t) / reach
        n = int(np.clip(math.ceil(self.length(frame, severity, params, t) / 1.5), 3, 24))
        steps = np.linspace(-span / 2, span / 2, n)
        if kind == "rotation":
            return [cv2.getRotationMatrix2D(centre, math.degrees(a), 1.0) for a in steps]
        return [cv2.getRotationMatrix2D(centre, 0.0, 1.0 + z) for z in steps]

    def render_rotation(self, frame, severity, params, t=0.0):
        return warp_average(frame, self._moves(frame, severity, params, t, "rotation"))

    def render_zoom(self, frame, severity, params, t=0.0):
        return warp_average(frame, self._moves(frame, severity, params, t, "zoom"))


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


@functools.lru_cache(maxsize=32)
def _blurred_noise_std(sigma: float) -> float:
    """Std of unit white noise after a Gaussian blur of `sigma` pixels (depends only on sigma)."""
    n = gaussian_block(np.random.default_rng(2), (256, 256))
    return float(cv2.GaussianBlur(n, (0, 0), sigma).std())


def _bayer_interpolate(noise: np.ndarray) -> np.ndarray:
    """(h, w) noise at the photosites of an RGGB mosaic -> (h, w, 3) after bilinear demosaicing:
    each channel is interpolated from its own sites, which correlates the noise across
    neighbouring pixels and colours the way a camera's demosaicing does."""
    h, w = noise.shape
    out = np.empty((h, w, 3), np.float32)
    k = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], np.float32)
    for c, sites in enumerate(((0, 0), None, (1, 1))):
        mask = np.zeros((h, w), np.float32)
        if sites is None:  # green: the two other sites of each 2x2 cell
            mask[0::2, 1::2] = mask[1::2, 0::2] = 1.0
        else:
            mask[sites[0]::2, sites[1]::2] = 1.0
        num = cv2.filter2D(noise * mask, -1, k, borderType=cv2.BORDER_REFLECT)
        den = cv2.filter2D(mask, -1, k, borderType=cv2.BORDER_REFLECT)
        out[..., c] = num / np.maximum(den, 1e-6)
    return out


@register
class SensorNoise(Distortion):
    """Image noise; sigma (at mid-grey, in 8-bit levels) grows with severity, the grain is one
    reference pixel so noise looks the same at any resolution, and every time t draws fresh
    (seeded, hence reproducible) noise, as a sensor does frame after frame:
    * poisson_gaussian: signal-dependent luminance noise (read noise plus shot noise) and chroma noise;
    * gaussian: signal-independent noise, independent in each colour channel;
    * correlated: luminance noise with a coarser, spatially correlated grain (a sensor's
      noise after the camera's own denoising and sharpening);
    * sensor: shot and read noise added in linear light at the photosites of a Bayer mosaic,
      then demosaiced and gamma-encoded (noise strongest in the shadows);
    * compressed: noise then a JPEG round trip at a moderate quality (a noisy feed through a codec)."""

    name = "noise"
    order = 50
    generators = ("poisson_gaussian", "gaussian", "correlated", "sensor", "compressed")
    # Zero-sum RGB directions: chroma noise moves colour without changing luminance.
    _CHROMA = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]], np.float32).T / np.array([2**0.5, 6**0.5], np.float32)

    def generator_params(self, generator, rng):
        return {"seed": int(rng.integers(2**31)), "shot": float(rng.uniform(0.5, 0.85)),
                "chroma": float(rng.uniform(0.3, 0.7)), "grain": float(rng.uniform(0.7, 1.4)),
                "jpeg": int(rng.integers(55, 86))}

    @staticmethod
    def sigma(severity: float) -> float:
        return 3.0 + 22.0 * severity

    @staticmethod
    def _grid(frame):
        h, w = frame.shape[:2]
        k = frame_scale(frame)
        return (h, w), (max(1, round(h / k)), max(1, round(w / k)))

    @staticmethod
    def _to_frame(noise: np.ndarray, full: tuple[int, int], small: tuple[int, int]) -> np.ndarray:
        if small == full:
            return noise
        return cv2.resize(noise, full[::-1], interpolation=cv2.INTER_LINEAR) / _upsampled_noise_std(small, full)

    def _rng(self, params, t):
        return np.random.default_rng([params["seed"], int(round(t * 1000))])

    def render_poisson_gaussian(self, frame, severity, params, t=0.0):
        full, small = self._grid(frame)
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if small != full:
            luma = cv2.resize(luma, small[::-1], interpolation=cv2.INTER_AREA)
        std = np.sqrt((1.0 - params["shot"]) + (params["shot"] / 128.0) * luma.astype(np.float32))
        unit = gaussian_block(self._rng(params, t), (*small, 3))  # channels: luminance, two chroma directions
        mix = np.concatenate([np.ones((3, 1), np.float32), params["chroma"] * self._CHROMA], axis=1)
        noise = cv2.transform(unit, mix) * (self.sigma(severity) * std)[..., None]
        return cv2.add(frame, self._to_frame(noise, full, small), dtype=cv2.CV_8U)  # saturating add: the sensor clips too

    def render_gaussian(self, frame, severity, params, t=0.0):
        full, small = self._grid(frame)
        noise = gaussian_block(self._rng(params, t), (*small, 3)) * self.sigma(severity)
        return cv2.add(frame, self._to_frame(noise, full, small), dtype=cv2.CV_8U)

    def render_correlated(self, frame, severity, params, t=0.0):
        full, small = self._grid(frame)
        unit = cv2.GaussianBlur(gaussian_block(self._rng(params, t), small), (0, 0), params["grain"])
        noise = unit * (0.8 * self.sigma(severity) / _blurred_noise_std(round(params["grain"], 2)))
        noise = self._to_frame(noise, full, small)
        return cv2.add(frame, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)

    def render_sensor(self, frame, severity, params, t=0.0):
        full, small = self._grid(frame)
        linear = srgb_to_linear(frame)
        lin_small = cv2.resize(linear, small[::-1], interpolation=cv2.INTER_AREA) if small != full else linear
        # Shot noise (variance ~ signal) over a small read-noise floor, scaled so that at mid-grey
        # (linear 0.214) the encoded noise matches the other generators' sigma.
        floor = 0.003 * (1.0 - params["shot"])
        std = (self.sigma(severity) / 255.0 / 1.05) * np.sqrt((floor + lin_small.mean(axis=2)) / (floor + 0.214))
        noise = _bayer_interpolate(gaussian_block(self._rng(params, t), small) * std) * 1.6  # demosaicing averages ~1/1.6
        return linear_to_srgb(linear + self._to_frame(noise, full, small))

    def render_compressed(self, frame, severity, params, t=0.0):
        noisy = self.render_poisson_gaussian(frame, severity, params, t)
        return jpeg_roundtrip(noisy, params["jpeg"])


def srgb_to_linear(frame: np.ndarray) -> np.ndarray:
    x = frame.astype(np.float32) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    out = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
    return (out * 255.0 + 0.5).astype(np.uint8)


def jpeg_roundtrip(frame: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@register
class Compression(Distortion):
    """Codec artefacts from a real JPEG round trip (blocking, ringing, chroma bleeding)."""

    name = "compression"
    order = 60
    generators = ("jpeg",)

    def generator_params(self, generator, rng):
        return {}

    def render_jpeg(self, frame, severity, params, t=0.0):
        return jpeg_roundtrip(frame, int(round(60 - 52 * severity)))
