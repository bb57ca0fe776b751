"""NSAT VQ learned codec: the networks (training side).

After CORSA (VITO / ESA Phi-lab, vector-quantised autoencoders for remote sensing): a light
convolutional encoder, a residual product vector quantiser whose codebook indices are the
payload, and a decoder. Written for NSAT; no code taken from CORSA or other projects.

    x (B, C, H, W) raw samples, H and W multiples of 4
    y      = g_a(x * input_scale)                      (B, D, H/4, W/4)
    y is cut into G groups of d = D / G channels. Level 1 codes each group's vector with
    its nearest codeword (K entries); level 2 codes what level 1 left (the residual) with
    a second codebook. A decoder may use the first level only (the lower rate).
    y_hat  = sum over used levels of codebook[level][group][index]
    x_hat  = g_s(y_hat) / input_scale, clamped to [0, output_max]

g_s has the layout of MULTIRATE's synthesis (conv3x3 -> PixelShuffle(2) -> IGDN, ...,
conv3x3 -> PixelShuffle(2)) with two stages instead of four, so NSAT's deterministic C++
kernels run it unchanged.

Codebooks are learnt as exponential moving averages of the vectors assigned to each entry
(van den Oord et al. 2017), initialised by k-means and with unused entries restarted on
random latents; the encoder gets a commitment loss and straight-through gradients.
"""

from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from multirate_model import GDN, _freeze as freeze, conv

LATENT_DOWNSAMPLING = 4


def make_vq_analysis(bands: int, n: int, latent: int) -> nn.Sequential:
    return nn.Sequential(conv(bands, n, 5, 2), GDN(n), conv(n, n, 5, 2), GDN(n),
                         conv(n, latent, 3, 1))


def make_vq_synthesis(bands: int, n: int, latent: int) -> nn.Sequential:
    return nn.Sequential(conv(latent, 4 * n, 3, 1), nn.PixelShuffle(2), GDN(n, inverse=True),
                         conv(n, 4 * bands, 3, 1), nn.PixelShuffle(2))


class ResidualProductQuantizer(nn.Module):
    """levels x groups codebooks of `entries` vectors of `dim` channels, EMA-learnt."""

    def __init__(self, levels: int, groups: int, entries: int, dim: int, decay: float = 0.99):
        super().__init__()
        self.levels, self.groups, self.entries, self.dim = levels, groups, entries, dim
        self.decay = decay
        self.register_buffer("codebooks", torch.zeros(levels, groups, entries, dim))
        self.register_buffer("ema_count", torch.ones(levels, groups, entries))
        self.register_buffer("ema_sum", torch.zeros(levels, groups, entries, dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def vectors(self, y: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B*h*w, G, d)."""
        b, c, h, w = y.shape
        return y.permute(0, 2, 3, 1).reshape(b * h * w, self.groups, self.dim)

    def latent(self, v: torch.Tensor, shape) -> torch.Tensor:
        b, c, h, w = shape
        return v.reshape(b, h, w, c).permute(0, 3, 1, 2)

    @staticmethod
    def nearest(v: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
        """v (N, G, d), book (G, K, d) -> (N, G) index of the nearest entry per group."""
        dist = (v * v).sum(-1, keepdim=True).transpose(0, 1) \
            - 2 * torch.bmm(v.transpose(0, 1), book.transpose(1, 2)) \
            + (book * book).sum(-1).unsqueeze(1)
        return dist.argmin(-1).transpose(0, 1)

    def gather(self, book: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """book (G, K, d), idx (N, G) -> (N, G, d)."""
        return book[torch.arange(self.groups)[None, :], idx]

    def quantise(self, v: torch.Tensor, levels: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Sum of the codewords of the first `levels` levels, and each level's indices."""
        residual, total, indices = v, torch.zeros_like(v), []
        for level in range(levels):
            book = self.codebooks[level]
            idx = self.nearest(residual, book)
            q = self.gather(book, idx)
            indices.append(idx)
            total = total + q
            residual = residual - q
        return total, indices

    @torch.no_grad()
    def kmeans_init(self, v: torch.Tensor, iterations: int, generator: torch.Generator) -> None:
        residual = v
        for level in range(self.levels):
            for g in range(self.groups):
                data = residual[:, g]
                pick = torch.randperm(data.shape[0], generator=generator)[:self.entries]
                centres = data[pick].clone()
                for _ in range(iterations):
                    idx = self.nearest(data[:, None], centres[None])[:, 0]
                    sums = torch.zeros_like(centres).index_add_(0, idx, data)
                    counts = torch.bincount(idx, minlength=self.entries).float()
                    empty = counts == 0
                    centres = torch.where(empty[:, None], centres, sums / counts.clamp(min=1)[:, None])
                    if empty.any():
                        refill = torch.randint(0, data.shape[0], (int(empty.sum()),), generator=generator)
                        centres[empty] = data[refill]
                self.codebooks[level, g] = centres
                self.ema_sum[level, g] = centres
                self.ema_count[level, g] = 1.0
            book = self.codebooks[level]
            idx = self.nearest(residual, book)
            residual = residual - self.gather(book, idx)
        self.initialised.fill_(True)

    @torch.no_grad()
    def ema_update(self, v: torch.Tensor, indices: List[torch.Tensor], generator: torch.Generator) -> None:
        residual = v
        for level, idx in enumerate(indices):
            for g in range(self.groups):
                onehot_count = torch.bincount(idx[:, g], minlength=self.entries).float()
                sums = torch.zeros(self.entries, self.dim).index_add_(0, idx[:, g], residual[:, g])
                self.ema_count[level, g].mul_(self.decay).add_(onehot_count, alpha=1 - self.decay)
                self.ema_sum[level, g].mul_(self.decay).add_(sums, alpha=1 - self.decay)
                count = self.ema_count[level, g]
                self.codebooks[level, g] = self.ema_sum[level, g] / count.clamp(min=1e-5)[:, None]
                dead = count < 1e-3
                if dead.any():
                    refill = torch.randint(0, residual.shape[0], (int(dead.sum()),), generator=generator)
                    self.codebooks[level, g, dead] = residual[refill, g]
                    self.ema_sum[level, g, dead] = residual[refill, g]
                    self.ema_count[level, g, dead] = 1.0
            residual = residual - self.gather(self.codebooks[level], idx)


class VqCodec(nn.Module):
    def __init__(self, bands: int, analysis_filters: int, synthesis_filters: int, latent: int,
                 groups: int, levels: int, entries: int):
        super().__init__()
        if latent % groups:
            raise ValueError("latent channels must split into whole groups")
        self.bands = bands
        self.g_a = make_vq_analysis(bands, analysis_filters, latent)
        self.g_s = make_vq_synthesis(bands, synthesis_filters, latent)
        self.quantizer = ResidualProductQuantizer(levels, groups, entries, latent // groups)

    def forward(self, x: torch.Tensor, levels: int, quantise: bool = True):
        y = self.g_a(x)
        if not quantise:
            return self.g_s(y), y, None, torch.zeros(())
        v = self.quantizer.vectors(y)
        q, indices = self.quantizer.quantise(v.detach(), levels)
        commitment = F.mse_loss(v, q.detach())
        y_hat = self.quantizer.latent(v + (q - v).detach(), y.shape)
        return self.g_s(y_hat), y, (v.detach(), indices), commitment


class ExportVqAnalysis(nn.Module):
    """x raw float32 (B, C, H, W) -> y (B, D, H/4, W/4), before quantisation."""

    input_scale: float

    def __init__(self, codec: VqCodec, input_scale: float):
        super().__init__()
        self.g_a = freeze(codec.g_a)
        self.input_scale = float(input_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g_a(x * self.input_scale)


class ExportVqSynthesis(nn.Module):
    """y_hat float32 (B, D, h, w) -> x_hat raw float32 (B, C, 4h, 4w) in [0, output_max].

    Carries `lambda_max` = 1 and no demodulation net: the C++ reader of MULTIRATE's
    synthesis reads this layout with its gain off."""

    input_scale: float
    lambda_max: float
    output_max: float

    def __init__(self, codec: VqCodec, input_scale: float, output_max: float):
        super().__init__()
        self.g_s = freeze(codec.g_s)
        self.input_scale = float(input_scale)
        self.lambda_max = 1.0
        self.output_max = float(output_max)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.g_s(y_hat) / self.input_scale, 0.0, self.output_max)
