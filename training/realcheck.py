"""What the real footage of `../shared/data/surgical` says about a checkpoint, split by split.

`val` (calibration, thresholds and checkpoint choice may use it) and `eval` (reported only, never
tuned on) are kept apart here: each `RealItem` names its split, what is in it (clean, or which
distortion a person sees) and from when. The scoring is plain arithmetic on what the monitor
reported (per-frame alarms and events), so that a run through the real pipeline and a frame-level
check are scored alike:

* clean items: share of frames with any alarm (and per distortion), false events per 10 minutes;
* degraded items: recall, the share of frames on which the expected distortion is flagged, and
  whether an event of it fired (clips).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "surgical"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class RealItem:
    split: str  # "val" or "eval"
    path: str  # relative to the data folder: a video, or a folder (or glob) of frames
    present: str | None  # the distortion a person sees (None: clean)
    start_s: float = 0.0  # a clip is scored from here (e.g. after real camera motion)
    end_s: float | None = None
    note: str = ""

    @property
    def clean(self) -> bool:
        return self.present is None


ITEMS: tuple[RealItem, ...] = (
    RealItem("val", "val_smoke/smoke_builds_480p60_a.mp4", "smoke", note="cautery smoke building up"),
    RealItem("val", "val_smoke/smoke_builds_480p60_b.mp4", "smoke", start_s=3.0,
             note="clear at first, a milky field by ~3-4 s"),
    RealItem("val", "val_smoke/real_smoky_frames/*", "smoke", note="dense real cautery smoke"),
    RealItem("val", "val_smoke/pairs_added_smoke/*input_*", "smoke", note="light smoke, most likely added"),
    RealItem("val", "val_smoke/pairs_added_smoke/*output_*", None, note="the same frames without the smoke"),
    RealItem("val", "val_uneven/*", "uneven_illumination", note="dark edges, uneven light; captions unmasked"),
    RealItem("eval", "real_clean_video/Up-1_2.mp4", None, start_s=4.0, note="after its first 4 s of real camera motion"),
    RealItem("eval", "real_smoke/*", "smoke", note="DeSmoke-LAP clips, light haze to washed out"),
    RealItem("eval", "holdout_clean/*", None, note="other procedures and cameras"),
)


def items(split: str) -> list[RealItem]:
    if split not in ("val", "eval"):
        raise ValueError(f"split must be val or eval, got {split!r}")
    return [i for i in ITEMS if i.split == split]


def expand(item: RealItem, data: Path) -> list[Path]:
    """The files of `item` under `data`: one video, or the frames or clips a glob names."""
    if "*" not in item.path:
        return [data / item.path] if (data / item.path).exists() else []
    return sorted(p for p in data.glob(item.path) if p.is_file())


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


@dataclass
class Observed:
    """What the monitor reported on one file: per analysed frame (inside the item's window) the
    distortions with an alarm, and the distortion events as (name, start_s, end_s)."""
    frames: list[list[str]]
    seconds: float  # media time covered (0 for a still frame)
    events: list[tuple[str, float, float]]


def score(item: RealItem, files: list[tuple[Path, Observed]], tasks) -> dict:
    frames = [f for _, o in files for f in o.frames]
    seconds = sum(o.seconds for _, o in files)
    out: dict = {"split": item.split, "path": item.path, "note": item.note,
                 "kind": "clean" if item.clean else item.present, "files": len(files), "frames": len(frames)}
    if not frames:
        return out
    if item.clean:
        out["any_alarm"] = round(sum(bool(f) for f in frames) / len(frames), 4)
        out["per_task"] = {t: round(sum(t in f for f in frames) / len(frames), 4) for t in tasks}
        if seconds > 0:
            events = [e for _, o in files for e in o.events]
            out["events"] = len(events)
            out["false_events_per_10min"] = round(len(events) * 600.0 / seconds, 2)
    else:
        out["recall"] = round(sum(item.present in f for f in frames) / len(frames), 4)
        clips = [(p, o) for p, o in files if o.seconds > 0]
        if clips:
            out["clips_with_event"] = sum(any(e[0] == item.present for e in o.events) for _, o in clips)
            out["clips_mostly_flagged"] = sum(
                sum(item.present in f for f in o.frames) > len(o.frames) / 2 for _, o in clips if o.frames)
            out["clips"] = len(clips)
        others = {t: round(sum(t in f for f in frames) / len(frames), 4) for t in tasks if t != item.present}
        out["other_alarms"] = others
    return out


def markdown(report: dict) -> str:
    lines = [f"# Real footage, split `{report['split']}` (weights: {report['weights']})", "",
             "| item | kind | files | frames | frames with any alarm | false events / 10 min | recall | "
             "clips with an event | clips mostly flagged |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["items"]:
        def cell(key):
            return "" if key not in r else (f"{r[key]:.1%}" if isinstance(r[key], float) and key != "false_events_per_10min"
                                            else str(r[key]))
        of_clips = (lambda key: f"{r[key]} of {r['clips']}") if "clips" in r else (lambda key: "")
        lines.append(f"| `{r['path']}` | {r['kind']} | {r['files']} | {r['frames']} | {cell('any_alarm')} | "
                     f"{cell('false_events_per_10min')} | {cell('recall')} | {of_clips('clips_with_event')} | "
                     f"{of_clips('clips_mostly_flagged')} |")
    lines += ["", "Clean items, frames with an alarm per distortion:", ""]
    for r in report["items"]:
        if "per_task" in r:
            lines.append(f"- `{r['path']}`: " + ", ".join(f"{t} {v:.1%}" for t, v in r["per_task"].items()))
    return "\n".join(lines) + "\n"
