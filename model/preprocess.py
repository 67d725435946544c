"""What the network sees of a frame: the model's input contract, resolved from its checkpoint.

A frame is first reduced to the *analysis frame* (short side 360 px, the scale at which a distortion
level is defined; never upscaled). From it come:

* `patches`: K square patches at full analysis resolution, where sensor noise and the loss of fine
  detail by blur are visible. They are cut from a grid of candidate positions, only where the
  endoscope actually images tissue (the black corners outside the circular field of view and dark
  or flat on-screen bars are excluded by a brightness/texture mask), and among those from the most
  detailed ones (`placement="texture"`): a blur shows only where the scene has edges, and a
  specular highlight or an instrument edge shows the blur's shape (a streak or a disk), while
  smooth tissue, much of a laparoscopic frame, looks the same sharp or blurred (docs/MODEL.md
  gives the measurement). `placement="grid"` (spread out from the centre) is what older
  checkpoints were trained with;
* `context`: the whole analysis frame shrunk to a small fixed size, so that global distortions
  (smoke veiling the whole field, a light fall-off across it) are seen as wholes.

Both go through the same CNN trunk. Placement is deterministic at inference (a frame always gives
the same patches); training varies it.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np


@dataclass(frozen=True)
class InputConfig:
    analysis_short_side: int = 360
    patch_size: int = 64
    num_patches: int = 8
    context_size: tuple[int, int] = (96, 160)  # (height, width) of the whole-frame view
    mean: tuple[float, float, float] = (0.45, 0.30, 0.28)  # RGB, of laparoscopic content in [0, 1]
    std: tuple[float, float, float] = (0.25, 0.20, 0.20)
    fov_luma: float = 18.0  # mean 8-bit luma under which a context cell is outside the image
    # "texture": the most detailed valid positions; "grid": spread out; "mixed": half of each (local
    # smoke or haze flattens detail, so texture placement alone tends to look beside it)
    placement: str = "texture"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "InputConfig":
        d = dict(d)
        d.setdefault("placement", "grid")  # checkpoints saved before placement was a setting
        d["context_size"] = tuple(d["context_size"])
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


def check_frame(frame: np.ndarray, min_side: int = 64) -> None:
    """Frames enter here as RGB uint8 (H, W, 3); the message says what arrived instead."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{getattr(frame, 'dtype', type(frame).__name__)} {getattr(frame, 'shape', '')}"
        raise ValueError(f"expected an RGB uint8 frame of shape (H, W, 3), got {got}")
    if min(frame.shape[:2]) < min_side:
        raise ValueError(f"frame too small: {frame.shape[1]}x{frame.shape[0]} (need >= {min_side} px)")


def too_small(width: int, height: int, cfg: InputConfig) -> str | None:
    """Why frames of this size cannot be judged, or None: below one patch on the short side, the
    analysis frame would be scaled up from a few pixels and the verdict would be the upscaling's."""
    if min(width, height) >= cfg.patch_size:
        return None
    return f"frames of {width}x{height} are too small to judge (the model needs at least {cfg.patch_size} px on the short side)"


def analysis_size(width: int, height: int, cfg: InputConfig) -> tuple[int, int]:
    k = min(1.0, cfg.analysis_short_side / min(width, height))
    return max(cfg.patch_size, round(width * k)), max(cfg.patch_size, round(height * k))


def analysis_frame(frame: np.ndarray, cfg: InputConfig) -> np.ndarray:
    check_frame(frame)
    h, w = frame.shape[:2]
    size = analysis_size(w, h, cfg)
    if size == (w, h):
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def context_view(frame: np.ndarray, cfg: InputConfig) -> np.ndarray:
    ch, cw = cfg.context_size
    return cv2.resize(frame, (cw, ch), interpolation=cv2.INTER_AREA)


def valid_mask(context: np.ndarray, cfg: InputConfig) -> np.ndarray:
    """Boolean (h, w) mask of context pixels that show tissue: bright enough (not the black
    corners of the circular field) and not a flat uniform area (an on-screen UI bar)."""
    luma = cv2.cvtColor(context, cv2.COLOR_RGB2GRAY).astype(np.float32)
    bright = cv2.blur(luma, (3, 3)) > cfg.fov_luma
    # A UI bar is a band of rows or columns that is flat and the same everywhere along it; tissue,
    # even veiled by smoke, keeps some variation along a whole row.
    row_flat = luma.std(axis=1) < 2.0
    col_flat = luma.std(axis=0) < 2.0
    return bright & ~row_flat[:, None] & ~col_flat[None, :]


@functools.lru_cache(maxsize=16)
def candidate_grid(size: tuple[int, int], cfg: InputConfig) -> np.ndarray:
    """Top-left corners (x, y) of a grid of possible patches over an analysis frame of `size` (w, h),
    ordered so that any prefix is spread over the frame (centre first, then outwards)."""
    w, h = size
    p = cfg.patch_size
    nx, ny = max(1, round(w / p)), max(1, round(h / p))
    xs = np.linspace(0, w - p, nx).round().astype(int)
    ys = np.linspace(0, h - p, ny).round().astype(int)
    grid = np.array([(x, y) for y in ys for x in xs])
    centre = np.array([(w - p) / 2, (h - p) / 2])
    order = [int(np.argmin(np.linalg.norm(grid - centre, axis=1)))]
    dist = np.linalg.norm(grid - grid[order[0]], axis=1)
    while len(order) < len(grid):  # farthest-point order: each next patch is far from those taken
        nxt = int(np.argmax(dist))
        order.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(grid - grid[nxt], axis=1))
    out = grid[order]
    out.flags.writeable = False  # cached and shared: callers must not modify it
    return out


def box_means(corners: np.ndarray, field: np.ndarray, size: tuple[int, int], cfg: InputConfig) -> np.ndarray:
    """Mean of a context-resolution `field` under each patch (by its corners on the analysis frame
    of `size` (w, h))."""
    w, h = size
    mh, mw = field.shape
    integral = cv2.integral(field)
    x0 = np.clip((corners[:, 0] * mw / w).astype(int), 0, mw)
    y0 = np.clip((corners[:, 1] * mh / h).astype(int), 0, mh)
    x1 = np.clip(np.ceil((corners[:, 0] + cfg.patch_size) * mw / w).astype(int), 0, mw)
    y1 = np.clip(np.ceil((corners[:, 1] + cfg.patch_size) * mh / h).astype(int), 0, mh)
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return inside / area


def patch_validity(corners: np.ndarray, mask: np.ndarray, size: tuple[int, int], cfg: InputConfig) -> np.ndarray:
    """Fraction of each patch (by its corners on the analysis frame) that the mask says is tissue."""
    return box_means(corners, mask.astype(np.uint8), size, cfg)


def detail_map(context: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Gradient energy of the context view's luma, zero near the edge of the mask. At the context's
    scale (4x below the analysis frame) sensor noise is averaged away and the ranking of coarse
    structure survives even the strongest blur; the rim of the field of view and the edges of UI
    bars are sharp whatever the tissue does, so they must not attract patches."""
    luma = cv2.cvtColor(context, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = cv2.Sobel(luma, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(luma, cv2.CV_32F, 0, 1) ** 2
    inner = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return energy * inner


def choose_patches(size: tuple[int, int], context: np.ndarray, mask: np.ndarray, cfg: InputConfig,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """K patch corners (x, y) inside the field of view: with texture placement the most detailed
    (by `detail_map` of the context view; ties keep the spread-out order), with grid placement
    spread out from the centre, with mixed placement half of each. Deterministic without `rng`;
    with it (training), a random choice among the 1.5 K most detailed (grid placement: among all
    valid positions), each patch jittered."""
    corners = candidate_grid(size, cfg)
    ok = patch_validity(corners, mask, size, cfg) >= 0.9
    pool = corners[ok] if ok.any() else corners  # e.g. a black frame: analyse it anyway
    if cfg.placement == "mixed":
        half = cfg.num_patches // 2
        detailed = choose_patches(size, context, mask, replace(cfg, placement="texture", num_patches=half), rng)
        others = replace(cfg, placement="grid", num_patches=cfg.num_patches - half)
        if rng is None:  # the spread-out positions not taken yet, in their order from the centre
            rest = pool[~(pool[:, None] == detailed[None]).all(-1).any(1)]
            if len(rest) >= others.num_patches:
                return np.concatenate([detailed, rest[:others.num_patches]])
        return np.concatenate([detailed, choose_patches(size, context, mask, others, rng)])
    if cfg.placement == "texture":
        pool = pool[np.argsort(-box_means(pool, detail_map(context, mask), size, cfg), kind="stable")]
        if rng is not None:
            pool = pool[:max(cfg.num_patches, (3 * cfg.num_patches) // 2)]
    elif cfg.placement != "grid":
        raise ValueError(f"unknown patch placement {cfg.placement!r} (texture, grid or mixed)")
    if rng is not None:
        pool = pool[rng.permutation(len(pool))]
        jitter = rng.integers(-cfg.patch_size // 4, cfg.patch_size // 4 + 1, size=pool.shape)
        w, h = size
        pool = np.clip(pool + jitter, 0, [w - cfg.patch_size, h - cfg.patch_size])
    reps = int(np.ceil(cfg.num_patches / len(pool)))
    return np.tile(pool, (reps, 1))[: cfg.num_patches]


@dataclass(frozen=True)
class FrameInputs:
    patches: np.ndarray  # (K, P, P, 3) uint8
    context: np.ndarray  # (Hc, Wc, 3) uint8
    mask: np.ndarray  # (Hc, Wc) bool: context pixels inside the field of view
    corners: np.ndarray  # (K, 2) top-left (x, y) of each patch on the analysis frame
    size: tuple[int, int] = (0, 0)  # (width, height) of the analysis frame

    def boxes(self) -> np.ndarray:
        """(K, 4) each patch as (x0, y0, x1, y1) fractions of the frame (the analysis frame is the
        whole frame, scaled)."""
        w, h = self.size
        p = self.patches.shape[1]
        xy = self.corners.astype(np.float32)
        return np.concatenate([xy, xy + p], axis=1) / np.array([w, h, w, h], np.float32)


def extract(frame: np.ndarray, cfg: InputConfig, rng: np.random.Generator | None = None) -> FrameInputs:
    a = analysis_frame(frame, cfg)
    ctx = context_view(a, cfg)
    mask = valid_mask(ctx, cfg)
    corners = choose_patches((a.shape[1], a.shape[0]), ctx, mask, cfg, rng)
    p = cfg.patch_size
    patches = np.stack([a[y:y + p, x:x + p] for x, y in corners])
    return FrameInputs(patches, ctx, mask, corners, (a.shape[1], a.shape[0]))
