"""Several distortions on one frame, in imaging-chain order, varying smoothly over a clip.

An `Episode` says which distortion is present when and how strongly (with raised-cosine ramps, so
smoke rises and clears instead of switching). A `Recipe` holds a clip's episodes plus the random
parameters of each distortion, drawn once, and renders any time t of the clip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from training.distortions import Params, check_frame, check_severity, create_distortion


@dataclass(frozen=True)
class Episode:
    name: str
    severity: float
    start: float = 0.0
    end: float = math.inf
    ramp: float = 0.0  # seconds to rise at the start and to fall at the end

    def __post_init__(self):
        check_severity(self.severity)
        if self.end <= self.start:
            raise ValueError(f"episode of {self.name} ends ({self.end}) before it starts ({self.start})")

    def severity_at(self, t: float) -> float:
        if not self.start <= t < self.end:
            return 0.0
        if self.ramp <= 0:
            return self.severity
        edge = min(t - self.start, self.end - t) / self.ramp
        return self.severity * (0.5 - 0.5 * math.cos(math.pi * min(edge, 1.0)))


def compose(frame: np.ndarray, severities: dict[str, float], params: dict[str, Params],
            t: float = 0.0) -> np.ndarray:
    """Apply each named distortion with severity > 0, in chain order (see `Distortion.order`)."""
    check_frame(frame)
    present = [create_distortion(name) for name, s in severities.items() if s > 0]
    out = frame
    for d in sorted(present, key=lambda d: d.order):
        out = d.apply(out, check_severity(severities[d.name]), params[d.name], t)
    return out if out is not frame else frame.copy()


@dataclass
class Recipe:
    episodes: list[Episode]
    params: dict[str, Params] = field(default_factory=dict)

    @classmethod
    def sample(cls, episodes: list[Episode], rng: np.random.Generator,
               generators: dict[str, tuple[str, ...]] | None = None) -> "Recipe":
        """Draw each distortion's parameters, its generator among `generators[name]` (all by default)."""
        names = sorted({e.name for e in episodes})
        generators = generators or {}
        return cls(list(episodes), {n: create_distortion(n, generators.get(n)).sample_params(rng) for n in names})

    @classmethod
    def constant(cls, severities: dict[str, float], rng: np.random.Generator,
                 generators: dict[str, tuple[str, ...]] | None = None) -> "Recipe":
        return cls.sample([Episode(n, s) for n, s in severities.items() if s > 0], rng, generators)

    def severities_at(self, t: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for e in self.episodes:
            out[e.name] = max(out.get(e.name, 0.0), e.severity_at(t))
        return out

    def render(self, frame: np.ndarray, t: float) -> np.ndarray:
        return compose(frame, self.severities_at(t), self.params, t)
