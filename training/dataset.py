"""On-the-fly training samples: clean content, randomly distorted, cut into the model's inputs.

Each sample draws a content frame, a random distortion mix (clean, single, or 2-3 at once) with
continuous severities, renders it, and yields what the model needs (patches and context view as
uint8, placed by the model's own `InputConfig`) with every training target: presence and severity
per task, FR quality, and the NSS features of each patch. Nothing is stored: the stream is endless
and reproducible from its seed (each DataLoader worker gets its own stream).
"""
from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from model.preprocess import InputConfig, extract
from training.compose import Recipe, compose
from training.content import Content
from training.distortions import jpeg_roundtrip
from training.fields import FractalField, low_res_shape, resize_field
from training.nss import nss_features
from training.nuisances import Nuisances
from training.quality import fr_quality

MIN_SEVERITY = 0.06  # below this a distortion is too faint to be labelled present
SMALL_SHORT_SIDES = (192, 300)  # short sides of `smaller_picture` (feeds are analysed at 360 at most)
# Scale of the lower-resolution picture a `soft_capture` is made from: much below 0.55 a soft
# capture is as soft as defocus level 1, which must stay the softer (tests/test_dataset.py).
SOFT_CAPTURE_SCALES = (0.55, 0.8)
# Per-patch targets ramp from 0 to 1 as a patch's mean change by the distortion alone goes over this
# range (fractions of full scale): low enough that the faintest labelled haze marks nearly every
# patch, high enough that the clear air beside a local cloud or column marks none (both tested).
PATCH_EFFECT = (0.005, 0.025)


def patch_effects(clean: np.ndarray, distorted: np.ndarray, inputs) -> np.ndarray:
    """(K,) mean absolute change, in fractions of full scale, inside each of the model's patches
    (`inputs`: the FrameInputs cut from the distorted frame, whose analysis frame may be smaller)."""
    change = np.abs(distorted.astype(np.float32) - clean).mean(-1) / 255.0
    change = cv2.resize(change, inputs.size, interpolation=cv2.INTER_AREA)
    p = inputs.patches.shape[1]
    return np.array([change[y:y + p, x:x + p].mean() for x, y in inputs.corners], np.float32)


def patch_targets(effects: np.ndarray) -> np.ndarray:
    low, high = PATCH_EFFECT
    return np.clip((effects - low) / (high - low), 0.0, 1.0).astype(np.float32)


def draw_severity(rng: np.random.Generator, skew: float) -> float:
    """A severity in [MIN_SEVERITY, 1]: MIN + (1 - MIN) u^skew, u uniform. skew 1 is uniform; above
    1 the faint end gets more of the samples, where a distortion is hard to tell from clean content
    (most errors of the trained models are at level 1), while every level stays covered."""
    return float(MIN_SEVERITY + (1.0 - MIN_SEVERITY) * rng.random() ** skew)


def scope_falloff(shape: tuple[int, int], reach: float) -> np.ndarray:
    """Gain (h, w) of an endoscope's light, centred on the optical axis: 1 at the centre, falling
    as (1 + (r / reach)^2)^-2 with r in half short sides. Uneven illumination is the light *off*
    that axis (training.distortions.UnevenIllumination); a symmetric fall-off is normal."""
    h, w = shape
    half = min(h, w) / 2
    ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / half
    xs = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / half
    return (1.0 + (ys[:, None] ** 2 + xs[None, :] ** 2) / reach**2) ** -2


def scene_shading(shape: tuple[int, int], span: float, rng: np.random.Generator) -> np.ndarray:
    """Gain (h, w) of a scene's own relief under the scope's light: near tissue bright, cavities,
    far walls and shadowed regions dark, in blobs that follow no light axis; `span` is the range of
    the log gain. Real clean footage is full of this (on the real training frames, the 95th and 5th
    percentiles of the smoothed luma inside the field of view lie 5 to 7 times apart, relief and
    albedo together), so the model must learn uneven illumination as the light's own pattern, one
    off-axis radial fall-off with its hot spot, rather than as any brightness gradient."""
    field = FractalField(rng, octaves=2, cells=float(rng.uniform(0.8, 2.0))).at(low_res_shape(shape, 24))
    lo, hi = float(field.min()), float(field.max())
    log_gain = span * ((field - lo) / max(hi - lo, 1e-6) - 0.5)
    return resize_field(np.exp(log_gain).astype(np.float32), shape)


def smaller_picture(frame: np.ndarray, rng: np.random.Generator, short_sides=SMALL_SHORT_SIDES) -> np.ndarray:
    """The same view as a lower-resolution camera or a downscaled recording gives it (public surgical
    sets are often 256x256): the content's detail gets denser per pixel, and the distortions, sized in
    reference pixels of at least one pixel (training.distortions.frame_scale), are then rendered at
    the size the model sees them in such a frame (it analyses small frames at their own size). A
    frame already that small is kept."""
    h, w = frame.shape[:2]
    k = float(rng.uniform(*short_sides)) / min(h, w)
    if k >= 0.95:
        return frame
    return cv2.resize(frame, (round(w * k / 2) * 2, round(h * k / 2) * 2), interpolation=cv2.INTER_AREA)


def soft_capture(frame: np.ndarray, rng: np.random.Generator, scales=SOFT_CAPTURE_SCALES) -> np.ndarray:
    """The same view recorded at a lower resolution and shown at this one (a web or screen capture,
    an SD feed on an HD recorder, a digital zoom): softer than the sensor allows, and normal
    footage, not a defocus. The val smoke_builds clips open this way, and a model that sees blur
    per patch called them defocused (reports/ablation/README.md, `patch_shapes`)."""
    h, w = frame.shape[:2]
    k = float(rng.uniform(*scales))
    small = cv2.resize(frame, (max(16, round(w * k)), max(16, round(h * k))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR)


def h264_roundtrip(frame: np.ndarray, crf: int) -> np.ndarray:
    """`frame` (even width and height) coded as one H.264 intra frame (libx264, yuv420p) and decoded."""
    h, w = frame.shape[:2]
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = w, h, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
    packets = [*encoder.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")), *encoder.encode(None)]
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for packet in [*packets, None] for f in decoder.decode(packet)]
    return frames[0].to_ndarray(format="rgb24")


class SynthPatchDataset(IterableDataset):
    def __init__(self, contents: list[Content], tasks: tuple[str, ...], cfg: InputConfig, seed: int = 0,
                 p_clean: float = 0.2, p_single: float = 0.4, p_shading: float = 0.4, severity_skew: float = 1.0,
                 length: int | None = None, p_crop: float = 0.3, p_small: float = 0.0, nuisances: Nuisances = Nuisances(),
                 generators: dict[str, tuple[str, ...]] | None = None, patch_tasks: tuple[str, ...] = (),
                 degraded: list[tuple[Content, str]] = (), p_degraded: float = 0.0,
                 smoke_floor: tuple[float, float] | None = None, p_soft: float = 0.0,
                 uneven_keep: tuple[float, float] | None = None, vignette_reach: tuple[float, float] | None = None,
                 uneven_dim: tuple[float, float] | None = None):
        if not contents:
            raise ValueError("no content to synthesise from")
        if p_degraded > 0 and not degraded:
            raise ValueError("real degraded content asked for, but none found")
        shown = {name for _, name in degraded} - set(tasks)
        if shown:
            raise ValueError(f"real degraded content shows {', '.join(sorted(shown))}, not a task")
        self.contents, self.tasks, self.cfg = contents, tuple(tasks), cfg
        self.seed, self.p_clean, self.p_single, self.length = seed, p_clean, p_single, length
        self.p_shading, self.severity_skew = p_shading, severity_skew
        self.p_crop, self.p_small, self.nuisances, self.generators = p_crop, p_small, nuisances, generators
        self.p_soft = p_soft
        unknown = set(patch_tasks) - set(self.tasks)
        if unknown:
            raise ValueError(f"patch_tasks {', '.join(sorted(unknown))} not among the tasks {', '.join(self.tasks)}")
        self.patch_tasks = tuple(patch_tasks)
        self.degraded, self.p_degraded = list(degraded), p_degraded
        # Per-sample parameters drawn from a [low, high] range where one is given, in this order (the
        # stream's draws stay where they were for a range left out): smoke's faintest opacity
        # (TrainConfig.smoke_floor), how much of the mean brightness uneven light keeps (uneven_keep), how
        # far off the axis a vignette lies (vignette_reach), how far its peak is brought down to the
        # frame's exposure (uneven_dim).
        self.drawn = [(task, key, span) for task, key, span in (("smoke", "floor", smoke_floor),
                                                               ("uneven_illumination", "keep", uneven_keep),
                                                               ("uneven_illumination", "reach", vignette_reach),
                                                               ("uneven_illumination", "dim", uneven_dim))
                      if span is not None]

    def _distortions(self, rng: np.random.Generator) -> dict[str, float]:
        r = rng.random()
        if r < self.p_clean:
            return {}
        most = min(3, len(self.tasks))
        k = 1 if r < self.p_clean + self.p_single or most == 1 else int(rng.integers(2, most + 1))
        names = rng.choice(self.tasks, size=k, replace=False)
        return {str(n): draw_severity(rng, self.severity_skew) for n in names}

    def _clean(self, rng: np.random.Generator, content: Content | None = None) -> np.ndarray:
        """A content frame (of `content`, else of a content drawn at random) with natural variation
        that is *not* a distortion: flips, crops, smaller pictures of the same view, the scope's own
        light fall-off, the shading of the scene's relief, and the nuisances of normal surgery
        (training.nuisances: colour casts, glints, instruments, black borders, lens distortion), so
        the model takes none of them for a defect."""
        if content is None:
            content = self.contents[int(rng.integers(len(self.contents)))]
        frame = content.frame_at(float(rng.uniform(0, 60)))
        if rng.random() < 0.5:
            frame = frame[:, ::-1]
        if rng.random() < 0.15:  # the scope is rotated in its port: the view can be upside down
            frame = frame[::-1]
        if rng.random() < self.p_crop:
            # A crop kept at its own size (fewer pixels, never upscaled): another framing, same sharpness.
            h, w = frame.shape[:2]
            k = rng.uniform(0.6, 0.95)
            ch, cw = max(96, round(h * k / 2) * 2), max(96, round(w * k / 2) * 2)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            frame = frame[y:y + ch, x:x + cw]
        if rng.random() < self.p_small:
            frame = smaller_picture(frame, rng)
        if self.p_soft > 0 and rng.random() < self.p_soft:  # off, the stream draws as it did before the setting
            frame = soft_capture(frame, rng)
        frame = np.ascontiguousarray(frame)
        field = np.ones(frame.shape[:2], np.float32)
        if rng.random() < 0.5:
            field *= scope_falloff(frame.shape[:2], float(rng.uniform(1.8, 4.0)))
        if rng.random() < self.p_shading:
            field *= scene_shading(frame.shape[:2], float(rng.uniform(0.3, 1.0)), rng)
        frame = cv2.multiply(frame, cv2.merge([field, field, field]), dtype=cv2.CV_8U)  # saturates
        return self.nuisances.scene(frame, rng)

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        content, real = None, None
        if self.p_degraded > 0 and rng.random() < self.p_degraded:
            # Real degraded footage: what a person sees in it is present at a severity nobody
            # measured, and the synthetic distortions drawn beside it are added as on clean content.
            content, real = self.degraded[int(rng.integers(len(self.degraded)))]
        scene = self._clean(rng, content)
        severities = self._distortions(rng)
        severities.pop(real, None)
        recipe = Recipe.constant(severities, rng, self.generators)
        for task, key, span in self.drawn:
            if task in recipe.params:
                recipe.params[task][key] = float(rng.uniform(*span))
        t = float(rng.uniform(0, 10))
        frame = recipe.render(scene, t)
        camera = int(rng.integers(2**31))
        clean, frame = self.nuisances.after_camera(scene, camera), self.nuisances.after_camera(frame, camera)
        quality = fr_quality(clean, frame)
        if "compression" not in self.tasks and rng.random() < 0.6:
            # Real feeds arrive through a codec: light, unlabelled coding keeps the model from reading
            # what every H.264 feed has (quantised fine texture, half-resolution chroma) as a
            # distortion. Measured: with JPEG alone in training, decoding the H.264 test clips instead
            # of analysing their frames as rendered raised the defocus probability by up to 0.3.
            if rng.random() < 2 / 3 and frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0:
                frame = h264_roundtrip(frame, int(rng.integers(12, 29)))
            else:
                frame = jpeg_roundtrip(frame, int(rng.integers(47, 61)))
        x = extract(frame, self.cfg, rng)
        s = np.array([severities.get(name, 0.0) for name in self.tasks], np.float32)
        presence = (s > 0).astype(np.float32)
        severity_known = np.ones(len(self.tasks), np.float32)
        if real is not None:
            presence[self.tasks.index(real)], severity_known[self.tasks.index(real)] = 1.0, 0.0
        # quality_known 0: the reference was already degraded, so the FR quality says nothing.
        out = {"patches": x.patches, "context": x.context, "mask": x.mask, "presence": presence, "severity": s,
               "severity_known": severity_known, "quality": np.float32(quality), "quality_known": np.float32(real is None),
               "nss": nss_features(x.patches)}
        if self.patch_tasks:
            out["patch_presence"] = self._patch_presence(scene, severities, recipe, t, x)
        return out

    def _patch_presence(self, scene, severities, recipe: Recipe, t: float, inputs) -> np.ndarray:
        """(K, patch tasks) targets: where in the frame each of `patch_tasks` shows, by how much that
        distortion alone (same parameters, same time) changes each patch of the scene; 0 where absent.
        Local smoke (a puff, a column) is labelled in the patches under it and not in the clear ones."""
        out = np.zeros((len(inputs.patches), len(self.patch_tasks)), np.float32)
        for j, name in enumerate(self.patch_tasks):
            if severities.get(name, 0.0) > 0:
                alone = compose(scene, {name: severities[name]}, recipe.params, t)
                out[:, j] = patch_targets(patch_effects(scene, alone, inputs))
        return out

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info else 0
        rng = np.random.default_rng([self.seed, worker])
        n = 0
        while self.length is None or n < self.length:
            n += 1
            yield {k: torch.as_tensor(v) for k, v in self.sample(rng).items()}
