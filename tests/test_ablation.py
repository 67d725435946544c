"""The one-factor ablation table (training/ablation.py) from the reports its runs write."""
import json

from training.ablation import COLUMNS, main


def _report(run, step, smoke_recall, holdout):
    out = run / f"report_step{step}"
    (out / "evaluation").mkdir(parents=True)
    clean = {"kind": "clean", "frames": 10, "any_alarm": 0.1}
    (out / "real_val.json").write_text(json.dumps({"items": [
        clean, {**clean, "frames": 30, "any_alarm": 0.0},
        {"kind": "smoke", "recall": smoke_recall}, {"kind": "smoke", "recall": 1.0},
        {"kind": "uneven_illumination", "recall": 0.5}]}))
    (out / "real_eval.json").write_text(json.dumps({"items": [
        {"path": "real_clean_video/Up-1_2.mp4", "any_alarm": 0.1333},
        {"path": "real_smoke/*", "recall": 0.584, "clips_mostly_flagged": 6, "clips": 10},
        {"path": "holdout_clean/*", "any_alarm": holdout}]}))
    (out / "evaluation" / "evaluation.json").write_text(json.dumps({"micro_f1": 0.8025, "exact_match": 0.6167}))


def test_table_has_a_row_per_run_scored_at_the_step(tmp_path, capsys):
    _report(tmp_path / "control", "00800", 0.5, 0.0)
    _report(tmp_path / "no_nuisances", "00800", 0.0, 0.1)
    _report(tmp_path / "other_step", "01200", 1.0, 0.0)
    out = tmp_path / "table.md"
    assert main(["table", "--step", "00800", str(tmp_path / "control"), str(tmp_path / "no_nuisances"),
                 str(tmp_path / "other_step"), "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["control", "no_nuisances"]  # other_step has no step-800 report
    cells = dict(zip(COLUMNS, (c.strip() for c in rows[0].strip("|").split("|")[1:])))
    assert cells["val clean frames alarmed"] == "2.5%"  # frame-weighted: 1 of 40 frames
    assert cells["val smoke recall"] == "75.0%" and cells["val uneven recall"] == "50.0%"
    assert cells["eval real_smoke clips mostly flagged"] == "6 of 10" and cells["synthetic micro-F1"] == "0.802"
    assert rows[1].split("|")[3].strip() == "50.0%"
    assert "step-800 snapshot" in capsys.readouterr().out


def test_a_missing_report_is_one_line(tmp_path, capsys):
    (tmp_path / "broken" / "report_step00800" / "evaluation").mkdir(parents=True)
    (tmp_path / "broken" / "report_step00800" / "evaluation" / "evaluation.json").write_text("{}")
    assert main(["table", "--step", "00800", str(tmp_path / "broken")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
