"""Throughput and latency of the whole monitor on a 1080p25 H.264 file made by this script.

* decode_fps_1080p: PyAV decoding plus conversion to what the pipeline needs (the analysis-size RGB
  frame, by libswscale), nothing else;
* analyze_fps_1080p: `analyze --every-frame` (the real Session: decode, sample, convert, infer,
  events, timeline) on the same file;
* live: the same file played in real time (--realtime source), every frame analysed: capture-to-
  result latency p50/p95 and dropped frames;
* peak_rss_mb of this process.
Prints a table, then one JSON line.   python benchmarks/pipeline.py [--quick] [--seconds 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import av

from model.predict import load_predictor
from model.preprocess import analysis_size
from monitor.config import ScopeWatchConfig
from monitor.session import Session
from monitor.sources import FileSource
from training.scene import ProceduralScene
from training.synth import ClipWriter


def make_clip(path: Path, seconds: float) -> Path:
    scene = ProceduralScene(11, (1920, 1080))
    with ClipWriter(path, (1920, 1080), 25, crf=20) as w:  # detailed, moving content
        for i in range(int(seconds * 25)):
            w.write(scene.frame_at(i / 25))
    return path


def decode_fps(path: Path, size) -> float:
    t, n = time.perf_counter(), 0
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            f.reformat(size[0], size[1], format="rgb24", interpolation="AREA").to_ndarray()
            n += 1
    return n / (time.perf_counter() - t)


def run_session(path: Path, predictor, realtime: bool) -> Session:
    cfg = ScopeWatchConfig()
    cfg.sampling.fps = None
    cfg.model.threads = 1  # one core decodes, one infers
    source = FileSource(path, realtime=realtime)
    source.open()
    s = Session(source, predictor, cfg)
    s.run()
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the test clip")
    ap.add_argument("--quick", action="store_true", help="an 8-second clip")
    ap.add_argument("--weights")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    seconds = 8.0 if args.quick else args.seconds
    predictor = load_predictor(args.weights, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "bench_1080p.mp4", seconds)
        size = analysis_size(1920, 1080, predictor.input_cfg)
        dec = decode_fps(clip, size)
        t = time.perf_counter()
        s = run_session(clip, predictor, realtime=False)
        ana = s.monitor.metrics.analysed / (time.perf_counter() - t)
        live = run_session(clip, predictor, realtime=True).monitor.metrics
    out = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "device": str(predictor.device),
           "clip_seconds": seconds, "decode_fps_1080p": round(dec, 1), "analyze_fps_1080p": round(ana, 1),
           "ratio_analyze_vs_decode": round(ana / dec, 3),
           "live_latency_ms_p50": round(live.latency_percentile(50), 1),
           "live_latency_ms_p95": round(live.latency_percentile(95), 1),
           "live_dropped_frames": live.dropped, "live_frames_analysed": live.analysed,
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    for k, v in out.items():
        print(f"{k:<26}{v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
