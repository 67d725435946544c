"""Clean content to distort: the procedural generator, folders of images, or videos.

Every content source renders an RGB uint8 frame of a fixed size at time t (seconds). Still images
get a slow virtual camera move (pan and zoom within the image) so a clip made from one frame is
not frozen; videos are decoded with PyAV and played from an offset, looping if a clip is longer.
`open_content(spec, size)` accepts "procedural[:N]", a folder, or a single image/video file.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import av
import cv2
import numpy as np

from training.scene import ProceduralScene

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mkv", ".avi", ".mov", ".ts", ".m4v", ".webm"}


class Content(Protocol):
    name: str
    size: tuple[int, int]  # (width, height) of rendered frames, at most the size asked for

    def frame_at(self, t: float) -> np.ndarray: ...


def fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to `size` (w, h), cropping the centre to the target aspect first (no stretching)."""
    w, h = size
    fh, fw = frame.shape[:2]
    if fw * h > fh * w:
        cw = round(fh * w / h)
        frame = frame[:, (fw - cw) // 2:(fw - cw) // 2 + cw]
    elif fw * h < fh * w:
        ch = round(fw * h / w)
        frame = frame[(fh - ch) // 2:(fh - ch) // 2 + ch]
    interp = cv2.INTER_AREA if frame.shape[0] > h else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(frame, (w, h), interpolation=interp))


def unstretch(frame: np.ndarray, aspect: float | None) -> np.ndarray:
    """A frame stored stretched to another shape (a 16:9 picture saved square) back to its true
    width/height `aspect`, by widening or heightening it (never losing resolution)."""
    if aspect is None:
        return frame
    h, w = frame.shape[:2]
    if w / h < aspect:
        return cv2.resize(frame, (round(h * aspect), h), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(frame, (w, round(w / aspect)), interpolation=cv2.INTER_LINEAR)


def native_size(frame_shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int]:
    """`size` (w, h), or smaller at the same aspect (even sides) when the source has fewer pixels:
    upscaling a small source would make clean content look soft, teaching blur as clean."""
    w, h = size
    k = min(1.0, min(frame_shape[0] / h, frame_shape[1] / w))
    return (max(2, round(w * k / 2) * 2), max(2, round(h * k / 2) * 2))


def read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class ImageContent:
    def __init__(self, path: Path, size: tuple[int, int], seed: int = 0, aspect: float | None = None):
        self.name = Path(path).name
        image = unstretch(read_image(Path(path)), aspect)
        self.size = w, h = native_size(image.shape, size)
        # Keep 12% margin around the view for the virtual camera to move in.
        self.image = fit(image, (round(w * 1.12), round(h * 1.12)))
        self.phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)

    def frame_at(self, t: float) -> np.ndarray:
        w, h = self.size
        ih, iw = self.image.shape[:2]
        zoom = 1.0 + 0.04 * (1 + math.sin(0.3 * t + self.phase[2]))
        cx = iw / 2 + 0.04 * w * math.sin(0.35 * t + self.phase[0])
        cy = ih / 2 + 0.04 * h * math.sin(0.28 * t + self.phase[1])
        m = np.array([[zoom, 0, w / 2 - zoom * cx], [0, zoom, h / 2 - zoom * cy]])
        return cv2.warpAffine(self.image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


class VideoContent:
    """A clean video decoded once at the working size and held in memory (a few hundred frames),
    optionally only the part from `start` to `end` seconds (to split one video between uses)."""

    def __init__(self, path: Path, size: tuple[int, int], start: float = 0.0, end: float | None = None,
                 max_frames: int = 750, aspect: float | None = None):
        self.name = Path(path).name
        self.frames: list[np.ndarray] = []
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                self.fps = float(stream.average_rate or 25)
                for frame in container.decode(stream):
                    if frame.time is not None and frame.time < start:
                        continue
                    if end is not None and frame.time is not None and frame.time >= end:
                        break
                    rgb = unstretch(frame.to_ndarray(format="rgb24"), aspect)
                    if not self.frames:
                        self.size = native_size(rgb.shape, size)
                    self.frames.append(fit(rgb, self.size))
                    if len(self.frames) >= max_frames:
                        break
        except (av.error.FFmpegError, IndexError) as e:
            raise ValueError(f"{path}: not a readable video ({e})") from None
        if not self.frames:
            raise ValueError(f"{path}: no video frames")

    def frame_at(self, t: float) -> np.ndarray:
        return self.frames[int(t * self.fps) % len(self.frames)]


def discover(path: Path) -> list[Path]:
    """Image and video files under a folder (sorted), or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
    raise FileNotFoundError(f"{path}: no such file or folder")


def _split_spec(spec: str) -> tuple[str, slice | None, tuple[float, float | None]]:
    """'folder[a:b]' selects files a..b-1 of a folder (sorted); 'video.mp4@s:e' seconds s..e."""
    files, times = None, (0.0, None)
    if spec.endswith("]") and "[" in spec:
        spec, sl = spec[:-1].rsplit("[", 1)
        a, _, b = sl.partition(":")
        files = slice(int(a) if a else None, int(b) if b else None)
    if "@" in Path(spec).name:
        spec, rng = spec.rsplit("@", 1)
        a, _, b = rng.partition(":")
        times = (float(a) if a else 0.0, float(b) if b else None)
    return spec, files, times


def open_content(spec: str, size: tuple[int, int], count: int = 8, seed: int = 0,
                 aspect: float | None = None, exclude: tuple[str, ...] = ()) -> list[Content]:
    """Content sources for `spec`: "procedural[:N]" or "procedural:A-B" (scenes with seeds
    seed+A..seed+B-1), a folder of images/videos (optionally "folder[a:b]", a slice of its sorted
    files), or one file ("video.mp4@s:e" for seconds s..e of a video). Files whose name starts with
    one of `exclude` are left out; `aspect` is the true width/height of files stored stretched.
    Sources with fewer pixels than `size` render at their own size (see `native_size`)."""
    if spec == "procedural" or spec.startswith("procedural:"):
        arg = spec.split(":", 1)[1] if ":" in spec else str(count)
        try:
            first, last = (int(v) for v in arg.split("-")) if "-" in arg else (0, int(arg))
        except ValueError:
            raise ValueError(f"{spec}: expected procedural:N or procedural:A-B") from None
        if last <= first:
            raise ValueError(f"procedural content needs at least one scene, got {spec!r}")
        return [ProceduralScene(seed + i, size) for i in range(first, last)]
    try:
        path, file_slice, (start, end) = _split_spec(spec)
    except ValueError:
        raise ValueError(f"{spec}: bad content selection (use folder[a:b] or video.mp4@start:end)") from None
    files = discover(Path(path))
    if file_slice is not None:
        files = files[file_slice]
    files = [f for f in files if not f.name.startswith(tuple(exclude))] if exclude else files
    if not files:
        raise ValueError(f"{spec}: no images or videos found")
    out: list[Content] = []
    for i, f in enumerate(files):
        if f.suffix.lower() in IMAGE_EXTS:
            out.append(ImageContent(f, size, seed + i, aspect))
        elif f.suffix.lower() in VIDEO_EXTS:
            out.append(VideoContent(f, size, start, end, aspect=aspect))
        else:
            raise ValueError(f"{f}: unsupported content type (use images {sorted(IMAGE_EXTS)} or videos)")
    return out
