"""`scopewatch export-onnx` through the real CLI: the written graph, run by ONNX Runtime on frames
PyAV decodes from an encoded file (a real laparoscopy clip where the shared footage is present),
gives what the torch predictor gives, for any batch size, and says in its metadata what it is."""
import json

import av
import numpy as np
import onnx
import pytest

from conftest import surgical
from helpers import run_cli, write_video
from model.checkpoint import load_checkpoint, weights_digest
from model.export import onnx_session, run_onnx
from model.factory import DEFAULT_MODEL, weights_path
from model.predict import Predictor

TOLERANCE = 1e-4  # issue 20: ONNX Runtime against torch, on every output


def decoded(path, n):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(n), container.decode(video=0))]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "scopewatch.onnx"
    r = run_cli("export-onnx", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stderr
    return out


@pytest.fixture(scope="module")
def predictor():
    return Predictor(load_checkpoint(weights_path(DEFAULT_MODEL)), "cpu")


def assert_same(exported, predictor, frames):
    inputs = [predictor.prepare(f) for f in frames]
    session = onnx_session(exported)
    for batch in (inputs[:1], inputs):  # the batch is dynamic
        ours = run_onnx(session, batch)
        theirs = predictor.outputs(batch, patch_map=True)
        for name, value in ours.items():
            assert value.shape == tuple(theirs[name].shape), name
            assert np.abs(value - theirs[name].numpy()).max() <= TOLERANCE, name


def test_onnx_runtime_gives_what_torch_gives_on_decoded_frames(exported, predictor, tmp_path):
    clip = write_video(tmp_path / "scene.mp4", size=(640, 360), n=6)
    assert_same(exported, predictor, decoded(clip, 6))


def test_onnx_runtime_gives_what_torch_gives_on_real_laparoscopy(exported, predictor):
    assert_same(exported, predictor, decoded(surgical("real_clean_video/cholec_endo_720p.mp4"), 6))


def test_a_context_maximum_exports_too(tmp_path):
    """The masked maximum (`context_max`) in ONNX Runtime: on frames with a black side outside the
    field of view and on one with no field of view at all (the whole map then counts)."""
    import torch
    from model import create_model, save_checkpoint
    from model.export import export_onnx
    torch.manual_seed(0)
    weights = save_checkpoint(create_model("scopewatch_lap5_small", context_max=True), tmp_path / "m.pt")
    predictor = Predictor(load_checkpoint(weights), "cpu")
    export_onnx(load_checkpoint(weights), tmp_path / "m.onnx")
    frames = decoded(write_video(tmp_path / "scene.mp4", size=(640, 360), n=3), 3)
    frames[1][:, :240] = 0
    frames[2][:] = 4
    assert_same(tmp_path / "m.onnx", predictor, frames)


def test_the_graph_says_what_it_is(exported):
    model = load_checkpoint(weights_path(DEFAULT_MODEL))
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert json.loads(meta["scopewatch.tasks"]) == list(model.tasks)
    assert json.loads(meta["scopewatch.input"]) == json.loads(json.dumps(model.input_cfg.to_dict()))
    assert meta["scopewatch.weights_sha256"] == weights_digest(model.state_dict())
    graph = onnx.load(str(exported)).graph
    assert [i.name for i in graph.input] == ["patches", "context", "mask"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_refuses_bad_weights_and_outputs_in_one_line(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    r = run_cli("export-onnx", "--weights", str(junk), "--out", str(tmp_path / "x.onnx"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "not a ScopeWatch checkpoint" in r.stderr
    r = run_cli("export-onnx", "--out", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr and "Traceback" not in r.stderr
