"""Milliseconds per 720p frame for each generator of each distortion, on one core (target: every one < 15 ms, so
training can synthesise on the fly). Also the other per-sample costs of training data: FR quality,
NSS features, and one whole training sample. Prints a table, then one JSON line.

    python benchmarks/synth_speed.py [--repeat 20] [--content FRAME]
"""
from __future__ import annotations

import argparse
import json
import platform

import cv2
import numpy as np

from model.preprocess import InputConfig, extract
from model.tasks import level_to_severity
from training.content import fit, read_image
from training.dataset import SynthPatchDataset
from training.distortions import DISTORTIONS, create_distortion
from training.nss import nss_features
from training.quality import fr_quality
from training.scene import ProceduralScene
from timing import median_ms

TARGET_MS = 15.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--content", help="an image to use (default: a procedural scene)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    frame = fit(read_image(args.content), (1280, 720)) if args.content else ProceduralScene(0, (1280, 720)).frame_at(0)
    rng = np.random.default_rng(0)
    results = {}
    print(f"720p frame, one core ({platform.processor() or platform.machine()}), median of {args.repeat}")
    print(f"{'distortion/generator':<34}" + "".join(f"{'L' + str(lvl):>8}" for lvl in range(1, 5)) + f"{'worst':>8}")
    for name in DISTORTIONS.names():
        for generator in DISTORTIONS.get(name).generators:
            d = create_distortion(name, (generator,))
            params = d.sample_params(rng)
            if "depth" in params:
                params["depth"] = True  # the costlier variant
            per_level = [median_ms(lambda: d.apply(frame, level_to_severity(lvl), params, 0.5), args.repeat)
                         for lvl in range(1, 5)]
            key = f"{name}/{generator}"
            results[key] = max(per_level)
            flag = "" if max(per_level) < TARGET_MS else "  over target"
            print(f"{key:<34}" + "".join(f"{ms:8.1f}" for ms in per_level) + f"{max(per_level):8.1f}{flag}")
    other = {
        "fr_quality_720p": median_ms(lambda: fr_quality(frame, frame), args.repeat),
        "nss_8_patches": median_ms(lambda: nss_features(extract(frame, InputConfig()).patches), args.repeat),
    }
    ds = SynthPatchDataset([ProceduralScene(i, (640, 360)) for i in range(2)], tuple(DISTORTIONS.names())[:5],
                           InputConfig())
    other["training_sample_360p"] = median_ms(lambda: ds.sample(rng), args.repeat)
    for k, v in other.items():
        print(f"{k:<22}{v:8.1f} ms")
    print(json.dumps({"ms_per_720p_frame": {k: round(v, 2) for k, v in results.items()},
                      **{k: round(v, 2) for k, v in other.items()},
                      "all_under_target": all(v < TARGET_MS for v in results.values())}))


if __name__ == "__main__":
    main()
