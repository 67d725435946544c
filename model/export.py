"""The predictor as an ONNX graph: what runs outside PyTorch (ONNX Runtime here; TensorRT,
DeepStream or Holoscan on GPU machines, which all take ONNX).

`export_onnx(model, path)` writes exactly what `Predictor` runs: BatchNorm folded into the
convolutions, a dynamic batch, the inputs `model.preprocess.extract` makes (uint8 patches and whole
view, the view's mask) and every output the monitor reads, the per-patch map included. The file
carries the checkpoint's description in its metadata (`scopewatch.*` keys: architecture, tasks,
input contract, NSS standardisation, weights digest), so that whoever deploys it knows what it
decides and on what input.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from model.preprocess import FrameInputs

INPUTS = ("patches", "context", "mask")
OUTPUTS = ("presence_logits", "severity", "quality", "nss", "patch_presence_logits")
OPSET = 17


class _Graph(nn.Module):
    """The folded model with positional inputs and a tuple of outputs, in INPUTS / OUTPUTS order."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, patches, context, mask):
        out = self.model(patches, context, mask, patch_map=True)
        return tuple(out[name] for name in OUTPUTS)


def metadata(model) -> dict[str, str]:
    from model.checkpoint import CODE_VERSION, weights_digest

    return {"scopewatch.architecture": model.arch, "scopewatch.tasks": json.dumps(list(model.tasks)),
            "scopewatch.input": json.dumps(model.input_cfg.to_dict()),
            "scopewatch.nss_mean": json.dumps(model.nss_mean.tolist()),
            "scopewatch.nss_std": json.dumps(model.nss_std.tolist()),
            "scopewatch.weights_sha256": weights_digest(model.state_dict()),
            "scopewatch.code_version": CODE_VERSION, "scopewatch.outputs": ",".join(OUTPUTS)}


def export_onnx(model, path: str | Path | None = None, example: Sequence[FrameInputs] | None = None) -> bytes:
    """Write `model` (a QualityNet) as ONNX to `path` (None: only return the bytes), traced on the
    `example` frames' inputs (default: two frames of noise; the graph has no data-dependent branch,
    patch choice happens before it). Needs the `onnx` package (the `[onnx]` extra) for the metadata."""
    import onnx

    from model.predict import collate, fold_batchnorm
    from model.preprocess import extract

    if example is None:
        rng = np.random.default_rng(0)
        example = [extract(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), model.input_cfg) for _ in range(2)]
    graph = _Graph(fold_batchnorm(model).float()).eval()
    batch = collate(example)
    buffer = io.BytesIO()
    # Tracing warns that the pooled mask's size becomes a constant: it is, the input contract fixes it.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(graph, tuple(batch[name] for name in INPUTS), buffer, dynamo=False, opset_version=OPSET,
                          input_names=list(INPUTS), output_names=list(OUTPUTS),
                          dynamic_axes={name: {0: "batch"} for name in (*INPUTS, *OUTPUTS)})
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata(model).items():
        proto.metadata_props.add(key=key, value=value)
    data = proto.SerializeToString()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def onnx_session(data: bytes | str | Path, threads: int = 1):
    """An ONNX Runtime CPU session on an exported graph (bytes or a file)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = str(data) if isinstance(data, Path) else data
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(session, inputs: Sequence[FrameInputs]) -> dict[str, np.ndarray]:
    """The graph's outputs for a batch of frames, by name."""
    from model.predict import collate

    feeds = {name: tensor.numpy() for name, tensor in collate(inputs).items()}
    return dict(zip(OUTPUTS, session.run(list(OUTPUTS), feeds)))
