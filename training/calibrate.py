"""`scopewatch calibrate`: the presence decisions' last layer, fitted on validation clips.

The presence heads are trained with binary cross-entropy, frame by frame, on the training mix,
which need not put 0.5 where a clip decision is best: on clips made like the test clips, faint
(level-1) distortions score under 0.5, and the heads' errors are not independent (the two blur heads
lean on each other). The directional-energy pathway's own presence logits (model.network) carry
blur cues of their own. So, per frame, the calibrated presence logits are

    z' = z A + u B + c

with z the presence logits, u the directional pathway's logits (both over the task list), A a
task-by-task mixing (identity before calibration), B the directional share (zero before) and c a
shift. (A, B, c) minimise the binary cross-entropy of the clip decisions, the mean of sigmoid(z')
over a clip's frames as `scopewatch evaluate` decides, plus `L2` x the squared distance of (A, B)
from (identity, zero). The layer was chosen over per-task thresholds on validation clips alone;
docs/MODEL.md gives the figures, including what it costs on real footage, and
reports/ablation/README.md the variants tried. The data must be made from *validation* content,
never from test content.

The layer is folded into the checkpoint: A into the presence head's weights and bias, B into the
`directional_mix` layer (model.network), c into the bias. A calibrated checkpoint decides at 0.5
like any other (model.decision), so nothing downstream (events, badges, CSV) needs to know; the fitted
layer and the clip figures before and after are recorded in the checkpoint's metrics.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.decision import PRESENCE_THRESHOLD
from model.factory import create_model
from model.predict import Predictor
from training.evaluate import find_labels, sample_frames, true_presence
from training.metrics import exact_match, micro_f1

L2 = 1e-3


def frame_logits(predictor: Predictor, items, frames_per_clip: int = 8, progress: bool = True):
    """Per analysed frame: the presence logits, the directional logits and the clip's index."""
    z, u, clip = [], [], []
    for i, item in enumerate(tqdm(items, desc="clips", unit="clip", disable=not progress)):
        out = predictor.outputs([predictor.prepare(f) for f in sample_frames(item.path, frames_per_clip)])
        z.append(out["presence_logits"])
        u.append(out["directional_logits"])
        clip.append(torch.full((len(out["presence_logits"]),), i))
    return torch.cat(z), torch.cat(u), torch.cat(clip)


def clip_probability(logits: torch.Tensor, clip: torch.Tensor, clips: int) -> torch.Tensor:
    """(clips, tasks): the mean presence probability over each clip's frames."""
    total = torch.zeros(clips, logits.shape[1]).index_add_(0, clip, torch.sigmoid(logits))
    return total / torch.bincount(clip, minlength=clips).clamp_min(1)[:, None]


def fit_decision_layer(z: torch.Tensor, u: torch.Tensor, clip: torch.Tensor, y_true: np.ndarray,
                       l2: float = L2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, B, c) of z A + u B + c (see the module), fitted to the clips' labels `y_true` (clips, tasks)."""
    n = z.shape[1]
    y = torch.as_tensor(np.asarray(y_true), dtype=torch.float32)
    eye = torch.eye(n)
    a, b = eye.clone().requires_grad_(True), torch.zeros(n, n, requires_grad=True)
    c = torch.zeros(n, requires_grad=True)
    opt = torch.optim.LBFGS([a, b, c], max_iter=500, line_search_fn="strong_wolfe")

    def objective():
        opt.zero_grad()
        p = clip_probability(z @ a + u @ b + c, clip, len(y)).clamp(1e-6, 1 - 1e-6)
        loss = F.binary_cross_entropy(p, y) + l2 * ((a - eye).square().sum() + b.square().sum())
        loss.backward()
        return loss

    opt.step(objective)
    return a.detach(), b.detach(), c.detach()


def with_directional_mix(model):
    """The same network and weights, rebuilt with its `directional_mix` layer (zero: same outputs)."""
    mixed = create_model(model.arch, model.tasks, input_cfg=model.input_cfg, num_nss=model.aux_out.out_features,
                         **{**model.model_args, "directional_mix": True})
    missing, unexpected = mixed.load_state_dict(model.state_dict(), strict=False)
    if unexpected or missing != ["directional_mix.weight"]:
        raise CheckpointError(f"cannot add a decision layer to {model.arch} (missing {missing}, unexpected {unexpected})")
    return mixed.eval()


@torch.no_grad()
def fold_decision_layer(model, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> None:
    """Make the model's presence logits z A + u B + c: z = h W^T + w, so W <- A^T W, w <- w A + c."""
    head = model.presence
    head.weight.copy_(a.T @ head.weight)
    head.bias.copy_(head.bias @ a + c)
    model.directional_mix.weight.copy_(b.T)


def clip_scores(prob: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """The clip decisions' micro-F1 and exact match, and the cross-entropy the fit minimises."""
    y_pred = prob >= PRESENCE_THRESHOLD
    p = np.clip(prob, 1e-6, 1 - 1e-6)
    bce = float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))
    return {"micro_f1": micro_f1(y_true, y_pred), "exact_match": exact_match(y_true, y_pred), "bce": bce}


def calibrate(weights: Path, data: Path, out: Path, frames_per_clip: int = 8, progress: bool = True) -> dict:
    """Fit the decision layer of `weights` on the clips of `data`, write the calibrated checkpoint to
    `out` and return the calibration record stored in it."""
    model = load_checkpoint(weights)
    meta = model.checkpoint_meta
    if "calibration" in meta["metrics"]:
        raise CheckpointError(f"{weights}: already calibrated (on {meta['metrics']['calibration']['data']}); "
                              "calibrate the trainer's checkpoint instead")
    model = with_directional_mix(model)
    items = find_labels(data, model.tasks)
    z, u, clip = frame_logits(Predictor(model, "cpu"), items, frames_per_clip, progress)
    y_true = true_presence(items, model.tasks)
    a, b, c = fit_decision_layer(z, u, clip, y_true)
    record = {"data": str(data), "clips": len(items), "frames_per_clip": frames_per_clip, "tasks": list(model.tasks), "l2": L2,
              "presence_mix": a.tolist(), "directional_mix": b.tolist(), "shift": c.tolist(),
              "before": clip_scores(clip_probability(z, clip, len(items)).numpy(), y_true),
              "after": clip_scores(clip_probability(z @ a + u @ b + c, clip, len(items)).numpy(), y_true)}
    fold_decision_layer(model, a, b, c)
    save_checkpoint(model, out, training=meta["training"], metrics={**meta["metrics"], "calibration": record},
                    extra=meta["extra"])
    return record
