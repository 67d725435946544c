"""Checkpoints that describe themselves: weights plus everything needed to rebuild and use them.

A checkpoint is one `torch.save` dict of plain types and tensors, so it loads with
`torch.load(weights_only=True)` (never unrestricted pickle):

    format, format_version, architecture, model_args, tasks, input (InputConfig), num_nss,
    state_dict, sha256 (of the weights), code_version, created, training (config),
    metrics (validation/evaluation figures), extra

`load_checkpoint(path)` rebuilds the model from that alone. A missing, corrupt, tampered-with or
incompatible file raises `CheckpointError` with a one-line reason.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from model.preprocess import InputConfig

FORMAT = "scopewatch-checkpoint"
FORMAT_VERSION = 1
CODE_VERSION = "0.1.0"


class CheckpointError(Exception):
    pass


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        # reshape(-1) copies a channels_last tensor into logical order: same digest either way.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checkpoint_dict(model, training: dict | None = None, metrics: dict | None = None, extra: dict | None = None) -> dict:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "architecture": model.arch,
        "model_args": dict(model.model_args), "tasks": list(model.tasks),
        "input": model.input_cfg.to_dict(), "num_nss": int(model.num_nss),
        "state_dict": state, "sha256": weights_digest(state), "code_version": CODE_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "training": training or {}, "metrics": metrics or {}, "extra": extra or {},
    }


def save_checkpoint(model, path: str | Path, **meta) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(checkpoint_dict(model, **meta), tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint under the real name
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, checked for format and integrity (weights not yet loaded into a model)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: an empty file, not a ScopeWatch checkpoint")
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    if not zipped:
        raise CheckpointError(f"{path}: not a ScopeWatch checkpoint (not a file that torch.save writes)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: a damaged checkpoint (cut short or corrupt: its archive does not read)")
    try:
        with warnings.catch_warnings():  # torch warns about the file it is refusing; the one line below says it
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a ScopeWatch checkpoint (it holds Python objects, which are never "
                              "loaded: only plain weights are)") from None
    except Exception as e:  # torch raises many types for a damaged archive
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: a damaged checkpoint ({reason[:80]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ScopeWatch checkpoint (a PyTorch file without ScopeWatch's description of the model)")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this "
                              f"ScopeWatch understands ({FORMAT_VERSION}); upgrade ScopeWatch")
    if weights_digest(ckpt["state_dict"]) != ckpt.get("sha256"):
        raise CheckpointError(f"{path}: weights do not match their recorded checksum (modified or corrupt)")
    return ckpt


def load_checkpoint(path: str | Path):
    """Rebuild the model a checkpoint describes, weights loaded, in eval mode."""
    from model.ensemble import AVERAGE, Average
    from model.factory import MODELS, create_model

    ckpt = read_checkpoint(path)
    arch = ckpt["architecture"]
    if arch not in MODELS and arch != AVERAGE:
        raise CheckpointError(f"{path}: unknown architecture {arch!r} ({MODELS.unknown_message(arch)})")
    try:
        build = Average if arch == AVERAGE else (lambda **kw: create_model(arch, **kw))
        model = build(tasks=tuple(ckpt["tasks"]), input_cfg=InputConfig.from_dict(ckpt["input"]),
                      num_nss=ckpt["num_nss"], **ckpt["model_args"])
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, TypeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit {arch} ({first[:200]})") from None
    model.checkpoint_meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.eval()
