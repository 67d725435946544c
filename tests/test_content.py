import numpy as np
import pytest

import dataclasses

import cv2

from model.preprocess import InputConfig, context_view, detail_map, extract, valid_mask
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


@pytest.mark.parametrize("placement", ["texture", "grid", "mixed"])
def test_patch_placement_is_fixed_at_inference_and_varied_in_training(scene_frame, placement):
    cfg = dataclasses.replace(InputConfig(), placement=placement)
    assert np.array_equal(extract(scene_frame, cfg).corners, extract(scene_frame, cfg).corners)
    a = extract(scene_frame, cfg, np.random.default_rng(0)).corners
    b = extract(scene_frame, cfg, np.random.default_rng(1)).corners
    assert not np.array_equal(a, b)


def test_texture_placement_takes_the_detailed_part_of_the_frame():
    # Left half: smooth tissue; right half: fine checkered detail.
    yy, xx = np.mgrid[:360, :640]
    frame = np.repeat((120 + 30 * np.sin(yy / 50.0) * np.cos(xx / 70.0)).astype(np.uint8)[..., None], 3, axis=2)
    frame[:, 320:] = np.where(((yy // 12 + xx // 12) % 2)[:, 320:, None] == 1, 200, 60).astype(np.uint8)
    cfg = InputConfig()
    corners = extract(frame, cfg).corners
    assert (corners[:, 0] >= 320 - cfg.patch_size // 2).all()
    assert len(np.unique(corners, axis=0)) == cfg.num_patches
    training = extract(frame, cfg, np.random.default_rng(3)).corners
    assert (training[:, 0] >= 320 - cfg.patch_size).mean() >= 0.75
    # Grid placement spreads out over both halves whatever the detail.
    grid = extract(frame, dataclasses.replace(cfg, placement="grid")).corners
    assert (grid[:, 0] < 320 - cfg.patch_size).any() and (grid[:, 0] > 320).any()
    # Mixed placement: half on the detail, half spread out (so a flat, hazy half is seen too), none twice.
    mixed = extract(frame, dataclasses.replace(cfg, placement="mixed")).corners
    assert (mixed[:4, 0] >= 320 - cfg.patch_size // 2).all() and (mixed[4:, 0] < 320 - cfg.patch_size).any()
    assert len(np.unique(mixed, axis=0)) == cfg.num_patches
    # On a flat frame there is no detail to rank: texture placement falls back to the spread-out order.
    flat = np.full((360, 640, 3), 120, np.uint8)
    assert np.array_equal(extract(flat, cfg).corners, extract(flat, dataclasses.replace(cfg, placement="grid")).corners)


def test_detail_map_ignores_the_sharp_rim_of_the_image_circle():
    yy, xx = np.mgrid[:360, :640]
    frame = np.repeat((120 + 30 * np.sin(yy / 50.0)).astype(np.uint8)[..., None], 3, axis=2)
    frame[(yy - 180) ** 2 + (xx - 320) ** 2 > 170**2] = 0
    cfg = InputConfig()
    ctx = context_view(frame, cfg)
    mask = valid_mask(ctx, cfg)
    raw = cv2.Sobel(cv2.cvtColor(ctx, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F, 1, 0) ** 2
    detail = detail_map(ctx, mask)
    rim = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert raw[rim].max() > 1000 and detail[rim].max() == 0
    assert detail[mask].max() < 0.01 * raw[rim].max()


def test_checkpoints_from_before_placement_keep_grid_placement():
    d = InputConfig().to_dict()
    assert InputConfig.from_dict(d).placement == "texture"
    del d["placement"]
    assert InputConfig.from_dict(d).placement == "grid"
    with pytest.raises(ValueError, match="unknown patch placement"):
        extract(np.full((360, 640, 3), 120, np.uint8), dataclasses.replace(InputConfig(), placement="random"))


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


def test_stretched_sources_are_unstretched_and_small_ones_never_upscaled(tmp_path):
    square = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)  # a 16:9 picture saved square
    cv2.imwrite(str(tmp_path / "a_keep.png"), square)
    cv2.imwrite(str(tmp_path / "b_drop.png"), square)
    contents = open_content(str(tmp_path), (640, 360), aspect=16 / 9, exclude=("b_",))
    assert [c.name for c in contents] == ["a_keep.png"]
    assert contents[0].size == (456, 256) and contents[0].frame_at(0.0).shape == (256, 456, 3)
    (big,) = open_content(str(tmp_path / "a_keep.png"), (320, 180), aspect=16 / 9)
    assert big.size == (320, 180)


def test_the_real_training_manifest_opens_every_train_source_and_screens_out_the_rest():
    surgical("train_more")
    from training.surgical import TRAIN_SOURCES, VAL_SOURCES, open_sources

    contents = open_sources(TRAIN_SOURCES, (640, 360), seed=0)
    names = {c.name for c in contents}
    assert len(contents) > 100
    assert not any(n.startswith("1036206_") for n in names)  # not surgery
    assert "OP2_img_04_raw.png" not in names and "OP1_img_04_raw.png" in names  # hazy frames screened out
    clip = next(c for c in contents if c.name == "video01_230.mp4")
    assert len(clip.frames) == 60  # its clear 1-3.4 s: the cautery smoke before and after screened out
    assert all(s.spec.split("[")[0].split("@")[0].split("/")[0] in ("train_clean", "real_clean_video", "train_more")
               for s in TRAIN_SOURCES)
    val = {c.name for c in open_sources(VAL_SOURCES, (640, 360), seed=0)}
    assert not val & {n for n in names if n.endswith(".mp4") and n != "cholec_endo_720p.mp4"}
