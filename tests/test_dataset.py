import torch

from model.preprocess import InputConfig
from model.tasks import DEFAULT_TASKS
from training.dataset import MIN_SEVERITY, SynthPatchDataset
from training.nss import NUM_FEATURES
from training.scene import ProceduralScene


def make(seed=0, length=24):
    contents = [ProceduralScene(i, (640, 360)) for i in range(2)]
    return SynthPatchDataset(contents, DEFAULT_TASKS, InputConfig(), seed=seed, length=length)


def test_samples_carry_inputs_and_every_target():
    samples = list(make())
    assert len(samples) == 24
    s = samples[0]
    assert s["patches"].shape == (8, 64, 64, 3) and s["patches"].dtype == torch.uint8
    assert s["context"].shape == (96, 160, 3)
    assert s["nss"].shape == (8, NUM_FEATURES) and s["quality"].shape == ()
    sev = torch.stack([x["severity"] for x in samples])
    pres = torch.stack([x["presence"] for x in samples])
    assert torch.equal(pres, (sev > 0).float())
    assert ((sev == 0) | (sev >= MIN_SEVERITY)).all() and (sev <= 1).all()
    n_present = pres.sum(1)
    assert (n_present == 0).any() and (n_present == 1).any() and (n_present >= 2).any()
    q = torch.stack([x["quality"] for x in samples])
    assert (q[n_present == 0] > 90).all() and q[n_present >= 2].mean() < q[n_present == 0].mean()


def test_stream_is_reproducible_from_its_seed():
    a = [x["severity"] for x in make(seed=4, length=5)]
    b = [x["severity"] for x in make(seed=4, length=5)]
    c = [x["severity"] for x in make(seed=5, length=5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
