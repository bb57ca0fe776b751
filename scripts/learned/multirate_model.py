"""NSAT MULTIRATE learned codec: the networks (training side).

After Mijares i Verdu et al. 2023, "Reduced-complexity multirate remote sensing data
compression with neural networks": a Balle 2018 scale-hyperprior autoencoder with
N = 64 filters and an M = 192-channel latent, made variable-rate by a modulation
network (lambda -> per-channel gain on y before quantisation) and a demodulation
network (lambda -> per-channel gain on y_hat before synthesis).

    x (B, C, H, W), H and W multiples of 16, values already normalised (see datasets.py)
    y      = g_a(x) * mod(lambda / lambda_max)            (B, 192, H/16, W/16)
    z      = h_a(y)                                       (B, 64, ceil(H/64), ceil(W/64))
    z_hat  = round(z)                     -> factorised prior, one table per channel
    idx    = h_s_int(clamp(z_hat, -127, 127))[:, :, :H/16, :W/16]   integers 0..63
    y_hat  = round(y)                     -> zero-mean Gaussian, scale = SCALE_TABLE[idx]
    x_hat  = g_s(y_hat * demod(lambda / lambda_max))

h_s is an *integer network* (Balle, Johnston, Minnen 2019, "Integer networks for data
compression"): int8 per-output-channel weights, int32 biases, int32/int64 accumulators
and a fixed-point requantisation to uint8 activations (step 1/16) and finally straight to
a scale-table index. Encoder and decoder compute the same indices on any machine and
thread count. Training runs it as fake quantisation with straight-through gradients; its
forward value is the integer network's output (exactly so in ``exact=True`` mode, float64;
in float32 too as long as the accumulators stay below 2**24, which they do in practice).
``integer_hyper_synthesis.py`` is the pure-integer numpy reference.

Everything here is written for NSAT (no code taken from CompressAI or TensorFlow
Compression); the factorised density is Balle et al. 2018's non-parametric model.
"""


import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

N_FILTERS = 64
M_LATENT = 192

# The 64-entry scale table shared with codecs/entropy/cdf_tables.cpp (defaultScaleTable).
SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64
LOG_SCALE_STEP = (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1)

# Integer hyper-synthesis fixed-point formats.
Z_CLIP = 127                 # h_s input: z symbols clamped to [-127, 127]
HIDDEN_STEP = 1.0 / 16.0     # hidden activations: uint8 a, real value a / 16
HIDDEN_MAX = 255
WEIGHT_QMAX = 127            # int8 weights, symmetric, per output channel
BIAS_LIMIT = 1 << 24         # |int32 bias| bound (keeps accumulators < 2**26)
MULT_BITS = 15               # requantisation multiplier M in [2**14, 2**15]
LIKELIHOOD_BOUND = 1e-9


def scale_table() -> List[float]:
    """Same values as nsat::defaultScaleTable() (ends pinned exactly)."""
    t = [math.exp(math.log(SCALE_MIN) + i * LOG_SCALE_STEP) for i in range(SCALE_LEVELS)]
    t[0], t[-1] = SCALE_MIN, SCALE_MAX
    return t


# --------------------------------------------------------------------------------------
# Helpers


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it would push x back above bound."""

    @staticmethod
    def forward(ctx, x, bound: float):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, bound)


def ste(value: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Forward: exactly ``exact``; backward: the gradient of ``value``."""
    return exact.detach() + (value - value.detach())


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return ste(x, torch.round(x))


def conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


# --------------------------------------------------------------------------------------
# GDN / IGDN (Balle et al. 2016): y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)


def _gdn_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """beta_i + sum_j gamma_ij x_j^2, a 1x1 conv.

    torch 1.13 on CPU sends a 1x1 conv with batch < 16 on one thread to its slow path
    (im2col + Debian's generic BLAS, ~6x slower than oneDNN), so rows are folded into the
    batch until it reaches 16. The result is the same function.
    """
    b, c, h, w = x.shape
    f = 1
    while b * f < 16 and h % (2 * f) == 0:
        f = 2 * f
    x2 = x * x
    if f > 1:
        x2 = x2.reshape(b, c, f, h // f, w).transpose(1, 2).reshape(b * f, c, h // f, w)
    n = F.conv2d(x2, gamma.reshape(c, c, 1, 1), beta)
    if f > 1:
        n = n.reshape(b, f, c, h // f, w).transpose(1, 2).reshape(b, c, h, w)
    return n


class GDN(nn.Module):
    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6,
                 gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(gamma_init * torch.eye(channels))

    def effective(self) -> Tuple[torch.Tensor, torch.Tensor]:
        beta = lower_bound(self.beta, self.beta_min)
        gamma = lower_bound(self.gamma, 0.0)
        return beta, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.effective()
        norm = _gdn_norm(x, gamma, beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


class FrozenGDN(nn.Module):
    """GDN with its effective parameters as buffers: TorchScript-able, for export."""

    inverse: bool

    def __init__(self, gdn: GDN):
        super().__init__()
        beta, gamma = gdn.effective()
        self.inverse = gdn.inverse
        self.register_buffer("beta", beta.detach().clone())
        self.register_buffer("gamma", gamma.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = _gdn_norm(x, self.gamma, self.beta)
        if self.inverse:
            return x * torch.sqrt(norm)
        return x * torch.rsqrt(norm)


# --------------------------------------------------------------------------------------
# Transforms


DOWNSAMPLINGS = (16, 8)


def _stride2_stages(downsampling: int) -> int:
    if downsampling not in DOWNSAMPLINGS:
        raise ValueError(f"downsampling {downsampling} is not one of {DOWNSAMPLINGS}")
    return downsampling.bit_length() - 1


def make_analysis(bands: int, n: int = N_FILTERS, m: int = M_LATENT,
                  downsampling: int = 16) -> nn.Sequential:
    """conv5x5 stride 2 stages (GDN between them), the last one to M channels. 16: the
    paper's four; 8: three, so M = 192 latents cover 64 pixels (3 per pixel): speckle-like
    content, nearly white, needs about one value per pixel at high rates, which the 16x
    latent (0.75 per pixel) cannot hold."""
    stages = _stride2_stages(downsampling)
    layers = [conv(bands, n, 5, 2), GDN(n)]
    for _ in range(stages - 2):
        layers += [conv(n, n, 5, 2), GDN(n)]
    return nn.Sequential(*layers, conv(n, m, 5, 2))


def make_synthesis(bands: int, n: int = N_FILTERS, m: int = M_LATENT,
                   downsampling: int = 16) -> nn.Sequential:
    # Sub-pixel convolution: 3x3 conv to 4x channels + PixelShuffle(2), the same function
    # class as a 6x6 stride-2 transposed convolution and much faster on CPU.
    stages = _stride2_stages(downsampling)
    layers = []
    for stage in range(stages - 1):
        layers += [conv(m if stage == 0 else n, 4 * n, 3), nn.PixelShuffle(2), GDN(n, inverse=True)]
    return nn.Sequential(*layers, conv(n, 4 * bands, 3), nn.PixelShuffle(2))


class HyperAnalysis(nn.Module):
    """Balle 2018: |y| -> 3x3 s1, ReLU, 5x5 s2, ReLU, 5x5 s2 -> z (N channels)."""

    def __init__(self, n: int = N_FILTERS, m: int = M_LATENT):
        super().__init__()
        self.c1 = conv(m, n, 3, 1)
        self.c2 = conv(n, n, 5, 2)
        self.c3 = conv(n, n, 5, 2)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c1(torch.abs(y)))
        h = F.relu(self.c2(h))
        return self.c3(h)


# The gain nets' last activation. "relu", the first models' (their cards have no
# "gain_activation"), let a channel whose gain is pushed below zero die: no gradient reaches
# it again, and the shipped multirate-ms16 / multirate-rgb8 code with 13 / 24 of their 192
# channels. "positive" never reaches zero and always has a gradient (see PositiveGain).
GAIN_ACTIVATIONS = ("relu", "positive")
GAIN_FLOOR = 1.0 / 64.0


class PositiveGain(nn.Module):
    """x + d for x >= 0, d / (1 - x / d) below (d = GAIN_FLOOR): positive, continuous with
    its slope at 0, and made of +, - and / only, which the C++ decoder
    (SynthesisNetwork::demodulationGain) computes bit-exactly in float32."""

    floor: float

    def __init__(self, floor: float = GAIN_FLOOR):
        super().__init__()
        self.floor = float(floor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.floor
        below = torch.clamp(x, max=0.0)   # both branches finite, so where() has no NaN gradient
        return torch.where(x >= 0, torch.clamp(x, min=0.0) + d, d / (1.0 - below / d))


class GainNet(nn.Module):
    """lambda / lambda_max -> Dense(64, ReLU) -> Dense(M, activation): per-channel gains."""

    def __init__(self, m: int = M_LATENT, hidden: int = 64, activation: str = "relu"):
        super().__init__()
        if activation not in GAIN_ACTIVATIONS:
            raise ValueError(f"gain activation {activation!r} is not one of {GAIN_ACTIVATIONS}")
        self.activation = activation
        self.fc1 = nn.Linear(1, hidden)
        self.fc2 = nn.Linear(hidden, m)
        self.out = nn.ReLU() if activation == "relu" else PositiveGain()
        with torch.no_grad():      # start as gain 1 for every lambda
            self.fc2.weight.mul_(0.01)
            self.fc2.bias.fill_(1.0)

    def forward(self, lam_norm: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(lam_norm.reshape(-1, 1)))
        return self.out(self.fc2(h))     # (1, M)


# --------------------------------------------------------------------------------------
# Integer hyper-synthesis


class QConv2d(nn.Module):
    """Fake-quantised 'same' conv whose forward is an integer layer:

        acc = sum(w_int * a_int) + b_int                 (int32; int8 w, zero padding)
        out = clamp((acc * M + 2**(S-1)) >> S, 0, out_max)   (int64 product, floor shift)

    Real-valued meaning: a = a_int * in_step, out = out_int * out_step,
    w = w_int * s_w[c] (s_w = max|W[c]| / 127), b = b_int * s_w[c] * in_step,
    M / 2**S ~= s_w[c] * in_step / out_step.
    """

    def __init__(self, cin: int, cout: int, k: int, in_step: float, out_step: float,
                 out_max: int, bias_init: float = 0.0):
        super().__init__()
        self.cin, self.cout, self.k = cin, cout, k
        self.in_step, self.out_step, self.out_max = in_step, out_step, out_max
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))   # real units

    @torch.no_grad()
    def integer_params(self) -> Dict[str, torch.Tensor]:
        w = self.weight.detach().float()
        s_w = w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / WEIGHT_QMAX
        w_int = torch.round(w / s_w.view(-1, 1, 1, 1)).clamp(-WEIGHT_QMAX, WEIGHT_QMAX)
        acc_unit = s_w.double() * self.in_step
        b_int = torch.round(self.bias.detach().double() / acc_unit).clamp(-BIAS_LIMIT, BIAS_LIMIT)
        mult = acc_unit / self.out_step
        exponent = torch.floor(torch.log2(mult))
        shift = (MULT_BITS - 1 - exponent).clamp(1, 48)
        multiplier = torch.round(mult * torch.pow(2.0, shift)).clamp(0, 1 << MULT_BITS)
        return {"weight": w_int.to(torch.int64), "bias": b_int.to(torch.int64),
                "multiplier": multiplier.to(torch.int64), "shift": shift.to(torch.int64),
                "weight_scale": s_w}

    def forward(self, a: torch.Tensor, exact: bool = False) -> torch.Tensor:
        q = self.integer_params()
        s_w = q["weight_scale"].view(-1, 1, 1, 1)
        w_q = ste(self.weight / s_w, q["weight"].to(self.weight.dtype))
        acc_unit = (q["weight_scale"].double() * self.in_step).to(self.bias.dtype)
        b_q = ste(self.bias / acc_unit, q["bias"].to(self.bias.dtype))
        dtype = torch.float64 if exact else a.dtype
        acc = F.conv2d(a.to(dtype), w_q.to(dtype), b_q.to(dtype), padding=self.k // 2)
        acc = acc.double()
        mult = q["multiplier"].double().view(1, -1, 1, 1)
        two_s = torch.pow(2.0, q["shift"].double()).view(1, -1, 1, 1)
        exact_out = torch.floor((acc.detach() * mult + two_s * 0.5) / two_s)
        out = ste(acc * (mult / two_s), exact_out).clamp(0.0, float(self.out_max))
        return out if exact else out.to(a.dtype)


class IntHyperSynthesis(nn.Module):
    """z symbols -> scale-table index per element of y, in integer arithmetic.

    3x3 conv N->4N, requant to uint8 (step 1/16), PixelShuffle(2);
    3x3 conv N->4N, requant to uint8 (step 1/16), PixelShuffle(2);
    3x3 conv N->M, requant straight to the index 0..63 (one index unit is one table step,
    i.e. the layer's real output is ln(scale / 0.11) on the table's log grid).
    """

    def __init__(self, n: int = N_FILTERS, m: int = M_LATENT):
        super().__init__()
        self.l1 = QConv2d(n, 4 * n, 3, 1.0, HIDDEN_STEP, HIDDEN_MAX)
        self.l2 = QConv2d(n, 4 * n, 3, HIDDEN_STEP, HIDDEN_STEP, HIDDEN_MAX)
        # Start around index 28 (scale ~ 2.6).
        self.l3 = QConv2d(n, m, 3, HIDDEN_STEP, LOG_SCALE_STEP, SCALE_LEVELS - 1,
                          bias_init=28 * LOG_SCALE_STEP)
        self.shuffle = nn.PixelShuffle(2)

    def layers(self) -> List[QConv2d]:
        return [self.l1, self.l2, self.l3]

    def forward(self, z_sym: torch.Tensor, exact: bool = False) -> torch.Tensor:
        a = z_sym.clamp(-Z_CLIP, Z_CLIP)
        a = self.shuffle(self.l1(a, exact))
        a = self.shuffle(self.l2(a, exact))
        return self.l3(a, exact)


# --------------------------------------------------------------------------------------
# Entropy models


class FactorizedPrior(nn.Module):
    """Balle et al. 2018 non-parametric factorised density, one per channel of z.

    The CDF of each channel is sigmoid(f(x)) with f a chain of small per-channel dense
    layers (1 -> 3 -> 3 -> 3 -> 1) with softplus-positive matrices and tanh gates, so f is
    monotonic. ``quantiles`` (lower tail, median, upper tail) are trained by the aux loss
    and set the support of the exported probability tables.
    """

    def __init__(self, channels: int = N_FILTERS, filters=(3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = LIKELIHOOD_BOUND):
        super().__init__()
        self.channels = channels
        self.tail_mass = tail_mass
        dims = (1,) + tuple(filters) + (1,)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[k + 1], 1) - 0.5))
            if k < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))
        q = torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1)
        self.quantiles = nn.Parameter(q)                # (C, 1, 3)
        t = math.log(2.0 / tail_mass - 1.0)
        self.register_buffer("quantile_target", torch.tensor([-t, 0.0, t]))

    def logits_cdf(self, x: torch.Tensor, stop_gradient: bool = False) -> torch.Tensor:
        """x: (C, 1, L) -> logit of the CDF, (C, 1, L)."""
        for k in range(len(self.matrices)):
            mat, bias = self.matrices[k], self.biases[k]
            if stop_gradient:
                mat, bias = mat.detach(), bias.detach()
            x = torch.matmul(F.softplus(mat), x) + bias
            if k < len(self.factors):
                fac = self.factors[k].detach() if stop_gradient else self.factors[k]
                x = x + torch.tanh(fac) * torch.tanh(x)
        return x

    def aux_loss(self) -> torch.Tensor:
        logits = self.logits_cdf(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.quantile_target).sum()

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """P(round(z) = z) under the density convolved with U(-1/2, 1/2)."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()   # evaluate in the accurate tail
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        lik = lower_bound(lik, LIKELIHOOD_BOUND)
        return lik.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def pmf_tables(self, max_half_width: int = 2048) -> List[Dict]:
        """Per channel: min_value, pmf of min_value..max_value, tail_mass (both tails).

        z is coded as round(z) (no median offset). The support is the union of
        floor(lower quantile) .. ceil(upper quantile), 0, and the smallest range whose
        tails each hold at most tail_mass / 2 under the current density (so a prior whose
        quantiles have not converged still gets a tight escape probability).
        """
        k = max_half_width
        grid = torch.arange(-k, k + 1, dtype=torch.float32)
        x = grid.repeat(self.channels, 1, 1)                     # (C, 1, 2k+1)
        lower = self.logits_cdf(x - 0.5)[:, 0].double()          # logit P(z < v - 1/2)
        upper = self.logits_cdf(x + 0.5)[:, 0].double()          # logit P(z < v + 1/2)
        below = torch.sigmoid(lower)                             # P(z < v - 1/2)
        above = torch.sigmoid(-upper)                            # P(z > v + 1/2)
        half = self.tail_mass / 2
        q = self.quantiles.detach().double()
        tables = []
        for c in range(self.channels):
            ok_lo = torch.nonzero(below[c] <= half)
            ok_hi = torch.nonzero(above[c] <= half)
            lo = int(grid[ok_lo.max()]) if ok_lo.numel() else -k
            hi = int(grid[ok_hi.min()]) if ok_hi.numel() else k
            lo = max(min(lo, int(math.floor(q[c, 0, 0].item())), 0), -k)
            hi = min(max(hi, int(math.ceil(q[c, 0, 2].item())), 0), k)
            sl = slice(lo + k, hi + k + 1)
            lw, up = lower[c, sl], upper[c, sl]
            sign = -torch.sign(lw + up)
            pmf = torch.abs(torch.sigmoid(sign * up) - torch.sigmoid(sign * lw))
            tail = below[c, lo + k].item() + above[c, hi + k].item()
            tables.append({"min_value": lo, "pmf": pmf.float().tolist(), "tail_mass": float(tail)})
        return tables


def gaussian_likelihood(y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(round(y) = y) for a zero-mean Gaussian of std ``scale`` convolved with U(-1/2, 1/2)."""
    v = torch.abs(y)
    k = 1.0 / (scale * math.sqrt(2.0))
    upper = 0.5 * torch.erfc((v - 0.5) * k)     # Phi((0.5 - |y|) / s)
    lower = 0.5 * torch.erfc((v + 0.5) * k)     # Phi((-0.5 - |y|) / s)
    return lower_bound(upper - lower, LIKELIHOOD_BOUND)


def index_to_scale(idx: torch.Tensor) -> torch.Tensor:
    return torch.exp(math.log(SCALE_MIN) + idx * LOG_SCALE_STEP)


# --------------------------------------------------------------------------------------
# The codec


DEMODULATIONS = ("learned", "inverse")


class MultirateCodec(nn.Module):
    """``demodulation``: "learned", a second gain net (the first models), or "inverse", the
    decoder's gain is 1 / the modulation gain, so y_hat * gain = round(y * m) / m is y
    quantised with step 1/m: the decoder always sees the analysis output at the precision
    lambda paid for, and a larger gain can only bring it closer (no quality plateau from
    gain nets that disagree; scripts/learned/README.md, "Tied gains")."""

    def __init__(self, bands: int, lambda_min: float, lambda_max: float,
                 n: int = N_FILTERS, m: int = M_LATENT, gain_activation: str = "relu",
                 demodulation: str = "learned", downsampling: int = 16):
        super().__init__()
        if demodulation not in DEMODULATIONS:
            raise ValueError(f"demodulation {demodulation!r} is not one of {DEMODULATIONS}")
        self.bands, self.n, self.m = bands, n, m
        self.gain_activation = gain_activation
        self.tied = demodulation == "inverse"
        self.lambda_min, self.lambda_max = float(lambda_min), float(lambda_max)
        self.downsampling = downsampling
        self.g_a = make_analysis(bands, n, m, downsampling)
        self.g_s = make_synthesis(bands, n, m, downsampling)
        self.h_a = HyperAnalysis(n, m)
        self.h_s = IntHyperSynthesis(n, m)
        self.modulation = GainNet(m, activation=gain_activation)
        self.demodulation = None if self.tied else GainNet(m, activation=gain_activation)
        self.prior = FactorizedPrior(n)

    def demodulation_gain(self, lam_n: torch.Tensor) -> torch.Tensor:
        if self.tied:
            return 1.0 / self.modulation(lam_n)
        return self.demodulation(lam_n)

    def gain_nets(self):
        return [self.modulation] + ([] if self.tied else [self.demodulation])

    def lam_tensor(self, lam: float, device) -> torch.Tensor:
        return torch.tensor([lam / self.lambda_max], dtype=torch.float32, device=device)

    def main_parameters(self):
        return [p for name, p in self.named_parameters() if not name.startswith("prior.quantiles")]

    def prior_density_parameters(self):
        return [p for name, p in self.prior.named_parameters() if name != "quantiles"]

    def aux_parameters(self):
        return [self.prior.quantiles]

    def scale_indices(self, z_sym: torch.Tensor, y_shape, exact: bool = False) -> torch.Tensor:
        idx = self.h_s(z_sym, exact)
        return idx[:, :, : y_shape[2], : y_shape[3]]

    def forward(self, x: torch.Tensor, lam: float) -> Dict[str, torch.Tensor]:
        """Training pass: noise for the rates, straight-through rounding for the decoder."""
        if x.shape[2] % self.downsampling or x.shape[3] % self.downsampling:
            raise ValueError(f"height and width must be multiples of {self.downsampling}")
        lam_n = self.lam_tensor(lam, x.device)
        y = self.g_a(x) * self.modulation(lam_n).view(1, -1, 1, 1)
        z = self.h_a(y)
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        z_lik = self.prior.likelihood(z_noisy)
        idx = self.scale_indices(ste_round(z), y.shape)
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        y_lik = gaussian_likelihood(y_noisy, index_to_scale(idx))
        y_hat = ste_round(y)
        x_hat = self.g_s(y_hat * self.demodulation_gain(lam_n).view(1, -1, 1, 1))
        return {"x_hat": x_hat, "y_likelihoods": y_lik, "z_likelihoods": z_lik}

    @torch.no_grad()
    def symbols(self, x: torch.Tensor, lam: float, exact: bool = True) -> Dict[str, torch.Tensor]:
        """What the encoder sends: y and z symbols, and the scale indices of y."""
        lam_n = self.lam_tensor(lam, x.device)
        y = self.g_a(x) * self.modulation(lam_n).view(1, -1, 1, 1)
        z_sym = torch.round(self.h_a(y))
        idx = self.scale_indices(z_sym, y.shape, exact)
        return {"y_sym": torch.round(y), "z_sym": z_sym, "idx": idx}

    @torch.no_grad()
    def estimate(self, x: torch.Tensor, lam: float, exact: bool = True) -> Dict[str, torch.Tensor]:
        """Actual quantisation; per-image bits from the model likelihoods (the rANS stream
        adds table quantisation and escape overhead, typically well under 1%)."""
        s = self.symbols(x, lam, exact)
        y_bits = -torch.log2(gaussian_likelihood(s["y_sym"], index_to_scale(s["idx"].float())))
        z_bits = -torch.log2(self.prior.likelihood(s["z_sym"]))
        lam_n = self.lam_tensor(lam, x.device)
        x_hat = self.g_s(s["y_sym"] * self.demodulation_gain(lam_n).view(1, -1, 1, 1))
        pixels = x.shape[2] * x.shape[3]
        return {"x_hat": x_hat,
                "bpp_y": y_bits.sum(dim=(1, 2, 3)) / pixels,
                "bpp_z": z_bits.sum(dim=(1, 2, 3)) / pixels,
                **s}


def rate_distortion(out: Dict[str, torch.Tensor], x: torch.Tensor, lam: float,
                    mask: Optional[torch.Tensor] = None):
    """loss = bpp + lam * 255**2 * MSE, with bpp = total bits / (B * H * W) (bits per
    pixel, all bands together, over *all* pixels) and MSE the mean over every sample of the
    normalised x. With ``mask`` (B, 1, H, W) of per-pixel weights (0 = nodata), MSE is the
    weighted mean sum(mask * err^2) / (C * sum(mask)); ``mask=None`` is the plain mean."""
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bits = -(torch.log2(out["y_likelihoods"]).sum() + torch.log2(out["z_likelihoods"]).sum())
    bpp = bits / pixels
    if mask is None:
        mse = F.mse_loss(out["x_hat"], x)
    else:
        err = (out["x_hat"] - x) ** 2 * mask
        mse = err.sum() / (mask.sum().clamp_min(1.0) * x.shape[1])
    return bpp + lam * 255.0 ** 2 * mse, bpp, mse


def pad_to_multiple(x: torch.Tensor, multiple: int = 16) -> torch.Tensor:
    """Edge-replicate bottom/right padding to a multiple of ``multiple``."""
    ph = (-x.shape[2]) % multiple
    pw = (-x.shape[3]) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


# --------------------------------------------------------------------------------------
# TorchScript export wrappers (inputs/outputs in raw sample units, NCHW float32)


def _freeze(seq: nn.Sequential) -> nn.Sequential:
    mods = []
    for mod in seq:
        if isinstance(mod, GDN):
            mods.append(FrozenGDN(mod))
        elif isinstance(mod, nn.Conv2d):
            c = nn.Conv2d(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride,
                          mod.padding)
            c.load_state_dict(mod.state_dict())
            mods.append(c)
        else:
            mods.append(mod)
    return nn.Sequential(*mods)


def _copy_gain(net: GainNet) -> nn.Sequential:
    seq = nn.Sequential(nn.Linear(1, net.fc1.out_features), nn.ReLU(),
                        nn.Linear(net.fc2.in_features, net.fc2.out_features),
                        nn.ReLU() if net.activation == "relu" else PositiveGain())
    seq[0].load_state_dict(net.fc1.state_dict())
    seq[2].load_state_dict(net.fc2.state_dict())
    return seq


class ExportAnalysis(nn.Module):
    """(x raw float32 (B, C, H, W), lam float32 (1,)) -> y * gain, (B, 192, H/16, W/16)."""

    input_scale: float
    lambda_max: float

    def __init__(self, codec: MultirateCodec, input_scale: float):
        super().__init__()
        self.g_a = _freeze(codec.g_a)
        self.modulation = _copy_gain(codec.modulation)
        self.input_scale = float(input_scale)
        self.lambda_max = codec.lambda_max

    def forward(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        gain = self.modulation((lam / self.lambda_max).reshape(1, 1))
        return self.g_a(x * self.input_scale) * gain.reshape(1, -1, 1, 1)


class ExportHyperAnalysis(nn.Module):
    """y * gain (B, 192, h, w) -> z (B, 64, ceil(h/4), ceil(w/4)); the encoder rounds it."""

    def __init__(self, codec: MultirateCodec):
        super().__init__()
        ha = codec.h_a
        self.c1 = _freeze(nn.Sequential(ha.c1))[0]
        self.c2 = _freeze(nn.Sequential(ha.c2))[0]
        self.c3 = _freeze(nn.Sequential(ha.c3))[0]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c1(torch.abs(y)))
        h = F.relu(self.c2(h))
        return self.c3(h)


class ExportSynthesis(nn.Module):
    """(y_hat float32 (B, 192, h, w), lam (1,)) -> x_hat raw float32 (B, C, 16h, 16w),
    clamped to [0, output_max]; the caller rounds to the sample type. With tied gains
    (``inverse_gain``) ``demodulation`` is a copy of the modulation net and the gain is
    its inverse (the card says "demodulation": "inverse_of_modulation")."""

    input_scale: float
    lambda_max: float
    output_max: float
    inverse_gain: bool

    def __init__(self, codec: MultirateCodec, input_scale: float, output_max: float):
        super().__init__()
        self.g_s = _freeze(codec.g_s)
        self.inverse_gain = codec.tied
        self.demodulation = _copy_gain(codec.modulation if codec.tied else codec.demodulation)
        self.input_scale = float(input_scale)
        self.lambda_max = codec.lambda_max
        self.output_max = float(output_max)

    def forward(self, y_hat: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        gain = self.demodulation((lam / self.lambda_max).reshape(1, 1))
        if self.inverse_gain:
            gain = 1.0 / gain
        x = self.g_s(y_hat * gain.reshape(1, -1, 1, 1)) / self.input_scale
        return torch.clamp(x, 0.0, self.output_max)
