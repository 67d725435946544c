"""An average of networks: the members' mean, one checkpoint, operating points folded and taken out."""
import numpy as np
import pytest
import torch

from model import create_model, load_checkpoint, save_checkpoint
from model.ensemble import Average
from model.predict import Predictor
from training.operating import fold, unfold
from training.scene import ProceduralScene

from helpers import run_cli

FRAMES = [ProceduralScene(s, (640, 360)).frame_at(0.5) for s in range(3)]


def small(seed: int):
    torch.manual_seed(seed)
    model = create_model("scopewatch_lap5_small").eval()
    with torch.no_grad():  # an untrained head says ~0.5 everywhere: spread the members apart
        model.presence.bias.copy_(torch.linspace(-2, 2, len(model.tasks)) * (1 if seed % 2 else -1))
    return model


def predictions(model):
    return Predictor(model, "cpu").predict(FRAMES, with_nss=True)


def test_an_average_gives_the_members_mean_and_round_trips_as_one_checkpoint(tmp_path):
    members = [small(0), small(1), small(2)]
    alone = [predictions(m) for m in members]
    avg = Average.of(members)
    together = predictions(avg)
    for i, p in enumerate(together):
        for task in avg.tasks:
            mean = np.mean([a[i].probabilities[task] for a in alone])
            assert p.probabilities[task] == pytest.approx(mean, abs=1e-4)
            assert p.severities[task] == pytest.approx(np.mean([a[i].severities[task] for a in alone]), abs=1e-4)
        assert p.quality == pytest.approx(np.mean([a[i].quality for a in alone]), abs=1e-3)
        np.testing.assert_allclose(p.nss, np.mean([a[i].nss for a in alone], axis=0), atol=1e-3)
    assert len({round(a[0].probabilities["noise"], 3) for a in alone}) == 3  # the members do differ
    path = save_checkpoint(avg, tmp_path / "avg.pt")
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Average) and len(loaded.members) == 3
    for p, q in zip(together, predictions(loaded)):
        assert p.probabilities == pytest.approx(q.probabilities, abs=1e-6)


def test_operating_points_fold_into_an_average_and_unfold_gives_the_raw_network_back(tmp_path):
    avg = Average.of([small(0), small(1)])
    before = predictions(avg)
    fold(avg, {"smoke": 0.3})
    after = predictions(avg)
    logit = lambda p: np.log(p / (1 - p))
    for b, a in zip(before, after):
        assert logit(a.probabilities["smoke"]) == pytest.approx(logit(b.probabilities["smoke"]) - logit(0.3), abs=1e-3)
        assert a.probabilities["noise"] == pytest.approx(b.probabilities["noise"], abs=1e-6)

    net = small(3)
    raw = predictions(net)
    fold(net, {"noise": 0.7})
    record = {"chosen": {t: {"threshold": 0.7 if t == "noise" else 0.5} for t in net.tasks}}
    folded = load_checkpoint(save_checkpoint(net, tmp_path / "op.pt", metrics={"operating_points": record}))
    assert unfold(folded) == record
    for r, u in zip(raw, predictions(folded)):
        assert u.probabilities == pytest.approx(r.probabilities, abs=1e-5)
    assert unfold(load_checkpoint(save_checkpoint(small(4), tmp_path / "raw.pt"))) is None


def test_average_command_writes_one_checkpoint_and_refuses_what_cannot_be_averaged(tmp_path):
    a, b = (save_checkpoint(small(s), tmp_path / f"m{s}.pt") for s in (0, 1))
    r = run_cli("average", str(a), str(b), "--out", str(tmp_path / "avg.pt"))
    assert r.returncode == 0, r.stderr
    assert "the average of 2 networks" in r.stdout
    ckpt = load_checkpoint(tmp_path / "avg.pt")
    assert [m["weights"] for m in ckpt.checkpoint_meta["training"]["average_of"]] == [str(a), str(b)]

    r = run_cli("average", str(a), "--out", str(tmp_path / "one.pt"))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["scopewatch average: error: name at least two checkpoints to average"]
    torch.manual_seed(0)
    other = save_checkpoint(create_model("scopewatch_lap5_small", tasks=("noise", "smoke")), tmp_path / "other.pt")
    r = run_cli("average", str(a), str(other), "--out", str(tmp_path / "x.pt"))
    assert r.returncode == 2 and "cannot average these" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "one.pt").exists()
