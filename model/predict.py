"""Batch inference: RGB frames in, one `Prediction` per frame out. Everything downstream (monitor,
evaluation, dashboard) goes through `Predictor`; preprocessing comes from the model's own input
contract, so no caller repeats a constant."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from model.preprocess import FrameInputs, extract


@dataclass(frozen=True)
class Prediction:
    probabilities: dict[str, float]  # presence probability per task, [0, 1]
    severities: dict[str, float]  # continuous severity per task, [0, 1] (levels: model.decision)
    quality: float  # 0..100, higher is better
    nss: np.ndarray | None = field(default=None, repr=False)  # (K, 33) predicted patch NSS features
    # Where: per task the presence probability of each of the K patches (QualityNet.patch_presence),
    # and the patches as (x0, y0, x1, y1) fractions of the frame.
    patch_map: dict[str, np.ndarray] | None = field(default=None, repr=False)
    patch_boxes: np.ndarray | None = field(default=None, repr=False)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16(device: torch.device) -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX, through oneDNN)."""
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def resolve_precision(precision: str, device: torch.device) -> str:
    """The arithmetic the network runs in. `auto`: bfloat16 on a CPU that does it natively (a
    sixth faster in batches; presence probabilities move by under 0.01), else float32.
    Training, calibration and the shipping rule keep float32, so that weights are chosen alike on
    every machine."""
    if check_precision(precision) == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    if precision == "bfloat16" and not native_bfloat16(device):
        raise ValueError(f"bfloat16 asked for, but this {device.type.upper()} has no native bfloat16 "
                         "(use --precision float32)")
    return precision


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` for inference with every BatchNorm folded into the conv before it: the
    statistics are frozen at inference, so the normalisation is one more per-channel affine map,
    and folding it saves a full pass over every feature map (~15% of the model's CPU time)."""
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i], seq[i + 1] = fuse_conv_bn_eval(seq[i], seq[i + 1]), nn.Identity()
    return model


class ConvReLU(nn.Module):
    """A convolution and the ReLU after it as one oneDNN call: the ReLU is applied as the
    convolution writes its output, not in a second pass over the map; the outputs are the same.
    The weights are kept in the arithmetic the predictor runs."""

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype):
        super().__init__()
        self.register_buffer("weight", conv.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", conv.bias.detach().to(dtype))
        self.stride, self.padding, self.dilation = list(conv.stride), list(conv.padding), list(conv.dilation)
        self.groups = conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x.to(self.weight.dtype), self.weight, self.bias, self.padding,
                                                       self.stride, self.dilation, self.groups, "relu", [], "")

    @staticmethod
    def available(device: torch.device) -> bool:
        return device.type == "cpu" and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def fuse_conv_relu(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """`model` (BatchNorm already folded, on the CPU) with every conv (+ folded BatchNorm) + ReLU
    run as one `ConvReLU`; in place."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        layers = [m for m in seq if not isinstance(m, nn.Identity)]
        for conv, act in zip(layers, layers[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(act, nn.ReLU) and conv.bias is not None \
                    and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple):
                i, j = list(seq).index(conv), list(seq).index(act)
                seq[i], seq[j] = ConvReLU(conv, dtype), nn.Identity()
    return model


def collate(inputs: Sequence[FrameInputs]) -> dict[str, torch.Tensor]:
    return {"patches": torch.from_numpy(np.stack([x.patches for x in inputs])),
            "context": torch.from_numpy(np.stack([x.context for x in inputs])),
            "mask": torch.from_numpy(np.stack([x.mask for x in inputs]))}


class Predictor:
    def __init__(self, model, device: str = "auto", precision: str = "float32"):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = self._inference_copy(model)
        self.tasks = model.tasks
        self.input_cfg = model.input_cfg
        self.name = getattr(model, "arch", type(model).__name__)

    def replace_model(self, model) -> None:
        """Swap in other weights while sources run (the dashboard's weights setting). They must keep
        the input contract: same tasks (the CSV columns) and same input configuration, except where
        the patches go (`placement`: the inputs' shapes stay, the next frames are cut the new way)."""
        if model.tasks != self.tasks:
            raise ValueError(f"those weights detect {', '.join(model.tasks)}, not {', '.join(self.tasks)}")
        if replace(model.input_cfg, placement=self.input_cfg.placement) != self.input_cfg:
            raise ValueError("those weights expect another input configuration (patches, analysis size)")
        self.input_cfg = model.input_cfg
        self.model = self._inference_copy(model)
        self.name = getattr(model, "arch", type(model).__name__)

    def _inference_copy(self, model) -> nn.Module:
        model = fold_batchnorm(model).to(self.device).to(memory_format=torch.channels_last)
        if ConvReLU.available(self.device):
            fuse_conv_relu(model, torch.bfloat16 if self.precision == "bfloat16" else torch.float32)
        return model

    def prepare(self, frame: np.ndarray) -> FrameInputs:
        return extract(frame, self.input_cfg)

    @torch.inference_mode()
    def outputs(self, inputs: Sequence[FrameInputs], patch_map: bool = False) -> dict[str, torch.Tensor]:
        """The network's raw outputs for a batch (float32, on the CPU): what `predict_inputs` turns
        into predictions, and what training.calibrate fits its decision layer on."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in collate(inputs).items()}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            out = self.model(**batch, patch_map=patch_map)
        return {k: v.float().cpu() for k, v in out.items()}

    def predict_inputs(self, inputs: Sequence[FrameInputs], with_nss: bool = False,
                       with_map: bool = False) -> list[Prediction]:
        if not inputs:
            return []
        out = self.outputs(inputs, with_map)
        maps = torch.sigmoid(out["patch_presence_logits"]).numpy() if with_map else None
        prob = torch.sigmoid(out["presence_logits"]).numpy()
        sev = out["severity"].numpy()
        quality = out["quality"].numpy()
        nss = (out["nss"] * self.model.nss_std.cpu() + self.model.nss_mean.cpu()).numpy() if with_nss else None
        results = []
        for i in range(len(inputs)):
            results.append(Prediction(
                probabilities={t: float(prob[i, j]) for j, t in enumerate(self.tasks)},
                severities={t: float(sev[i, j]) for j, t in enumerate(self.tasks)},
                quality=float(quality[i]), nss=None if nss is None else nss[i],
                patch_map=None if maps is None else {t: maps[i, :, j] for j, t in enumerate(self.tasks)},
                patch_boxes=inputs[i].boxes() if with_map else None))
        return results

    def predict(self, frames: Sequence[np.ndarray], with_nss: bool = False, with_map: bool = False) -> list[Prediction]:
        return self.predict_inputs([self.prepare(f) for f in frames], with_nss, with_map)


def load_predictor(weights=None, device: str = "auto", precision: str = "float32") -> Predictor:
    """A ready predictor from a checkpoint path, or the shipped default weights when None."""
    from model.checkpoint import load_checkpoint
    from model.factory import DEFAULT_MODEL, weights_path

    return Predictor(load_checkpoint(weights or weights_path(DEFAULT_MODEL)), device, precision)
