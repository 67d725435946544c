"""Archive throughput: hours of footage analysed per hour of wall time, locally (one process,
videos one after another) and on a local Ray instance (one task per chunk, as many at once as
Ray has CPUs), on videos made by this script at the default sampling (5 analysed frames/s).

Per-worker throughput (Ray's figure divided by its workers) times the workers of a cluster is the
scaling estimate: chunks are independent, so a cluster adds workers until the shared storage
the videos are read from saturates. Prints a table, then one JSON line.

    python benchmarks/archive.py [--videos 4] [--seconds 60] [--size 1280x720] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from model.predict import load_predictor
from monitor.archive import analyse_archive, find_videos, local_executor, ray_executor
from monitor.config import ScopeWatchConfig
from training.scene import ProceduralScene
from training.synth import ClipWriter


def make_videos(folder: Path, n: int, seconds: float, size: tuple[int, int]) -> list[Path]:
    for i in range(n):
        scene = ProceduralScene(100 + i, size)
        with ClipWriter(folder / f"case{i:02d}.mp4", size, 25) as w:
            for k in range(int(seconds * 25)):
                w.write(scene.frame_at(k / 25))
    return find_videos([folder])


def timed(videos, out, cfg, predictor, executor, chunk_s) -> float:
    t = time.perf_counter()
    rows = analyse_archive(videos, out, cfg, predictor, executor, chunk_s)
    assert all(r["status"] == "ok" for r in rows), rows
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each video")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="Ray CPUs (workers) on this machine")
    ap.add_argument("--chunk-s", type=float, default=30.0)
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    cfg = ScopeWatchConfig()  # default sampling: 5 analysed frames per second of video
    predictor = load_predictor()
    footage_h = args.videos * args.seconds / 3600
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "videos").mkdir()
        videos = make_videos(tmp / "videos", args.videos, args.seconds, size)
        local_s = timed(videos, tmp / "local", cfg, predictor, local_executor(cfg, predictor), args.chunk_s)
        import ray
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_cfg = ScopeWatchConfig()
        ray_cfg.model.threads = 1
        executor = ray_executor(None, ray_cfg, None, "cpu")
        timed(videos[:1], tmp / "warmup", ray_cfg, predictor, executor, args.chunk_s)  # workers up, model loaded
        ray_s = timed(videos, tmp / "ray", ray_cfg, predictor, executor, args.chunk_s)
        ray.shutdown()
    out = {"videos": args.videos, "seconds_each": args.seconds, "size": args.size, "cores": os.cpu_count(),
           "local_wall_s": round(local_s, 1), "ray_wall_s": round(ray_s, 1), "ray_workers": args.workers,
           "local_footage_h_per_h": round(footage_h / (local_s / 3600), 1),
           "ray_footage_h_per_h": round(footage_h / (ray_s / 3600), 1),
           "local_videos_per_h": round(args.videos / (local_s / 3600)),
           "ray_videos_per_h": round(args.videos / (ray_s / 3600)),
           "ray_per_worker_footage_h_per_h": round(footage_h / (ray_s / 3600) / args.workers, 1)}
    for k, v in out.items():
        print(f"{k:<32}{v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
