"""ONNX Runtime (CPU) against torch on the same frames: per-frame model time at batch 1 and 8, with
one thread (what the inference worker gets on a 2-core machine, the other core decoding) and with
every core, and the largest difference between their outputs. Issue 20 makes ONNX Runtime a
backend only if it is >= 1.3x faster with equal outputs. Prints a table, then one JSON line.

    python benchmarks/onnx_speed.py [--weights W] [--repeat 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np
import torch

from model.checkpoint import load_checkpoint
from model.export import export_onnx, onnx_session, run_onnx
from model.factory import DEFAULT_MODEL, weights_path
from model.predict import Predictor
from training.scene import ProceduralScene
from timing import median_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights")
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per figure (median; default 20)")
    args = ap.parse_args()
    model = load_checkpoint(args.weights or weights_path(DEFAULT_MODEL))
    frames = [ProceduralScene(seed, (1920, 1080)).frame_at(0.0) for seed in range(8)]
    torch_pred = Predictor(model, "cpu")
    inputs = [torch_pred.prepare(f) for f in frames]
    graph = export_onnx(model)
    out = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__}
    import onnxruntime
    out["onnxruntime"] = onnxruntime.__version__
    print(f"{'threads':>7} {'batch':>5} {'torch ms/frame':>15} {'onnx ms/frame':>14} {'speed-up':>9}")
    diff = 0.0
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        session = onnx_session(graph, threads)
        for batch in (1, 8):
            part = inputs[:batch]
            ours = run_onnx(session, part)
            theirs = torch_pred.outputs(part, patch_map=True)
            diff = max(diff, *(float(np.abs(ours[k] - theirs[k].numpy()).max()) for k in ours))
            t_ms = median_ms(lambda: torch_pred.outputs(part, patch_map=True), args.repeat) / batch
            o_ms = median_ms(lambda: run_onnx(session, part), args.repeat) / batch
            print(f"{threads:>7} {batch:>5} {t_ms:>15.2f} {o_ms:>14.2f} {t_ms / o_ms:>8.2f}x")
            out[f"threads_{threads}_batch_{batch}"] = {"torch_ms_per_frame": round(t_ms, 2), "onnx_ms_per_frame": round(o_ms, 2),
                                                        "onnx_speedup": round(t_ms / o_ms, 3)}
    out["largest_output_difference"] = diff
    print(f"largest difference between the outputs: {diff:.2e}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
