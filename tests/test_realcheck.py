"""The real-footage check: its splits never mix, its arithmetic, and a run on the val split."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, surgical
from training.realcheck import ITEMS, Observed, RealItem, items, score

TASKS = ("noise", "smoke")


def test_splits_are_kept_apart():
    val, ev = items("val"), items("eval")
    assert val and ev and {i.split for i in val} == {"val"} and {i.split for i in ev} == {"eval"}
    assert all(i.path.startswith("val_") for i in val)  # the data README's val folders, nothing else
    assert not any(i.path.startswith(("val_", "train")) for i in ev)
    assert len(ITEMS) == len(val) + len(ev)
    with pytest.raises(ValueError):
        items("train")


def test_clean_items_count_alarmed_frames_and_false_events_per_ten_minutes():
    item = RealItem("val", "x.mp4", None)
    clip = Observed([[], ["noise"], ["noise", "smoke"], []], 60.0, [("noise", 1.0, 3.0)])
    r = score(item, [(Path("x.mp4"), clip)], TASKS)
    assert r["any_alarm"] == 0.5 and r["per_task"] == {"noise": 0.5, "smoke": 0.25}
    assert r["events"] == 1 and r["false_events_per_10min"] == 10.0


def test_degraded_items_count_recall_and_clips_with_an_event():
    item = RealItem("val", "clips/*", "smoke")
    a = Observed([["smoke"], ["smoke"], []], 2.0, [("smoke", 0.0, 1.0)])
    b = Observed([[], [], ["noise"]], 2.0, [])
    frame = Observed([["smoke"]], 0.0, [])
    r = score(item, [(Path("a"), a), (Path("b"), b), (Path("f.png"), frame)], TASKS)
    assert r["recall"] == pytest.approx(3 / 7, abs=1e-4)
    assert (r["clips"], r["clips_with_event"], r["clips_mostly_flagged"]) == (2, 1, 1)
    assert r["other_alarms"] == {"noise": pytest.approx(1 / 7, abs=1e-4)}


def test_check_real_val_through_the_monitor(tmp_path):
    data = surgical("val_smoke").parent
    r = subprocess.run([sys.executable, "-m", "apps.cli", "check-real", "val", "--data", str(data), "--out",
                        str(tmp_path), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "real_val.json").read_text())
    by_path = {i["path"]: i for i in report["items"]}
    assert set(by_path) == {i.path for i in items("val")}
    clip = by_path["val_smoke/smoke_builds_480p60_a.mp4"]
    assert clip["frames"] >= 30 and clip["clips"] == 1 and 0.0 <= clip["recall"] <= 1.0  # 7 s at 5 fps
    assert by_path["val_smoke/pairs_added_smoke/*output_*"]["frames"] == 25
    assert "| item |" in (tmp_path / "real_val.md").read_text()


def test_check_real_without_the_data_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "apps.cli", "check-real", "val", "--data", str(tmp_path / "none")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no such folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1
