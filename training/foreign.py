"""The five distortions made by code this project did not write, FFmpeg's filters, on real frames:
the nearest this repository comes to the held-out check it does not see (other distortion code on
real frames). Every generator of `training.distortions` is this project's own; the leave-one-
generator-out table asks for one generator the model never saw, but still one written beside the
others. Here each distortion has two FFmpeg filter chains (run through PyAV's filter graph), drawn
at four levels on the clear frames of a split's clean footage, alone and in pairs, and the model
decides as the monitor does at its fitted operating points.

Levels are set on the same physical scale as the training levels' centres, at the 360 px reference
(the blurs of larger frames scale with their short side; noise stays per pixel, as a camera's, so
the analysis's downscaling of a 1080p frame thins it): noise of standard deviation 6-22 (as `sensor` noise's
sigma 5.75-22.25), defocus of the same spread as a disk of radius 1.75-6.25 px, motion of the same
spread as a straight path of 4.75-21.25 px, each filter's parameter measured to that spread; smoke
and uneven light have no such common unit, so the report prints each level's SSIM target beside
it (`training.quality.fr_quality`), which `python -m training.sensitivity` prints for the project's
own generators.

Split `val` is for choosing; split `eval` (held-out clean clips and frames) is reported only: never
train, tune or select on it.

    python -m training.foreign [--split val|eval] [--weights W] [--frames 10] [--out reports/foreign]
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import av.filter
import numpy as np
from tqdm import tqdm

from model.preprocess import analysis_frame, context_view, valid_mask
from model.tasks import NUM_LEVELS
from training.distortions import frame_scale
from training.metrics import exact_match, micro_f1, per_task, recall_by_level, srocc
from training.quality import fr_quality
from training.realcheck import DEFAULT_DATA, clear_frame_run, report_weights, write_report
from training.realworld import judged

# The order light reaches the sensor in, which pairs are applied in.
ORDER = ("uneven_illumination", "smoke", "defocus_blur", "motion_blur", "noise")
PAIRS_PER_FRAME = 8  # two-distortion draws per clear frame, at random generators and levels

Chain = list[tuple[str, str]]  # (filter, arguments), applied in turn


@dataclass(frozen=True)
class Layer:
    """A picture blended over the frame: a source filter's output and the `blend` filter's arguments."""
    source: str
    source_args: str
    blend_args: str


@dataclass(frozen=True)
class Foreign:
    """One FFmpeg way of making `distortion`: `make(value, scale, rng, (h, w))` gives the filter
    chain (and an optional blended layer) for the parameter `value` at a level."""
    distortion: str
    name: str
    values: tuple[float, ...]  # the parameter at levels 1..4
    make: Callable[[float, float, np.random.Generator, tuple[int, int]], tuple[Chain, Layer | None]]


# Standard deviation of a straight motion path of the training levels' lengths (4.75-21.25 px): L / sqrt(12).
MOTION_SPREAD = tuple(round(length / math.sqrt(12), 2) for length in (4.75, 10.25, 15.75, 21.25))
# ... and of a defocus disk of the training levels' radii (1.75-6.25 px): r / 2.
DEFOCUS_SPREAD = tuple(r / 2 for r in (1.75, 3.25, 4.75, 6.25))
NOISE_STD = (6.0, 11.0, 17.0, 22.0)
# Measured on a flat grey frame and on a line (tests/test_foreign.py checks them): FFmpeg's `noise`
# at strength s adds a standard deviation of 0.56 s to each channel, and in luma alone with uniform
# noise 0.33 s; `dblur` at radius r spreads a line by 1.2 r; `avgblur` of radius r is a box of 2r+1 px.
NOISE_PER_STRENGTH, LUMA_NOISE_PER_STRENGTH, DBLUR_PER_RADIUS = 0.56, 0.33, 1.2


def _noise(value, scale, rng, shape):
    return [("noise", f"alls={value:.0f}:allf=t:all_seed={rng.integers(2**31)}")], None


def _luma_noise(value, scale, rng, shape):
    return [("format", "yuv444p"), ("noise", f"c0s={value:.0f}:c0f=t+u:c0_seed={rng.integers(2**31)}")], None


def _perlin_smoke(value, scale, rng, shape):
    h, w = shape
    cells = rng.uniform(2.0, 5.0) / min(h, w)  # two to five cloud cells across the short side
    cloud = (f"size={w}x{h}:octaves={rng.integers(3, 6)}:persistence={rng.uniform(0.4, 0.7):.2f}:"
             f"xscale={cells:.5f}:yscale={cells:.5f}:random_mode=seed:random_seed={rng.integers(2**31)}")
    return [], Layer("perlin", cloud, f"all_mode=screen:all_opacity={value:.2f}")


def _veil_smoke(value, scale, rng, shape):
    h, w = shape
    grey = int(rng.integers(200, 236))
    colour = f"0x{grey:02X}{grey:02X}{min(255, grey + int(rng.integers(0, 16))):02X}"  # a slightly blue white
    return [], Layer("color", f"c={colour}:size={w}x{h}", f"all_expr=A*{1 - value:.2f}+B*{value:.2f}")


def _vignette(value, scale, rng, shape):
    x0, y0 = rng.uniform(0.2, 0.8, 2)  # off the axis: a centred fall-off is the scope's own, taught as clean
    return [("vignette", f"angle={value:.3f}:x0=w*{x0:.2f}:y0=h*{y0:.2f}")], None


def _shading(value, scale, rng, shape):
    angle = rng.uniform(0, 2 * math.pi)
    ramp = f"((X-W/2)*{math.cos(angle):.4f}+(Y-H/2)*{math.sin(angle):.4f})/(hypot(W,H)/2)"
    gain = f"(1-{value:.2f}*(1+{ramp})/2)"
    return [("geq", f"r='r(X,Y)*{gain}':g='g(X,Y)*{gain}':b='b(X,Y)*{gain}'")], None


def _gblur(value, scale, rng, shape):
    return [("gblur", f"sigma={value * scale:.2f}")], None


def _avgblur(value, scale, rng, shape):
    return [("avgblur", f"sizeX={max(1, round(value * scale))}")], None


def _dblur(value, scale, rng, shape):
    return [("dblur", f"angle={rng.uniform(0, 360):.1f}:radius={value * scale:.2f}")], None


def _axis_gblur(value, scale, rng, shape):
    chain = [("gblur", f"sigma={value * scale:.2f}:sigmaV=0.01")]
    if rng.random() < 0.5:  # a vertical move
        chain = [("transpose", "clock")] + chain + [("transpose", "cclock")]
    return chain, None


GENERATORS: tuple[Foreign, ...] = (
    Foreign("noise", "ffmpeg_noise", tuple(s / NOISE_PER_STRENGTH for s in NOISE_STD), _noise),
    Foreign("noise", "luma_uniform", tuple(s / LUMA_NOISE_PER_STRENGTH for s in NOISE_STD), _luma_noise),
    Foreign("smoke", "perlin_screen", (0.15, 0.3, 0.45, 0.6), _perlin_smoke),
    Foreign("smoke", "white_veil", (0.12, 0.24, 0.36, 0.5), _veil_smoke),
    Foreign("uneven_illumination", "vignette", (math.pi / 5, math.pi / 4, math.pi / 3.2, math.pi / 2.5), _vignette),
    Foreign("uneven_illumination", "shading", (0.3, 0.45, 0.6, 0.75), _shading),
    Foreign("defocus_blur", "gblur", DEFOCUS_SPREAD, _gblur),
    Foreign("defocus_blur", "avgblur", tuple((math.sqrt(12) * s - 1) / 2 for s in DEFOCUS_SPREAD), _avgblur),
    Foreign("motion_blur", "dblur", tuple(s / DBLUR_PER_RADIUS for s in MOTION_SPREAD), _dblur),
    Foreign("motion_blur", "axis_gblur", MOTION_SPREAD, _axis_gblur),
)


def filtered(frame: np.ndarray, chain: Chain, layer: Layer | None = None) -> np.ndarray:
    """`frame` (RGB) through FFmpeg: `layer` blended over it first (when given), then `chain`."""
    h, w = frame.shape[:2]
    graph = av.filter.Graph()
    source = graph.add_buffer(width=w, height=h, format="rgb24", time_base=Fraction(1, 25))
    last = source
    if layer is not None:
        over = graph.add(layer.source, layer.source_args)
        over_rgb = graph.add("format", "rgb24")
        over.link_to(over_rgb)
        blend = graph.add("blend", layer.blend_args)
        source.link_to(blend, 0, 0)
        over_rgb.link_to(blend, 0, 1)
        last = blend
    for name, args in chain:
        node = graph.add(name, args)
        last.link_to(node)
        last = node
    rgb = graph.add("format", "rgb24")
    last.link_to(rgb)
    sink = graph.add("buffersink")
    rgb.link_to(sink)
    graph.configure()
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    picture.pts = 0
    source.push(picture)
    return sink.pull().to_ndarray()


def draw(frame: np.ndarray, generator: Foreign, level: int, rng: np.random.Generator) -> np.ndarray:
    chain, layer = generator.make(generator.values[level - 1], frame_scale(frame), rng, frame.shape[:2])
    return filtered(frame, chain, layer)


@dataclass
class Draw:
    image: np.ndarray
    levels: dict[str, int]  # distortion -> level (absent: clean)
    generators: tuple[str, ...]


def draws(frame: np.ndarray, rng: np.random.Generator, pairs: int = PAIRS_PER_FRAME):
    """The clear frame, every generator at every level on it, and `pairs` two-distortion draws."""
    yield Draw(frame, {}, ())
    for generator, level in itertools.product(GENERATORS, range(1, NUM_LEVELS + 1)):
        yield Draw(draw(frame, generator, level, rng), {generator.distortion: level}, (generator.name,))
    for _ in range(pairs):
        first, second = sorted(rng.choice(len(ORDER), 2, replace=False))
        image, levels, names = frame, {}, []
        for distortion in (ORDER[first], ORDER[second]):
            options = [g for g in GENERATORS if g.distortion == distortion]
            generator, level = options[rng.integers(len(options))], int(rng.integers(1, NUM_LEVELS + 1))
            image = draw(image, generator, level, rng)
            levels[distortion], names = level, names + [generator.name]
        yield Draw(image, levels, tuple(names))


def with_mean_of(image: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """`image` scaled to the mean brightness of `frame` (saturating)."""
    gain = float(frame.mean()) / max(float(image.mean()), 1.0)
    return np.clip(image.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)


def in_view_mask(image: np.ndarray, cfg) -> np.ndarray:
    """The context cells the model looks at (model.preprocess.extract's mask, without its patches)."""
    return valid_mask(context_view(analysis_frame(image, cfg), cfg), cfg)


def measure(predictor, frames: list[np.ndarray], seed: int = 0, progress: bool = False,
            keep_mean: bool = False) -> dict:
    """The decision and quality on every draw of every frame: identification figures over all draws
    (micro/macro-F1, exact match, per distortion, recall by level), the share of each generator's
    draws called at each level and how much of the clear frame's field of view it leaves in the
    model's view (a side darkened under the model's `fov_luma` is taken for the scope's black border
    and not looked at), the clear frames' alarms, and the quality's SROCC against its SSIM target and
    against the total level. `keep_mean`: every draw is scaled back to its clear frame's
    mean brightness first, which asks whether a distortion is missed for how it changes the level."""
    tasks = list(predictor.tasks)
    rng = np.random.default_rng(seed)
    truth, called, quality, target, names, in_view = [], [], [], [], [], []
    for frame in tqdm(frames, desc="frames", unit="frame", disable=not progress):
        made = list(draws(frame, rng))
        if keep_mean:
            made = [Draw(with_mean_of(d.image, frame), d.levels, d.generators) if d.levels else d for d in made]
        alarms, scores = judged(predictor, [d.image for d in made])
        field = in_view_mask(frame, predictor.input_cfg)
        for d, a, q in zip(made, alarms, scores):
            in_view.append(float((field & in_view_mask(d.image, predictor.input_cfg)).sum() / max(field.sum(), 1)))
            truth.append([d.levels.get(t, 0) for t in tasks])
            called.append(a)
            quality.append(float(q))
            target.append(fr_quality(frame, d.image) if d.levels else 100.0)
            names.append(d.generators)
    levels, called, target, in_view = np.array(truth), np.array(called, bool), np.array(target), np.array(in_view)
    present = levels > 0
    report = {"frames": len(frames), "draws": len(levels), "tasks": tasks, "keep_mean": keep_mean,
              "fov_luma": predictor.input_cfg.fov_luma,
              "micro_f1": micro_f1(present, called), "exact_match": exact_match(present, called),
              "per_task": per_task(present, called, tasks), "recall_by_level": recall_by_level(levels, called, tasks)}
    report["macro_f1"] = float(np.mean([report["per_task"][t]["f1"] for t in tasks]))
    clear = ~present.any(axis=1)
    report["clear_alarmed"] = float(called[clear].any(axis=1).mean())
    report["rows"] = []
    for generator in GENERATORS:
        j = tasks.index(generator.distortion)
        others = [k for k in range(len(tasks)) if k != j]
        alone = np.array([n == (generator.name,) for n in names])
        for level in range(1, NUM_LEVELS + 1):
            at = alone & (levels[:, j] == level)
            report["rows"].append({"distortion": generator.distortion, "generator": generator.name, "level": level,
                                   "value": generator.values[level - 1], "draws": int(at.sum()),
                                   "called": float(called[at, j].mean()),
                                   "other": float(called[at][:, others].any(axis=1).mean()),
                                   "target": float(target[at].mean()), "in_view": float(in_view[at].mean())})
    report["quality_target_srocc"] = srocc(quality, target)
    # Quality falls as distortion is added: the correlation with the total level, sign turned.
    report["quality_level_srocc"] = -srocc(quality, levels.sum(axis=1))
    return report


def markdown(report: dict) -> str:
    tasks = report["tasks"]
    lines = [f"# Distortions made by FFmpeg's filters on real frames (split `{report['split']}`)", "",
             f"Weights `{report['weights']}`; {report['frames']} clear frames of the split's clean footage, "
             f"{report['draws']} draws: each frame as it is, every generator below at every level, and "
             f"{PAIRS_PER_FRAME} pairs of two distortions"
             + (", every draw scaled back to its clear frame's mean brightness" if report["keep_mean"] else "")
             + f". Decided frame by frame (no hysteresis), the clear frames raise an alarm on "
             f"{report['clear_alarmed']:.1%} of them.", "",
             "| figure | value |", "|---|---|",
             f"| macro-F1 | {report['macro_f1']:.3f} |", f"| micro-F1 | {report['micro_f1']:.3f} |",
             f"| exact match | {report['exact_match']:.3f} |",
             f"| quality SROCC against its SSIM target | {report['quality_target_srocc']:.3f} |",
             f"| quality SROCC against the total level (sign turned) | {report['quality_level_srocc']:.3f} |", "",
             "| distortion | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for t in tasks:
        m = report["per_task"][t]
        lines.append(f"| {t} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines += ["", "Recall by level (1 = faintest; draws in brackets):", "",
              "| distortion | " + " | ".join(f"level {lv}" for lv in range(1, NUM_LEVELS + 1)) + " |",
              "|---" * (NUM_LEVELS + 1) + "|"]
    for t in tasks:
        per = report["recall_by_level"][t]
        lines.append(f"| {t} | " + " | ".join(f"{per[str(lv)]['recall']:.3f} ({per[str(lv)]['support']})"
                                              for lv in range(1, NUM_LEVELS + 1)) + " |")
    lines += ["", "Each generator alone: the share of its draws on which the distortion is called / on which "
              "another one is called, the draws' mean SSIM target (100: the clear frame), and the share of the "
              f"clear frame's field of view left in the model's view (context luma above {report['fov_luma']:g}).", "",
              "| distortion | generator | " + " | ".join(f"level {lv}" for lv in range(1, NUM_LEVELS + 1)) + " |",
              "|---" * (NUM_LEVELS + 2) + "|"]
    for t, g in dict.fromkeys((r["distortion"], r["generator"]) for r in report["rows"]):
        cells = [f"{r['called']:.0%} / {r['other']:.0%}, {r['target']:.1f}, {r['in_view']:.0%} in view" for r in report["rows"]
                 if r["distortion"] == t and r["generator"] == g]
        lines.append(f"| {t} | {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.foreign", description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("val", "eval"), default="val",
                    help="whose clean footage to draw on: val (for choosing) or eval (reported only); default val")
    ap.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared surgical data folder")
    ap.add_argument("--frames", type=int, default=10, help="clear frames taken from each clean item (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    ap.add_argument("--keep-mean", action="store_true",
                    help="scale every draw back to its clear frame's mean brightness (is a distortion missed for "
                         "the level it leaves?)")
    ap.add_argument("--out", type=Path, help="write foreign_<split>.json and .md into this folder")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    run = clear_frame_run("foreign", args.data, args.weights, args.frames, args.split)
    if run is None:
        return 2
    predictor, frames = run
    report = {"data": str(args.data), "split": args.split, "seed": args.seed,
              "weights": report_weights(args.weights, predictor),
              **measure(predictor, frames, args.seed, progress=not args.quiet, keep_mean=args.keep_mean)}
    write_report(args.out, f"foreign_{args.split}", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
