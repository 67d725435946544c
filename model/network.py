"""The ScopeWatch network: one shared CNN trunk, parallel per-task heads, quality with an NSS aux.

Layout follows timm's model files: blocks, the main class (`forward_features`, `forward_head`,
`forward`), then the registered variants that only choose hyper-parameters (model/factory.py).

* Trunk (shared, Ameur et al.): conv-BN-ReLU stages, stride 16 overall. It runs on the K patches of
  a frame (full analysis resolution: noise, fine detail) and on the low-resolution context view of
  the whole frame (smoke and illumination are global).
* Pooling: each patch -> mean and std of the maps of an early, a middle and the last stage (std
  keeps texture energy, the cue for blur and noise; the early maps keep its orientation, which
  tells motion blur from defocus); patches -> mean and std across the K patches (aggregation that sees both the
  typical patch and how much they disagree, i.e. local vs global distortions); context -> mean and
  std over the cells inside the field of view (std of the context = brightness/veil spread).
* Directional energy (fixed, not learned; `DirectionalEnergy`): how much fine detail survives in
  each direction, over the whole frame. A motion PSF removes detail along one direction, the same
  in every patch; a defocus disk removes it in all directions; motion and defocus together leave
  the cross direction blurred too. The CNN's pooled maps carry such cues only for the directions
  their filters happen to have, so they are given here in a form that does not depend on the
  blur's direction. They enter the neck through their own small MLP, which is also trained to
  predict presence on its own (`directional_logits`, a deep-supervision loss): fed in raw beside
  the ~1000 pooled CNN numbers, they would be under-used. With `scale_ratios` each profile also
  comes as a ratio against the coarsest lag, in which the scene's own edge orientation cancels
  (see the class). The measurements behind these choices are in docs/MODEL.md.
* Heads on the fused frame vector: presence logits (one binary classifier per task), severity in
  [0, 1] per task (level = ceil(4 x severity)), and quality 0..100; `directional_logits` are the
  directional pathway's own presence logits, a training signal. In a calibrated checkpoint the
  presence logits are also mixed across tasks and given a linear map of the directional logits
  (`directional_mix`), a decision layer fitted on validation clips (training.calibrate). The NSS
  auxiliary head (Bourbia et al.) regresses each patch's wavelet NSS features; its hidden layer,
  averaged over patches, is concatenated into the quality head, so quality rests on naturalness
  features.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.preprocess import InputConfig


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Trunk(nn.Module):
    """Conv stages; `forward` returns the maps of the `taps` stages (early ones keep the oriented,
    fine-scale texture energy that tells a motion streak from a defocus disk, and noise from detail)."""

    def __init__(self, widths: tuple[int, ...], taps: tuple[int, ...]):
        super().__init__()
        strides = (1,) + (2,) * (len(widths) - 1)
        chans = (3,) + tuple(widths)
        self.stages = nn.ModuleList([ConvBNAct(a, b, s) for a, b, s in zip(chans, chans[1:], strides)])
        self.taps = tuple(i % len(widths) for i in taps)
        self.out_channels = sum(widths[i] for i in self.taps)

    def forward(self, x) -> list[torch.Tensor]:
        maps = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.taps:
                maps.append(x)
        return maps


def second_difference_kernels(lag: float, angles: int) -> torch.Tensor:
    """(angles, 1, n, n) kernels of f(x + lag u) + f(x - lag u) - 2 f(x), u at angles pi k / angles,
    off-grid taps bilinear. Each is scaled to unit norm, so white noise has the same energy at every
    angle (bilinear taps average neighbours and would otherwise favour the off-axis directions)."""
    n = math.ceil(lag)
    k = torch.zeros(angles, 1, 2 * n + 1, 2 * n + 1)
    for a in range(angles):
        theta = math.pi * a / angles
        for sign in (1, -1):
            x, y = n + sign * lag * math.cos(theta), n + sign * lag * math.sin(theta)
            x0, y0 = math.floor(x), math.floor(y)
            fx, fy = x - x0, y - y0
            for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
                if w > 1e-9:
                    k[a, 0, y0 + dy, x0 + dx] += w
        k[a, 0, n, n] -= 2.0
    return k / k.square().sum((1, 2, 3), keepdim=True).sqrt()


class DirectionalEnergy(nn.Module):
    """How much fine detail survives in each direction, over the whole frame (fixed, not learned).

    Energy of directional second differences at 8 angles and lags of 1, 2 and 4 px, on the luma at
    full analysis resolution and at half (lags of 2-8 px there: long streaks, and sensor noise
    averaged down). Energies are summed over the K patches first, so the textured patches carry the
    estimate and scene edges, which point every which way across patches, average out. Each
    (resolution, lag) profile over angle is expressed relative to its mean and turned to a common
    reference: the direction with the least energy (a motion streak's direction) first, and the
    two sides of it averaged, which makes it independent of the blur's direction and mirror image.
    Second differences ignore smooth shading, the gradients of which survive any blur.
    Out: per profile the aligned, symmetrised shape (angles/2 + 1), the level, the spread of the
    level across patches and the largest deviation from it.

    With `scale_ratios`, also each finer profile against the coarsest (8 px): log energy at lag L
    minus log energy at 8 px, per direction. The most detailed patches often hold one long straight
    edge (an instrument shaft, a fold), which makes the plain profiles anisotropic on sharp frames
    too; an edge keeps its share of energy at every scale, while a motion streak removes only the
    scales below its length, along its direction, so in the ratio the scene's own orientation
    cancels and the blur's remains. These ratio profiles share their own
    reference direction (their least ratio, from the 2 px, 4 px and half-resolution 4 px lags) and
    give their aligned, symmetrised shape and mean.

    With `patch_shapes`, also each patch's own aligned shapes (plain and, with `scale_ratios`,
    ratio) and largest deviation, averaged over the patches. The sum over patches cancels a blur
    whose direction turns across the frame (the scope rotating or moving in or out, a curved path,
    an instrument's own motion): streaked in every patch, it sums to the all-direction loss of a
    defocus (measured: `python -m training.sensitivity` calls those generators defocus as well)."""

    def __init__(self, lags: tuple[float, ...] = (1, 2, 4), angles: int = 8, scale_ratios: bool = False,
                 patch_shapes: bool = False):
        super().__init__()
        self.lags, self.angles, self.scale_ratios, self.patch_shapes = tuple(lags), angles, scale_ratios, patch_shapes
        for i, lag in enumerate(self.lags):
            self.register_buffer(f"kernel{i}", second_difference_kernels(lag, angles), persistent=False)
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]) / 255.0, persistent=False)
        self.profiles = 2 * len(self.lags)
        ratio_shape = scale_ratios * (self.profiles - 1) * (angles // 2 + 1)
        self.num_features = self.profiles * (angles // 2 + 4) + ratio_shape + scale_ratios * (self.profiles - 1)
        if patch_shapes:
            self.num_features += self.profiles * (angles // 2 + 2) + ratio_shape

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (B, K, P, P, 3) uint8 -> (B, num_features), always in float32."""
        return self.pooled(self.energies(patches))

    def energies(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (B, K, P, P, 3) uint8 -> directional energies (B, K, profiles, angles), float32."""
        # Energies span decades and are compared through logs: bfloat16's 8-bit mantissa (mixed-
        # precision training) would quantise the anisotropy this measures; the kernels are fixed.
        with torch.autocast(patches.device.type, enabled=False):
            return self._energies(patches)

    def per_patch(self, energy: torch.Tensor) -> torch.Tensor:
        """(B, K, profiles, angles) -> (B, K, num_features): each patch's features as if it were alone."""
        b, k = energy.shape[:2]
        return self.pooled(energy.flatten(0, 1)[:, None]).view(b, k, -1)

    def _energies(self, patches: torch.Tensor) -> torch.Tensor:
        b, k = patches.shape[:2]
        # A 1x1 convolution of the channels_last view: faster than a matrix-vector product on the CPU.
        y = F.conv2d(patches.flatten(0, 1).permute(0, 3, 1, 2).float(), self.luma.view(1, 3, 1, 1))  # (B*K, 1, P, P)
        energy = []
        # Stride 2 at full resolution: a quarter of the positions estimate a mean energy as well.
        for image, stride in ((y, 2), (_half_resolution(y), 1)):
            for i in range(len(self.lags)):
                r = F.conv2d(image, getattr(self, f"kernel{i}"), stride=stride)
                energy.append(r.square().mean((2, 3)))
        return torch.stack(energy, 1).view(b, k, self.profiles, self.angles)

    def pooled(self, energy: torch.Tensor) -> torch.Tensor:
        """(B, K, profiles, angles) energies -> (B, num_features) features of the K patches together."""
        with torch.autocast(energy.device.type, enabled=False):
            return self._pooled(energy.float())

    def _pooled(self, energy: torch.Tensor) -> torch.Tensor:
        spread = (energy.mean(-1) + 1e-8).log().std(1, unbiased=False)
        level, shape, deviation, ratio_shape, ratio_mean = self._shapes((energy.sum(1) + 1e-8).log())
        out = [shape, level, spread, deviation]
        if self.scale_ratios:
            out += [ratio_shape, ratio_mean]
        if self.patch_shapes:
            b, k = energy.shape[:2]
            _, shape, deviation, ratio_shape, _ = self._shapes((energy.flatten(0, 1) + 1e-8).log())
            own = [shape, deviation] + ([ratio_shape] if self.scale_ratios else [])
            out.append(torch.cat(own, 1).view(b, k, -1).mean(1))  # each patch turned to its own direction
        return torch.cat(out, 1)

    def _shapes(self, profile: torch.Tensor):
        """(N, profiles, angles) log energies -> their level (N, profiles), aligned shape, largest
        deviation from the level and, with `scale_ratios`, the ratio profiles' aligned shape and mean
        (else None, None)."""
        level = profile.mean(-1, keepdim=True)
        rel = profile - level
        # The reference direction comes from the lags of 2 px and more, where the bilinear taps of
        # the lag-1 kernels matter least.
        shape, deviation = self._aligned_shape(rel, rel[:, 1:].sum(1)), rel.abs().amax(-1)
        if not self.scale_ratios:
            return level.squeeze(-1), shape, deviation, None, None
        ratio = profile[:, :-1] - profile[:, -1:]  # (N, profiles - 1, angles): each lag against 8 px
        mean = ratio.mean(-1, keepdim=True)
        rel_ratio = ratio - mean
        ratio_shape = self._aligned_shape(rel_ratio, rel_ratio[:, [1, 2, self.profiles - 2]].sum(1))
        return level.squeeze(-1), shape, deviation, ratio_shape, mean.squeeze(-1)

    def _aligned_shape(self, rel: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(B, n, angles) profiles turned so that the least angle of `reference` (B, angles) comes
        first, the two sides of it averaged -> (B, n * (angles/2 + 1))."""
        first = reference.argmin(-1)
        order = (torch.arange(self.angles, device=rel.device)[None] + first[:, None]) % self.angles
        aligned = torch.gather(rel, 2, order[:, None].expand(-1, rel.shape[1], -1))
        half = self.angles // 2
        shape = [aligned[..., 0]] + [(aligned[..., j] + aligned[..., -j]) / 2 for j in range(1, half)] + [aligned[..., half]]
        return torch.stack(shape, -1).flatten(1)


def _half_resolution(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling (odd last rows and columns dropped) as four strided views added: on a
    one-channel map several times faster than avg_pool2d on the CPU."""
    h, w = (int(s) // 2 * 2 for s in x.shape[-2:])
    x = x[..., :h, :w]
    return ((x[..., ::2, ::2] + x[..., ::2, 1::2]) + (x[..., 1::2, ::2] + x[..., 1::2, 1::2])) * 0.25


def _pool_maps(maps: list[torch.Tensor], mask: torch.Tensor | None = None, with_max: bool = False) -> torch.Tensor:
    """Mean and std of every tapped map over space (within the mask, resized to each map); with
    `with_max` also its maximum there, where something that fills a small part of the view (a wisp
    of smoke, a hot spot) shows as strongly as where it fills all of it."""
    out = []
    # In float32: under bfloat16 autocast E[x^2] - E[x]^2 would cancel to noise. Over the
    # (B, HW, C) view of a channels_last map, the moments are a mean over one dimension, or two
    # batched matrix products with the mask's weights: reductions over the spatial dims of the
    # channels_last map itself, or products with a broadcast weight, take several times longer.
    with torch.autocast(maps[0].device.type, enabled=False):
        for m in maps:
            h, w = (int(s) for s in m.shape[-2:])  # plain ints: an ONNX export traces them as constants
            x = m.float().permute(0, 2, 3, 1).flatten(1, 2)
            if mask is None:
                mean, square = x.mean(1), (x * x).mean(1)
                peak = x.amax(1) if with_max else None
            else:
                inside = F.adaptive_avg_pool2d(mask, [h, w]) > 0.5  # (B, 1, h, w)
                weight = inside.float().flatten(2) + 1e-3
                weight = weight / weight.sum(-1, keepdim=True)
                mean, square = torch.bmm(weight, x).squeeze(1), torch.bmm(weight, x * x).squeeze(1)
                if with_max:  # over the whole map where the mask leaves nothing of it, as the weights do
                    inside = inside.flatten(2).transpose(1, 2) | ~inside.flatten(1).any(1)[:, None, None]
                    peak = x.masked_fill(~inside, float("-inf")).amax(1)
            var = (square - mean * mean).clamp_min(0.0)
            out.append(torch.cat([mean, (var + 1e-6).sqrt()] + ([peak] if with_max else []), dim=-1))
    return torch.cat(out, dim=-1)


def _mean_std(x: torch.Tensor, dims) -> torch.Tensor:
    mean, square = x.mean(dims), (x * x).mean(dims)
    var = (square - mean * mean).clamp_min(0.0)
    return torch.cat([mean, (var + 1e-6).sqrt()], dim=-1)


class QualityNet(nn.Module):
    def __init__(self, tasks: tuple[str, ...], widths: tuple[int, ...] = (16, 32, 48, 64, 96),
                 taps: tuple[int, ...] = (1, 2, -1), hidden: int = 192, aux_hidden: int = 64, directional_hidden: int = 64,
                 num_nss: int = 33, scale_ratios: bool = False, patch_shapes: bool = False, directional_mix: bool = False,
                 patch_aux: int = 0, context_max: bool = False, input_cfg: InputConfig | None = None):
        super().__init__()
        self.tasks = tuple(tasks)
        self.input_cfg = input_cfg or InputConfig()
        self.num_nss = num_nss
        self.trunk = Trunk(tuple(widths), tuple(taps))
        c = self.trunk.out_channels
        self.directional = DirectionalEnergy(scale_ratios=scale_ratios, patch_shapes=patch_shapes)
        self.directional_mlp = nn.Sequential(nn.BatchNorm1d(self.directional.num_features),
                                             nn.Linear(self.directional.num_features, directional_hidden), nn.ReLU(inplace=True))
        self.directional_presence = nn.Linear(directional_hidden, len(self.tasks))
        self.context_max = context_max
        self.neck = nn.Sequential(nn.Linear((7 if context_max else 6) * c + directional_hidden, hidden),
                                  nn.ReLU(inplace=True), nn.Dropout(0.1))
        self.presence = nn.Linear(hidden, len(self.tasks))
        # Set by `scopewatch calibrate` (training.calibrate), never trained: the directional
        # pathway's presence logits added into the presence logits, fitted on validation clips.
        self.directional_mix = nn.Linear(len(self.tasks), len(self.tasks), bias=False) if directional_mix else None
        if directional_mix:
            nn.init.zeros_(self.directional_mix.weight)
        self.severity = nn.Linear(hidden, len(self.tasks))
        self.aux_hidden = nn.Sequential(nn.Linear(2 * c, aux_hidden), nn.ReLU(inplace=True))
        self.aux_out = nn.Linear(aux_hidden, num_nss)
        self.quality = nn.Sequential(nn.Linear(hidden + aux_hidden, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))
        # A training signal, like directional_logits: `patch_aux` logits per patch from that patch's own
        # pooled trunk features, so that the trunk learns where a local distortion lies (training.trainer).
        self.patch_aux = nn.Linear(2 * c, patch_aux) if patch_aux else None
        cfg = self.input_cfg
        self.register_buffer("pixel_mean", torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("pixel_std", torch.tensor(cfg.std).view(1, 3, 1, 1) * 255.0)
        # Standardisation of the NSS targets, measured on training data by the trainer.
        self.register_buffer("nss_mean", torch.zeros(num_nss))
        self.register_buffer("nss_std", torch.ones(num_nss))

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float, normalised, channels_last."""
        # One pass, x * (1 / std) - mean / std, instead of a subtraction and a division.
        x = torch.addcmul(-self.pixel_mean / self.pixel_std, images.permute(0, 3, 1, 2).float(), 1.0 / self.pixel_std)
        return x.contiguous(memory_format=torch.channels_last)

    def forward_features(self, patches: torch.Tensor, context: torch.Tensor, mask: torch.Tensor, energy=None):
        """patches (B, K, P, P, 3) uint8; context (B, Hc, Wc, 3) uint8; mask (B, Hc, Wc) in [0, 1];
        `energy`: the patches' directional energies when already computed. Returns the fused frame
        vector (B, 6C + directional_hidden; 7C with `context_max`) and per-patch pooled features (B, K, 2C)."""
        b, k = patches.shape[:2]
        per_patch = _pool_maps(self.trunk(self._normalise(patches.flatten(0, 1)))).view(b, k, -1)
        ctx = _pool_maps(self.trunk(self._normalise(context)), mask[:, None].float(), with_max=self.context_max)
        across = _mean_std(per_patch.transpose(1, 2), (2,))
        energy = self.directional.energies(patches) if energy is None else energy
        directional = self.directional_mlp(self.directional.pooled(energy))
        return torch.cat([across, ctx, directional], dim=1), per_patch

    def patch_presence(self, fused: torch.Tensor, per_patch: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        """(B, K, tasks) presence logits of each patch: what the heads say of a frame whose every
        patch looked like this one (the frame's whole view kept). A map of *where*, from the
        features one pass already computed; not a calibrated per-region probability."""
        b, k, d = per_patch.shape
        ctx = fused[:, 2 * d: fused.shape[1] - self.directional_presence.in_features]
        alone = self.directional_mlp(self.directional.per_patch(energy).flatten(0, 1)).view(b, k, -1)
        spread = torch.full_like(per_patch, 1e-3)  # _mean_std's std of identical patches
        x = torch.cat([per_patch, spread, ctx[:, None].expand(-1, k, -1), alone], dim=-1).flatten(0, 1)
        logits = self.presence(self.neck(x))
        if self.directional_mix is not None:
            logits = logits + self.directional_mix(self.directional_presence(alone.flatten(0, 1)))
        return logits.view(b, k, -1)

    def forward_head(self, fused: torch.Tensor, per_patch: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.neck(fused)
        aux_h = self.aux_hidden(per_patch)
        q = self.quality(torch.cat([h, aux_h.mean(1)], dim=1)).squeeze(1)
        directional = fused[:, -self.directional_presence.in_features:]  # forward_features puts it last
        directional_logits = self.directional_presence(directional)
        presence = self.presence(h)
        if self.directional_mix is not None:
            presence = presence + self.directional_mix(directional_logits)
        out = {"presence_logits": presence, "severity": torch.sigmoid(self.severity(h)),
               "quality": 100.0 * torch.sigmoid(q), "nss": self.aux_out(aux_h), "directional_logits": directional_logits}
        if self.patch_aux is not None:
            out["patch_aux_logits"] = self.patch_aux(per_patch)
        return out

    def forward(self, patches, context, mask, patch_map: bool = False):
        """The heads' outputs; with `patch_map` also "patch_presence_logits" (B, K, tasks)."""
        energy = self.directional.energies(patches)
        fused, per_patch = self.forward_features(patches, context, mask, energy)
        # The heads are small; in float32 quality and severity keep their resolution under autocast.
        with torch.autocast(fused.device.type, enabled=False):
            out = self.forward_head(fused.float(), per_patch.float())
            if patch_map:
                out["patch_presence_logits"] = self.patch_presence(fused.float(), per_patch.float(), energy)
            return out
