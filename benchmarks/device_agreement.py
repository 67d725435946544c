"""Do the CPU and a CUDA device give the same verdicts? The shipped weights on the same frames, once
on each, and the largest difference of every output (issue 20: <= 1e-3), plus the model's frames
per second on each device at two batch sizes. The frames are procedural scenes, each clean and
with every distortion at level 2, and the real train frames when `../shared` is there.

    python benchmarks/device_agreement.py [--weights W] [--frames 24]

Prints a table, then (last line) one JSON object. Needs CUDA: without it, it says so and exits 1.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from model.predict import load_predictor
from model.tasks import DEFAULT_TASKS
from training.distortions import distort
from training.scene import ProceduralScene

REAL = Path("../shared/data/surgical/train_clean")


def frames(n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        clean = ProceduralScene(i, (1280, 720)).frame_at(0.5 * i)
        out.append(clean if i % (len(DEFAULT_TASKS) + 1) == 0 else
                   distort(clean, DEFAULT_TASKS[i % (len(DEFAULT_TASKS) + 1) - 1], level=2, rng=np.random.default_rng(i)))
    out += [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(REAL.glob("*.png"))]
    return out


def outputs(predictor, pictures) -> dict[str, np.ndarray]:
    inputs = [predictor.prepare(f) for f in pictures]
    got = [predictor.outputs(inputs[i:i + 8]) for i in range(0, len(inputs), 8)]
    out = {k: torch.cat([g[k] for g in got]).numpy() for k in ("presence_logits", "severity", "quality")}
    out["presence"] = 1.0 / (1.0 + np.exp(-out.pop("presence_logits")))
    return out


def frames_per_s(predictor, pictures, batch: int, seconds: float = 3.0) -> float:
    prepared = [predictor.prepare(f) for f in pictures[:batch]]
    inputs = [prepared[i % len(prepared)] for i in range(batch)]  # exactly `batch` frames a call
    predictor.outputs(inputs)  # warm-up (kernels, allocator)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        predictor.outputs(inputs)
        done += len(inputs)
    if predictor.device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--frames", type=int, default=24, help="procedural frames (default 24)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("device_agreement: no CUDA device here; nothing to compare", file=sys.stderr)
        return 1
    pictures = frames(args.frames)
    cpu, cuda = load_predictor(args.weights, "cpu"), load_predictor(args.weights, "cuda")
    a, b = outputs(cpu, pictures), outputs(cuda, pictures)
    diff = {k: float(np.abs(a[k] - b[k]).max()) for k in a}
    diff["quality"] /= 100.0  # on the probabilities' scale
    disagree = int(((a["presence"] >= 0.5) != (b["presence"] >= 0.5)).sum())
    out = {"gpu": torch.cuda.get_device_name(0), "frames": len(pictures),
           **{f"max_abs_diff_{k}": round(v, 7) for k, v in diff.items()}, "decisions_differing": disagree}
    for device, p in (("cpu", cpu), ("cuda", cuda)):
        for batch in (8, 64):
            out[f"model_fps_{device}_b{batch}"] = round(frames_per_s(p, pictures, batch), 1)
    print(f"{len(pictures)} frames on {out['gpu']} against the CPU (quality on a 0..1 scale)")
    for k, v in out.items():
        print(f"  {k:<28} {v}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
