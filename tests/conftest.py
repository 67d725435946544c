import os
from pathlib import Path

import numpy as np
import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

ROOT = Path(__file__).resolve().parents[1]
SURGICAL = ROOT.parent / "shared" / "data" / "surgical"


def surgical(rel: str) -> Path:
    """A path in the shared real-surgery folder; the test is skipped where that data is absent."""
    p = SURGICAL / rel
    if not p.exists():
        pytest.skip(f"real surgical data not available: {p}")
    return p


@pytest.fixture(scope="session")
def real_frame() -> np.ndarray:
    from training.content import read_image
    return read_image(surgical("train_clean/video01_000005_frame.png"))


@pytest.fixture(scope="session")
def scene_frame() -> np.ndarray:
    from training.scene import ProceduralScene
    return ProceduralScene(3, (640, 360), circular_fov=True).frame_at(1.0)


@pytest.fixture(params=["real", "procedural"])
def content_frame(request) -> np.ndarray:
    return request.getfixturevalue("real_frame" if request.param == "real" else "scene_frame")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """An untrained small checkpoint, for tests of the pipeline rather than of the model's accuracy."""
    import torch
    from model import create_model, save_checkpoint
    torch.manual_seed(0)
    return save_checkpoint(create_model("scopewatch_lap5_small"), tmp_path_factory.mktemp("weights") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_predictor(tiny_weights):
    from model import load_checkpoint
    from model.predict import Predictor
    return Predictor(load_checkpoint(tiny_weights), "cpu")
