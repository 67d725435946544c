"""`scopewatch export-onnx`: the predictor as an ONNX graph for other runtimes (model.export)."""
from __future__ import annotations

import sys
from pathlib import Path

from apps.cli.common import UsageError, check_writable


def cmd_export_onnx(args) -> int:
    from model import CheckpointError
    from model.checkpoint import load_checkpoint
    from model.factory import DEFAULT_MODEL, weights_path

    try:
        from model.export import export_onnx
        import onnx  # noqa: F401  (checked here for a one-line answer)
    except ImportError:
        raise UsageError("export-onnx needs the onnx package: pip install 'scopewatch[onnx]'") from None
    weights = args.weights or weights_path(DEFAULT_MODEL)
    try:
        model = load_checkpoint(weights)
    except CheckpointError as e:
        raise UsageError(str(e)) from None
    out = args.out
    check_writable(out, "--out")
    data = export_onnx(model, out)
    print(f"wrote {out} ({len(data) / 1e6:.1f} MB; {model.arch}, tasks {', '.join(model.tasks)}; "
          f"inputs patches, context, mask; dynamic batch)", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("export-onnx", help="write the model as an ONNX graph (for ONNX Runtime, TensorRT, DeepStream)",
                       description="Write the checkpoint's predictor as ONNX: BatchNorm folded, a dynamic batch, "
                                   "the inputs the monitor's preprocessing makes (uint8 patches and whole view, the "
                                   "view's mask) and every output it reads (presence logits, severity, quality, NSS, "
                                   "the per-patch map), with the checkpoint's description in the file's metadata "
                                   "(scopewatch.* keys). Needs the [onnx] extra.")
    p.add_argument("--weights", type=Path, help="checkpoint to export (default: the shipped weights)")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.set_defaults(run=cmd_export_onnx)
