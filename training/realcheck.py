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

import heapq
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from model.checkpoint import CheckpointError
from model.predict import load_predictor
from training.content import read_image

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "surgical"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SAMPLE_FPS = 5.0  # the monitor's default sampling


@dataclass(frozen=True)
class RealItem:
    split: str  # "val" or "eval"
    path: str  # relative to the data folder: a video, or a folder (or glob) of frames
    present: str | None  # the distortion a person sees (None: clean)
    start_s: float = 0.0  # a clip is scored from here (e.g. after real camera motion)
    end_s: float | None = None
    note: str = ""
    masked: bool = False  # stills carry a burnt-in yellow caption, painted out before analysis

    @property
    def clean(self) -> bool:
        return self.present is None

    @property
    def window(self) -> str:
        """"" for the whole file, else "from-to s" (to the end when open)."""
        if self.start_s == 0.0 and self.end_s is None:
            return ""
        return f"{self.start_s:g}-{'' if self.end_s is None else f'{self.end_s:g}'} s"


ITEMS: tuple[RealItem, ...] = (
    # Windows read off a contact sheet of the clips at 0.5 s steps: clip a is clear until 1 s and
    # smoky from 1.5 s to ~3.2 s (after 5 s the smoke has gone but the view is soft and close: not
    # scored, a person could call it blurred); clip b is clear until 2 s and smoky from 2.5 s.
    RealItem("val", "val_smoke/smoke_builds_480p60_a.mp4", None, end_s=1.0, note="clear, before the smoke"),
    RealItem("val", "val_smoke/smoke_builds_480p60_b.mp4", None, end_s=2.0, note="clear, before the smoke"),
    RealItem("val", "val_smoke/smoke_builds_480p60_a.mp4", "smoke", start_s=1.5, end_s=3.2,
             note="cautery smoke rising and clearing"),
    RealItem("val", "val_smoke/smoke_builds_480p60_b.mp4", "smoke", start_s=2.5,
             note="smoke building to a milky field"),
    RealItem("val", "val_smoke/real_smoky_frames/*", "smoke", note="dense real cautery smoke"),
    RealItem("val", "val_smoke/pairs_added_smoke/*input_*", "smoke", note="light smoke, most likely added"),
    RealItem("val", "val_smoke/pairs_added_smoke/*output_*", None, note="the same frames without the smoke"),
    RealItem("val", "val_uneven/*", "uneven_illumination", note="dark edges, uneven light; captions masked",
             masked=True),
    # Two Cholec80 clips of the train split that training never sees (training.surgical), read off a
    # contact sheet at 0.2 s steps: cautery smoke drifts through each, clear before and after.
    RealItem("val", "train_more/cholec80_clips/video02_130.mp4", None, start_s=3.0, note="clear, after the smoke"),
    RealItem("val", "train_more/cholec80_clips/video02_131.mp4", None, start_s=2.6, note="clear, after the smoke"),
    RealItem("val", "train_more/cholec80_clips/video02_130.mp4", "smoke", start_s=0.8, end_s=1.8,
             note="cautery smoke drifting through"),
    RealItem("val", "train_more/cholec80_clips/video02_131.mp4", "smoke", start_s=1.0, end_s=2.2,
             note="cautery smoke drifting through"),
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


def clip_frames(path: Path, start_s: float, end_s: float | None, fps: float = SAMPLE_FPS) -> list[np.ndarray]:
    """Frames of a clip's window, one per 1/fps s of media time (the monitor's sampling)."""
    out, next_t = [], start_s
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            t = float(frame.time or 0.0)
            if end_s is not None and t > end_s:
                break
            if t >= next_t:
                out.append(frame.to_ndarray(format="rgb24"))
                next_t = t + 1.0 / fps
    return out


def evenly(frames: list, n: int) -> list:
    if len(frames) <= n:
        return list(frames)
    return [frames[i] for i in np.linspace(0, len(frames) - 1, n).round().astype(int)]


def report_weights(weights: str | None, predictor) -> str:
    """How a val report names the weights it read: the checkpoint given, or the shipped model."""
    return weights or f"{predictor.name} (shipped)"


def report_predictor(prog: str, data: Path, weights: str | None):
    """The predictor a val report command runs (float32, as the shipping rule runs it), or None
    after one line on stderr saying why not (no data folder here, weights that do not load)."""
    if not data.is_dir():
        print(f"{prog}: error: {data}: no such folder (the val footage is not on this machine)", file=sys.stderr)
        return None
    try:
        return load_predictor(weights, "auto", "float32")
    except (CheckpointError, OSError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return None


def write_report(out: Path | None, stem: str, report: dict, text: str) -> None:
    """`stem`.json and `stem`.md into `out` (when given); the markdown to stdout."""
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.json").write_text(json.dumps(report, indent=1))
        (out / f"{stem}.md").write_text(text)
    print(text, end="")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def mask_caption(image: np.ndarray) -> np.ndarray:
    """`image` (RGB) with a saturated yellow caption in its bottom-right corner painted out from
    its surroundings (the val_uneven tiles are labelled "Original" there: text the model would
    otherwise read as part of the scene). Unchanged where there is none."""
    h, w = image.shape[:2]
    r, g, b = (image[..., i].astype(np.int16) for i in range(3))
    yellow = (r > 160) & (g > 140) & (b < 90) & (r - b > 110) & (g - b > 90)
    corner = np.zeros_like(yellow)
    corner[int(0.78 * h):, int(0.6 * w):] = True
    mask = (yellow & corner).astype(np.uint8)
    if not mask.any():
        return image
    mask = cv2.dilate(mask, np.ones((7, 7), np.uint8))  # the glyphs' dark outline and antialiasing
    return cv2.inpaint(image, mask, 5, cv2.INPAINT_TELEA)


def load_still(item: RealItem, path: Path) -> np.ndarray:
    image = read_image(path)
    return mask_caption(image) if item.masked else image


def clear_frames(data: Path, per_item: int, split: str = "val") -> list[np.ndarray]:
    """`per_item` frames, evenly spread, of every clean item of `split` (stills or a clip's window)."""
    frames = []
    for item in items(split):
        if not item.clean:
            continue
        files = expand(item, data)
        if files and is_image(files[0]):
            frames += [load_still(item, p) for p in evenly(files, per_item)]
        elif files:
            frames += evenly(clip_frames(files[0], item.start_s, item.end_s), per_item)
    return frames


def clear_frame_run(prog: str, data: Path, weights: str | None, per_item: int, split: str = "val"):
    """The predictor and the clear frames (`per_item` of each clean item of `split`) a report on
    clear real frames runs on, or None after one line on stderr saying why not."""
    if per_item < 1:
        print(f"{prog}: error: --frames must be at least 1, got {per_item}", file=sys.stderr)
        return None
    predictor = report_predictor(prog, data, weights)
    if predictor is None:
        return None
    frames = clear_frames(data, per_item, split)
    if not frames:
        print(f"{prog}: error: {data}: no clean {split} footage found", file=sys.stderr)
        return None
    return predictor, frames


@dataclass
class Observed:
    """What the monitor reported on one file: per analysed frame (inside the item's window) the
    distortions with an alarm, and the distortion events as (name, start_s, end_s)."""
    frames: list[list[str]]
    seconds: float  # media time covered (0 for a still frame)
    events: list[tuple[str, float, float]]
    probabilities: list[dict[str, float]] = field(default_factory=list)  # per frame, what decided the alarms


def wrongness(item: RealItem, probabilities: dict[str, float]) -> tuple[float, str]:
    """How wrong one frame's verdict is, and on what: on a clean item its highest probability (a
    false alarm), on a degraded one the missing probability of what a person sees."""
    if item.clean:
        task = max(probabilities, key=probabilities.get)
        return probabilities[task], f"clean, {task} {probabilities[task]:.2f}"
    p = probabilities.get(item.present, 0.0)
    return 1.0 - p, f"{item.present} {p:.2f}"


@dataclass
class WorstFrames:
    """The `keep` frames the model gets most wrong over a run, as small tiles for a contact sheet."""
    keep: int = 24
    tile_width: int = 240
    frames: list = field(default_factory=list)  # a min-heap of (wrongness, arrival, tile)
    seen: int = 0

    def add(self, wrong: float, image: np.ndarray, caption: str) -> None:
        self.seen += 1
        if len(self.frames) >= self.keep and wrong <= self.frames[0][0]:
            return  # less wrong than every frame kept: no tile to make
        h = round(image.shape[0] * self.tile_width / image.shape[1])
        tile = cv2.resize(image, (self.tile_width, h), interpolation=cv2.INTER_AREA)
        cv2.rectangle(tile, (0, 0), (self.tile_width, 30), (0, 0, 0), -1)
        for i, line in enumerate((caption[:40], caption[40:80])):
            cv2.putText(tile, line, (4, 12 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
        entry = (wrong, self.seen, tile)
        if len(self.frames) < self.keep:
            heapq.heappush(self.frames, entry)
        else:
            heapq.heappushpop(self.frames, entry)

    def sheet(self, columns: int = 6) -> np.ndarray | None:
        tiles = [t for _, _, t in sorted(self.frames, key=lambda e: -e[0])]
        if not tiles:
            return None
        h = max(t.shape[0] for t in tiles)
        tiles = [cv2.copyMakeBorder(t, 0, h - t.shape[0], 0, 0, cv2.BORDER_CONSTANT) for t in tiles]
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
        return np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])


def score(item: RealItem, files: list[tuple[Path, Observed]], tasks) -> dict:
    frames = [f for _, o in files for f in o.frames]
    seconds = sum(o.seconds for _, o in files)
    out: dict = {"split": item.split, "path": item.path, "window": item.window, "note": item.note,
                 "kind": "clean" if item.clean else item.present, "files": len(files), "frames": len(frames)}
    if not frames:
        return out
    if item.clean:
        out["any_alarm"] = round(sum(bool(f) for f in frames) / len(frames), 4)
        out["per_task"] = {t: round(sum(t in f for f in frames) / len(frames), 4) for t in tasks}
        if seconds > 0:
            events = [e for _, o in files for e in o.events]
            out["seconds"] = round(seconds, 3)
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
        lines.append(f"| `{r['path']}`{' ' + r['window'] if r.get('window') else ''} | {r['kind']} | {r['files']} | {r['frames']} | {cell('any_alarm')} | "
                     f"{cell('false_events_per_10min')} | {cell('recall')} | {of_clips('clips_with_event')} | "
                     f"{of_clips('clips_mostly_flagged')} |")
    lines += ["", "Clean items, frames with an alarm per distortion:", ""]
    for r in report["items"]:
        if "per_task" in r:
            lines.append(f"- `{r['path']}`{' ' + r['window'] if r.get('window') else ''}: " + ", ".join(f"{t} {v:.1%}" for t, v in r["per_task"].items()))
    return "\n".join(lines) + "\n"


def compare_markdown(report: dict, before: dict) -> str:
    """Per item, the headline figure of `before` (another checkpoint's report of the same split)
    next to this report's: frames with any alarm and false events on clean items, recall on
    degraded ones."""
    old = {(r["path"], r.get("window", "")): r for r in before["items"]}
    lines = [f"# Real footage, split `{report['split']}`: before (`{before['weights']}`) and after (`{report['weights']}`)",
             "", "| item | kind | figure | before | after |", "|---|---|---|---|---|"]
    for r in report["items"]:
        b = old.get((r["path"], r.get("window", "")), {})
        name = f"`{r['path']}`{' ' + r['window'] if r.get('window') else ''}"
        keys = (("any_alarm", "frames with any alarm"), ("false_events_per_10min", "false events / 10 min")) \
            if r["kind"] == "clean" else (("recall", "recall"), ("clips_mostly_flagged", "clips mostly flagged"))
        for key, label in keys:
            if key not in r:
                continue
            def fmt(v):
                if v is None:
                    return "—"
                return f"{v:.1%}" if key in ("any_alarm", "recall") else (f"{v} of {r['clips']}" if key == "clips_mostly_flagged" else f"{v:g}")
            lines.append(f"| {name} | {r['kind']} | {label} | {fmt(b.get(key))} | {fmt(r[key])} |")
    return "\n".join(lines) + "\n"


# -- feed references (issue 19) ------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceCase:
    """A clip, the window of it taken as the feed's normal, and the part scored after it: clean
    (distortions are then synthesised onto it) or showing a real distortion (`present`)."""
    split: str
    path: str
    reference: tuple[float, float]
    scored: tuple[float, float | None]
    present: str | None = None
    note: str = ""


REFERENCE_CASES: tuple[ReferenceCase, ...] = (
    # Windows read off contact sheets, as the windows of ITEMS were.
    ReferenceCase("val", "val_smoke/smoke_builds_480p60_a.mp4", (0.0, 1.0), (1.5, 3.2), "smoke", "clear, then cautery smoke"),
    ReferenceCase("val", "val_smoke/smoke_builds_480p60_b.mp4", (0.0, 2.0), (2.5, None), "smoke", "clear, then smoke building"),
    # The two Cholec80 clips the trainer keeps for its validation (training.surgical), never trained
    # on, with real camera and tool motion: their clear seconds after the cautery smoke (ITEMS).
    ReferenceCase("val", "train_more/cholec80_clips/video02_130.mp4", (3.0, 4.0), (4.0, None), None, "real motion"),
    ReferenceCase("val", "train_more/cholec80_clips/video02_131.mp4", (2.6, 3.6), (3.6, None), None, "real motion"),
    ReferenceCase("eval", "real_clean_video/Up-1_2.mp4", (4.0, 7.0), (7.0, None), None, "real camera motion until 4 s"),
    ReferenceCase("eval", "real_clean_video/Zoomin_2.mp4", (3.0, 6.0), (6.0, 8.5), None,
                  "camera moving until ~3 s; real smoke from ~9 s"),
)


def reference_cases(split: str) -> list[ReferenceCase]:
    if split not in ("val", "eval"):
        raise ValueError(f"split must be val or eval, got {split!r}")
    return [c for c in REFERENCE_CASES if c.split == split]


def score_reference_run(frames: list[tuple[float, list[str]]], events: list[tuple[str, float, float | None]],
                        scored: tuple[float, float | None], expected: str | None) -> dict:
    """The figures of one run on the scored part of its clip (`frames`: per analysed frame its time
    and alarms; `events`: name, start, raised): with nothing `expected`, the false alarms; else the
    recall of the expected distortion and how long after the part began its first event was raised."""
    start, end = scored[0], float("inf") if scored[1] is None else scored[1]
    kept = [alarms for t, alarms in frames if start <= t < end]
    span = [t for t, _ in frames if start <= t < end]
    seconds = (span[-1] - span[0]) if len(span) > 1 else 0.0
    out: dict = {"frames": len(kept), "seconds": round(seconds, 2)}
    if not kept:
        return out
    if expected is None:
        false = [e for e in events if e[1] < end and (e[2] is None or e[2] >= start)]
        out["any_alarm"] = round(sum(bool(a) for a in kept) / len(kept), 4)
        out["false_events_per_10min"] = round(len(false) * 600.0 / seconds, 2) if seconds else None
    else:
        out["recall"] = round(sum(expected in a for a in kept) / len(kept), 4)
        raised = [e[2] for e in events if e[0] == expected and e[2] is not None and e[2] >= start]
        out["first_event_after_s"] = round(min(raised) - start, 2) if raised else None
    return out


def pooled_recall_changes(runs: list[tuple[object, dict, dict]]) -> dict:
    """Per group (a clip and the distortion on it), the recall with the reference minus without,
    each pooled over the group's runs (`runs`: group, scored run without, scored run with): the
    recall of that distortion on that clip, not of one run's dozen frames."""
    sums: dict = {}
    for group, without, with_ref in runs:
        n = without["frames"]
        a, b, m = sums.get(group, (0.0, 0.0, 0))
        sums[group] = (a + without["recall"] * n, b + with_ref["recall"] * n, m + n)
    return {g: round((b - a) / m, 4) if m else 0.0 for g, (a, b, m) in sums.items()}


# Candidate settings of the relative rule (Decision.reference_margin, reference_statistic).
REFERENCE_GRID: tuple[tuple[float, str], ...] = tuple((m, s) for s in ("median", "high") for m in (0.5, 1.0, 1.5, 2.0, 3.0))
RECALL_LOSS_ALLOWED = 0.02  # a reference must not cost detection (issue 19)


def choose_reference_setting(rows: list[dict]) -> dict | None:
    """The grid row that keeps every recall within RECALL_LOSS_ALLOWED with the fewest clean alarms
    (then the least recall lost, then the smaller margin), or None when none does."""
    fine = [r for r in rows if r["worst_recall_change"] >= -RECALL_LOSS_ALLOWED]
    return min(fine, key=lambda r: (r["clean_any_alarm"] or 0.0, -r["worst_recall_change"], r["margin"]), default=None)


def reference_markdown(report: dict) -> str:
    """The report as tables: clean parts as they are, real distortions, then each added distortion
    over its runs (levels x seeds), with and without the reference."""
    levels = " ".join(str(v) for v in report["levels"])
    lines = [f"# Feed references, split `{report['split']}` (weights: {report['weights']})", "",
             f"Reference rule: {report['reference_margin']:g} logits above the window's "
             f"{'95th percentile' if report['reference_statistic'] == 'high' else 'median'}, only for a distortion "
             f"the window itself reaches the threshold on; never for {', '.join(report['unreferenced']) or 'none'}; "
             f"absolute {report['absolute']:g}. On clean clips each distortion is added to the scored part at "
             f"levels {levels}, {report['seeds']} runs per level (training.distortions: a generator and its "
             f"parameters drawn per run, first seed {report['seed']}).", "",
             "| clip | reference | scored | distortion | runs | reference | frames with any alarm | "
             "false events / 10 min | recall | recall change | first event after (s, median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def pct(v):
        return "" if v is None else f"{v:.1%}"

    def median_first(runs):
        firsts = sorted(float("inf") if r.get("first_event_after_s") is None else r["first_event_after_s"] for r in runs)
        m = firsts[len(firsts) // 2]
        return "never" if m == float("inf") else f"{m:g}"

    for case in report["cases"]:
        ref = f"{case['reference'][0]:g}-{case['reference'][1]:g} s"
        start, end = case["scored"]
        scored = f"{start:g}-{'' if end is None else f'{end:g}'} s"
        groups: dict = {}
        for run in case["runs"]:
            groups.setdefault(run["added"], []).append(run)
        for added, runs in groups.items():
            what = added and f"{added} (added)" or case["present"] or "—"
            without = [r for r in runs if not r["with_reference"]]
            with_ref = [r for r in runs if r["with_reference"]]
            for flag, rs in ((False, without), (True, with_ref)):
                label = "with" if flag else "without"
                if flag and any(r.get("refused") for r in rs):
                    label += " (refused)"
                cells = ["", "", "", "", ""]
                if "any_alarm" in rs[0]:
                    fev = rs[0].get("false_events_per_10min")
                    cells[:2] = [pct(rs[0]["any_alarm"]), "" if fev is None else f"{fev:g}"]
                if "recall" in rs[0]:
                    frames = sum(r["frames"] for r in rs)
                    cells[2] = pct(sum(r["recall"] * r["frames"] for r in rs) / frames if frames else None)
                    if flag:
                        change = pooled_recall_changes([(0, b, a) for a, b in zip(rs, without)])
                        cells[3] = f"{change.get(0, 0.0):+.3f}"
                    cells[4] = median_first(rs)
                lines.append(f"| `{case['path']}` | {ref} | {scored} | {what} | {len(rs)} | {label} | " + " | ".join(cells) + " |")
    if "grid" in report:
        chosen = choose_reference_setting(report["grid"])
        lines += ["", f"Candidate reference settings (recall, pooled over a clip's runs of one distortion, may fall at most {RECALL_LOSS_ALLOWED} on any clip):", "",
                  "| margin (logits) | statistic | worst recall change | clean frames with any alarm | |", "|---|---|---|---|---|"]
        for r in report["grid"]:
            clean = "" if r["clean_any_alarm"] is None else f"{r['clean_any_alarm']:.1%}"
            lines.append(f"| {r['margin']:g} | {r['statistic']} | {r['worst_recall_change']:+.3f} | {clean} | "
                         f"{'**chosen**' if r is chosen else ''} |")
        if chosen is None:
            lines += ["", "No setting keeps every recall."]
    return "\n".join(lines) + "\n"
