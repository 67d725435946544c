"""`scopewatch evaluate`: how well a checkpoint identifies distortions on a labelled clip folder.

DATA is a folder made by `scopewatch synth` (labels.csv with levels and quality) or an LVQ-style
folder (a labels CSV of multi-label strings; presence only). Each clip is decoded with PyAV and
`frames_per_clip` frames spread over it are analysed; the clip's decision is the mean presence
probability per distortion (>= 0.5), its severity the mean predicted severity, its quality the
mean predicted quality, like the LVQ challenge scored whole clips. Reports the ICIP 2020 metrics
(micro-F1 over all clips and over single-distortion clips, exact-match accuracy), per-distortion
precision/recall/F1, severity accuracy (exact and within one level), quality SROCC/PLCC/KROCC/RMSE
against the FR target and its mean error by distortion (clean and single-distortion clips), and
model throughput. Writes JSON (with each clip's decisions) and a Markdown report.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from model.decision import Decision
from model.predict import Predictor
from model.tasks import severity_to_level
from training.labels import LabelledItem, LabelError, read_labels_csv, read_lvq
from training.metrics import identification_metrics, quality_metrics


def find_labels(data: Path, tasks) -> list[LabelledItem]:
    data = Path(data)
    if data.is_file():
        csvs = [data]
    elif (data / "labels.csv").exists():
        csvs = [data / "labels.csv"]
    else:
        csvs = sorted(data.glob("*.csv"))
    if not csvs:
        raise LabelError(f"{data}: no labels.csv or LVQ labels CSV found")
    try:
        return read_labels_csv(csvs[0], tasks)
    except LabelError:
        return read_lvq(csvs[0])


def sample_frames(path: Path, count: int) -> list[np.ndarray]:
    """`count` RGB frames spread evenly over a clip (decoded in order; clips are short)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path}: no video frames")
    idx = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return [frames[i] for i in idx]


def true_presence(items: list[LabelledItem], tasks) -> np.ndarray:
    """(clips, tasks) booleans: which distortions each clip's labels say are present."""
    return np.array([[it.presence(t) for t in tasks] for it in items], bool)


def clip_predictions(predictor: Predictor, items: list[LabelledItem], frames_per_clip: int = 8,
                     progress: bool = True) -> dict[str, np.ndarray | float]:
    """Per clip, the mean presence probability and severity per task and the mean quality over
    `frames_per_clip` frames; also the frames analysed and the model's time on them."""
    probs, sevs, quals, analysed, infer_s = [], [], [], 0, 0.0
    tasks = predictor.tasks
    for item in tqdm(items, desc="clips", unit="clip", disable=not progress):
        frames = sample_frames(item.path, frames_per_clip)
        t = time.perf_counter()
        preds = predictor.predict(frames)
        infer_s += time.perf_counter() - t
        analysed += len(frames)
        probs.append([np.mean([p.probabilities[k] for p in preds]) for k in tasks])
        sevs.append([np.mean([p.severities[k] for p in preds]) for k in tasks])
        quals.append(np.mean([p.quality for p in preds]))
    return {"probability": np.array(probs), "severity": np.array(sevs), "quality": np.array(quals),
            "frames": analysed, "seconds": infer_s}


def quality_bias(items: list[LabelledItem], quals: np.ndarray, tasks) -> dict[str, dict]:
    """Mean predicted quality minus its target over the clean clips (`none`) and over the clips of
    each single distortion: whether the score's scale differs by distortion (the same split on real
    views is training.sensitivity's)."""
    groups: dict[str, list[float]] = {"none": [], **{t: [] for t in tasks}}
    for item, q in zip(items, quals):
        present = [t for t in tasks if item.presence(t)]
        if len(present) <= 1:
            groups[present[0] if present else "none"].append(float(q) - item.quality)
    return {name: {"clips": len(e), "bias": float(np.mean(e)) if e else None} for name, e in groups.items()}


def evaluate(predictor: Predictor, data: Path, frames_per_clip: int = 8, progress: bool = True,
             decision: Decision | None = None) -> dict:
    tasks = predictor.tasks
    decision = decision or Decision()
    items = find_labels(data, tasks)
    clips = clip_predictions(predictor, items, frames_per_clip, progress)
    prob, sev, quals = clips["probability"], clips["severity"], clips["quality"]
    y_true = true_presence(items, tasks)
    y_pred = np.array([[decision.present(t, prob[i, j]) for j, t in enumerate(tasks)] for i in range(len(items))])
    known = all(v is not None for it in items for v in it.levels.values())
    report = {"data": str(data), "clips": len(items), "frames_per_clip": frames_per_clip, "model": predictor.name,
              "tasks": list(tasks)}
    if known:
        true_levels = np.array([[it.levels[t] for t in tasks] for it in items])
        pred_levels = np.where(y_pred, np.maximum(np.vectorize(severity_to_level)(sev), 1), 0)
        report |= identification_metrics(y_true, y_pred, tasks, true_levels, pred_levels)
    else:
        report |= identification_metrics(y_true, y_pred, tasks)
    targets = [it.quality for it in items]
    if all(q is not None for q in targets):
        report["quality"] = quality_metrics(np.array(quals), np.array(targets))
        report["quality"]["bias"] = quality_bias(items, quals, tasks)
    # Per clip, so that two models' figures on this set can be compared clip by clip (`scopewatch ship`).
    report["decisions"] = {"clips": [it.path.name for it in items], "present": y_true.astype(int).tolist(),
                           "called": y_pred.astype(int).tolist()}
    report["frames_per_s"] = clips["frames"] / clips["seconds"] if clips["seconds"] else float("nan")
    report["device"], report["precision"] = str(predictor.device), predictor.precision
    return report


def markdown(report: dict, title: str = "ScopeWatch evaluation") -> str:
    def f(x):
        return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"

    lines = [f"# {title}", "", f"Data: `{report['data']}` — {report['clips']} clips, {report['frames_per_clip']} "
             f"frames per clip; model `{report['model']}` on {report['device']} "
             f"({report.get('precision', 'float32')}).", "",
             "| metric | value |", "|---|---|",
             f"| micro-F1 (all clips) | {f(report['micro_f1'])} |",
             f"| micro-F1 (single-distortion clips) | {f(report['micro_f1_single'])} |",
             f"| exact-match accuracy | {f(report['exact_match'])} |"]
    if "severity_exact" in report:
        lines += [f"| severity exact | {f(report['severity_exact'])} |",
                  f"| severity within one level | {f(report['severity_within_one'])} |"]
    if "quality" in report:
        q = report["quality"]
        lines += [f"| quality SROCC | {f(q['srocc'])} |", f"| quality PLCC | {f(q['plcc'])} |",
                  f"| quality KROCC | {f(q['krocc'])} |", f"| quality RMSE | {f(q['rmse'])} |"]
    lines += [f"| frames/s (model, batch of {report['frames_per_clip']}) | {report['frames_per_s']:.1f} |", "",
              "| distortion | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for t, m in report["per_task"].items():
        lines.append(f"| {t} | {f(m['precision'])} | {f(m['recall'])} | {f(m['f1'])} | {m['support']} |")
    if "recall_by_level" in report:
        levels = sorted({int(lv) for by in report["recall_by_level"].values() for lv in by})
        lines += ["", "Recall by true level (1 = faintest; clips at that level in brackets):", "",
                  "| distortion | " + " | ".join(f"level {lv}" for lv in levels) + " |", "|---" * (len(levels) + 1) + "|"]
        for t, by in report["recall_by_level"].items():
            cells = [f"{f(by[str(lv)]['recall'])} ({by[str(lv)]['support']})" if str(lv) in by else "" for lv in levels]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    if "bias" in report.get("quality", {}):
        lines += ["", "Quality score minus its target, on the clean clips and on the clips of one distortion "
                  "(clips in brackets):", "", "| distortion | score - target |", "|---|---|"]
        for name, b in report["quality"]["bias"].items():
            lines.append(f"| {name} | {'n/a' if b['bias'] is None else format(b['bias'], '+.1f')} ({b['clips']}) |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / "evaluation.json", out / "evaluation.md"
    j.write_text(json.dumps(report, indent=1))
    m.write_text(markdown(report))
    return j, m
