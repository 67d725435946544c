import json
import logging
import math
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import load_checkpoint
from model.checkpoint import read_checkpoint
from model.predict import Predictor
from training.metrics import identification_metrics, micro_f1, exact_match, recall_by_level, roc_auc, srocc
from model import create_model
from model.preprocess import InputConfig, context_view, extract, valid_mask
from training.provenance import against, machine_record, of_checkpoint, processor_name
from training.trainer import TrainConfig, TrainingForward, autocast_dtype, losses, model_inputs, train, update_average
from training.scene import ProceduralScene
from training.distortions import distort

from conftest import ROOT


def test_metrics_on_known_cases():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert micro_f1(y, y) == 1.0 and exact_match(y, y) == 1.0
    p = np.array([[1, 0], [0, 0], [1, 1], [1, 0]])  # tp 3, fn 1, fp 1
    assert micro_f1(y, p) == pytest.approx(0.75) and exact_match(y, p) == 0.5
    assert srocc([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert srocc([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert roc_auc([0.1, 0.2], [0.8, 0.9]) == 1.0 and roc_auc([0.8, 0.9], [0.1, 0.2]) == 0.0
    assert roc_auc([0.1, 0.5], [0.5, 0.9]) == pytest.approx(0.875)  # the tie counts half
    assert roc_auc([0.3, 0.3], [0.3]) == 0.5


def test_recall_by_level_says_at_which_levels_a_distortion_is_missed():
    levels = np.array([[1, 0], [1, 2], [2, 2], [4, 0], [0, 1]])
    called = np.array([[0, 1], [1, 1], [1, 0], [1, 0], [1, 0]], bool)
    by = recall_by_level(levels, called, ("a", "b"))
    assert by == {"a": {"1": {"recall": 0.5, "support": 2}, "2": {"recall": 1.0, "support": 1},
                        "4": {"recall": 1.0, "support": 1}},
                  "b": {"1": {"recall": 0.0, "support": 1}, "2": {"recall": 0.5, "support": 2}}}
    # Absent (level 0) clips are false alarms, not misses: called or not, they leave the recall alone.
    assert identification_metrics(levels >= 1, called, ("a", "b"), levels, levels)["recall_by_level"] == by


@pytest.mark.slow
def test_short_training_learns_to_separate_one_distortion(tmp_path):
    cfg = TrainConfig(model="scopewatch_lap5_small", tasks=("defocus_blur",), train_content=("procedural:0-4",),
                      val_content=("procedural:100-102",), steps=150, batch_size=16, lr=1e-2, warmup=10,
                      val_every=75, val_samples=32, workers=0, snapshot_every=150, out=str(tmp_path / "run"))
    best = train(cfg, progress=False)
    assert (tmp_path / "run" / "last.pt").exists()
    snapshots = sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir())
    assert snapshots == ["step_00150.pt"]  # every snapshot_every steps, for the shipping rule to choose among
    assert load_checkpoint(tmp_path / "run" / "snapshots" / "step_00150.pt").checkpoint_meta["metrics"]["step"] == 150
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["step"] for h in history] == [75, 150]
    model = load_checkpoint(best)
    assert list(model.checkpoint_meta["training"]["tasks"]) == ["defocus_blur"]
    assert model.model_args == {"scale_ratios": True, "patch_shapes": False, "context_max": False} and model.directional.scale_ratios  # rebuilt as trained
    pred = Predictor(model, "cpu")
    scenes = [ProceduralScene(s, (640, 360)) for s in (500, 501, 502, 503)]
    frames, labels = [], []
    for i, sc in enumerate(scenes):
        for k in range(6):
            clean = sc.frame_at(k * 1.7)
            rng = np.random.default_rng(100 * i + k)
            frames += [clean, distort(clean, "defocus_blur", severity=float(rng.uniform(0.3, 1.0)), rng=rng)]
            labels += [0, 1]
    scores = np.array([p.probabilities["defocus_blur"] for p in pred.predict(frames)])
    labels = np.array(labels, bool)
    assert roc_auc(scores[~labels], scores[labels]) > 0.85


@pytest.mark.slow
def test_training_resumes_from_last_checkpoint(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="scopewatch.train")
    cfg = TrainConfig(model="scopewatch_lap5_small", tasks=("noise",), train_content=("procedural:0-2",),
                      val_content=("procedural:100-101",), steps=20, batch_size=8, warmup=2, val_every=10,
                      val_samples=8, workers=0, compile=False, out=str(tmp_path / "run"))
    train(cfg, progress=False)
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["extra"]["step"]
    cfg.steps = 30
    train(cfg, resume=True, progress=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert first == 20 and [h["step"] for h in history] == [10, 20, 30]
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    raw, average = last["state_dict"], last["extra"]["average"]
    assert raw.keys() == average.keys()  # last.pt carries the average beside the raw weights, not a copy
    assert any(not torch.equal(raw[k], average[k]) for k in raw if raw[k].is_floating_point())
    assert f"training on cpu ({processor_name()}) in " in caplog.text  # the log names the machine too


@pytest.mark.slow
def test_the_field_of_view_threshold_is_trained_with_and_saved_with_the_weights(tmp_path):
    cfg = TrainConfig(model="scopewatch_lap5_small", tasks=("noise",), train_content=("procedural:0-2",),
                      val_content=("procedural:100-101",), steps=2, batch_size=4, warmup=1, val_every=2,
                      val_samples=4, workers=0, compile=False, fov_luma=8.0, out=str(tmp_path / "run"))
    model = load_checkpoint(train(cfg, progress=False))
    assert model.input_cfg.fov_luma == 8.0 and Predictor(model, "cpu").input_cfg.fov_luma == 8.0
    # Tissue darkened to luma ~12 (a light off to one side) stays in the view at 8, not at the default 18.
    ys, xs = np.mgrid[0:360, 0:640]
    dark = np.repeat((13 + 4 * np.sin((xs + ys) / 40))[..., None], 3, axis=2).round().astype(np.uint8)  # luma 9-17
    assert valid_mask(context_view(dark, model.input_cfg), model.input_cfg).all()
    assert not valid_mask(context_view(dark, InputConfig()), InputConfig()).any()


@pytest.mark.slow
def test_a_run_stopped_early_is_the_whole_run_up_to_there_and_resumes(tmp_path):
    def cfg(out):
        return TrainConfig(model="scopewatch_lap5_small", tasks=("noise",), train_content=("procedural:0-2",),
                           val_content=("procedural:100-101",), steps=20, batch_size=8, warmup=2, val_every=10,
                           val_samples=8, workers=0, compile=False, snapshot_every=10, out=str(tmp_path / out))
    train(cfg("whole"), progress=False)
    train(cfg("early"), progress=False, stop_at=15)
    history = json.loads((tmp_path / "early" / "history.json").read_text())
    assert [h["step"] for h in history] == [10, 15]  # the step it stops at is validated and saved
    assert torch.load(tmp_path / "early" / "last.pt", weights_only=True)["extra"]["step"] == 15
    whole, early = (torch.load(tmp_path / r / "snapshots" / "step_00010.pt", weights_only=True)["state_dict"]
                    for r in ("whole", "early"))
    assert all(torch.equal(whole[k], early[k]) for k in whole)  # same schedule: the same network at step 10
    train(cfg("early"), resume=True, progress=False)
    assert [h["step"] for h in json.loads((tmp_path / "early" / "history.json").read_text())] == [10, 15, 20]
    # Two runs of one recipe on one machine: the same weights bit for bit, and the machine recorded once.
    whole, early = (read_checkpoint(tmp_path / r / "snapshots" / "step_00010.pt") for r in ("whole", "early"))
    assert whole["sha256"] == early["sha256"]
    here = machine_record(torch.device("cpu"), autocast_dtype("auto", torch.device("cpu")), compiled=False)
    assert early["extra"]["machines"] == whole["extra"]["machines"] == [here]
    assert read_checkpoint(tmp_path / "early" / "last.pt")["extra"]["machines"] == [here]  # resumed here: one machine
    # Each checkpoint keeps its run's trajectory: the average's digest at every validation so far.
    assert early["extra"]["trajectory"] == {10: early["sha256"]}
    whole_run, early_run = (of_checkpoint(read_checkpoint(tmp_path / r / "last.pt")) for r in ("whole", "early"))
    assert sorted(whole_run["trajectory"]) == [10, 20] and sorted(early_run["trajectory"]) == [10, 15, 20]
    assert against(of_checkpoint(early), 10, whole_run) == "the same through step 10"
    assert against(early_run, None, whole_run) == "parted at step 20"  # resumed on fresh samples
    assert here["processor"] == processor_name() != "" and here["torch"] == torch.__version__
    with pytest.raises(ValueError, match="stop_at must be a step from 1 to steps"):
        train(cfg("bad"), progress=False, stop_at=21)


def test_precision_setting_picks_bfloat16_only_where_native():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("auto", cpu) is (torch.bfloat16 if torch.cpu._is_avx512_bf16_supported() else None)
    with pytest.raises(ValueError, match="precision must be auto, bf16 or fp32"):
        autocast_dtype("fp16", cpu)


def test_mixed_precision_forward_stays_close_to_float32():
    torch.manual_seed(0)
    model = create_model("scopewatch_lap5_small", ("noise", "defocus_blur")).eval()
    frames = [ProceduralScene(s, (640, 360)).frame_at(0.0) for s in (3, 4)]
    frames[1] = distort(frames[1], "noise", level=3, rng=np.random.default_rng(0))
    xs = [extract(f, model.input_cfg) for f in frames]
    inputs = {"patches": torch.as_tensor(np.stack([x.patches for x in xs])),
              "context": torch.as_tensor(np.stack([x.context for x in xs])),
              "mask": torch.as_tensor(np.stack([x.mask for x in xs])).float()}
    with torch.no_grad():
        full = model(**inputs)
        mixed = TrainingForward(model, torch.device("cpu"), torch.bfloat16, compile=False)(inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            directional = model.directional(inputs["patches"])
    assert all(v.dtype == torch.float32 for v in mixed.values())  # heads and losses stay in float32
    assert torch.equal(directional, model.directional(inputs["patches"]))  # computed in float32 regardless
    assert torch.allclose(torch.sigmoid(mixed["presence_logits"]), torch.sigmoid(full["presence_logits"]), atol=0.05)
    assert torch.allclose(mixed["quality"], full["quality"], atol=2.0)
    assert not torch.equal(mixed["presence_logits"], full["presence_logits"])  # the trunk did run in bfloat16


@pytest.mark.parametrize("head", ["presence", "own"])
def test_per_patch_loss_trains_the_chosen_head_on_each_patch_of_the_patch_tasks(head):
    from torch.utils.data import DataLoader
    torch.manual_seed(0)
    cfg = TrainConfig(model="scopewatch_lap5_small", tasks=("noise", "smoke"), patch_tasks=("smoke",), patch_weight=0.5,
                      patch_head=head)
    model = create_model(cfg.model, cfg.tasks, patch_aux=1 if head == "own" else None)
    batch = next(iter(DataLoader(cfg.dataset([ProceduralScene(0, (640, 360))], model.input_cfg, seed=1, length=4), batch_size=4)))
    assert batch["patch_presence"].shape == (4, 8, 1)
    out = model(**model_inputs(batch, cfg))
    parts = losses(model, out, batch, cfg)
    logits = out["patch_presence_logits"][..., 1:] if head == "presence" else out["patch_aux_logits"]
    assert logits.shape == (4, 8, 1)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["patch_presence"])
    assert torch.allclose(parts["patch"], expected)
    others = sum(parts[k] * w for k, w in (("presence", 1), ("severity", cfg.severity_weight), ("quality", cfg.quality_weight),
                                           ("nss", cfg.nss_weight), ("directional", cfg.directional_weight)))
    assert torch.allclose(parts["loss"], others + 0.5 * expected)
    parts["patch"].backward()
    grad = model.presence.weight.grad
    if head == "presence":  # smoke's presence head only, and the directional pathway serves it too
        assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0
        assert model.directional_mlp[1].weight.grad.abs().sum() > 0
    else:  # the trunk and the head of its own; the frame's heads and the directional pathway untouched
        assert grad is None and model.directional_mlp[1].weight.grad is None
        assert model.patch_aux.weight.grad.abs().sum() > 0 and model.trunk.stages[0][0].weight.grad.abs().sum() > 0
    plain = TrainConfig(model=cfg.model, tasks=cfg.tasks)
    assert "patch" not in losses(model, model(**model_inputs(batch, plain)), batch, plain)


def test_unknown_severities_and_qualities_are_left_out_of_their_losses():
    cfg = TrainConfig(tasks=("noise", "smoke"))
    out = {"presence_logits": torch.zeros(2, 2), "severity": torch.full((2, 2), 0.5), "quality": torch.tensor([50.0, 50.0]),
           "nss": torch.zeros(2, 3), "directional_logits": torch.zeros(2, 2)}
    model = types.SimpleNamespace(nss_mean=torch.zeros(3), nss_std=torch.ones(3))
    batch = {"presence": torch.tensor([[1.0, 1.0], [0.0, 1.0]]), "severity": torch.tensor([[0.9, 0.0], [0.0, 0.7]]),
             "severity_known": torch.tensor([[1.0, 0.0], [1.0, 1.0]]), "quality": torch.tensor([70.0, 0.0]),
             "quality_known": torch.tensor([1.0, 0.0]), "nss": torch.zeros(2, 3)}
    parts = losses(model, out, batch, cfg)
    assert parts["severity"].item() == pytest.approx((0.4 + 0.2) / 2)  # the real smoke's unknown severity is out
    assert parts["quality"].item() == pytest.approx(0.2)  # only the first sample's quality is known


def test_weight_average_lags_the_weights_and_starts_close_to_them():
    model, average = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.fill_(2.0)
    model.num_batches_tracked.fill_(7)
    update_average(average, model, step=0, decay=0.99)  # early: mostly the new weights
    assert torch.allclose(average.weight, torch.full((2,), 0.1 * 1.0 + 0.9 * 2.0))
    assert int(average.num_batches_tracked) == 7  # counters are copied, not averaged
    update_average(average, model, step=10_000, decay=0.99)  # late: the full decay
    assert torch.allclose(average.weight, torch.full((2,), 0.99 * 1.9 + 0.01 * 2.0))
    update_average(average, model, step=10_000, decay=0.0)  # no averaging: the raw weights
    assert torch.equal(average.weight, model.weight)


@pytest.mark.parametrize("settings, message", [
    ('{"generators": {"smoke": ["fog"]}}', "generators: smoke has no generator fog"),
    ('{"patch_tasks": ["smoke"], "patch_head": "neck"}', "patch_head must be presence or own"),
    ('{"smoke_floor": [0.08, 0.02]}', "smoke_floor must be [low, high] with 0 < low <= high < 0.9"),
    ('{"smoke_floor": [0.0, 0.05]}', "smoke_floor must be [low, high]"),
    ('{"soft_capture": 1.5}', "soft_capture must be in [0, 1]"),
    ('{"uneven_keep": [0.5, 1.5]}', "uneven_keep must be [low, high] with 0 <= low <= high <= 1"),
    ('{"vignette_reach": [1.0, 0.5]}', "vignette_reach must be [low, high] with 0 <= low <= high <= 2"),
    ('{"fov_luma": 300}', "fov_luma must be in [0, 255), got 300"),
    ('{"uneven_dim": [0.0, 2.0]}', "uneven_dim must be [low, high] with 0 <= low <= high <= 1"),
    ('{"presence_weights": {"fog": 2.0}}', "presence_weights: fog must be one of the tasks with a positive weight"),
    ('{"presence_weights": {"smoke": 0}}', "presence_weights: smoke must be one of the tasks with a positive weight"),
    ('{"presence_weights": {"smoke": "2"}}', "presence_weights: smoke must be one of the tasks with a positive weight, got smoke: 2"),
    ('{"uneven_dim": [0.5]}', "uneven_dim must be [low, high] with 0 <= low <= high <= 1, got [0.5]"),
])
def test_a_settings_file_with_a_bad_setting_is_one_line(tmp_path, settings, message):
    config = tmp_path / "train.json"
    config.write_text(settings)
    r = subprocess.run([sys.executable, "-m", "apps.cli", "train", "--config", str(config), "--out", str(tmp_path / "run")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--scene-shading", "1.5"], "scene_shading must be in [0, 1]"),
    (["--ema-decay", "1"], "ema_decay must be in [0, 1)"),
    (["--severity-skew", "0"], "severity_skew must be positive"),
    (["--generators", "smoke=fog"], "smoke has no generator fog"),
    (["--steps", "100", "--stop-at", "200"], "stop_at must be a step from 1 to steps (100), got 200"),
    *([] if torch.cuda.is_available() else [(["--device", "cuda"], "no CUDA GPU")]),
])
def test_bad_training_settings_give_one_line_and_exit_2(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "apps.cli", "train", "--out", str(tmp_path / "run"), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_runs_on_cuda_when_present(tmp_path):
    cfg = TrainConfig(model="scopewatch_lap5_small", tasks=("noise",), train_content=("procedural:0-2",),
                      val_content=("procedural:100-101",), steps=10, batch_size=8, warmup=2, val_every=10,
                      val_samples=8, workers=1, out=str(tmp_path / "run"))
    best = train(cfg, progress=False)
    ckpt = torch.load(best, weights_only=True)
    assert all(t.device.type == "cpu" for t in ckpt["state_dict"].values())  # saved loadable anywhere
    assert ckpt["training"]["device"] == "auto" and ckpt["metrics"]["step"] == 10
    model = load_checkpoint(best)
    assert Predictor(model, "cuda").predict([ProceduralScene(5, (640, 360)).frame_at(0.0)])[0].quality >= 0


def test_quality_rank_loss_judges_the_order_of_pairs_with_known_targets_apart():
    from training.trainer import quality_rank
    target, known = torch.tensor([90.0, 60.0, 59.0, 30.0]), torch.tensor([1.0, 1.0, 1.0, 0.0])
    # Pairs (90, 60) and (90, 59) count; (60, 59) is within the margin and the fourth target is unknown.
    right = quality_rank(torch.tensor([95.0, 40.0, 45.0, 99.0]), target, known)
    wrong = quality_rank(torch.tensor([40.0, 95.0, 90.0, 99.0]), target, known)
    tied = quality_rank(torch.full((4,), 50.0), target, known)
    assert tied.item() == pytest.approx(math.log(2))
    assert right.item() == pytest.approx((F.softplus(torch.tensor(-5.5)) + F.softplus(torch.tensor(-5.0))).item() / 2)
    assert wrong.item() > 5.0 > right.item() * 100
    assert quality_rank(torch.zeros(2), torch.tensor([50.0, 51.0]), torch.ones(2)).item() == 0.0  # no pair apart


def test_quality_rank_weight_adds_the_order_loss_to_the_total():
    out = {"presence_logits": torch.zeros(2, 2), "severity": torch.full((2, 2), 0.5), "quality": torch.tensor([50.0, 70.0]),
           "nss": torch.zeros(2, 3), "directional_logits": torch.zeros(2, 2)}
    model = types.SimpleNamespace(nss_mean=torch.zeros(3), nss_std=torch.ones(3))
    batch = {"presence": torch.zeros(2, 2), "severity": torch.zeros(2, 2), "severity_known": torch.ones(2, 2),
             "quality": torch.tensor([80.0, 40.0]), "quality_known": torch.ones(2), "nss": torch.zeros(2, 3)}
    plain = losses(model, out, batch, TrainConfig(tasks=("noise", "smoke")))
    ranked = losses(model, out, batch, TrainConfig(tasks=("noise", "smoke"), quality_rank_weight=0.5))
    assert "quality_rank" not in plain
    assert ranked["quality_rank"].item() == pytest.approx(F.softplus(torch.tensor(2.0)).item())
    assert ranked["loss"].item() == pytest.approx(plain["loss"].item() + 0.5 * ranked["quality_rank"].item())


def test_presence_weights_weigh_each_task_presence_loss_and_leave_the_rest():
    out = {"presence_logits": torch.tensor([[2.0, -1.0], [0.5, 1.5]]), "severity": torch.full((2, 2), 0.5),
           "quality": torch.tensor([50.0, 70.0]), "nss": torch.zeros(2, 3), "directional_logits": torch.zeros(2, 2)}
    model = types.SimpleNamespace(nss_mean=torch.zeros(3), nss_std=torch.ones(3))
    batch = {"presence": torch.tensor([[1.0, 1.0], [0.0, 1.0]]), "severity": torch.zeros(2, 2), "severity_known": torch.ones(2, 2),
             "quality": torch.tensor([80.0, 40.0]), "quality_known": torch.ones(2), "nss": torch.zeros(2, 3)}
    plain = losses(model, out, batch, TrainConfig(tasks=("noise", "smoke")))
    heavy = losses(model, out, batch, TrainConfig(tasks=("noise", "smoke"), presence_weights={"smoke": 3.0}))
    per_task = F.binary_cross_entropy_with_logits(out["presence_logits"], batch["presence"], reduction="none").mean(0)
    assert plain["presence"].item() == pytest.approx(per_task.mean().item())
    assert heavy["presence"].item() == pytest.approx((per_task[0] + 3.0 * per_task[1]).item() / 2)
    assert heavy["loss"].item() == pytest.approx(plain["loss"].item() + heavy["presence"].item() - plain["presence"].item())


@pytest.mark.parametrize("path", sorted((ROOT / "training" / "ablations").glob("*.json")), ids=lambda p: p.stem)
def test_every_ablation_changes_a_setting_the_recipe_has(path):
    """`scopewatch train --config` refuses a setting it does not know: a typo in an ablation would
    only show when its run starts."""
    TrainConfig.from_json(path)
    changed = json.loads(path.read_text())
    assert path.stem == "control" or changed, "an ablation other than the control changes something"
    assert "out" not in changed  # the run's folder is the command line's, never the file's


def test_the_data_seed_draws_what_the_run_is_shown():
    from training.trainer import load_contents, nss_statistics
    contents = load_contents(("procedural:0-2",), 0)
    input_cfg = create_model("scopewatch_lap5_small").input_cfg
    shown = {name: nss_statistics(contents, cfg, input_cfg, n=4)[0]
             for name, cfg in (("recipe", TrainConfig(seed=0)), ("another start", TrainConfig(seed=5, data_seed=0)),
                               ("another seed", TrainConfig(seed=5)))}
    assert torch.equal(shown["recipe"], shown["another start"])  # the same samples, whatever the weights start from
    assert not torch.equal(shown["recipe"], shown["another seed"])
