"""End to end with the shipped weights: a synthesised 10-second clip with known distortion
episodes, encoded to H.264, analysed by `scopewatch analyze`; the episodes in its output match."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from model.factory import DEFAULT_MODEL, weights_path
from model.tasks import level_to_severity
from training.compose import Episode, Recipe
from training.distortions import DISTORTIONS
from training.scene import ProceduralScene
from training.synth import render_clip

from conftest import ROOT

TRUTH = {"smoke": (2.0, 5.5), "noise": (6.5, 9.0)}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    assert weights_path(DEFAULT_MODEL).exists(), "the shipped weights are missing"
    path = tmp_path_factory.mktemp("truth") / "episodes.mp4"
    episodes = [Episode(n, level_to_severity(3), a, b, ramp=0.3) for n, (a, b) in TRUTH.items()]
    # The first generator of each distortion: this checks the pipeline's timing, not generalisation.
    first = {n: DISTORTIONS.get(n).generators[:1] for n in TRUTH}
    render_clip(path, ProceduralScene(4242, (640, 360)), Recipe.sample(episodes, np.random.default_rng(1), first), 10.0, 25)
    return path


def test_episodes_in_the_output_match_the_truth(clip):
    r = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", str(clip), "-q"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    events = json.loads(clip.with_name(clip.name + ".scopewatch.events.json").read_text())["events"]
    found = {e["name"]: e for e in events if e["kind"] == "distortion"}
    for name, (start, end) in TRUTH.items():
        assert name in found, (name, [(e["name"], e["start_s"], e["end_s"]) for e in events])
        e = found[name]
        assert abs(e["start_s"] - start) < 1.0 and abs(e["end_s"] - end) < 1.0, (name, e["start_s"], e["end_s"])
        assert e["thumbnail_jpeg"]
    assert set(found) == set(TRUTH), "false alarm: " + ", ".join(sorted(set(found) - set(TRUTH)))
    with open(clip.with_name(clip.name + ".scopewatch.csv"), newline="") as f:
        rows = [x for x in csv.DictReader(f) if x["smoke"] != ""]
    inside = [float(x["smoke"]) for x in rows if 2.5 <= float(x["time_s"]) <= 5.0]
    outside = [float(x["smoke"]) for x in rows if float(x["time_s"]) < 1.5 or float(x["time_s"]) > 6.5]
    assert np.mean(inside) > 0.8 and np.mean(outside) < 0.2
    q_in = [float(x["quality"]) for x in rows if 7.0 <= float(x["time_s"]) <= 8.5]
    q_clean = [float(x["quality"]) for x in rows if float(x["time_s"]) < 1.5]
    assert np.mean(q_in) < np.mean(q_clean) - 15
