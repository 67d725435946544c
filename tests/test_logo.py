"""Leave-one-generator-out rounds: what is held out is never trained on, and the table reads both reports."""
import subprocess
import sys

from conftest import ROOT
from model.tasks import DEFAULT_TASKS
from training.distortions import DISTORTIONS, parse_generators
from training.logo import as_arg, held_in, held_out, table


def test_each_round_holds_one_generator_out_of_every_distortion_and_trains_on_the_rest():
    for r in range(3):
        out, kept = held_out(r), held_in(r)
        assert set(out) == set(kept) == set(DEFAULT_TASKS)
        for t in DEFAULT_TASKS:
            assert out[t] not in kept[t] and set(kept[t]) | {out[t]} == set(DISTORTIONS.get(t).drawn())
        assert parse_generators(as_arg(kept)) == kept
        assert parse_generators(as_arg(out)) == {t: (g,) for t, g in out.items()}
    assert held_out(0)["smoke"] == "plume" and held_out(1)["smoke"] == "haze"


def test_the_table_compares_the_two_models_per_distortion():
    def report(f1):
        return {"tasks": list(DEFAULT_TASKS), "clips": 120, "data": "data/logo_test_r0", "micro_f1": 0.9,
                "exact_match": 0.7, "per_task": {t: {"f1": f1} for t in DEFAULT_TASKS}}
    text = table(0, report(0.9), report(0.8))
    assert "| smoke | plume | 0.900 | 0.800 | -0.100 |" in text and "*micro_f1*" in text


def test_the_generators_command_prints_a_synth_argument():
    r = subprocess.run([sys.executable, "-m", "training.logo", "generators", "held-out", "--round", "1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and parse_generators(r.stdout.strip()) == {t: (g,) for t, g in held_out(1).items()}
