"""Real-world sanity check on evaluation-only surgical footage (never used to train, tune or select):

* real surgical smoke (DeSmoke-LAP clips): share of frames flagged as smoke, per clip and overall;
* a real clean recording (AutoLaparo Up-1_2, after its first 4 s of real camera motion): share of
  frames with any alarm, and per distortion (false alarms);
* held-out clean frames from other procedures and cameras: alarms per frame;
* a real frame with strong instrument motion blur: what is reported.

    python -m training.realworld [--weights W] [--data ../shared/data/surgical] [--out report.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import av
import numpy as np

from model.decision import Decision
from model.predict import load_predictor
from training.content import read_image

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "surgical"
DECISION = Decision()  # the monitor's default decision, as a run without settings makes it


def video_frames(path: Path, start_s: float = 0.0, every: int = 1) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if (f.time or 0.0) >= start_s and i % every == 0:
                out.append(f.to_ndarray(format="rgb24"))
    return out


def predictions(predictor, frames, batch: int = 16, with_map: bool = False) -> list:
    """The predictor's reading of each frame, `batch` frames a call (with its patch map: `with_map`)."""
    return [p for i in range(0, len(frames), batch) for p in predictor.predict(frames[i:i + batch], with_map=with_map)]


def judged(predictor, frames, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(frames, tasks) booleans, the run's decision on each frame, and each frame's quality."""
    preds = predictions(predictor, frames, batch)
    rows = [[DECISION.present(t, p.probabilities[t]) for t in predictor.tasks] for p in preds]
    return np.array(rows, bool).reshape(len(rows), len(predictor.tasks)), np.array([p.quality for p in preds], float)


def flagged(predictor, frames, batch: int = 16) -> np.ndarray:
    """(frames, tasks) booleans: the run's decision on each frame."""
    return judged(predictor, frames, batch)[0]


def run(predictor, data: Path) -> dict:
    tasks = list(predictor.tasks)
    report: dict = {"tasks": tasks}
    smoke_dir = data / "real_smoke"
    if smoke_dir.is_dir():
        per_clip, total = {}, []
        for clip in sorted(smoke_dir.glob("*.avi")):
            f = flagged(predictor, video_frames(clip))
            per_clip[clip.name] = float(f[:, tasks.index("smoke")].mean())
            total.append(f[:, tasks.index("smoke")])
        allf = np.concatenate(total)
        report["real_smoke"] = {"frames": int(len(allf)), "smoke_flagged": float(allf.mean()),
                                "clips_mostly_flagged": int(sum(v > 0.5 for v in per_clip.values())),
                                "clips": len(per_clip), "per_clip": per_clip}
    clean = data / "real_clean_video" / "Up-1_2.mp4"
    if clean.exists():
        f = flagged(predictor, video_frames(clean, start_s=4.0))
        report["real_clean_up1_2_after_4s"] = {"frames": int(len(f)), "any_alarm": float(f.any(axis=1).mean()),
                                               "per_task": {t: float(f[:, j].mean()) for j, t in enumerate(tasks)}}
    hold = data / "holdout_clean"
    if hold.is_dir():
        files = sorted(p for p in hold.iterdir() if p.suffix.lower() in (".png", ".jpg"))
        preds = predictor.predict([read_image(p) for p in files])
        report["holdout_clean_frames"] = {
            p.name: {"alarms": DECISION.alarms(r.probabilities),
                     "quality": round(r.quality, 1)} for p, r in zip(files, preds)}
        report["holdout_clean_any_alarm"] = float(np.mean([bool(v["alarms"]) for v in report["holdout_clean_frames"].values()]))
    blur = data / "real_degraded" / "motion_blur_instrument.png"
    if blur.exists():
        [r] = predictor.predict([read_image(blur)])
        report["real_motion_blur_frame"] = {"probabilities": {t: round(v, 3) for t, v in r.probabilities.items()},
                                            "quality": round(r.quality, 1)}
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared surgical data folder")
    ap.add_argument("--out", type=Path, help="write the report as JSON here")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"realworld: error: {args.data}: no such folder (the evaluation data is not on this machine)", file=sys.stderr)
        return 2
    report = run(load_predictor(args.weights, "auto", "auto"), args.data)  # the monitor's default device and precision
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
