"""A procedural laparoscopic scene: clean content that needs no data, so everything runs offline.

A tissue canvas larger than the frame is built once per scene: organ regions (liver, fat,
peritoneum) from low-frequency fields, folds shaded from a height field, fine texture, branching
vessels and moist specular glints. Each frame is a smooth camera move over that canvas (pan, zoom,
roll), with metallic instruments entering from the edge in front of it and the endoscope's circular
field of view with black corners (or a full frame, as some scopes and crops show).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from training.fields import stretch

_LIVER = np.array([110, 32, 30], np.float32)
_PERITONEUM = np.array([185, 95, 85], np.float32)
_FAT = np.array([215, 180, 120], np.float32)
_VESSEL = np.array([120, 35, 60], np.float32)


def _field(rng, shape, cells, octaves=3):
    """Static isotropic fractal texture in [0, 1]: blurred white noise, upsampled, summed over
    octaves (the drifting lattice noise of `fields` shows axis-aligned blocks at close range)."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    for i in range(octaves):
        c = cells * 2**i
        gh, gw = max(4, round(3 * c)), max(4, round(3 * c * w / h))
        grid = cv2.GaussianBlur(rng.standard_normal((gh, gw)).astype(np.float32), (0, 0), 1.2)
        out += 0.5**i * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return stretch(out)


def _smoothstep(x, lo, hi):
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _vessels(rng, mask_shape, scale):
    """Anti-aliased branching random walks, returned as an alpha mask in [0, 1]."""
    h, w = mask_shape
    alpha = np.zeros(mask_shape, np.float32)
    stack = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 3.5) * scale)
             for _ in range(rng.integers(6, 12))]
    # Capillaries: many short, thin, tortuous vessels, the fine detail that blur erases first.
    stack += [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, 2 * np.pi), 0.8 * scale)
              for _ in range(rng.integers(40, 90))]
    while stack:
        x, y, ang, width = stack.pop()
        pts = [(x, y)]
        for _ in range(rng.integers(20, 60)):
            ang += rng.normal(0, 0.25)
            x += 4 * scale * math.cos(ang)
            y += 4 * scale * math.sin(ang)
            pts.append((x, y))
            if width > 1.2 * scale and rng.random() < 0.04:
                stack.append((x, y, ang + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2), width * 0.6))
        cv2.polylines(alpha, [np.round(np.array(pts) * 4).astype(np.int32)], False, 1.0,
                      thickness=max(1, round(width)), lineType=cv2.LINE_AA, shift=2)
    return cv2.GaussianBlur(alpha, (0, 0), 0.6 * scale)


def tissue_canvas(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    scale = min(h, w) / 540  # the canvas is ~1.5x a 360p frame
    organ = _field(rng, shape, 1.5, octaves=2)
    fatness = _field(rng, shape, 2.5, octaves=2)
    liver_w = _smoothstep(organ, 0.495, 0.505)[..., None]
    fat_w = (_smoothstep(fatness, 0.54, 0.57) * (1 - liver_w[..., 0]))[..., None]
    base = _PERITONEUM * (1 - liver_w) + _LIVER * liver_w
    base = base * (1 - fat_w) + _FAT * fat_w
    # Folds: Lambert shading of a height field lit from the scope's axis (slightly off-centre).
    height = _field(rng, shape, 3.0) * 40 * scale + _field(rng, shape, 10.0, octaves=2) * 6 * scale
    gy, gx = np.gradient(height)
    shade = (0.35 * gx + 0.25 * gy + 1.0) / np.sqrt(gx * gx + gy * gy + 1.0)
    detail = 0.8 + 0.25 * _field(rng, shape, 12.0) + 0.5 * (_field(rng, shape, 110.0, octaves=2) - 0.5)
    img = base * (np.clip(shade, 0.3, 1.2) * detail)[..., None]
    vessels = _vessels(rng, shape, scale * 1.5) * (0.35 + 0.5 * fat_w[..., 0] + 0.2 * (1 - liver_w[..., 0]))
    img = img * (1 - vessels[..., None]) + _VESSEL * vessels[..., None]
    # Moist specular glints where the surface faces the light and a fine wetness field peaks.
    wet = _field(rng, shape, 40.0, octaves=2)
    glint = np.clip((wet - 0.75) * 12, 0, 1) * _smoothstep(shade, 0.9, 1.05)
    glint = cv2.GaussianBlur(glint.astype(np.float32), (0, 0), 0.5 * scale)
    img = img * (1 - glint[..., None]) + 250.0 * glint[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


class ProceduralScene:
    """Clean laparoscopic video of any size: `frame_at(t)` renders time t (seconds)."""

    def __init__(self, seed: int, size: tuple[int, int] = (640, 360), circular_fov: bool | None = None):
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.size = size
        w, h = size
        self.canvas = tissue_canvas(rng, (int(h * 1.6), int(w * 1.6)))
        self.path = rng.uniform(0, 2 * np.pi, 4), rng.uniform(0.15, 0.45, 4)
        self.instruments = [self._instrument(rng) for _ in range(rng.choice([0, 1, 1, 2]))]
        if circular_fov is None:
            circular_fov = bool(rng.random() < 0.65)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2) / (min(w, h) / 2)
        light = 1.0 - 0.12 * np.clip(r, 0, 1.6) ** 2  # the scope's own gentle fall-off
        if circular_fov:
            radius = rng.uniform(0.8, 0.95) * max(w, h) / min(w, h)  # in half-short-sides
            light *= np.clip((radius - r) * min(w, h) / 2 / 1.5 + 0.5, 0, 1)  # ~1.5 px soft rim
        self.light = cv2.merge([light, light, light])

    def _instrument(self, rng):
        return {"edge": rng.uniform(0, 4), "angle": rng.uniform(-0.5, 0.5), "reach": rng.uniform(0.35, 0.6),
                "width": rng.uniform(0.05, 0.08), "phase": rng.uniform(0, 2 * np.pi), "speed": rng.uniform(0.2, 0.6),
                "grey": rng.uniform(140, 200)}

    def _camera(self, t: float) -> np.ndarray:
        w, h = self.size
        ch, cw = self.canvas.shape[:2]
        phase, freq = self.path
        cx = cw / 2 + 0.16 * w * math.sin(freq[0] * t + phase[0])
        cy = ch / 2 + 0.16 * h * math.sin(freq[1] * t + phase[1])
        zoom = 1.0 + 0.08 * math.sin(freq[2] * t + phase[2])
        roll = 4.0 * math.sin(freq[3] * t + phase[3])
        m = cv2.getRotationMatrix2D((cx, cy), roll, zoom)
        m[:, 2] += (w / 2 - cx, h / 2 - cy)
        return m

    def _draw_instrument(self, img, ins, t):
        w, h = self.size
        s = min(w, h)
        e = ins["edge"] % 4  # position along the frame border: 0..1 top, 1..2 right, ...
        side, u = int(e), e - int(e)
        entry = [(u * w, -0.05 * h), (1.05 * w, u * h), ((1 - u) * w, 1.05 * h), (-0.05 * w, (1 - u) * h)][side]
        inward = math.atan2(h / 2 - entry[1], w / 2 - entry[0])
        ang = inward + ins["angle"] + 0.15 * math.sin(ins["speed"] * t + ins["phase"])
        reach = s * (ins["reach"] + 0.1 * math.sin(0.7 * ins["speed"] * t + ins["phase"]))
        d = np.array([math.cos(ang), math.sin(ang)])
        n = np.array([-d[1], d[0]])
        half = ins["width"] * s / 2
        start = np.array(entry) - d * s * 0.3
        tip = np.array(entry) + d * reach
        g = ins["grey"]
        # A cylinder: dark rim, mid body and a specular line along the shaft.
        for frac, shade in ((1.0, 0.45), (0.75, 0.8), (0.25, 1.25)):
            poly = np.array([start + n * half * frac, tip + n * half * frac, tip - n * half * frac,
                             start - n * half * frac])
            cv2.fillConvexPoly(img, np.round(poly * 4).astype(np.int32), (g * shade,) * 3, cv2.LINE_AA, shift=2)
        opening = 0.5 + 0.3 * math.sin(1.3 * ins["speed"] * t + ins["phase"])
        for sgn in (-1, 1):
            jaw = np.array([tip + n * half * 0.6 * sgn, tip + d * half * 3.5 + n * half * opening * 2 * sgn, tip])
            cv2.fillConvexPoly(img, np.round(jaw * 4).astype(np.int32), (g * 0.55,) * 3, cv2.LINE_AA, shift=2)

    def frame_at(self, t: float) -> np.ndarray:
        w, h = self.size
        img = cv2.warpAffine(self.canvas, self._camera(t), (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        for ins in self.instruments:
            self._draw_instrument(img, ins, t)
        return cv2.multiply(img, self.light, dtype=cv2.CV_8U)
