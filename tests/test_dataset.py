import numpy as np
import torch

from model.preprocess import InputConfig
from model.tasks import DEFAULT_TASKS
from training.dataset import MIN_SEVERITY, SynthPatchDataset, h264_roundtrip, scope_falloff
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


def test_h264_roundtrip_codes_the_frame_at_the_asked_quality():
    frame = ProceduralScene(3, (640, 360)).frame_at(1.0)
    coded = {crf: h264_roundtrip(frame, crf) for crf in (12, 20, 28)}
    assert all(c.shape == frame.shape and c.dtype == np.uint8 for c in coded.values())
    error = [np.abs(coded[crf].astype(float) - frame).mean() for crf in (12, 20, 28)]
    assert 0.3 < error[0] < error[1] < error[2] < 6.0  # changed, and more so at a higher CRF


def test_scope_falloff_is_centred_and_symmetric():
    g = scope_falloff((360, 640), reach=2.0)
    assert g.max() == g[179:181, 319:321].max() and abs(float(g[180, 320]) - 1.0) < 1e-3
    assert np.allclose(g, g[::-1, ::-1]) and np.allclose(g, g[:, ::-1])
    assert abs(float(g[180, 320 + 180]) - (1 + 1 / 4) ** -2) < 0.01  # one half short side out: (1 + 1/2^2)^-2
