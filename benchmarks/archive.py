"""Archive throughput: hours of footage analysed per hour of wall time at the default sampling (5
analysed frames/s), the way recordings were analysed before and now, side by side in one run;
then on a local Ray instance. Locally, each kind adds one change to the one before it:

* before: one chunk at a time, every frame decoded, the model in float32 (as up to synth_v12);
* skip: frames that no other frame refers to are not decoded (`source.skip_unreferenced`);
* at_once: one more chunk decoded at a time than the machine has cores, all feeding one inference
  worker (`monitor.archive.local_executor`);
* now (the monitor's defaults): the model in bfloat16 where the CPU does it natively (`model.precision`
  auto; `--precision` to choose);
  each the median of --runs runs, taken in turn; `speedup_*` divide before's wall time by theirs;
* CPU seconds of each (every thread of the process), and of decoding alone as now (references
  decoded, kept frames converted): its share of now's CPU is the floor of this approach;
* agreement: the before and now CSVs, row by row. A sampled run keeps the first decoded frame of
  each 0.2 s slot of media time, so skipping frames moves a row within its slot, never out of it:
  rows without a partner in the same slot, the largest shift, the mean and largest difference of
  the presence probabilities, and the share of alarm levels (task by row) that differ;
* Ray: one task per chunk, as many at once as Ray has CPUs. Per-worker throughput times the workers
  of a cluster is the scaling estimate: chunks are independent, so a cluster adds workers until the
  shared storage the videos are read from saturates.

The videos are made by the script: a moving procedural scene with sensor grain, H.264 at crf 18 with
x264's default B-frames, like high-detail camera footage (benchmarks/pipeline.py); `--grain 0`
gives the smooth scene, which decodes faster than any real recording. `--videos-from DIR` measures
recordings of your own instead. Prints a table, then one JSON line.

    python benchmarks/archive.py [--videos 4] [--seconds 60] [--size 1280x720] [--runs 3] [--grain 3]
                                 [--videos-from DIR] [--chunk-s 30] [--precision auto] [--workers 2] [--no-ray]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from model.predict import PRECISIONS, load_predictor
from model.preprocess import analysis_size
from monitor.archive import analyse_archive, find_videos, local_executor, ray_executor
from monitor.capture import Sampler
from monitor.config import ScopeWatchConfig
from monitor.outputs.naming import output_paths
from monitor.sources import FileSource, RawFrame
from pipeline import machine, make_clip


def make_videos(folder: Path, n: int, seconds: float, size: tuple[int, int], grain: float) -> list[Path]:
    for i in range(n):
        make_clip(folder / f"case{i:02d}.mp4", seconds, grain, 18, size, seed=100 + i)
    return find_videos([folder])


def duration(video: Path) -> float:
    source = FileSource(video)
    source.open()
    source.close()
    return source.info.duration_s


def config(skip: bool, threads: int | None = None) -> ScopeWatchConfig:
    cfg = ScopeWatchConfig()  # default sampling: 5 analysed frames per second of video
    cfg.source.skip_unreferenced = skip
    cfg.model.threads = threads
    return cfg


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return r.ru_utime + r.ru_stime


def timed(videos, out, cfg, predictor, executor, chunk_s) -> tuple[float, float]:
    """Wall and CPU seconds of analysing `videos`."""
    t, c = time.perf_counter(), cpu_s()
    rows = analyse_archive(videos, out, cfg, predictor, executor, chunk_s)
    assert all(r["status"] == "ok" for r in rows), rows
    return time.perf_counter() - t, cpu_s() - c


def decoding_cpu_s(videos, predictor, fps: float) -> float:
    """CPU seconds of what `now` must do before the model: decode the references and convert the
    kept frames to the analysis size."""
    c = cpu_s()
    for v in videos:
        source, sampler = FileSource(v), Sampler(fps)
        source.open()
        source.keeping_every(1.0 / fps)
        for item in source.frames():
            if isinstance(item, RawFrame) and sampler.keep(item.time_s):
                item.to_rgb(analysis_size(item.width, item.height, predictor.input_cfg))
    return cpu_s() - c


def analysed_rows(path: Path, tasks) -> list[dict]:
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r[tasks[0]] != ""]  # a state row's probabilities are empty


def agreement(pairs: list[tuple[Path, Path]], tasks, step_s: float) -> dict:
    """How the rows of references-only runs differ from those of every-frame runs of the same videos."""
    shifts, dps, levels, unmatched, rows = [], [], [], 0, 0
    for every_csv, skip_csv in pairs:
        slot = {}
        for r in analysed_rows(every_csv, tasks):
            slot[math.floor(float(r["time_s"]) / step_s + 1e-6)] = r
        for r in analysed_rows(skip_csv, tasks):
            rows += 1
            a = slot.pop(math.floor(float(r["time_s"]) / step_s + 1e-6), None)
            if a is None:
                unmatched += 1
                continue
            shifts.append(abs(float(r["time_s"]) - float(a["time_s"])))
            dps.append([abs(float(r[t]) - float(a[t])) for t in tasks])
            levels += [r[f"{t}_level"] != a[f"{t}_level"] for t in tasks]
        unmatched += len(slot)
    dps = np.array(dps)
    return {"rows": rows, "rows_without_partner": unmatched, "max_shift_s": round(max(shifts), 3),
            "mean_abs_dp": round(float(dps.mean()), 4), "max_abs_dp": round(float(dps.max()), 4),
            "levels_differing": round(float(np.mean(levels)), 4)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each video")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--grain", type=float, default=3.0, help="sensor grain of the videos, grey levels (0: none)")
    ap.add_argument("--videos-from", type=Path, help="analyse the videos in this folder instead of making them")
    ap.add_argument("--runs", type=int, default=3, help="local runs of each kind (medians)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="Ray CPUs (workers) on this machine")
    ap.add_argument("--chunk-s", type=float, default=30.0)
    ap.add_argument("--no-ray", action="store_true", help="local runs only")
    ap.add_argument("--precision", default=ScopeWatchConfig().model.precision, choices=PRECISIONS,
                    help="the model's arithmetic (default: the monitor's, auto)")
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    predictor = load_predictor(precision=args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.videos_from:
            videos = find_videos([args.videos_from])
            clip = f"{len(videos)} videos from {args.videos_from}"
        else:
            (tmp / "videos").mkdir()
            videos = make_videos(tmp / "videos", args.videos, args.seconds, size, args.grain)
            clip = f"{args.videos} x {args.seconds:g} s, {args.size}, grain {args.grain:g}, crf 18"
        footage_s = sum(duration(v) for v in videos)
        # Each kind adds one change to the one before it; `now` is the monitor's defaults.
        exact = load_predictor(precision="float32")
        kinds = {"before": (False, 1, exact), "skip": (True, 1, exact), "at_once": (True, None, exact),
                 "now": (True, None, predictor)}
        walls, cpus = {kind: [] for kind in kinds}, {kind: [] for kind in kinds}
        for run in range(args.runs):
            for kind, (skip, at_once, model) in kinds.items():
                cfg = config(skip)
                executor = local_executor(cfg, model, at_once)
                w, c = timed(videos, tmp / f"{kind}{run}", cfg, model, executor, args.chunk_s)
                walls[kind].append(w)
                cpus[kind].append(c)
        wall = {kind: statistics.median(w) for kind, w in walls.items()}
        cpu = {kind: statistics.median(c) for kind, c in cpus.items()}
        fps = ScopeWatchConfig().sampling.fps
        decoding = statistics.median(decoding_cpu_s(videos, predictor, fps) for _ in range(args.runs))
        step_s = 1.0 / fps
        agree = agreement([(output_paths(v, tmp / "before0").csv, output_paths(v, tmp / "now0").csv) for v in videos],
                          predictor.tasks, step_s)
        out = {"machine": machine(), "precision": predictor.precision, "videos": clip, "footage_s": round(footage_s, 1), "runs": args.runs,
               **{f"local_{kind}_wall_s": round(w, 2) for kind, w in wall.items()},
               **{f"local_{kind}_footage_h_per_h": round(footage_s / w, 1) for kind, w in wall.items()},
               **{f"local_{kind}_cpu_s": round(c, 1) for kind, c in cpu.items()},
               "now_decoding_cpu_s": round(decoding, 1),
               "now_decoding_share_of_cpu": round(decoding / cpu["now"], 2),
               **{f"speedup_{kind}": round(wall["before"] / w, 2) for kind, w in wall.items() if kind != "before"},
               **{f"agreement_{k}": v for k, v in agree.items()}}
        if not args.no_ray:
            import ray
            ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
            ray_cfg = config(True, threads=1)
            executor = ray_executor(None, ray_cfg, None, "cpu")
            timed(videos[:1], tmp / "warmup", ray_cfg, predictor, executor, args.chunk_s)  # workers up, model loaded
            ray_s, _ = timed(videos, tmp / "ray", ray_cfg, predictor, executor, args.chunk_s)
            ray.shutdown()
            out.update({"ray_workers": args.workers, "ray_wall_s": round(ray_s, 2),
                        "ray_footage_h_per_h": round(footage_s / ray_s, 1),
                        "ray_per_worker_footage_h_per_h": round(footage_s / ray_s / args.workers, 1)})
    for k, v in out.items():
        print(f"{k:<36}{v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
