"""Image quality measures the benchmarks and training scripts share (numpy only, no
downloaded weights): PSNR, SSIM and MS-SSIM (Wang, Simoncelli, Bovik 2003) with nodata
masks, and the high-frequency spectral energy of an image."""
import math

import numpy as np

MSSSIM_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
MSSSIM_WINDOW = 11
MSSSIM_SIGMA = 1.5


def gaussian_window(size=MSSSIM_WINDOW, sigma=MSSSIM_SIGMA):
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def filter_valid(image, taps):
    """Separable correlation with a 1-D kernel along both axes, 'valid' region only."""
    k = len(taps)
    h, w = image.shape
    rows = taps[0] * image[0:h - k + 1, :]
    for i in range(1, k):
        rows = rows + taps[i] * image[i:h - k + 1 + i, :]
    out = taps[0] * rows[:, 0:w - k + 1]
    for j in range(1, k):
        out = out + taps[j] * rows[:, j:w - k + 1 + j]
    return out


def downsample(image):
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return image[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def downsample_mask(mask):
    h, w = mask.shape[0] // 2 * 2, mask.shape[1] // 2 * 2
    return mask[:h, :w].reshape(h // 2, 2, w // 2, 2).all(axis=(1, 3))


def msssim_scales(height, width):
    """Number of scales (at most 5) whose image still holds one full window."""
    side = min(height, width)
    if side < MSSSIM_WINDOW:
        return 0
    scales = 1
    while scales < len(MSSSIM_WEIGHTS) and side // 2 >= MSSSIM_WINDOW:
        side //= 2
        scales += 1
    return scales


def msssim_band(x, y, valid, peak, scales):
    """MS-SSIM of one band (Wang, Simoncelli, Bovik 2003). Only windows whose pixels are all
    valid are averaged; a coarser pixel is valid when its 2x2 parents are. With fewer than 5
    scales the first `scales` standard weights are used, renormalised to sum to 1. Negative
    terms are clipped to 0."""
    taps = gaussian_window()
    box = np.ones(MSSSIM_WINDOW)
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    weights = MSSSIM_WEIGHTS[:scales] / MSSSIM_WEIGHTS[:scales].sum()
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    result = 1.0
    for j in range(scales):
        ok = filter_valid((~valid).astype(np.float64), box) < 0.5
        if not ok.any():
            return float("nan")
        mx = filter_valid(x, taps)
        my = filter_valid(y, taps)
        sxx = filter_valid(x * x, taps) - mx * mx
        syy = filter_valid(y * y, taps) - my * my
        sxy = filter_valid(x * y, taps) - mx * my
        cs_map = (2.0 * sxy + c2) / (sxx + syy + c2)
        if j < scales - 1:
            result *= max(float(np.mean(cs_map[ok])), 0.0) ** weights[j]
            x, y, valid = downsample(x), downsample(y), downsample_mask(valid)
        else:
            # Coarsest scale: the mean SSIM map (luminance x contrast-structure), as in the
            # reference implementation, so that one scale gives plain SSIM.
            ssim_map = cs_map * (2.0 * mx * my + c1) / (mx * mx + my * my + c1)
            result *= max(float(np.mean(ssim_map[ok])), 0.0) ** weights[j]
    return result


def msssim(reference, decoded, valid, peak):
    """Mean over bands of the per-band MS-SSIM, and the number of scales used."""
    scales = msssim_scales(reference.shape[1], reference.shape[2])
    if scales == 0:
        return float("nan"), 0
    values = [msssim_band(reference[b], decoded[b], valid, peak, scales)
              for b in range(reference.shape[0])]
    return float(np.mean(values)), scales


def ssim_bands(original, decoded):
    """Mean over bands of single-scale SSIM with each band's own range (max - min of the
    original, at least 1) as the data range: strict for 16-bit data that fills a few
    thousand of the 65536 levels."""
    valid = np.ones(original.shape[1:], dtype=bool)
    values = [msssim_band(o, d, valid, max(float(o.max()) - float(o.min()), 1.0), 1)
              for o, d in zip(original, decoded)]
    return float(np.mean(values))


def ssim_fixed_range(original, decoded, data_range):
    """Mean over bands of single-scale SSIM with one data range for every band."""
    valid = np.ones(original.shape[1:], dtype=bool)
    return float(np.mean([msssim_band(o, d, valid, data_range, 1) for o, d in zip(original, decoded)]))


def psnr(a, b, peak):
    """PSNR in dB of b against a over every sample; 99 dB when they are equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(peak * peak / mse)


def high_frequency_energy(img):
    """Energy of the spectrum above half the Nyquist radius (0.25 cycles per pixel), per band
    with its mean removed, summed."""
    f = np.fft.fft2(img - img.mean(axis=(-2, -1), keepdims=True))
    fy = np.fft.fftfreq(img.shape[-2])[:, None]
    fx = np.fft.fftfreq(img.shape[-1])[None, :]
    high = np.sqrt(fx ** 2 + fy ** 2) > 0.25
    return float((np.abs(f) ** 2)[..., high].sum())
