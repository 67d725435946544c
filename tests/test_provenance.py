import platform
import shutil
import subprocess
import sys

import torch

from conftest import ROOT
from model import create_model, load_checkpoint, save_checkpoint


def provenance(*args):
    return subprocess.run([sys.executable, "-m", "training.provenance", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_provenance_names_the_machine_and_which_checkpoints_hold_the_same_weights(tmp_path, tiny_weights):
    copy = shutil.copyfile(tiny_weights, tmp_path / "copy.pt")
    torch.manual_seed(1)
    machine = {"processor": "AMD EPYC", "device": "cpu", "precision": "bfloat16", "compiled": True, "threads": 1,
               "torch": "2.13.0+cpu"}
    other = save_checkpoint(create_model("scopewatch_lap5_small"), tmp_path / "other.pt", metrics={"step": 800},
                            extra={"machines": [machine]})
    r = provenance(tiny_weights, copy, other)
    assert r.returncode == 0, r.stderr
    rows = {line.split("|")[1].strip(" `"): [c.strip(" `") for c in line.split("|")[2:-1]]
            for line in r.stdout.splitlines()[2:]}
    assert rows[str(copy)][3] == str(tiny_weights) and rows[str(other)][3] == ""  # same bits, other bits
    assert rows[str(tiny_weights)][2] == "not recorded" and rows[str(tiny_weights)][1] == "—"
    assert rows[str(other)][1:3] == ["800", "AMD EPYC (cpu, bfloat16, compiled, 1 thread(s), torch 2.13.0+cpu)"]
    assert rows[str(other)][4] == ""  # no run recorded by any of them


def test_a_rebuild_is_checked_against_the_run_a_checkpoint_records(tmp_path, tiny_weights):
    from model.checkpoint import read_checkpoint

    early = read_checkpoint(tiny_weights)["sha256"]  # a rebuild stopped at step 200 holds these weights
    torch.manual_seed(2)
    shipped = save_checkpoint(create_model("scopewatch_lap5_small"), tmp_path / "shipped.pt", metrics={"step": 400},
                              extra={"trajectory": {200: early, 400: "ab" * 32}})
    other = save_checkpoint(create_model("scopewatch_lap5_small"), tmp_path / "other.pt", metrics={"step": 200})
    stopped = save_checkpoint(load_checkpoint(tiny_weights), tmp_path / "stopped.pt", metrics={"step": 200})
    r = provenance(shipped, stopped, other)
    assert r.returncode == 0, r.stderr
    rows = {line.split("|")[1].strip(" `"): line.split("|")[6].strip() for line in r.stdout.splitlines()[2:]}
    assert rows[str(stopped)] == f"`{shipped}`: the same through step 200"
    assert rows[str(other)] == f"`{shipped}`: parted at step 200"


def test_provenance_of_a_missing_checkpoint_is_one_line(tmp_path):
    r = provenance(tmp_path / "none.pt")
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'none.pt'}: no such checkpoint file"


def test_the_processor_is_named_with_its_family_and_model_where_the_kernel_gives_them():
    """Two CPU generations may carry one model name in a virtual machine, and only one of them
    trains in bfloat16: the record tells them apart by the numbers."""
    from training.provenance import processor_name

    epyc = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n\n" \
           "processor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
    assert processor_name(epyc) == "AMD EPYC (family 25, model 1)"  # the first processor's
    assert processor_name("processor\t: 0\nmodel name\t: Some CPU\n") == "Some CPU"  # no numbers given
    assert processor_name("") == (platform.processor() or platform.machine())  # no cpuinfo: the platform's name
