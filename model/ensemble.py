"""An average of several trained networks with one input contract, saved and loaded as one checkpoint.

Made by `scopewatch average` to measure whether what real footage misses is the spread between
training seeds (averaging cancels it) or a bias they share (averaging keeps it); docs/MODEL.md has
the answer. Its presence probabilities are the members' mean; severity, quality and the NSS
features are the members' means too. `presence.bias` is a shift of the averaged logit, which is
where `training.operating.fold` puts an average's own operating points, as it does a network's.
"""
from __future__ import annotations

import torch
from torch import nn

from model.preprocess import InputConfig

AVERAGE = "average"  # the checkpoint's `architecture`


class LogitShift(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n), requires_grad=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + self.bias


def _mean_logit(logits: list[torch.Tensor]) -> torch.Tensor:
    p = torch.stack([torch.sigmoid(x) for x in logits]).mean(0)
    return torch.logit(p, eps=1e-6)


class Average(nn.Module):
    """`members`: one {"architecture", "model_args"} per network, as their checkpoints describe them."""

    def __init__(self, tasks: tuple[str, ...], members: list[dict], input_cfg: InputConfig | None = None,
                 num_nss: int = 33):
        from model.factory import create_model

        super().__init__()
        if len(members) < 2:
            raise ValueError("an average needs at least two networks")
        self.tasks = tuple(tasks)
        self.input_cfg = input_cfg or InputConfig()
        self.num_nss = num_nss
        self.members = nn.ModuleList([create_model(m["architecture"], self.tasks, input_cfg=self.input_cfg,
                                                   num_nss=num_nss, **m["model_args"]) for m in members])
        self.presence = LogitShift(len(self.tasks))
        # The members' NSS outputs are averaged in feature units: the predictor's standardisation is none.
        self.register_buffer("nss_mean", torch.zeros(num_nss))
        self.register_buffer("nss_std", torch.ones(num_nss))
        self.arch = AVERAGE
        self.model_args = {"members": [dict(m) for m in members]}

    @classmethod
    def of(cls, models: list[nn.Module]) -> "Average":
        """The average of loaded networks (weights copied in); they must share tasks and input."""
        first = models[0]
        for m in models[1:]:
            if m.tasks != first.tasks or m.input_cfg != first.input_cfg or m.num_nss != first.num_nss:
                raise ValueError("the networks differ in tasks, input configuration or NSS features")
        avg = cls(first.tasks, [{"architecture": m.arch, "model_args": dict(m.model_args)} for m in models],
                  first.input_cfg, first.num_nss)
        for mine, theirs in zip(avg.members, models):
            mine.load_state_dict(theirs.state_dict())
        return avg.eval()

    def forward(self, patches, context, mask, patch_map: bool = False):
        outs = [m(patches, context, mask, patch_map) for m in self.members]
        out = {"presence_logits": self.presence(_mean_logit([o["presence_logits"] for o in outs])),
               "severity": torch.stack([o["severity"] for o in outs]).mean(0),
               "quality": torch.stack([o["quality"] for o in outs]).mean(0),
               "nss": torch.stack([o["nss"] * m.nss_std + m.nss_mean for o, m in zip(outs, self.members)]).mean(0)}
        if patch_map:
            out["patch_presence_logits"] = self.presence(_mean_logit([o["patch_presence_logits"] for o in outs]))
        return out
