"""`scopewatch train`: the multi-task trainer (one file; defaults at the top, nanoGPT style).

Samples are synthesised on the fly from clean content (training.dataset). Loss = presence BCE +
severity L1 (on present distortions of known severity) + quality L1 (scaled to [0, 1]; where the
FR quality is known, i.e. not on real degraded footage) + `nss_weight` x NSS L1 (on
standardised features) + `directional_weight` x presence BCE of the directional-energy pathway
alone + `patch_weight` x the per-patch presence BCE of `patch_tasks` (where in the frame they show) +
`quality_rank_weight` x a pairwise order loss of the quality (off by default).
Validation uses content that training never sees (other procedural seeds, other frames and time
ranges of the real videos): split by source content, never by patch.
What is validated and shipped is an exponential moving average of the weights (`ema_decay`): with
the small batches a CPU affords, the raw weights jump from step to step, and successive
checkpoints scored far apart on the same test set. The best validation score is kept as
`best.pt`, and every `snapshot_every` steps the average is kept in `snapshots/` for the shipping
rule to choose among on real footage; `last.pt` holds the raw weights, their average, optimizer state and step for resuming.
Resuming rebuilds the model from the checkpoint's own architecture and arguments.
The model trains on CUDA when present (`device`); synthesis stays in the CPU worker processes, so
on a GPU machine the number of workers sets the pace.
Training steps run under bfloat16 autocast where the hardware has it natively (`precision`; the
directional energies, the pooled statistics and the heads stay in float32) and through
torch.compile (`compile`): on this 2-core machine (AMX) a step of the default model took 0.85 s
eager in float32, 0.44 s compiled in bfloat16, so synthesis became the slower half and gets both
workers.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, weights_digest
from model.decision import PRESENCE_THRESHOLD
from model.factory import create_model
from model.predict import resolve_device
from model.preprocess import InputConfig
from model.tasks import DEFAULT_TASKS, severity_to_level
from training.content import open_content
from training.dataset import SynthPatchDataset
from training.distortions import create_distortion
from training.metrics import identification_metrics, quality_metrics
from training.nuisances import Nuisances
from training.provenance import machine_record, processor
from training.surgical import TRAIN_SOURCES, VAL_SOURCES, open_degraded, open_sources

log = logging.getLogger("scopewatch.train")
VAL_SEED = 10_000
REAL_CONTENT = {"real:train": TRAIN_SOURCES, "real:val": VAL_SOURCES}


@dataclass
class TrainConfig:
    model: str = "scopewatch_lap5"
    tasks: tuple[str, ...] = DEFAULT_TASKS
    # Real laparoscopy is the bulk of the content ("real:train", the screened train split in
    # training.surgical), procedural scenes a supplement. Training and validation content never
    # share a source: other procedural seeds, other real clips ("real:val"). Missing paths are skipped.
    train_content: tuple[str, ...] = ("real:train", "procedural:0-16")
    val_content: tuple[str, ...] = ("procedural:1000-1006", "real:val")
    p_clean: float = 0.3  # share of clean training samples (real clean feeds must stay quiet)
    # Share of clean frames shown as a smaller picture (192-300 px short side: a low-resolution camera,
    # a downscaled recording) before they are distorted (training.dataset.smaller_picture).
    small_frames: float = 0.0
    # Share of clean frames shown as a lower-resolution recording scaled up (a web capture: soft, and
    # labelled clean; training.dataset.soft_capture).
    soft_capture: float = 0.0
    placement: str = "mixed"  # where the model's patches go (model.preprocess.InputConfig.placement)
    # Mean 8-bit luma under which a context cell counts as outside the image (model.preprocess.
    # InputConfig.fov_luma, saved with the weights). The scope's black border is near 0; at 18 a
    # view darkened on one side loses that side to the mask, so the model cannot see the darkening
    # (FFmpeg's strongest vignette leaves 54% of the field in view: reports/foreign/foreign_val.md).
    fov_luma: float = 18.0
    nuisances: float = 1.0  # how often clean content carries the nuisances of normal surgery (training.nuisances)
    # The colour cast drawn by the camera after the distortions, not on the scene before them
    # (training.nuisances.Nuisances.cast_in_camera).
    cast_in_camera: bool = False
    # Clean colour casts that never lift the shadows nor pale the colours as a thin veil does
    # (training.nuisances.colour_cast's `veil_free`).
    veil_free_cast: bool = False
    # Generators each distortion may draw (training.distortions); empty: all. A leave-one-generator-out
    # run trains with one left out here and is tested on that one alone.
    generators: dict = field(default_factory=dict)
    # Tasks also supervised per patch (training.dataset: where the distortion alone changes each
    # patch), weighted by `patch_weight`, so that local smoke is learnt in the patches it covers, not
    # only from the frame's whole view. `patch_head` "presence": through the presence heads applied to
    # each patch (model.network.QualityNet.patch_presence, which the neck and the directional pathway
    # then also serve); "own": through a per-patch head of its own on the trunk's patch features.
    patch_tasks: tuple[str, ...] = ()
    patch_weight: float = 0.5
    patch_head: str = "presence"
    # Share of training samples drawn from the real smoke of the train split (training.surgical.
    # TRAIN_DEGRADED), labelled present; nobody measured its severity or the quality, so those
    # losses leave such samples out.
    real_degraded: float = 0.0
    steps: int = 2400
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 150
    ema_decay: float = 0.998  # of the weight average that is validated and saved (0: the raw weights)
    nss_weight: float = 0.2
    directional_weight: float = 0.5  # presence from the directional-energy pathway alone (deep supervision)
    scale_ratios: bool = True  # directional energies also as fine/coarse ratios (model.network.DirectionalEnergy)
    patch_shapes: bool = False  # and each patch's own directional shape, averaged over patches (same class)
    # The context view pooled by its maximum as well as its mean and std (model.network.QualityNet):
    # the val smoke the model misses lies in one part of the view, which a mean over the view dilutes.
    context_max: bool = False
    scene_shading: float = 0.4  # share of clean content shaded by its own relief (training.dataset.scene_shading)
    severity_skew: float = 1.7  # > 1: more training distortions at the faint end (training.dataset.draw_severity)
    # [low, high]: each smoky sample's faintest opacity drawn between them, so that smoke thinner than
    # the levels draw (training.distortions.Smoke.FLOOR, 0.08: None keeps it) is learnt too: the val
    # smoke the model missed is that thin (training.faint_smoke). Since synth_v15.
    smoke_floor: tuple[float, float] | None = (0.02, 0.08)
    # [low, high]: each sample with uneven light draws how much of the mean brightness its pattern
    # keeps (training.distortions.UnevenIllumination, "keep"; None: all of it). Real uneven light
    # darkens the view, and FFmpeg's vignette is caught once its mean is restored (training.foreign).
    uneven_keep: tuple[float, float] | None = None
    # [low, high]: each sample's `vignette` centre lies this many times its drawn offset from the axis
    # (None: 0.3, near the axis, where it looks most like the scope's own fall-off, taught as clean);
    # a light off to one side darkens one side of the view more (FFmpeg's vignette, training.foreign).
    vignette_reach: tuple[float, float] | None = None
    # [low, high]: each sample with uneven light (but over-exposure) draws how far the pattern's
    # peak is brought down to the frame's own exposure (training.distortions.UnevenIllumination,
    # "dim"; None: not at all). The recipe's one-sided shading brightens one side as much as it
    # darkens the other; FFmpeg's linear shading only darkens, and no model calls it (training.foreign).
    uneven_dim: tuple[float, float] | None = None
    # Task -> weight of its presence loss (others 1). The presence heads share one trunk, and in
    # every run that taught more uneven light the smoke head lost real smoke (reports/ablation/
    # README.md): a heavier smoke loss asks the trunk to keep what tells smoke apart.
    presence_weights: dict = field(default_factory=dict)
    quality_weight: float = 2.0
    # x the pairwise order loss of the quality (quality_rank): L1 fits each sample's score alone, so one
    # distortion's scale can drift against another's, and that order is what SROCC judges. 0: off.
    quality_rank_weight: float = 0.0
    severity_weight: float = 1.0
    val_every: int = 200
    # Every this many steps (a multiple of val_every) the weight average is also kept as
    # snapshots/step_NNNNN.pt: the real val footage, not the synthetic validation, chooses what
    # ships (`scopewatch ship`), and on it the best checkpoint need not be the last nor `best.pt`.
    snapshot_every: int = 400
    val_samples: int = 384
    workers: int = 2  # with the training step on the third thread: the 2 cores stay busy (synthesis is the slower half)
    device: str = "auto"  # auto: CUDA when present (synthesis stays on the CPU workers)
    precision: str = "auto"  # auto: bfloat16 autocast where the hardware computes it natively, else fp32
    compile: bool = True  # torch.compile the training step's forward (fused kernels; eager if it fails)
    seed: int = 0
    # The seed of what the run is shown (the content's crops, the sample stream, the NSS statistics);
    # None: `seed`. When set, `seed` draws only the initial weights: two runs that differ in one of
    # the two tell whether a seed's luck is its start or its samples (for the val light smoke it is
    # the start: reports/ablation/README.md).
    data_seed: int | None = None
    out: str = "runs/default"

    @classmethod
    def from_json(cls, path: Path) -> "TrainConfig":
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
        for k in ("tasks", "train_content", "val_content", "patch_tasks", "smoke_floor", "uneven_keep", "vignette_reach", "uneven_dim"):
            if data.get(k) is not None:
                data[k] = tuple(data[k])
        return cls(**data)

    @property
    def patch_route(self) -> str | None:
        """Which head the per-patch loss trains ("presence" or "own"), None without `patch_tasks`."""
        return self.patch_head if self.patch_tasks else None

    @property
    def sample_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    def generator_choice(self) -> dict[str, tuple[str, ...]]:
        return {name: tuple(gens) for name, gens in self.generators.items()}

    def dataset(self, contents, input_cfg, seed: int, **kw) -> SynthPatchDataset:
        nuisances = Nuisances(self.nuisances, self.cast_in_camera, self.veil_free_cast)
        return SynthPatchDataset(contents, self.tasks, input_cfg, seed=seed, p_clean=self.p_clean, p_shading=self.scene_shading,
                                 p_small=self.small_frames, nuisances=nuisances, generators=self.generator_choice(),
                                 patch_tasks=self.patch_tasks, **kw)


def load_contents(specs, seed: int) -> list:
    out = []
    for spec in specs:
        if spec in REAL_CONTENT:
            out += open_sources(REAL_CONTENT[spec], (640, 360), seed)
            continue
        path = spec.split("[")[0].split("@")[0]
        if not spec.startswith("procedural") and not Path(path).exists():
            log.warning("content %s not found: skipped", spec)
            continue
        out += open_content(spec, (640, 360), seed=seed)
    if not out:
        raise ValueError("no training content found")
    return out


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bfloat16 for mixed precision, None for plain float32. "auto" takes bfloat16 only where it is
    native (CUDA, CPUs with AVX512-BF16/AMX): emulated, it is slower than float32."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if precision == "auto":
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else torch.cpu._is_avx512_bf16_supported()
        precision = "bf16" if native else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


class TrainingForward:
    """The model's forward for training steps: under autocast when `dtype` is set, and compiled when
    asked. torch.compile needs a working C++ toolchain and compiles on the first call; if that
    call fails, training goes on eager (same numbers, slower) after one warning."""

    def __init__(self, model, device: torch.device, dtype: torch.dtype | None, compile: bool):
        self.model, self.device, self.dtype = model, device, dtype
        self.compiled = torch.compile(model) if compile else None
        self.first = True

    def __call__(self, inputs: dict) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            if self.compiled is None:
                return self.model(**inputs)
            if not self.first:
                return self.compiled(**inputs)
            self.first = False
            try:
                return self.compiled(**inputs)
            except Exception as e:  # a missing compiler shows only here, as any of several errors
                log.warning("torch.compile failed (%s); training eager", str(e).strip().splitlines()[0][:200])
                self.compiled = None
                return self.model(**inputs)


def get_lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def quality_rank(quality: torch.Tensor, target: torch.Tensor, known: torch.Tensor, margin: float = 2.0) -> torch.Tensor:
    """RankNet's logistic loss of the predicted order, over every pair of the batch whose known targets
    differ by more than `margin` points; the score difference is taken in tens of points."""
    pairs = (target[:, None] - target[None, :] > margin) & (known[:, None] > 0) & (known[None, :] > 0)
    ahead = (quality[:, None] - quality[None, :])[pairs]
    return F.softplus(-ahead / 10.0).sum() / pairs.sum().clamp_min(1)


def losses(model, out: dict, batch: dict, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    if cfg.presence_weights:
        weights = torch.tensor([cfg.presence_weights.get(t, 1.0) for t in cfg.tasks], device=batch["presence"].device)
        presence = (F.binary_cross_entropy_with_logits(out["presence_logits"], batch["presence"], reduction="none")
                    .mean(0) * weights).mean()
    else:  # the plain mean: the recipe's trajectory stays bit for bit what it was
        presence = F.binary_cross_entropy_with_logits(out["presence_logits"], batch["presence"])
    present = batch["presence"] * batch["severity_known"]
    severity = ((out["severity"] - batch["severity"]).abs() * present).sum() / present.sum().clamp_min(1.0)
    known = batch["quality_known"]
    quality = ((out["quality"] - batch["quality"]).abs() * known).sum() / known.sum().clamp_min(1.0) / 100.0
    nss_target = (batch["nss"] - model.nss_mean) / model.nss_std
    nss = (out["nss"] - nss_target).abs().mean()
    directional = F.binary_cross_entropy_with_logits(out["directional_logits"], batch["presence"])
    total = (presence + cfg.severity_weight * severity + cfg.quality_weight * quality + cfg.nss_weight * nss
             + cfg.directional_weight * directional)
    parts = {"presence": presence, "severity": severity, "quality": quality, "nss": nss, "directional": directional}
    if cfg.quality_rank_weight:
        parts["quality_rank"] = quality_rank(out["quality"].float(), batch["quality"], known)
        total = total + cfg.quality_rank_weight * parts["quality_rank"]
    if cfg.patch_route:
        columns = [cfg.tasks.index(name) for name in cfg.patch_tasks]
        logits = out["patch_aux_logits"] if cfg.patch_route == "own" else out["patch_presence_logits"][..., columns]
        parts["patch"] = F.binary_cross_entropy_with_logits(logits, batch["patch_presence"])
        total = total + cfg.patch_weight * parts["patch"]
    return {"loss": total, **parts}


@torch.no_grad()
def update_average(average, model, step: int, decay: float) -> None:
    """average <- decay' average + (1 - decay') model, parameters and BatchNorm statistics alike;
    decay' is smaller over the first steps, so the average is not anchored to the initial weights."""
    d = min(decay, (1 + step) / (10 + step))
    for a, m in zip(average.state_dict().values(), model.state_dict().values()):
        if a.is_floating_point():
            a.lerp_(m, 1.0 - d)
        else:
            a.copy_(m)


def model_inputs(batch: dict, cfg: TrainConfig) -> dict:
    return {**{k: batch[k] for k in ("patches", "context", "mask")}, "patch_map": cfg.patch_route == "presence"}


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate_batches(model, batches: list[dict], cfg: TrainConfig) -> dict:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    probs, sev, qual, ys, ss, qs, tot = [], [], [], [], [], [], []
    for b in batches:
        on_device = to_device(b, device)
        out = model(**model_inputs(on_device, cfg))
        tot.append(losses(model, out, on_device, cfg)["loss"].item())
        out = {k: v.cpu() for k, v in out.items()}
        probs.append(torch.sigmoid(out["presence_logits"]))
        sev.append(out["severity"])
        qual.append(out["quality"])
        ys.append(b["presence"])
        ss.append(b["severity"])
        qs.append(b["quality"])
    model.train(was_training)
    prob, sev = torch.cat(probs).numpy(), torch.cat(sev).numpy()
    y, s = torch.cat(ys).numpy() > 0.5, torch.cat(ss).numpy()
    pred = prob >= PRESENCE_THRESHOLD
    to_level = np.vectorize(severity_to_level)
    m = identification_metrics(y, pred, cfg.tasks, to_level(s) * y, np.maximum(to_level(sev), 1) * pred)
    m |= quality_metrics(torch.cat(qual).numpy(), torch.cat(qs).numpy())
    m["loss"] = float(np.mean(tot))
    m["score"] = float(np.nanmean([m["micro_f1"], m["exact_match"], m["severity_within_one"], m["srocc"]]))
    return m


def fixed_batches(contents, cfg: TrainConfig, input_cfg, seed: int) -> list[dict]:
    ds = cfg.dataset(contents, input_cfg, seed, length=cfg.val_samples)
    return list(DataLoader(ds, batch_size=cfg.batch_size))


def nss_statistics(contents, cfg: TrainConfig, input_cfg, n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    ds = cfg.dataset(contents, input_cfg, cfg.sample_seed + 777, length=n)
    feats = torch.cat([s["nss"] for s in ds])
    return feats.mean(0), feats.std(0).clamp_min(1e-3)


def check_span(name: str, span, low: float, high: float, open_ends: bool = False) -> None:
    """A [low, high] setting (None: off) holds two values in order within [low, high], or within
    (low, high) with `open_ends` (a smoke floor of 0 would draw smoke that is not there)."""
    if span is None:
        return
    op = "<" if open_ends else "<="
    inside = len(span) == 2 and span[0] <= span[1] and (
        low < span[0] and span[1] < high if open_ends else low <= span[0] and span[1] <= high)
    if not inside:
        raise ValueError(f"{name} must be [low, high] with {low:g} {op} low <= high {op} {high:g}, got {list(span)}")


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, stop_at: int | None = None) -> Path:
    """Train `cfg` into `cfg.out` (best.pt, snapshots, a resumable last.pt); with `stop_at`, stop
    after that step, validated and saved, on the schedule of the whole run (`cfg.steps`), so that
    `resume` later continues it as if it had not stopped but for fresh samples."""
    if stop_at is not None and not 0 < stop_at <= cfg.steps:
        raise ValueError(f"stop_at must be a step from 1 to steps ({cfg.steps}), got {stop_at}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if not 0.0 <= cfg.scene_shading <= 1.0:
        raise ValueError(f"scene_shading must be in [0, 1], got {cfg.scene_shading}")
    if not cfg.severity_skew > 0.0:
        raise ValueError(f"severity_skew must be positive, got {cfg.severity_skew}")
    if cfg.patch_head not in ("presence", "own"):
        raise ValueError(f"patch_head must be presence or own, got {cfg.patch_head!r}")
    check_span("smoke_floor", cfg.smoke_floor, 0.0, 0.9, open_ends=True)
    check_span("uneven_keep", cfg.uneven_keep, 0.0, 1.0)
    if not 0.0 <= cfg.fov_luma < 255.0:
        raise ValueError(f"fov_luma must be in [0, 255), got {cfg.fov_luma}")
    check_span("uneven_dim", cfg.uneven_dim, 0.0, 1.0)
    check_span("vignette_reach", cfg.vignette_reach, 0.0, 2.0)
    if not 0.0 <= cfg.soft_capture <= 1.0:
        raise ValueError(f"soft_capture must be in [0, 1], got {cfg.soft_capture}")
    if not 0.0 <= cfg.real_degraded < 1.0:
        raise ValueError(f"real_degraded must be in [0, 1), got {cfg.real_degraded}")
    for name, weight in cfg.presence_weights.items():
        if name not in cfg.tasks or type(weight) not in (int, float) or not weight > 0:
            raise ValueError(f"presence_weights: {name} must be one of the tasks with a positive weight, got {name}: {weight}")
    for name, gens in cfg.generator_choice().items():
        try:
            create_distortion(name, gens)  # unknown names are refused before anything runs
        except KeyError as e:
            raise ValueError(f"generators: {str(e).strip(chr(39))}") from None
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    dtype = autocast_dtype(cfg.precision, device)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - cfg.workers))
    train_contents = load_contents(cfg.train_content, cfg.sample_seed)
    val_contents = load_contents(cfg.val_content, cfg.sample_seed)
    log.info("content: %d training sources, %d validation sources; training on %s (%s) in %s%s",
             len(train_contents), len(val_contents), device, processor(device),
             "bfloat16 autocast" if dtype else "float32", ", compiled" if cfg.compile else "")

    step, best = 0, -math.inf
    if resume and (out / "last.pt").exists():
        ckpt = read_checkpoint(out / "last.pt")
        model = load_checkpoint(out / "last.pt").train()  # rebuilt from the checkpoint's own args
        state = ckpt["extra"]
        step, best = int(state["step"]), float(state["best_score"])
        machines, trajectory = list(state.get("machines", [])), dict(state.get("trajectory", {}))
        log.info("resuming %s at step %d (best score %.4f)", out / "last.pt", step, best)
    else:
        machines, trajectory = [], {}
        model = create_model(cfg.model, cfg.tasks, scale_ratios=cfg.scale_ratios, patch_shapes=cfg.patch_shapes,
                             context_max=cfg.context_max, input_cfg=InputConfig(placement=cfg.placement, fov_luma=cfg.fov_luma), patch_aux=len(cfg.patch_tasks) if cfg.patch_route == "own" else None).train()
        model.nss_mean, model.nss_std = nss_statistics(train_contents, cfg, model.input_cfg)
    model = model.to(device, memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    average = copy.deepcopy(model).eval()
    forward = TrainingForward(model, device, dtype, cfg.compile)
    if resume and step:
        opt.load_state_dict(state["optimizer"])
        average.load_state_dict(state["average"])

    # One validation set for every training seed, so that runs of different seeds compare; its
    # severities stay uniform, its smoke at the default floor and its pictures at their own sharpness
    # (fixed_batches), so runs of different severity_skew, smoke_floor or soft_capture compare too.
    val = fixed_batches(val_contents, cfg, model.input_cfg, seed=VAL_SEED)
    # The stream's seed includes the step, so a resumed run continues with fresh samples.
    degraded = [(c, source.present) for source, c in open_degraded((640, 360), cfg.sample_seed)] if cfg.real_degraded else []
    stream = cfg.dataset(train_contents, model.input_cfg, cfg.sample_seed * 1_000_003 + step, severity_skew=cfg.severity_skew,
                         smoke_floor=cfg.smoke_floor, p_soft=cfg.soft_capture, degraded=degraded, p_degraded=cfg.real_degraded,
                         uneven_keep=cfg.uneven_keep, vignette_reach=cfg.vignette_reach, uneven_dim=cfg.uneven_dim)
    loader = iter(DataLoader(stream, batch_size=cfg.batch_size, num_workers=cfg.workers,
                             persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers else None,
                             pin_memory=device.type == "cuda"))
    history_path = out / "history.json"
    history = json.loads(history_path.read_text()) if resume and step and history_path.exists() else []
    history = [h for h in history if h["step"] <= step]
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", disable=not progress)
    t0 = time.time()
    end = stop_at or cfg.steps
    while step < end:
        for g in opt.param_groups:
            g["lr"] = get_lr(step, cfg)
        batch = to_device(next(loader), device)
        out_ = forward(model_inputs(batch, cfg))
        parts = losses(model, out_, batch, cfg)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        update_average(average, model, step, cfg.ema_decay)
        step += 1
        bar.update(1)
        bar.set_postfix({k: f"{v.item():.3f}" for k, v in parts.items()})
        if step % cfg.val_every == 0 or step == end:
            m = evaluate_batches(average, val, cfg)
            history.append({"step": step, "elapsed_s": round(time.time() - t0, 1),
                            **{k: v for k, v in m.items() if k != "per_task"}})
            # Every machine the run's steps ran on so far (a resumed run may have moved), and the digest
            # of its weight average at every validation so far: a rebuild can be checked against a
            # checkpoint of this run after its first validation, not only at the end
            # (training.provenance).
            here = machine_record(device, dtype, forward.compiled is not None)
            machines += [] if here in machines else [here]
            trajectory[step] = weights_digest(average.state_dict())
            record = {"machines": machines, "trajectory": trajectory}
            improved = m["score"] > best
            if improved:
                best = m["score"]
                save_checkpoint(average, out / "best.pt", training=asdict(cfg), metrics={"validation": m, "step": step},
                                extra=record)
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                save_checkpoint(average, out / "snapshots" / f"step_{step:05d}.pt", training=asdict(cfg),
                                metrics={"validation": m, "step": step}, extra=record)
            save_checkpoint(model, out / "last.pt", training=asdict(cfg), metrics={"validation": m},
                            extra={"step": step, "best_score": best, "optimizer": opt.state_dict(),
                                   "average": average.state_dict(), **record})
            history_path.write_text(json.dumps(history, indent=1))
            tqdm.write(f"step {step}: val loss {m['loss']:.3f} micro-F1 {m['micro_f1']:.3f} exact {m['exact_match']:.3f} "
                       f"sev±1 {m['severity_within_one']:.3f} SROCC {m['srocc']:.3f}{'  *best*' if improved else ''}")
    bar.close()
    return out / "best.pt"
