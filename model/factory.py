"""`create_model` / `list_models`: the one entry point to ScopeWatch networks (timm style).

Registered variants only choose hyper-parameters. `pretrained=True` loads the shipped weights of
that architecture (`model/weights/<arch>.<tag>.pt`); `checkpoint_path=` loads any checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from model.registry import Registry
from model.tasks import DEFAULT_TASKS, validate_tasks
from model.network import QualityNet

MODELS: Registry[Callable[..., QualityNet]] = Registry("model")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "scopewatch_lap5"
DEFAULT_TAG = "synth_v16"


def register_model(fn: Callable[..., QualityNet]) -> Callable[..., QualityNet]:
    return MODELS.register(fn.__name__)(fn)


@register_model
def scopewatch_lap5(tasks=DEFAULT_TASKS, **kwargs) -> QualityNet:
    """Default: 5 conv stages (16-96 channels) pooled at stages 2, 3 and 5; 8 patches of 64 px
    plus a 96x160 context view."""
    return QualityNet(tasks, widths=(16, 32, 48, 64, 96), **kwargs)


@register_model
def scopewatch_lap5_small(tasks=DEFAULT_TASKS, **kwargs) -> QualityNet:
    """Half-width trunk: for tests and quick experiments."""
    return QualityNet(tasks, widths=(8, 16, 24, 32, 48), hidden=96, aux_hidden=32, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


def weights_path(name: str, tag: str = DEFAULT_TAG) -> Path:
    return WEIGHTS_DIR / f"{name}.{tag}.pt"


def weights_label(weights: str | Path | None) -> str:
    """The weights a run uses, as IT pins them: the shipped ones by name, others by file name."""
    return Path(weights).name if weights else f"{DEFAULT_MODEL}.{DEFAULT_TAG}"


def create_model(name: str = DEFAULT_MODEL, tasks=None, pretrained: bool = False,
                 checkpoint_path: str | Path | None = None, **kwargs) -> QualityNet:
    """Build a registered model. With `pretrained` or `checkpoint_path`, the weights and the task
    list come from the checkpoint (asking for other tasks than it was trained on is an error)."""
    from model.checkpoint import CheckpointError, load_checkpoint

    MODELS.get(name)  # fail loudly on an unknown name, with suggestions
    if pretrained or checkpoint_path:
        model = load_checkpoint(checkpoint_path or weights_path(name))
        if model.arch != name:
            raise CheckpointError(f"checkpoint holds {model.arch}, not {name}")
        if tasks is not None and tuple(tasks) != model.tasks:
            raise CheckpointError(f"checkpoint was trained for tasks {model.tasks}, not {tuple(tasks)}")
        return model
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = MODELS.get(name)(tasks=validate_tasks(tasks or DEFAULT_TASKS), **kwargs)
    # The input contract and the NSS size have their own checkpoint fields (`input`, `num_nss`); in
    # model_args an InputConfig would be pickled, and a checkpoint saved from a loaded model (a
    # resumed run's) would no longer load with weights_only.
    model.arch = name
    model.model_args = {k: v for k, v in kwargs.items() if k not in ("input_cfg", "num_nss")}
    return model
