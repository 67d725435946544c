"""The real-footage check: its splits never mix, its arithmetic, and a run on the val split."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, surgical
from training.realcheck import ITEMS, Observed, RealItem, items, score
from training.surgical import TRAIN_DEGRADED, TRAIN_SOURCES, VAL_SOURCES

TASKS = ("noise", "smoke")


def test_splits_are_kept_apart():
    val, ev = items("val"), items("eval")
    assert val and ev and {i.split for i in val} == {"val"} and {i.split for i in ev} == {"eval"}
    # The data README's val folders, or train-split clips that training never sees (training.surgical).
    trained_on = [s.spec.split("@")[0] for s in TRAIN_SOURCES + TRAIN_DEGRADED]
    assert all(i.path.startswith("val_") or i.path.startswith("train_more/cholec80_clips/") for i in val)
    assert not any(i.path in trained_on for i in val)
    assert not any(i.path.startswith(("val_", "train")) for i in ev)
    assert len(ITEMS) == len(val) + len(ev)
    with pytest.raises(ValueError):
        items("train")


def test_real_smoke_for_training_is_what_the_clean_content_left_out_and_no_val_footage():
    assert TRAIN_DEGRADED and {s.present for s in TRAIN_DEGRADED} == {"smoke"}
    assert all(s.present is None for s in TRAIN_SOURCES + VAL_SOURCES)
    clean = {s.spec.split("@")[0].split("[")[0]: s for s in TRAIN_SOURCES}
    val = {s.spec.split("@")[0] for s in VAL_SOURCES}
    for source in TRAIN_DEGRADED:
        path, _, window = source.spec.partition("@")
        assert path not in val
        if path.endswith(".png"):  # a still screened out of its folder's clean content
            folder, name = path.rsplit("/", 1)
            assert name.startswith(clean[folder].exclude)
        else:  # seconds outside the clean window of the same clip
            start, end = (float(v) for v in window.split(":"))
            c0, _, c1 = clean[path].spec.partition("@")[2].partition(":")
            assert end <= float(c0 or 0) or (c1 and start >= float(c1))


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
    by_item = {(i["path"], i["window"]): i for i in report["items"]}
    assert set(by_item) == {(i.path, i.window) for i in items("val")}
    smoky = by_item["val_smoke/smoke_builds_480p60_b.mp4", "2.5- s"]
    assert 8 <= smoky["frames"] <= 10 and smoky["clips"] == 1 and 0.0 <= smoky["recall"] <= 1.0  # 1.9 s at 5 fps
    clear = by_item["val_smoke/smoke_builds_480p60_a.mp4", "0-1 s"]
    assert clear["kind"] == "clean" and 4 <= clear["frames"] <= 6 and "false_events_per_10min" in clear
    assert by_item["val_smoke/pairs_added_smoke/*output_*", ""]["frames"] == 25
    assert "| item |" in (tmp_path / "real_val.md").read_text()


def test_check_real_without_the_data_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "apps.cli", "check-real", "val", "--data", str(tmp_path / "none")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no such folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def val_report(clean_alarm=0.0, events=0, recall=0.9):
    return {"items": [
        {"kind": "clean", "path": "a.mp4", "window": "0-1 s", "frames": 10, "any_alarm": clean_alarm, "seconds": 60.0,
         "events": events},
        {"kind": "clean", "path": "frames/*", "window": "", "frames": 30, "any_alarm": 0.0},
        {"kind": "smoke", "path": "b.mp4", "window": "2.5- s", "frames": 9, "recall": recall}]}


def test_the_shipping_rule_pools_clean_items_and_needs_every_distortion_detected():
    from training.shipping import checks, clean_figures, rank_key

    alarm, per_10min, frames, seconds = clean_figures(val_report(clean_alarm=0.4, events=1))
    assert (alarm, per_10min, frames, seconds) == (pytest.approx(0.1), 10.0, 40, 60.0)
    synth, shipped = {"micro_f1": 0.95, "exact_match": 0.80}, {"micro_f1": 0.955, "exact_match": 0.82}
    good = checks(val_report(), synth, shipped)
    assert [c.passed for c in good] == [True, True, True, True, False]  # exact match 0.02 below the shipped
    assert all(c.passed for c in checks(val_report(), synth, None))  # nothing shipped yet: real rules only
    failing = {c.rule.split(" (")[0].split(",")[0]: c.passed for c in checks(val_report(0.4, 1, 0.3), synth, None)}
    assert failing == {"val clean frames with any alarm": False, "val clean false events per 10 min": False,
                       "val smoke recall": False}
    assert rank_key(val_report(0.0, recall=0.9)) < rank_key(val_report(0.0, recall=0.5)) < rank_key(val_report(0.2))


def test_ship_scores_candidates_on_val_and_the_test_set_and_installs_only_a_passing_one(tmp_path, tiny_weights):
    import torch
    from model import create_model, load_checkpoint, save_checkpoint

    data = surgical("val_smoke").parent
    testset = tmp_path / "testset"
    subprocess.run([sys.executable, "-m", "apps.cli", "synth", "--out", str(testset), "--clips", "3", "--seconds", "0.4",
                    "--fps", "5", "-q"], cwd=ROOT, check=True, capture_output=True, timeout=120)

    def ship(candidate, out, installed=None):
        installed = installed or out / "shipped.pt"
        r = subprocess.run([sys.executable, "-m", "apps.cli", "ship", str(candidate), "--testset", str(testset),
                            "--shipped", str(tiny_weights), "--data", str(data), "--out", str(out), "--install",
                            str(installed), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        return r, json.loads((out / "shipping.json").read_text()), installed

    # A rebuild of the shipped weights: the same weights with its own metadata (as `make weights` writes).
    rebuilt = save_checkpoint(load_checkpoint(tiny_weights), tmp_path / "rebuilt.pt", metrics={"step": 7})
    in_place = tmp_path / "in_place.pt"
    shutil.copyfile(tiny_weights, in_place)
    # Clip by clip the same, and chosen as such whatever it fails; the file in place is kept byte for byte.
    r, record, installed = ship(rebuilt, tmp_path / "same", installed=in_place)
    assert r.returncode == 0 and "kept" in r.stderr and "reproduced" in r.stderr, r.stderr
    assert in_place.read_bytes() == tiny_weights.read_bytes() != rebuilt.read_bytes()
    r, record, installed = ship(rebuilt, tmp_path / "same")
    [candidate] = record["candidates"]
    assert {c["rule"].split(" (")[0].split(",")[0] for c in candidate["checks"]} >= {
        "val clean frames with any alarm", "val smoke recall", "synthetic test micro_f1"}
    assert record["shipped"]["weights"] == str(tiny_weights)  # the weights in place are scored the same way
    same = candidate["against_shipped"]["micro_f1"]
    assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    assert r.returncode == 0 and installed.exists() and "reproduced" in r.stderr, r.stderr
    assert "(the shipped weights themselves)" in (tmp_path / "same" / "shipping.md").read_text()

    torch.manual_seed(1)
    other = save_checkpoint(create_model("scopewatch_lap5_small"), tmp_path / "other.pt")
    r, record, installed = ship(other, tmp_path / "other")
    passed = record["candidates"][0]["failed"] == 0
    assert r.returncode == (0 if passed else 1), r.stderr
    assert installed.exists() == passed
    assert ("nothing installed" in r.stderr) != passed
    assert "Shipping rule" in (tmp_path / "other" / "shipping.md").read_text()


def test_before_and_after_table_matches_items_by_path_and_window():
    from training.realcheck import compare_markdown

    before = {"weights": "old.pt", "items": [{"path": "a.mp4", "window": "0-1 s", "kind": "clean", "any_alarm": 0.5,
                                              "false_events_per_10min": 20.0}]}
    after = {"split": "val", "weights": "new.pt", "items": [
        {"path": "a.mp4", "window": "0-1 s", "kind": "clean", "any_alarm": 0.0, "false_events_per_10min": 0.0},
        {"path": "b/*", "window": "", "kind": "smoke", "recall": 0.75}]}
    text = compare_markdown(after, before)
    assert "| `a.mp4` 0-1 s | clean | frames with any alarm | 50.0% | 0.0% |" in text
    assert "| `a.mp4` 0-1 s | clean | false events / 10 min | 20 | 0 |" in text
    assert "| `b/*` | smoke | recall | — | 75.0% |" in text


def test_worst_frames_keeps_the_most_wrong_and_says_why():
    import numpy as np
    from training.realcheck import WorstFrames, wrongness

    assert wrongness(RealItem("val", "x", None), {"noise": 0.2, "smoke": 0.7}) == (0.7, "clean, smoke 0.70")
    assert wrongness(RealItem("val", "x", "smoke"), {"noise": 0.9, "smoke": 0.25}) == (0.75, "smoke 0.25")
    worst = WorstFrames(keep=3, tile_width=100)
    for i in range(10):
        worst.add(i / 10, np.full((50, 100, 3), i * 20, np.uint8), f"frame {i}")
    assert sorted(round(w, 1) for w, _, _ in worst.frames) == [0.7, 0.8, 0.9] and worst.seen == 10
    sheet = worst.sheet(columns=2)
    assert sheet.shape == (100, 200, 3)
    assert sheet[45, 10].tolist() == [180] * 3  # most wrong first, captions on a black band at the top
    assert WorstFrames().sheet() is None


def test_choosing_takes_a_passing_candidate_else_only_one_failing_less_than_the_shipped():
    from training.shipping import choose

    def c(name, failed, rank=(0.0, -0.5)):
        return {"weights": name, "failed": failed, "rank": list(rank),
                "checks": [{"rule": f"rule {i}", "passed": False} for i in range(failed)]}
    assert choose([c("a", 1), c("b", 0, (0.1, 0)), c("c", 0, (0.0, 0))], c("old", 3)) == ("c", "passes every check")
    chosen, why = choose([c("a", 2), c("b", 1)], c("old", 5))
    assert chosen is None and "fails 1" in why  # not asked to take a failing one
    chosen, why = choose([c("a", 2), c("b", 1)], c("old", 5), fewer_failures=True)
    assert chosen == "b" and "rule 0" in why and "the shipped weights 5" in why
    chosen, why = choose([c("a", 2, (0.0, -0.445))], c("old", 2, (0.0, -0.451)), fewer_failures=True)
    assert chosen is None and "without ranking better on val" in why and "mean recall 0.445 against 0.451" in why
    chosen, why = choose([c("a", 2, (0.0, -0.6))], c("old", 2, (0.0, -0.5)), fewer_failures=True)
    assert chosen == "a" and "ranks better on val (mean recall 0.600 against 0.500)" in why
    chosen, why = choose([c("a", 2, (0.1, -0.9))], c("old", 2, (0.0, -0.5)), fewer_failures=True)
    assert chosen is None  # more clean alarms: recall does not buy them
    chosen, why = choose([c("a", 2, (0.0, -0.3))], c("old", 2, (0.177, -0.5)), fewer_failures=True)
    assert chosen == "a" and "ranks better on val (clean frames alarmed 0.0% against 17.7%)" in why  # quiet first
    same, other = dict(c("rebuilt", 2), sha256="ab" * 32), dict(c("other", 2, (0.0, -0.6)), sha256="cd" * 32)
    chosen, why = choose([other, same], dict(c("old", 2), sha256="ab" * 32))
    assert chosen == "rebuilt" and "reproduced" in why  # the weights shipped, rebuilt: never "nothing installed"
    assert choose([dict(c("a", 0), sha256="cd" * 32), same], dict(c("old", 2), sha256="ab" * 32))[0] == "a"


def test_the_shipping_report_says_which_machine_trained_each_checkpoint():
    from training.provenance import of_checkpoint
    from training.shipping import markdown

    epyc = {"processor": "AMD EPYC", "device": "cpu", "precision": "bfloat16", "compiled": True, "threads": 1,
            "torch": "2.13.0+cpu"}
    shipped = {"weights": "old.pt", "failed": 0, "checks": [], **of_checkpoint({"sha256": "ab" * 32, "extra": {}})}
    rebuilt = {"weights": "new.pt", "failed": 0, "checks": [], **of_checkpoint({"sha256": "ab" * 32, "extra": {"machines": [epyc]}})}
    text = markdown([rebuilt], shipped, "new.pt", "why")
    assert "Weights `abababababab`; trained on: not recorded." in text
    assert ("Weights `abababababab` (the shipped weights themselves); trained on: AMD EPYC "
            "(cpu, bfloat16, compiled, 1 thread(s), torch 2.13.0+cpu).") in text


def test_a_reference_run_is_scored_on_its_part_after_the_window():
    from training.realcheck import score_reference_run
    frames = [(t / 5, ["noise"] if t in (15, 16) else []) for t in range(50)]  # 0..9.8 s
    clean = score_reference_run(frames, [("noise", 3.0, 3.2)], (3.0, 8.0), None)
    assert clean["frames"] == 25 and clean["any_alarm"] == 0.08 and clean["false_events_per_10min"] == pytest.approx(125.0, abs=0.1)
    hit = [(t / 5, ["smoke"] if t >= 20 else []) for t in range(50)]
    found = score_reference_run(hit, [("smoke", 4.0, 4.6), ("noise", 1.0, 1.2)], (3.0, None), "smoke")
    assert found["recall"] == pytest.approx(30 / 35, abs=1e-3) and found["first_event_after_s"] == 1.6
    assert score_reference_run(hit, [], (3.0, None), "noise")["first_event_after_s"] is None


def test_the_reference_setting_keeps_every_recall_with_the_fewest_clean_alarms():
    from training.realcheck import choose_reference_setting
    rows = [{"margin": 0.5, "statistic": "high", "worst_recall_change": 0.0, "clean_any_alarm": 0.2},
            {"margin": 1.0, "statistic": "high", "worst_recall_change": -0.01, "clean_any_alarm": 0.1},
            {"margin": 2.0, "statistic": "high", "worst_recall_change": -0.3, "clean_any_alarm": 0.0}]
    assert choose_reference_setting(rows)["margin"] == 1.0
    assert choose_reference_setting(rows[2:]) is None


def test_recall_changes_are_pooled_over_a_clips_runs():
    # One frame lost in one run of nine is 1/135 of that clip's recall, not 1/15 of a run's.
    from training.realcheck import pooled_recall_changes
    full, one_less = {"frames": 15, "recall": 1.0}, {"frames": 15, "recall": 14 / 15}
    runs = [(("a", "noise"), full, one_less)] + [(("a", "noise"), full, full)] * 8
    runs += [(("a", "smoke"), {"frames": 10, "recall": 0.5}, {"frames": 10, "recall": 0.2})]
    changes = pooled_recall_changes(runs)
    assert changes[("a", "noise")] == pytest.approx(-1 / 135, abs=1e-4)
    assert changes[("a", "smoke")] == pytest.approx(-0.3)


def test_mask_caption_paints_out_a_yellow_caption_in_the_corner_only(content_frame):
    from training.realcheck import mask_caption
    h, w = content_frame.shape[:2]
    captioned = content_frame.copy()
    cv2.putText(captioned, "Original", (int(0.65 * w), int(0.95 * h)), cv2.FONT_HERSHEY_TRIPLEX, 1.2, (255, 230, 0), 2)
    cv2.circle(captioned, (w // 4, h // 4), 12, (255, 230, 0), -1)  # yellow in the scene stays
    masked = mask_caption(captioned)
    corner = (slice(int(0.78 * h), h), slice(int(0.6 * w), w))
    err_before = np.abs(captioned[corner].astype(int) - content_frame[corner]).mean()
    err_after = np.abs(masked[corner].astype(int) - content_frame[corner]).mean()
    assert err_after < 0.3 * err_before
    assert (masked[h // 4, w // 4] == (255, 230, 0)).all()
    assert mask_caption(content_frame) is content_frame
