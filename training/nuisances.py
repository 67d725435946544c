"""What normal surgery shows and a monitor must stay quiet about: nuisances, labelled clean.

Real clean feeds are full of things a model trained on pristine frames reads as distortions:
specular highlights on wet tissue, the black corners of a round scope image and letterbox bars,
on-screen bars and text burnt in by the video system, colour casts, the mild noise and coding of a
real camera, lens distortion and instruments sweeping into view. Each function here takes an RGB
uint8 frame and returns a new one; `Nuisances.scene` applies those that belong to the scene and
the optics (before any distortion), `Nuisances.after_camera` the camera's own faint noise, what
the video system burns in and how the recording is stored (drawn once and put on the clean and the
distorted frame alike, so they never change the quality label).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from training.distortions import frame_scale, gaussian_block


def specular_highlights(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Small saturated white glints (light reflected by wet tissue and metal), in clusters."""
    h, w = frame.shape[:2]
    k = frame_scale(frame)
    glints = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        for _ in range(int(rng.integers(2, 12))):
            x, y = cx + rng.normal(0, 0.05 * w), cy + rng.normal(0, 0.05 * h)
            axes = (max(1, round(k * rng.uniform(1, 7))), max(1, round(k * rng.uniform(1, 3))))
            cv2.ellipse(glints, (round(x), round(y)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    glints = cv2.GaussianBlur(glints, (0, 0), 0.8 * k)[..., None]
    return np.clip(frame * (1 - glints) + 255.0 * glints + 0.5, 0, 255).astype(np.uint8)


def scope_mask(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Black outside the optics: a round image circle (cut or whole), letterbox/pillarbox bars, or a
    blacked-out box (redacted patient data)."""
    h, w = frame.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    kind = rng.random()
    if kind < 0.55:
        # From a circle inside the short side to one cut by the long sides, corners always black.
        r = rng.uniform(min(h, w) / 2, 0.9 * np.hypot(w, h) / 2)
        centre = (round(w / 2 + rng.normal(0, 0.02 * w)), round(h / 2 + rng.normal(0, 0.02 * h)))
        cv2.circle(mask, centre, round(r), 255, -1, cv2.LINE_AA)
    elif kind < 0.8:
        mask[:] = 255
        if rng.random() < 0.5:
            bar = round(rng.uniform(0.04, 0.15) * h)
            mask[:bar], mask[h - bar:] = 0, 0
        else:
            bar = round(rng.uniform(0.04, 0.15) * w)
            mask[:, :bar], mask[:, w - bar:] = 0, 0
    else:
        mask[:] = 255
        bw, bh = round(rng.uniform(0.08, 0.25) * w), round(rng.uniform(0.06, 0.15) * h)
        x0 = 0 if rng.random() < 0.5 else w - bw
        y0 = 0 if rng.random() < 0.5 else h - bh
        mask[y0:y0 + bh, x0:x0 + bw] = 0
    m = (mask.astype(np.float32) / 255.0)[..., None]
    return (frame * m + 0.5).astype(np.uint8)


def colour_cast(frame: np.ndarray, rng: np.random.Generator, veil_free: bool = False) -> np.ndarray:
    """White balance off and exposure off: per-channel gains, a gamma and a saturation change.
    `veil_free`: never a gamma that lifts the shadows nor a loss of saturation, the two ways a thin
    veil of smoke changes a view (the same draws, their lower halves folded up)."""
    gains = (rng.uniform(0.8, 1.15) * rng.uniform(0.88, 1.12, 3)).astype(np.float32)
    gamma, saturation = rng.uniform(0.85, 1.2), rng.uniform(0.8, 1.25)
    if veil_free:
        gamma, saturation = max(gamma, 1.0 / gamma), max(saturation, 1.0 / saturation)
    x = (frame.astype(np.float32) / 255.0) ** gamma * gains
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * saturation
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def lens_distortion(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Barrel or pincushion distortion of a wide-angle scope (radial k1 r^2)."""
    h, w = frame.shape[:2]
    k1 = float(rng.uniform(-0.12, 0.08))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    nx, ny = (xs - w / 2) / (w / 2), (ys - h / 2) / (w / 2)
    f = 1.0 + k1 * (nx * nx + ny * ny)
    return cv2.remap(frame, nx * f * (w / 2) + w / 2, ny * f * (w / 2) + h / 2, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def instrument(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sharp metallic or black shaft entering from the border, shaded across its width, with a
    glint along it (instruments come and go in normal surgery)."""
    h, w = frame.shape[:2]
    edge = rng.integers(4)
    start = {0: (rng.uniform(0, w), -10), 1: (w + 10, rng.uniform(0, h)),
             2: (rng.uniform(0, w), h + 10), 3: (-10, rng.uniform(0, h))}[int(edge)]
    tip = (rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h)
    width = rng.uniform(0.04, 0.1) * min(h, w)
    d = np.array(tip) - np.array(start)
    d /= max(np.linalg.norm(d), 1e-6)
    n = np.array([-d[1], d[0]])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rel_x, rel_y = xs - start[0], ys - start[1]
    along = rel_x * d[0] + rel_y * d[1]
    across = (rel_x * n[0] + rel_y * n[1]) / (width / 2)
    length = float(np.linalg.norm(np.array(tip) - np.array(start)))
    inside = ((np.abs(across) < 1) & (along > 0) & (along < length)).astype(np.float32)
    inside = cv2.GaussianBlur(inside, (0, 0), 0.7)[..., None]
    base = rng.uniform(40, 200) * np.array([1.0, 1.0, 1.0]) * rng.uniform(0.92, 1.08, 3)
    shade = (1.0 - 0.5 * np.abs(across)) + 0.6 * np.exp(-((across - rng.uniform(-0.5, 0.5)) / 0.15) ** 2)
    metal = np.clip(base[None, None, :] * shade[..., None], 0, 255)
    return np.clip(frame * (1 - inside) + metal * inside + 0.5, 0, 255).astype(np.uint8)


def camera_noise(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The faint noise every real camera has (sigma 0.5-2 levels, well below the faintest
    labelled noise, sigma 4.3 at mid-grey)."""
    noise = gaussian_block(rng, frame.shape) * float(rng.uniform(0.5, 2.0))
    return cv2.add(frame, noise, dtype=cv2.CV_8U)


def ui_overlay(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """On-screen bars and text: a translucent status bar with readouts, or captions/watermarks."""
    out = frame.copy()
    h, w = out.shape[:2]
    colour = tuple(int(c) for c in rng.choice([[255, 255, 255], [255, 255, 0], [0, 255, 0], [0, 200, 255]]))
    scale = float(rng.uniform(0.35, 0.9)) * frame_scale(frame)
    if rng.random() < 0.5:
        bar = round(rng.uniform(0.05, 0.12) * h)
        y0 = 0 if rng.random() < 0.5 else h - bar
        region = out[y0:y0 + bar]
        region[:] = (region * rng.uniform(0.0, 0.5)).astype(np.uint8)
        cv2.putText(out, f"{int(rng.integers(0, 99)):02d}:{int(rng.integers(0, 59)):02d}  {int(rng.integers(8, 20))} mmHg",
                    (round(0.02 * w), y0 + round(0.75 * bar)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):
        text = "".join(rng.choice(list("ABCDEFGHKLMNOPRSTUVXYZ0123456789 "), size=int(rng.integers(4, 14))))
        cv2.putText(out, text, (round(rng.uniform(0, 0.7) * w), round(rng.uniform(0.08, 0.95) * h)),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    return out


def stored_stretched(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The picture as a recorder or a public set stores it, squeezed along one side (a 16:9 feed
    kept as 256x256, a 4:3 one as 16:9): round fields turn oval, texture and camera grain denser
    along that side. Never below 128 px, so the model's patches still fit."""
    h, w = frame.shape[:2]
    k = float(rng.uniform(0.55, 0.9))
    wide = rng.random() < 0.75  # mostly the width, as 16:9 feeds squeezed to a square
    size = (max(128, round(w * k / 2) * 2), h) if wide else (w, max(128, round(h * k / 2) * 2))
    if size == (w, h):
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


SCENE = {"colour_cast": (colour_cast, 0.6), "specular_highlights": (specular_highlights, 0.4),
         "instrument": (instrument, 0.3), "lens_distortion": (lens_distortion, 0.15),
         "scope_mask": (scope_mask, 0.35)}
AFTER_CAMERA = {"camera_noise": (camera_noise, 0.4), "ui_overlay": (ui_overlay, 0.2),
                "stored_stretched": (stored_stretched, 0.15)}


@dataclass(frozen=True)
class Nuisances:
    """Which nuisances are drawn and how often (`scale` multiplies every probability; 0: none).

    `cast_in_camera`: the colour cast is drawn by the camera, after the distortions, on the clean
    and the distorted frame alike, instead of on the scene before them. A camera's white balance and
    tone curve act on all the light that reaches it, the smoke's scattered light and an uneven
    light's fall-off included; drawn on the scene, a cast that lifts the shadows and pales the
    colours (as a thin veil does) is taught as clean while the smoke drawn over it keeps its own
    colour, whatever the camera."""

    scale: float = 1.0
    cast_in_camera: bool = False
    veil_free_cast: bool = False  # colour_cast's `veil_free`: no clean cast that imitates a thin veil

    def _apply(self, table, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for fn, p in table.values():
            if rng.random() < p * self.scale:
                frame = fn(frame, rng)
        return frame

    def _cast(self) -> dict:
        fn, p = SCENE["colour_cast"]
        return {"colour_cast": (functools.partial(fn, veil_free=True) if self.veil_free_cast else fn, p)}

    def scene(self, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.cast_in_camera:
            return self._apply({k: v for k, v in SCENE.items() if k != "colour_cast"}, frame, rng)
        return self._apply({**SCENE, **self._cast()}, frame, rng)

    def after_camera(self, frame: np.ndarray, seed: int) -> np.ndarray:
        """Same `seed`, same draws: the clean and the distorted frame get the same noise and text."""
        table = {**self._cast(), **AFTER_CAMERA} if self.cast_in_camera else AFTER_CAMERA
        return self._apply(table, frame, np.random.default_rng(seed))
