import numpy as np
import pytest

from model.preprocess import InputConfig, extract, valid_mask, context_view
from training.content import ImageContent, VideoContent, open_content
from training.scene import ProceduralScene
from training.synth import ClipWriter

from conftest import surgical


def test_procedural_scene_is_deterministic_and_moves():
    a, b = ProceduralScene(11, (640, 360)), ProceduralScene(11, (640, 360))
    assert np.array_equal(a.frame_at(2.0), b.frame_at(2.0))
    f0, f1, f5 = a.frame_at(0.0), a.frame_at(0.04), a.frame_at(5.0)
    assert f0.shape == (360, 640, 3) and f0.dtype == np.uint8
    assert 0 < np.abs(f0.astype(int) - f1).mean() < np.abs(f0.astype(int) - f5).mean()
    assert not np.array_equal(ProceduralScene(12, (640, 360)).frame_at(0), f0)


def test_circular_field_of_view_has_black_corners_and_bright_centre():
    f = ProceduralScene(1, (640, 360), circular_fov=True).frame_at(0)
    assert f[:8, :8].max() < 10 and f[-8:, -8:].max() < 10
    assert f[150:210, 290:350].mean() > 40
    full = ProceduralScene(1, (640, 360), circular_fov=False).frame_at(0)
    assert full[:8, :8].mean() > 20


def test_patches_avoid_black_corners_and_ui_bars(scene_frame):
    cfg = InputConfig()
    x = extract(scene_frame, cfg)
    assert x.patches.shape == (8, 64, 64, 3) and x.context.shape == (96, 160, 3) and x.mask.shape == (96, 160)
    assert (x.patches.reshape(8, -1, 3).mean(axis=(1, 2)) > 20).all()
    assert not x.mask[0, 0] and x.mask[48, 80]
    framed = scene_frame.copy()
    framed[:40] = (30, 30, 60)  # a flat on-screen UI bar across the top
    mask = valid_mask(context_view(framed, cfg), cfg)
    assert not mask[:8].any() and mask[40:60].any()
    assert (extract(framed, cfg).corners[:, 1] >= 36).all()


def test_patch_placement_is_fixed_at_inference_and_jittered_in_training(scene_frame):
    cfg = InputConfig()
    assert np.array_equal(extract(scene_frame, cfg).corners, extract(scene_frame, cfg).corners)
    a = extract(scene_frame, cfg, np.random.default_rng(0)).corners
    b = extract(scene_frame, cfg, np.random.default_rng(1)).corners
    assert not np.array_equal(a, b)


def test_image_folder_content(tmp_path):
    folder = surgical("train_clean")
    contents = open_content(str(folder), (320, 180))
    assert len(contents) == 20 and all(isinstance(c, ImageContent) for c in contents)
    f0, f1 = contents[0].frame_at(0.0), contents[0].frame_at(3.0)
    assert f0.shape == (180, 320, 3) and not np.array_equal(f0, f1)  # virtual camera moves


def test_video_content_decodes_with_pyav(tmp_path):
    path = tmp_path / "clean.mp4"
    scene = ProceduralScene(2, (320, 180))
    with ClipWriter(path, (320, 180), 25) as w:
        for i in range(10):
            w.write(scene.frame_at(i / 25))
    (c,) = open_content(str(path), (160, 90))
    assert isinstance(c, VideoContent) and len(c.frames) == 10 and c.frame_at(0.0).shape == (90, 160, 3)
    assert np.array_equal(c.frame_at(0.4), c.frame_at(0.0))  # loops


def test_bad_content_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_content(str(tmp_path / "missing"), (320, 180))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images or videos"):
        open_content(str(tmp_path / "empty"), (320, 180))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValueError, match="not a readable video"):
        open_content(str(bad), (320, 180))
