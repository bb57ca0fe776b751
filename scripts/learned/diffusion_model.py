"""The DIFFUSION codec's refiner (after COSMIC, Zhang et al.): a small conditional
denoiser that turns MULTIRATE's decoded tile into a sharper one, conditioned on the
scene's sensor metadata.

The base codec is MULTIRATE, frozen: the payload is its payload. The refiner is a
rectified flow from ``z0 = base + sigma * noise`` to the original image ``x``: it learns the
velocity ``v(z_s, s, base, c) = x - z0`` along ``z_s = (1 - s) z0 + s x`` and decodes with a
few Euler steps from seeded noise. ``sigma`` (the noise scale) is an input too, so one
model spans a plain post-filter (sigma 0) to a sampler of texture.

The condition ``c`` follows COSMIC: every scalar goes through a sinusoidal embedding
``E(m) = [sin(pi 2^k m), cos(pi 2^k m)]``, k < FREQUENCIES, an unknown scalar gets a learned
embedding instead, and an MLP maps their concatenation to ``c``. The scalars: the scene
metadata of ``metadata/scene_condition.h`` (CONDITION_KEYS), then the base codec's rate
(MULTIRATE: log lambda over its range; VQ: the number of levels, both mapped to
[-0.5, 0.5] by train_diffusion's base classes), sigma and the flow time s. FiLM layers bring ``c`` into every residual block.

Layout (the C++ decoder, codecs/learned/diffusion_refiner.cpp, reads these names):
pixel-unshuffle by 2 of [z, base] - 0.5 (6 bands -> 24 channels at half resolution),
``conv_in`` 3x3 -> C, BLOCKS x [ReLU, conv 3x3, FiLM, ReLU, conv 3x3, + skip], ReLU,
``conv_out`` 3x3 -> 12, pixel shuffle -> velocity (3 bands). ``embedding_mlp`` is
Dense(EMBED -> H, ReLU) -> Dense(H -> H, ReLU); ``film.<b>`` is Dense(H -> 2C) (gamma, beta),
applied as h * (1 + gamma) + beta. Only ReLU, + and x: no transcendental in the decoder
beyond the embedding's sine, which the decoder computes with its own polynomial.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# The scene metadata keys (toJson of metadata/scene_condition.h) the refiner sees, with the
# map of each to the embedding's argument m: periodic ones so that k = 0 is one period,
# the others so that their range is [-0.5, 0.5].
CONDITION_KEYS = ("day_of_year", "hour_utc", "sun_elevation", "sun_azimuth",
                  "center_lat", "center_lon", "gsd")
# The codec's own scalars, always known.
CODEC_KEYS = ("rate", "sigma", "time")
FREQUENCIES = 4
EMBED_PER_SCALAR = 2 * FREQUENCIES


def condition_argument(key: str, value: float, sigma_max: float = 0.15) -> float:
    """The embedding's argument m for one scalar (the C++ has the same table)."""
    if key == "day_of_year":
        return 2.0 * (value - 1.0) / 365.25
    if key == "hour_utc":
        return 2.0 * value / 24.0
    if key == "sun_azimuth":
        return 2.0 * value / 360.0
    if key == "center_lon":
        return 2.0 * value / 360.0
    if key in ("sun_elevation", "center_lat"):
        return value / 180.0
    if key == "gsd":
        return (math.log2(max(value, 1e-3)) - 2.0) / 16.0
    if key == "sigma":
        return value / sigma_max - 0.5
    if key == "time":
        return value - 0.5
    raise KeyError(key)


def sinusoidal(m: torch.Tensor) -> torch.Tensor:
    """(..., ) -> (..., EMBED_PER_SCALAR): sin then cos of pi 2^k m for k = 0..F-1."""
    freqs = math.pi * (2.0 ** torch.arange(FREQUENCIES, dtype=m.dtype, device=m.device))
    a = m[..., None] * freqs
    return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)


def unshuffle2(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


class Refiner(nn.Module):
    def __init__(self, bands: int = 3, channels: int = 32, blocks: int = 3, hidden: int = 64):
        super().__init__()
        self.bands, self.channels, self.blocks_count, self.hidden = bands, channels, blocks, hidden
        scalars = len(CONDITION_KEYS) + len(CODEC_KEYS)
        self.unknown = nn.Parameter(torch.zeros(len(CONDITION_KEYS), EMBED_PER_SCALAR))
        self.embedding_mlp = nn.Sequential(nn.Linear(scalars * EMBED_PER_SCALAR, hidden), nn.ReLU(),
                                           nn.Linear(hidden, hidden), nn.ReLU())
        self.conv_in = nn.Conv2d(2 * bands * 4, channels, 3, padding=1)
        self.conv_a = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=1) for _ in range(blocks)])
        self.conv_b = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=1) for _ in range(blocks)])
        self.film = nn.ModuleList([nn.Linear(hidden, 2 * channels) for _ in range(blocks)])
        self.conv_out = nn.Conv2d(channels, bands * 4, 3, padding=1)
        for f in self.film:
            nn.init.zeros_(f.weight)
            nn.init.zeros_(f.bias)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, meta_args: torch.Tensor, meta_known: torch.Tensor, codec_args: torch.Tensor) -> torch.Tensor:
        """meta_args, meta_known (B, len(CONDITION_KEYS)); codec_args (B, len(CODEC_KEYS)) -> c (B, H)."""
        e_meta = sinusoidal(meta_args)
        known = meta_known[..., None]
        e_meta = known * e_meta + (1.0 - known) * self.unknown[None]
        e = torch.cat([e_meta.flatten(1), sinusoidal(codec_args).flatten(1)], dim=1)
        return self.embedding_mlp(e)

    def forward(self, z: torch.Tensor, base: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.velocity(z, base, c)

    def velocity(self, z: torch.Tensor, base: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """z, base (B, bands, H, W) in [0, 1], H and W even; c (B, H) -> (B, bands, H, W)."""
        h = self.conv_in(unshuffle2(torch.cat([z, base], dim=1) - 0.5))
        for a, b, film in zip(self.conv_a, self.conv_b, self.film):
            gamma, beta = film(c).chunk(2, dim=1)
            r = a(F.relu(h))
            r = r * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None]
            h = h + b(F.relu(r))
        return F.pixel_shuffle(self.conv_out(F.relu(h)), 2)

    def refine(self, base: torch.Tensor, noise: torch.Tensor, sigma: float, steps: int,
               meta_args: torch.Tensor, meta_known: torch.Tensor, lam_arg: torch.Tensor,
               sigma_arg: float) -> torch.Tensor:
        """Euler steps s = 0, 1/N, ... from z0 = base + sigma * noise; output clamped to [0, 1]."""
        z = base + sigma * noise
        batch = base.shape[0]
        for k in range(steps):
            s = k / steps
            codec_args = torch.stack([lam_arg.expand(batch), torch.full((batch,), sigma_arg),
                                      torch.full((batch,), s - 0.5)], dim=1)
            c = self.embed(meta_args, meta_known, codec_args)
            z = z + self.velocity(z, base, c) / steps
        return z.clamp(0.0, 1.0)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_pixel(bands: int, channels: int, blocks: int) -> float:
    """Multiply-accumulates per output pixel of one Euler step (the convolutions)."""
    half_res = 9 * (2 * bands * 4 * channels + 2 * blocks * channels * channels + channels * bands * 4)
    return half_res / 4.0
