"""Per-frame cost of the model on this machine: a 1080p frame in, a Prediction out, patch
extraction included (target: well under 20 ms on the 2-core CPU). Prints a table, then one JSON line.

    python benchmarks/model_speed.py [--weights W] [--device auto|cpu|cuda] [--precision float32] [--repeat 30]
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import torch

from model.checkpoint import load_checkpoint
from model.factory import DEFAULT_MODEL, create_model, weights_path
from model.predict import PRECISIONS, Predictor
from training.scene import ProceduralScene
from timing import median_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="float32", choices=PRECISIONS)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    path = args.weights or weights_path(DEFAULT_MODEL)
    model = load_checkpoint(path) if os.path.exists(path) else create_model(DEFAULT_MODEL)
    frame = ProceduralScene(0, (1920, 1080)).frame_at(0.0)
    out = {"device": None, "precision": None, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    print(f"{'threads':>7} {'extract 1080p':>14} {'model b=1':>10} {'model b=8/frame':>16} {'total b=1':>10} {'patches/s':>10}")
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        pred = Predictor(model, args.device, args.precision)
        out["device"], out["precision"] = str(pred.device), pred.precision
        inputs = pred.prepare(frame)
        extract_ms = median_ms(lambda: pred.prepare(frame), args.repeat)
        one = median_ms(lambda: pred.predict_inputs([inputs]), args.repeat)
        eight = median_ms(lambda: pred.predict_inputs([inputs] * 8), args.repeat) / 8
        total = median_ms(lambda: pred.predict([frame]), args.repeat)
        k = model.input_cfg.num_patches
        patches_s = 1000.0 / eight * k
        print(f"{threads:>7} {extract_ms:>12.2f}ms {one:>8.2f}ms {eight:>14.2f}ms {total:>8.2f}ms {patches_s:>10.0f}")
        out[f"threads_{threads}"] = {"extract_1080p_ms": round(extract_ms, 2), "model_batch1_ms": round(one, 2),
                                     "model_batch8_ms_per_frame": round(eight, 2), "frame_1080p_total_ms": round(total, 2),
                                     "patches_per_s": round(patches_s), "frames_per_s_batch8": round(1000 / eight, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
