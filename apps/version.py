"""What hospital IT pins: ScopeWatch's version, the weights a run uses, and the decoding and
inference libraries they run on (`scopewatch --version`, the dashboard's footer, the metrics)."""
from __future__ import annotations

from pathlib import Path


def scopewatch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("scopewatch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from model.checkpoint import CODE_VERSION
        return CODE_VERSION


def version_line(weights: str | Path | None = None) -> str:
    import av
    import torch

    from model.factory import weights_label
    return (f"scopewatch {scopewatch_version()} (weights {weights_label(weights)}; torch {torch.__version__}, "
            f"PyAV {av.__version__})")
