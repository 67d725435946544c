import numpy as np
import pytest
import torch

from model import CheckpointError, Predictor, create_model, list_models, load_checkpoint, save_checkpoint
from model.checkpoint import read_checkpoint
from model.preprocess import extract
from model.predict import native_bfloat16, resolve_device, resolve_precision
from model.tasks import DEFAULT_TASKS

from conftest import ROOT


def test_registry_lists_and_refuses_unknown_names():
    assert {"scopewatch_lap5", "scopewatch_lap5_small"} <= set(list_models("scopewatch_*"))
    assert list_models("*small") == ["scopewatch_lap5_small"]
    with pytest.raises(KeyError, match="did you mean scopewatch_lap5"):
        create_model("scopewatch_lap6")


def test_task_list_drives_the_heads(scene_frame):
    tasks = ("noise", "smoke", "compression")
    model = create_model("scopewatch_lap5_small", tasks=tasks)
    assert model.presence.out_features == model.severity.out_features == model.directional_presence.out_features == 3
    [p] = Predictor(model, "cpu").predict([scene_frame])
    assert set(p.probabilities) == set(tasks) == set(p.severities)
    assert 0 <= p.quality <= 100 and all(0 <= v <= 1 for v in p.probabilities.values())
    with pytest.raises(KeyError):
        create_model("scopewatch_lap5_small", tasks=("noise", "glare"))


def test_checkpoint_round_trip_keeps_weights_and_metadata(tmp_path, scene_frame):
    torch.manual_seed(0)
    model = create_model("scopewatch_lap5_small", tasks=DEFAULT_TASKS)
    model.nss_mean += 0.5
    path = save_checkpoint(model, tmp_path / "m.pt", training={"steps": 3}, metrics={"micro_f1": 0.5})
    loaded = load_checkpoint(path)
    assert loaded.arch == "scopewatch_lap5_small" and loaded.tasks == DEFAULT_TASKS
    assert loaded.checkpoint_meta["training"] == {"steps": 3} and loaded.checkpoint_meta["metrics"]["micro_f1"] == 0.5
    assert loaded.input_cfg == model.input_cfg and torch.equal(loaded.nss_mean, model.nss_mean)
    a = Predictor(model, "cpu").predict([scene_frame])[0]
    b = Predictor(loaded, "cpu").predict([scene_frame])[0]
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6) and a.quality == pytest.approx(b.quality, abs=1e-4)
    assert create_model("scopewatch_lap5_small", checkpoint_path=path).tasks == DEFAULT_TASKS


def test_a_per_patch_training_head_is_rebuilt_from_its_checkpoint_and_leaves_the_answers_alone(tmp_path, scene_frame):
    torch.manual_seed(0)
    model = create_model("scopewatch_lap5_small", tasks=DEFAULT_TASKS, patch_aux=1)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "m.pt"))
    assert loaded.model_args["patch_aux"] == 1 and torch.equal(loaded.patch_aux.weight, model.patch_aux.weight)
    x = extract(scene_frame, model.input_cfg)
    inputs = [torch.as_tensor(v[None]) for v in (x.patches, x.context, x.mask.astype(np.float32))]
    with torch.no_grad():
        out = loaded.eval()(*inputs)
        assert out["patch_aux_logits"].shape == (1, 8, 1)
        model.eval().patch_aux = None  # the frame's answers do not read it
        assert torch.equal(model(*inputs)["presence_logits"], out["presence_logits"])
    [p] = Predictor(loaded, "cpu").predict([scene_frame])
    assert set(p.probabilities) == set(DEFAULT_TASKS)


def test_bad_checkpoints_are_refused_with_one_line(tmp_path):
    model = create_model("scopewatch_lap5_small")
    path = save_checkpoint(model, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="not a ScopeWatch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    # Tampered: one weight changed after saving.
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["presence.bias"][0] += 1.0
    torch.save(ckpt, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="checksum") as tampered:
        load_checkpoint(tmp_path / "tampered.pt")
    assert "\n" not in str(tampered.value)
    # Incompatible: weights of another shape under the same architecture name.
    other = create_model("scopewatch_lap5")
    ckpt = torch.load(save_checkpoint(other, tmp_path / "big.pt"), weights_only=True)
    ckpt["architecture"] = "scopewatch_lap5_small"
    torch.save(ckpt, tmp_path / "incompatible.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "incompatible.pt")
    ckpt["architecture"] = "resnet50"
    torch.save(ckpt, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_checkpoint(tmp_path / "foreign.pt")
    ckpt["format_version"] = 99
    torch.save(ckpt, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer"):
        read_checkpoint(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="trained for tasks"):
        create_model("scopewatch_lap5_small", tasks=("noise",), checkpoint_path=path)


def test_outputs_do_not_depend_on_batch_size(scene_frame, real_frame):
    torch.manual_seed(1)
    pred = Predictor(create_model("scopewatch_lap5_small"), "cpu")
    frames = [scene_frame, real_frame, scene_frame[:, ::-1].copy()]
    together = pred.predict(frames)
    alone = [pred.predict([f])[0] for f in frames]
    for a, b in zip(together, alone):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
        assert a.quality == pytest.approx(b.quality, abs=1e-3)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_inference_folds_batchnorm_and_fuses_relu_without_changing_outputs_or_the_model(scene_frame):
    from model.predict import ConvReLU, collate
    torch.manual_seed(0)
    model = create_model("scopewatch_lap5_small").eval()
    for m in model.modules():  # non-trivial running statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    predictor = Predictor(model, "cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor.model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 5  # the caller's model is untouched
    if ConvReLU.available(predictor.device):  # every trunk stage's conv and ReLU, as one call
        assert sum(isinstance(m, ConvReLU) for m in predictor.model.trunk.modules()) == 5
        assert not any(isinstance(m, (torch.nn.Conv2d, torch.nn.ReLU)) for m in predictor.model.trunk.modules())
    batch = collate([predictor.prepare(scene_frame)] * 2)
    with torch.inference_mode():
        ref, fused = model(**batch), predictor.model(**batch)
    for k in ref:
        assert torch.allclose(ref[k], fused[k], atol=1e-4, rtol=1e-4), k


def test_the_pooled_moments_are_those_of_the_maps():
    """The trunk's maps pooled as batched products (model.network._pool_maps) against the mean and
    std written out, over the whole map and over the valid part of a masked one; the half-resolution
    view of the directional energies against average pooling."""
    import torch.nn.functional as F
    from model.network import _half_resolution, _pool_maps
    torch.manual_seed(0)
    maps = [torch.rand(2, c, h, w).relu().contiguous(memory_format=torch.channels_last) for c, h, w in ((4, 12, 20), (6, 3, 5))]
    mask = torch.zeros(2, 1, 12, 20)
    mask[0, :, :, :10] = 1.0  # frame 0: the left half valid; frame 1: nothing valid (uniform weights)
    whole, masked = _pool_maps(maps), _pool_maps(maps[:1], mask)
    m = maps[0]
    expected = torch.cat([m.mean((2, 3)), m.std((2, 3), unbiased=False)], -1)
    assert torch.allclose(whole[:, :8], expected, atol=1e-5)
    weight = (mask > 0.5).float() + 1e-3
    mean = (m * weight).sum((2, 3)) / weight.sum((2, 3))
    std = (((m - mean[..., None, None]) ** 2 * weight).sum((2, 3)) / weight.sum((2, 3))).sqrt()
    assert torch.allclose(masked, torch.cat([mean, std], -1), atol=1e-5)
    assert torch.allclose(masked[0, :4], m[0, :, :, :10].mean((1, 2)), atol=1e-3)  # the invalid half barely counts
    for size in ((8, 8), (9, 7)):
        x = torch.rand(3, 1, *size)
        assert torch.allclose(_half_resolution(x), F.avg_pool2d(x, 2), atol=1e-6)


def test_the_pooled_maximum_is_the_maps_within_the_mask():
    """`with_max` appends each map's maximum over the valid part (over the whole map where nothing
    is valid, as the weights then do): a bright spot outside the field of view does not count."""
    from model.network import _pool_maps
    torch.manual_seed(0)
    m = torch.rand(2, 4, 12, 20).contiguous(memory_format=torch.channels_last)
    m[:, :, 0, 15] = 9.0  # a spot in the right half, outside frame 0's valid part
    mask = torch.zeros(2, 1, 12, 20)
    mask[0, :, :, :10] = 1.0
    pooled = _pool_maps([m], mask, with_max=True)
    assert pooled.shape == (2, 12) and torch.equal(pooled[:, :8], _pool_maps([m], mask))
    assert torch.allclose(pooled[0, 8:], m[0, :, :, :10].amax((1, 2)))
    assert torch.allclose(pooled[1, 8:], torch.full((4,), 9.0))  # nothing valid: the whole map
    assert torch.allclose(_pool_maps([m], with_max=True)[:, 8:], m.amax((2, 3)))


def test_a_context_maximum_is_rebuilt_from_its_checkpoint(tmp_path, scene_frame):
    torch.manual_seed(0)
    model = create_model("scopewatch_lap5_small", tasks=DEFAULT_TASKS, context_max=True).eval()
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "m.pt")).eval()
    assert loaded.model_args["context_max"] is True and loaded.context_max
    a, b = (Predictor(m, "cpu").predict([scene_frame])[0] for m in (model, loaded))
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
    x = extract(scene_frame, model.input_cfg)
    with torch.no_grad():
        fused, _ = loaded.forward_features(torch.as_tensor(x.patches[None]), torch.as_tensor(x.context[None]),
                                           torch.as_tensor(x.mask[None].astype(np.float32)))
    c = loaded.trunk.out_channels  # patches' mean and std across patches 4C, the context 3C, the directional pathway
    assert fused.shape == (1, 7 * c + loaded.directional_presence.in_features)
    [p] = Predictor(loaded, "cpu").predict([scene_frame], with_map=True)  # the map reads the context's part of it
    assert p.patch_map["smoke"].shape == (8,)


def test_directional_energy_tells_a_motion_streak_from_a_defocus_disk(scene_frame):
    """Motion blur leaves one direction with much less fine detail than the others; defocus takes
    detail away evenly."""
    from model.network import DirectionalEnergy
    from model.preprocess import InputConfig, extract
    from training.distortions import create_distortion
    energy = DirectionalEnergy()
    angles = energy.angles // 2 + 1

    def contrast(frame):  # at the 2-px lag, full resolution: cross direction minus streak direction
        x = extract(frame, InputConfig())
        shape = energy(torch.from_numpy(x.patches)[None])[0, angles:2 * angles]
        return float(shape[-1] - shape[0])

    motion = create_distortion("motion_blur")
    defocus = create_distortion("defocus_blur")
    streaked = [contrast(motion.apply(scene_frame, 0.4, {"generator": "linear", "angle": a, "wobble": 0.0, "phase": 0.0}))
                for a in np.arange(4) * np.pi / 4]
    clean = contrast(scene_frame)
    disked = contrast(defocus.apply(scene_frame, 0.4, {"generator": "disk", "depth": False, "seed": 0, "phase": 0.0}))
    # Whichever way it runs (the scene's own edges make some directions show it less), a streak
    # raises the contrast; a disk leaves it as it was.
    assert min(streaked) > clean + 0.4 and min(streaked) > disked + 0.4
    assert np.mean(streaked) > clean + 0.8
    assert abs(disked - clean) < 0.2


def test_scale_ratios_show_a_faint_streak_in_any_direction(scene_frame):
    """The fine/coarse ratio profiles add to the plain ones (which stay as they were) and show a
    level-1 motion streak at every angle, diagonals included, above a sharp or defocused frame."""
    from model.network import DirectionalEnergy
    from model.preprocess import InputConfig, extract
    from training.distortions import create_distortion
    plain, ratios = DirectionalEnergy(), DirectionalEnergy(scale_ratios=True)
    angles = plain.angles // 2 + 1
    assert ratios.num_features == plain.num_features + 5 * (angles + 1)

    def contrast(frame):  # the 2 px / 8 px ratio: cross direction minus streak direction
        x = torch.from_numpy(extract(frame, InputConfig()).patches)[None]
        features = ratios(x)[0]
        assert torch.equal(features[:plain.num_features], plain(x)[0])
        shape = features[plain.num_features + angles:plain.num_features + 2 * angles]
        return float(shape[-1] - shape[0])

    motion, defocus = create_distortion("motion_blur"), create_distortion("defocus_blur")
    faint = [contrast(motion.apply(scene_frame, 0.15, {"generator": "linear", "angle": a, "wobble": 0.0, "phase": 0.0}))
             for a in np.arange(4) * np.pi / 4]
    still = [contrast(scene_frame), contrast(defocus.apply(scene_frame, 0.4, {"generator": "disk", "depth": False, "seed": 0, "phase": 0.0}))]
    assert min(faint) > max(still) + 0.3


def test_patch_shapes_tell_a_streak_that_turns_across_the_frame_from_a_defocus(scene_frame):
    """A streak whose direction differs from patch to patch (the scope rotating, moving in or out)
    sums over the patches to the all-direction loss of a defocus; each patch's own shape keeps it.
    The features before them stay as they were, and the patches' order does not matter."""
    from model.network import DirectionalEnergy
    from model.preprocess import InputConfig, extract
    from training.distortions import line_blur, psf_blur
    ratios, shapes = DirectionalEnergy(scale_ratios=True), DirectionalEnergy(scale_ratios=True, patch_shapes=True)
    angles = shapes.angles // 2 + 1
    assert shapes.num_features == ratios.num_features + 6 * (angles + 1) + 5 * angles
    patches = extract(scene_frame, InputConfig()).patches  # (K, P, P, 3)
    turning = np.stack([line_blur(p, 9.0, np.pi * i / len(patches)) for i, p in enumerate(patches)])
    disked = np.stack([psf_blur(p, 3.0) for p in patches])

    def features(x):
        x = torch.from_numpy(np.ascontiguousarray(x))[None]
        f = shapes(x)[0]
        assert torch.equal(f[:ratios.num_features], ratios(x)[0])
        return f

    def contrast(f, offset):  # the 2 px / 8 px ratio: cross direction minus streak direction
        shape = f[offset + angles:offset + 2 * angles]
        return float(shape[-1] - shape[0])

    summed_at = 6 * (angles + 3)  # after the plain shapes, level, spread and largest deviation
    own_at = ratios.num_features + 6 * (angles + 1)  # after each patch's plain shapes and largest deviation
    summed = [contrast(features(x), summed_at) for x in (patches, turning, disked)]
    own = [contrast(features(x), own_at) for x in (patches, turning, disked)]
    assert own[1] > max(own[0], own[2]) + 0.3, own
    assert own[1] - own[2] > summed[1] - summed[2] + 0.3, (own, summed)
    assert torch.allclose(features(turning), features(turning[::-1]), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_shipped_weights_give_the_same_answers_on_cuda_and_cpu(scene_frame):
    from model import load_predictor
    frames = [scene_frame, scene_frame[::-1].copy(), scene_frame[:, ::-1].copy()]
    cpu, gpu = load_predictor(device="cpu"), load_predictor(device="auto")
    assert gpu.device.type == "cuda"
    for a, b in zip(cpu.predict(frames), gpu.predict(frames)):
        assert a.probabilities == pytest.approx(b.probabilities, abs=2e-3)
        assert a.quality == pytest.approx(b.quality, abs=0.05)


@pytest.mark.skipif(not native_bfloat16(torch.device("cpu")), reason="needs a CPU with native bfloat16")
def test_bfloat16_on_the_cpu_gives_the_float32_answers_within_a_hundredth(scene_frame):
    from model import load_predictor
    from training.distortions import create_distortion
    smoke = create_distortion("smoke")
    frames = [scene_frame, smoke.apply(scene_frame, 0.6, smoke.sample_params(np.random.default_rng(0))),
              scene_frame[::-1].copy(), scene_frame[:, ::-1].copy()]
    exact, half = load_predictor(device="cpu"), load_predictor(device="cpu", precision="auto")
    assert (exact.precision, half.precision) == ("float32", "bfloat16")
    for a, b in zip(exact.predict(frames, with_map=True), half.predict(frames, with_map=True)):
        assert a.probabilities == pytest.approx(b.probabilities, abs=0.01) and a.probabilities != b.probabilities
        assert a.quality == pytest.approx(b.quality, abs=0.5)
        assert all(np.allclose(a.patch_map[t], b.patch_map[t], atol=0.02) for t in a.patch_map)


def test_precision_settings_are_checked():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bfloat16" if native_bfloat16(cpu) else "float32")
    assert resolve_precision("float32", cpu) == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("half", cpu)
    if not native_bfloat16(cpu):
        with pytest.raises(ValueError, match="no native bfloat16"):
            resolve_precision("bfloat16", cpu)
    from monitor.config import ModelConfig
    with pytest.raises(ValueError, match="precision must be one of"):
        ModelConfig(precision="fp16")


def test_the_patch_map_says_where_a_half_frame_distortion_is(scene_frame):
    from model import load_predictor
    from training.distortions import create_distortion
    from model.tasks import level_to_severity
    predictor = load_predictor(device="cpu")
    noise = create_distortion("noise", ("poisson_gaussian",))
    frame = scene_frame.copy()
    half = frame.shape[1] // 2
    frame[:, :half] = noise.apply(scene_frame, level_to_severity(3), noise.sample_params(np.random.default_rng(1)))[:, :half]
    [plain] = predictor.predict([frame])
    [mapped] = predictor.predict([frame], with_map=True)
    assert plain.patch_map is None and mapped.probabilities == plain.probabilities  # the map changes nothing else
    boxes = mapped.patch_boxes
    assert boxes.shape == (8, 4) and (boxes >= 0).all() and (boxes <= 1).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    centre = (boxes[:, 0] + boxes[:, 2]) / 2
    left, right = mapped.patch_map["noise"][centre < 0.5], mapped.patch_map["noise"][centre >= 0.5]
    assert len(left) and len(right)
    assert left.min() > 0.9 and right.mean() < 0.2, (left, right)


class _Payload:
    """Stands for code a malicious checkpoint would run: never unpickled, so never constructed."""


@pytest.mark.parametrize("case, reason", [
    ("empty", "an empty file"), ("text", "not a file that torch.save writes"),
    ("cut", "a damaged checkpoint (cut short or corrupt"), ("objects", "holds Python objects"),
    ("foreign", "without ScopeWatch's description"),
])
def test_weights_errors_name_the_file_and_what_is_wrong(tmp_path, case, reason):
    """Issue 22 item 9: one line naming the file and what is wrong with it, no cut-off torch text,
    and no torch warning on stderr."""
    import subprocess
    import sys
    path = tmp_path / f"{case} weights.pt"
    good = save_checkpoint(create_model("scopewatch_lap5_small"), tmp_path / "good.pt").read_bytes()
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("these are not weights\n")
    elif case == "cut":
        path.write_bytes(good[: len(good) // 2])
    elif case == "objects":
        torch.save({"format": "scopewatch-checkpoint", "payload": _Payload()}, path)
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message
    assert not any(torch_text in message for torch_text in ("weights_only", "Re-running", "miniz", "UnpicklingError"))
    # What the CLI prints for --weights: the same line, and nothing else on stderr (no torch warning).
    r = subprocess.run([sys.executable, "-c", "import sys; from apps.cli.common import load_predictor, UsageError\n"
                        "try:\n    load_predictor(sys.argv[1], 'cpu')\nexcept UsageError as e:\n    print(e, file=sys.stderr)",
                        str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.stderr.strip().splitlines() == [message], r.stderr


def test_live_weights_may_place_patches_otherwise_but_keep_the_input_shapes(scene_frame):
    from model.preprocess import InputConfig
    predictor = Predictor(create_model("scopewatch_lap5_small"), device="cpu")
    before = predictor.prepare(scene_frame).corners
    predictor.replace_model(create_model("scopewatch_lap5_small", input_cfg=InputConfig(placement="mixed")))
    assert predictor.input_cfg.placement == "mixed"
    after = predictor.prepare(scene_frame)
    assert after.patches.shape == (8, 64, 64, 3) and not np.array_equal(after.corners, before)
    with pytest.raises(ValueError, match="another input configuration"):
        predictor.replace_model(create_model("scopewatch_lap5_small", input_cfg=InputConfig(num_patches=4)))
