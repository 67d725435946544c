import csv

import av
import numpy as np
import pytest

from model.tasks import DEFAULT_TASKS
from training.synth import plan_clips

from conftest import surgical
from helpers import run_cli


def read_labels(folder):
    with open(folder / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_clip(path, frames, size):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        decoded = list(c.decode(s))
    assert len(decoded) == frames
    assert (decoded[0].width, decoded[0].height) == size


def test_plan_mixes_clean_single_levels_and_combinations():
    plans = plan_clips(60, DEFAULT_TASKS, 3, seed=1)
    kinds = [sum(v > 0 for v in p.levels.values()) for p in plans]
    assert kinds.count(0) == 9 and kinds.count(1) == 27 and all(k in (2, 3) for k in kinds if k > 1)
    singles = {(t, lvl) for p in plans for t, lvl in p.levels.items() if sum(v > 0 for v in p.levels.values()) == 1 and lvl}
    assert len(singles) == 20  # every distortion at every level
    combos = {tuple(t for t, v in p.levels.items() if v) for p in plans}
    assert ("noise", "smoke", "uneven_illumination") in combos
    assert plan_clips(60, DEFAULT_TASKS, 3, seed=1) == plans


def test_synth_on_procedural_content(tmp_path):
    out = tmp_path / "proc"
    r = run_cli("synth", "--out", str(out), "--clips", "8", "--seconds", "0.4", "--size", "320x180", "--seed", "3", "-q")
    assert r.returncode == 0, r.stderr
    rows = read_labels(out)
    assert list(rows[0]) == ["file", *DEFAULT_TASKS, "quality"] and len(rows) == 8
    plans = {p.file: p for p in plan_clips(8, DEFAULT_TASKS, 8, seed=3)}
    for row in rows:
        check_clip(out / row["file"], 10, (320, 180))
        assert {t: int(row[t]) for t in DEFAULT_TASKS} == plans[row["file"]].levels
        q = float(row["quality"])
        clean = all(int(row[t]) == 0 for t in DEFAULT_TASKS)
        assert q == pytest.approx(100.0) if clean else 0 < q < 99.5


def test_synth_on_real_frames(tmp_path):
    out = tmp_path / "real"
    r = run_cli("synth", "--out", str(out), "--clips", "5", "--seconds", "0.2",
                "--content", str(surgical("train_clean")), "--seed", "1", "-q")
    assert r.returncode == 0, r.stderr
    rows = read_labels(out)
    assert len(rows) == 5
    for row in rows:
        check_clip(out / row["file"], 5, (640, 360))
    # Heavier distortion, lower quality: the most distorted clip scores below a clean one.
    total = [sum(int(row[t]) for t in DEFAULT_TASKS) for row in rows]
    q = [float(row["quality"]) for row in rows]
    assert q[int(np.argmax(total))] < max(q)


@pytest.mark.parametrize("args, message", [
    (["--clips", "0"], "positive"),
    (["--size", "640x"], "640x360"),
    (["--size", "641x360"], "even"),
    (["--seconds", "abc"], "positive"),
    (["--content", "/no/such/folder"], "no such file"),
    (["--tasks", "noise,smok"], "unknown task"),
])
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, args, message):
    r = run_cli("synth", "--out", str(tmp_path / "o"), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


def test_help_explains_the_labels():
    r = run_cli("synth", "--help")
    assert r.returncode == 0 and "labels.csv" in r.stdout and "--content" in r.stdout


def test_demo_headless_plays_the_sample_live(tmp_path):
    r = run_cli("demo", "--no-browser", "--out", str(tmp_path), "--seconds", "4", "--fps", "5",
                "--csv", str(tmp_path / "demo.csv"))
    assert r.returncode == 0, r.stderr
    assert "smoke" in r.stdout and "ScopeWatch found" in r.stdout and "% of time" in r.stdout
    check_clip(tmp_path / "demo.mp4", 100, (640, 360))
    with open(tmp_path / "demo.csv", newline="") as f:
        assert len([x for x in csv.DictReader(f) if x["smoke"] != ""]) == 20  # 5 fps for 4 s, in real time
