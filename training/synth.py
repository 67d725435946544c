"""Synthesised LVQ-style clips: clean content distorted singly and in combination, H.264-encoded.

The LVQ database (ICIP 2020) has 5 distortions x 4 levels, singly and combined. `plan_clips` mixes
the same way: ~15% clean clips, ~45% single distortions cycling through every (distortion, level)
pair, and ~40% combinations of 2-3 (the challenge's own combinations first, then random ones). Each
clip keeps its levels for its whole length while the distortion itself evolves smoothly (see
`training.compose`). `labels.csv` gets one row per finished clip, flushed as it goes, so an
interrupted run keeps every clip it completed.
"""
from __future__ import annotations

import csv
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from model.tasks import DEFAULT_TASKS, NUM_LEVELS, level_to_severity
from training.compose import Recipe
from training.content import Content
from training.quality import fr_quality

log = logging.getLogger("scopewatch.synth")

# The challenge's combined-distortion training classes.
LVQ_COMBINATIONS = (
    ("defocus_blur", "uneven_illumination"),
    ("noise", "smoke"),
    ("noise", "smoke", "uneven_illumination"),
    ("noise", "uneven_illumination"),
    ("smoke", "uneven_illumination"),
)
CRF = 14  # near-transparent H.264, so the codec adds no distortion of its own worth labelling


@dataclass(frozen=True)
class ClipPlan:
    file: str
    content: int
    levels: dict[str, int]
    seed: int


def plan_clips(n: int, tasks: tuple[str, ...], content_count: int, seed: int) -> list[ClipPlan]:
    rng = np.random.default_rng(seed)
    n_clean = round(0.15 * n)
    n_single = round(0.45 * n)
    singles = itertools.cycle([(t, lvl) for lvl in range(1, NUM_LEVELS + 1) for t in tasks])
    combos = [c for c in LVQ_COMBINATIONS if set(c) <= set(tasks)]
    level_sets: list[dict[str, int]] = [{} for _ in range(n_clean)]
    level_sets += [dict([next(singles)]) for _ in range(n_single)]
    for i in range(n - n_clean - n_single):
        if i < len(combos):
            names = combos[i]
        else:
            names = tuple(rng.choice(tasks, size=min(len(tasks), int(rng.integers(2, 4))), replace=False))
        level_sets.append({name: int(rng.integers(1, NUM_LEVELS + 1)) for name in names})
    order = rng.permutation(n)
    width = len(str(n - 1))
    return [ClipPlan(f"clip_{i:0{width}d}.mp4", int(rng.integers(content_count)),
                     {t: level_sets[j].get(t, 0) for t in tasks}, int(rng.integers(2**31)))
            for i, j in enumerate(order)]


class ClipWriter:
    """H.264 (yuv420p) writer through PyAV: frames in, a playable .mp4 out."""

    def __init__(self, path: Path, size: tuple[int, int], fps: int, crf: int = CRF):
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(crf), "preset": "veryfast"}

    def write(self, frame: np.ndarray) -> None:
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def render_clip(path: Path, content: Content, recipe: Recipe, seconds: float, fps: int,
                start: float = 0.0) -> list[float]:
    """Write the distorted clip; return the FR quality of every frame."""
    qualities = []
    with ClipWriter(path, content.size, fps) as writer:
        for i in range(max(1, round(seconds * fps))):
            t = i / fps
            clean = content.frame_at(start + t)
            frame = recipe.render(clean, t)
            qualities.append(fr_quality(clean, frame))
            writer.write(frame)
    return qualities


def synthesize(out: Path, contents: list[Content], clips: int, seconds: float, fps: int = 25,
               tasks: tuple[str, ...] = DEFAULT_TASKS, seed: int = 0, progress: bool = True,
               generators: dict[str, tuple[str, ...]] | None = None) -> Path:
    """Write `clips` clips and `out/labels.csv`; return the labels path. `generators` narrows the
    generators a distortion is drawn from (a test set of one generator alone)."""
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_clips(clips, tasks, len(contents), seed)
    labels = out / "labels.csv"
    with open(labels, "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["file", *tasks, "quality"])
        f.flush()
        for plan in tqdm(plans, desc="synth", unit="clip", disable=not progress):
            rng = np.random.default_rng(plan.seed)
            recipe = Recipe.constant({t: level_to_severity(lvl) for t, lvl in plan.levels.items()}, rng, generators)
            start = float(rng.uniform(0, 60))
            q = render_clip(out / plan.file, contents[plan.content], recipe, seconds, fps, start)
            rows.writerow([plan.file, *(plan.levels[t] for t in tasks), f"{np.mean(q):.2f}"])
            f.flush()
            log.info("%s: %s quality %.1f", plan.file,
                     ", ".join(f"{t}={lvl}" for t, lvl in plan.levels.items() if lvl) or "clean", np.mean(q))
    return labels
