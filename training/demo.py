"""The built-in demo feed: a procedural laparoscopic scene with scheduled distortion episodes.

Made here, where synthesis lives, and handed to the monitor as plain frames (the apps wrap it in a
`monitor.sources.ArraySource` for `synthetic:SECONDS`, or write it to a file for `scopewatch demo`),
so the monitor needs no synthesis code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from model.tasks import level_to_severity
from training.compose import Episode, Recipe
from training.distortions import DISTORTIONS
from training.scene import ProceduralScene
from training.synth import render_clip

DEMO_SEED = 7
# The demo shows each distortion by its first generator (the off-centre light, the sensor's own
# noise, a smoke plume...), as its schedule describes them, whatever the training mix draws.
DEMO_GENERATORS = {name: DISTORTIONS.get(name).generators[:1] for name in DISTORTIONS.names()}
DEMO_SIZE = (640, 360)
DEMO_FPS = 25


def demo_episodes(seconds: float) -> list[Episode]:
    """A sample procedure with scheduled trouble: smoke rising and clearing, a defocus spell, a
    burst of sensor noise, a spell of motion blur and an off-centre light. Times scale with `seconds`."""
    s = seconds / 60.0

    def ep(name, level, a, b, ramp):
        return Episode(name, level_to_severity(level), a * s, b * s, ramp * s)

    return [ep("smoke", 3, 6, 20, 4), ep("defocus_blur", 3, 24, 31, 1), ep("noise", 2, 34, 41, 0.5),
            ep("motion_blur", 3, 44, 48, 0.5), ep("uneven_illumination", 3, 51, 58, 2)]


class DemoFeed:
    """`seconds` of the demo scene at `fps`, frame by frame: iterate it for `(time_s, rgb)`."""

    def __init__(self, seconds: float, fps: int = DEMO_FPS, size: tuple[int, int] = DEMO_SIZE, seed: int = DEMO_SEED,
                 episodes: list[Episode] | None = None):
        self.seconds, self.fps, self.size, self.seed = seconds, fps, size, seed
        self.episodes = demo_episodes(seconds) if episodes is None else episodes

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        scene = ProceduralScene(self.seed, self.size)
        recipe = Recipe.sample(self.episodes, np.random.default_rng(self.seed), DEMO_GENERATORS)
        for i in range(round(self.seconds * self.fps)):
            t = i / self.fps
            yield t, recipe.render(scene.frame_at(t), t)


def write_demo_clip(path: Path, seconds: float) -> list[Episode]:
    """The demo scene as an H.264 file at `path`; returns its scheduled episodes."""
    episodes = demo_episodes(seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    recipe = Recipe.sample(episodes, np.random.default_rng(DEMO_SEED), DEMO_GENERATORS)
    render_clip(path, ProceduralScene(DEMO_SEED, DEMO_SIZE), recipe,
                seconds, DEMO_FPS)
    return episodes
