"""Labels of distorted-video data sets, read into one record type.

* ScopeWatch / generic CSV: a `file` column plus one column per distortion (level 0..4 or 0/1),
  optionally `quality`.
* LVQ / ICIP 2020 layout: a CSV of `file` (or `video`) and a multi-label string over the codes
  1..5 = noise, smoke, uneven illumination, defocus blur, motion blur ("2,5"; "" or "0" = clean).
  Levels are not given there: present distortions get level None.
* The first seed's pickles: `{type}_{db}.pickle` = dict filename -> 0/1 per distortion and
  `partition_{db}.pickle` = dict with `train`/`test` (and `complete`) lists. They are read with an
  unpickler that refuses every global, so a pickle can only build plain dicts, lists, strings and
  numbers; anything else is an error rather than code execution.
"""
from __future__ import annotations

import csv
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from model.tasks import DEFAULT_TASKS, NUM_LEVELS

LVQ_CODES = {str(i + 1): name for i, name in enumerate(DEFAULT_TASKS)}


@dataclass(frozen=True)
class LabelledItem:
    path: Path
    levels: dict[str, int | None]  # 0 absent, 1..4 level, None present at an unknown level
    quality: float | None = None
    split: str | None = None
    extra: dict = field(default_factory=dict)

    def presence(self, task: str) -> bool:
        return self.levels.get(task, 0) != 0


class LabelError(ValueError):
    pass


def read_labels_csv(path: Path, tasks: tuple[str, ...] = DEFAULT_TASKS) -> list[LabelledItem]:
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in ("file", *tasks) if c not in cols]
        if missing:
            raise LabelError(f"{path}: missing column(s) {', '.join(missing)}")
        items = []
        for line, row in enumerate(reader, start=2):
            try:
                levels = {t: int(float(row[t])) for t in tasks}
                quality = float(row["quality"]) if row.get("quality") not in (None, "") else None
            except ValueError as e:
                raise LabelError(f"{path}:{line}: {e}") from None
            bad = {t: v for t, v in levels.items() if not 0 <= v <= NUM_LEVELS}
            if bad:
                raise LabelError(f"{path}:{line}: levels must be 0..{NUM_LEVELS}, got {bad}")
            items.append(LabelledItem(path.parent / row["file"], levels, quality))
    return items


def parse_lvq_label(text: str) -> dict[str, int | None]:
    codes = [c for c in text.replace(";", ",").replace(" ", ",").split(",") if c and c != "0"]
    unknown = [c for c in codes if c not in LVQ_CODES]
    if unknown:
        raise LabelError(f"unknown LVQ distortion code(s) {unknown} in {text!r} (codes are 1..5)")
    present = {LVQ_CODES[c] for c in codes}
    return {t: (None if t in present else 0) for t in DEFAULT_TASKS}


def read_lvq(path: Path) -> list[LabelledItem]:
    """An LVQ-style labels CSV (`file`/`video`, `label`/`labels`); videos are relative to it."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        fcol = next((c for c in ("file", "video") if c in cols), None)
        lcol = next((c for c in ("labels", "label") if c in cols), None)
        if not fcol or not lcol:
            raise LabelError(f"{path}: need a file/video column and a label(s) column, got {cols}")
        return [LabelledItem(path.parent / row[fcol], parse_lvq_label(row[lcol] or "")) for row in reader]


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise LabelError(f"refusing to load {module}.{name} from a label pickle: only plain dicts, "
                         "lists, strings and numbers are allowed")


def load_plain_pickle(path: Path):
    try:
        data = _PlainDataUnpickler(io.BytesIO(Path(path).read_bytes())).load()
    except LabelError:
        raise
    except Exception as e:
        raise LabelError(f"{path}: not a readable pickle ({e})") from None
    _check_plain(data, path)
    return data


def _check_plain(obj, path, depth=0):
    if depth > 4:
        raise LabelError(f"{path}: nested too deeply for a label file")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, path, depth + 1)
            _check_plain(v, path, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, path, depth + 1)
    elif not isinstance(obj, (str, int, float, bool)):
        raise LabelError(f"{path}: unexpected {type(obj).__name__} in a label file")


def read_seed_pickles(folder: Path, db: str, tasks: tuple[str, ...], image_dir: Path | None = None) -> list[LabelledItem]:
    """The first seed's per-distortion pickles for data base `db` (e.g. `noise_tid2013.pickle`)."""
    folder = Path(folder)
    per_task = {}
    for t in tasks:
        p = folder / f"{t}_{db}.pickle"
        if not p.exists():
            raise LabelError(f"{p}: missing label file for {t}")
        d = load_plain_pickle(p)
        if not isinstance(d, dict) or not all(isinstance(k, str) and v in (0, 1) for k, v in d.items()):
            raise LabelError(f"{p}: expected a dict filename -> 0/1")
        per_task[t] = d
    split_of = {}
    part = folder / f"partition_{db}.pickle"
    if part.exists():
        d = load_plain_pickle(part)
        if not isinstance(d, dict) or not all(isinstance(v, list) for v in d.values()):
            raise LabelError(f"{part}: expected a dict of lists (train/test/complete)")
        for split in ("train", "test"):
            for name in d.get(split, []):
                split_of[name] = split
    names = sorted(set().union(*per_task.values()))
    base = Path(image_dir) if image_dir else folder
    return [LabelledItem(base / n, {t: (None if per_task[t].get(n, 0) else 0) for t in tasks}, split=split_of.get(n))
            for n in names]
