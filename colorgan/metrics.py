"""Image-quality metrics for colorization, batched in torch on any device.

All functions take (B, C, H, W) batches, compute in float32 (autocast is switched
off: bf16 SSIM statistics are far too coarse) and return one value per image, (B,).

- `psnr`: peak signal-to-noise ratio of RGB in [0, 1], in dB.
- `ssim`: structural similarity (Wang et al. 2004), as `skimage.metrics.structural_similarity`
  with `gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1`.
- `colorfulness`: Hasler & Suesstrunk 2003, on the 0-255 scale (a gray image scores 0).
- `ab_auc`: Zhang et al. 2016's area under the curve of the fraction of pixels whose
  ab error is within a threshold, for thresholds 0..150 (1 = every pixel exact).

Two more measure what hints do to a photo, on the hint's effect (ab with hints minus ab without),
one (2, H, W) map at a time: `streak_energy` / `effect_streaks` (column and row structure, the 1-D
passes of a propagation showing through) and `leak_ratio` / `small_object_leak` (how much of the
change reaches objects that differ from the hinted region around them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .color import as_float_rgb

MAX_PSNR = 100.0  # dB reported for identical images instead of inf

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


@dataclass(frozen=True)
class MetricInfo:
    """How reports and model cards name, explain and print one score.

    Args:
        label: its name in prose and on the model card.
        column: its (short) column title in an evaluation report's tables; ↑ or ↓ says which way is better.
        description: what it measures, one sentence.
        format: how its values are printed.
    """

    label: str
    column: str
    description: str
    format: str


# The scores of an evaluation (`colorgan eval`, `colorgan.evaluation.photos.ImageScores`), in table order
METRICS = {
    "psnr": MetricInfo(
        "PSNR (dB)",
        "PSNR (dB) ↑",
        "peak signal-to-noise ratio of the RGB output against the original photo (data range 1); higher is closer.",
        "{:.2f}",
    ),
    "ssim": MetricInfo(
        "SSIM",
        "SSIM ↑",
        "structural similarity (Gaussian window 11, σ = 1.5), mean over pixels and RGB channels; 1 is identical.",
        "{:.4f}",
    ),
    "colorfulness": MetricInfo(
        "Colourfulness",
        "colourfulness",
        "Hasler & Süsstrunk 2003's colourfulness of the output on the 0–255 scale"
        " (0 = gray, ~33 moderately, ~59 quite colourful).",
        "{:.1f}",
    ),
    "colorfulness_truth": MetricInfo(
        "Original colourfulness", "GT colourfulness", "the same measure on the original photos.", "{:.1f}"
    ),
    "colorfulness_difference": MetricInfo(
        "Colourfulness difference",
        "out − GT",
        "output minus original colourfulness; a washed-out (sepia, desaturated) model is far below 0.",
        "{:+.1f}",
    ),
    "colorfulness_gap": MetricInfo(
        "Colourfulness gap",
        "gap ↓",
        "absolute difference between the output's and the original's colourfulness; lower is better.",
        "{:.1f}",
    ),
    "ab_auc": MetricInfo(
        "ab AuC",
        "AuC ↑",
        "Zhang et al. 2016: the fraction of pixels whose ab error is within t, integrated over t = 0…150"
        " and normalised to 0–1; 1 means every pixel's colour is exact.",
        "{:.4f}",
    ),
}


def _check_pair(prediction: torch.Tensor, target: torch.Tensor, channels: int) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    if prediction.ndim != 4 or prediction.shape[1] != channels:
        raise ValueError(f"expected (B, {channels}, H, W) batches, got {tuple(prediction.shape)}")


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio with data range 1.

    Args:
        prediction: (B, 3, H, W) RGB, float in [0, 1] (uint8 in [0, 255] is also accepted).
        target: the ground truth, same shape.

    Returns:
        (B,) float32 dB; identical images get `MAX_PSNR` (100 dB) instead of inf.
    """
    _check_pair(prediction, target, 3)
    with torch.autocast(prediction.device.type, enabled=False):
        error = as_float_rgb(prediction) - as_float_rgb(target)
        mse = error.square().mean(dim=(1, 2, 3))
        return (-10.0 * torch.log10(mse)).clamp(max=MAX_PSNR)


def _gaussian_kernel(device: torch.device) -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=device) - (SSIM_WINDOW - 1) / 2
    weights = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return weights / weights.sum()


def _gaussian_blur_valid(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of each (H, W) plane of (N, H, W), keeping only fully covered pixels."""
    planes = images.shape[0]
    images = images.unsqueeze(0)  # (1, N, H, W): a depthwise conv is ~6x faster on CPU than N single-channel images
    images = F.conv2d(images, kernel.view(1, 1, 1, -1).expand(planes, 1, 1, -1), groups=planes)
    images = F.conv2d(images, kernel.view(1, 1, -1, 1).expand(planes, 1, -1, 1), groups=planes)
    return images.squeeze(0)


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity, averaged over pixels and then over the RGB channels.

    Gaussian window of 11 px with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1. Like
    skimage, the mean runs over the pixels at least 5 px from the border (the window
    fits there), so it matches `skimage.metrics.structural_similarity(..., channel_axis=-1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`.

    Args:
        prediction: (B, 3, H, W) RGB, float in [0, 1] (uint8 in [0, 255] is also accepted);
            H and W at least 11.
        target: the ground truth, same shape.

    Returns:
        (B,) float32 in [-1, 1], 1 for identical images.
    """
    _check_pair(prediction, target, 3)
    batch, channels, height, width = prediction.shape
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {width}x{height}")
    with torch.autocast(prediction.device.type, enabled=False):
        x = as_float_rgb(prediction).reshape(batch * channels, height, width)
        y = as_float_rgb(target).reshape(batch * channels, height, width)
        kernel = _gaussian_kernel(x.device)
        # one filtering pass over the five statistics: E[x], E[y], E[x^2], E[y^2], E[xy]
        stats = _gaussian_blur_valid(torch.cat([x, y, x * x, y * y, x * y]), kernel)
        mean_x, mean_y, mean_xx, mean_yy, mean_xy = stats.chunk(5)
        variance_x = mean_xx - mean_x.square()
        variance_y = mean_yy - mean_y.square()
        covariance = mean_xy - mean_x * mean_y
        c1, c2 = SSIM_K1**2, SSIM_K2**2  # (K * data_range)^2 with data range 1
        ssim_map = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
            (mean_x.square() + mean_y.square() + c1) * (variance_x + variance_y + c2)
        )
        return ssim_map.view(batch, channels, -1).mean(dim=2).mean(dim=1)


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk's colourfulness M, on the 0-255 scale.

    rg = R - G, yb = (R + G) / 2 - B, M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2),
    with population statistics over the pixels. Gray images score 0; the paper rates
    about 15 "slightly", 33 "moderately", 59 "quite" and 82+ "highly" colourful.

    Args:
        rgb: (B, 3, H, W) RGB, float in [0, 1] (uint8 in [0, 255] is also accepted).

    Returns:
        (B,) float32.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB, got {tuple(rgb.shape)}")
    with torch.autocast(rgb.device.type, enabled=False):
        red, green, blue = (as_float_rgb(rgb) * 255.0).flatten(2).unbind(dim=1)  # (B, H*W) each
        rg = red - green
        yb = 0.5 * (red + green) - blue
        spread = torch.sqrt(rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False))
        offset = torch.sqrt(rg.mean(dim=1).square() + yb.mean(dim=1).square())
        return spread + 0.3 * offset


def ab_auc(
    prediction_ab: torch.Tensor, target_ab: torch.Tensor, max_threshold: float = 150.0, steps: int = 151
) -> torch.Tensor:
    """Zhang et al. 2016's AuC of the cumulative ab-error curve.

    For each threshold t in `steps` evenly spaced values over [0, max_threshold], the
    fraction of pixels whose Euclidean ab error is at most t; the area under that curve
    (trapezoid rule) divided by `max_threshold`.

    Args:
        prediction_ab: (B, 2, H, W) predicted a*, b* in Lab units (not the model's ab/110).
        target_ab: (B, 2, H, W) true a*, b*.
        max_threshold: the largest threshold (150 in the paper).
        steps: number of thresholds, including 0 and `max_threshold`.

    Returns:
        (B,) float32 in [0, 1]; 1 when every pixel's ab is exact.
    """
    _check_pair(prediction_ab, target_ab, 2)
    if steps < 2 or max_threshold <= 0:
        raise ValueError("ab_auc needs steps >= 2 and max_threshold > 0")
    with torch.autocast(prediction_ab.device.type, enabled=False):
        error = torch.linalg.vector_norm(prediction_ab.float() - target_ab.float(), dim=1).flatten(1)  # (B, N)
        thresholds = torch.linspace(0.0, max_threshold, steps, device=error.device)
        # pixel i is within threshold j exactly when j >= first[i]: histogram, then cumulative sum
        first = torch.searchsorted(thresholds, error.contiguous(), right=False)  # (B, N) in 0..steps
        counts = torch.zeros(error.shape[0], steps + 1, device=error.device)
        counts.scatter_add_(1, first, torch.ones_like(error))
        within = counts.cumsum(dim=1)[:, :steps] / error.shape[1]  # (B, steps)
        return torch.trapezoid(within, thresholds, dim=1) / max_threshold


# ----------------------------------------------------------------------------- hint propagation
def streak_energy(effect: torch.Tensor, rows: slice, window: int = 25) -> float:
    """Column structure of a hint's effect: high-pass energy of its column profile, in ab units.

    The profile is the mean over `rows` of each column's ab change (2 channels, as vectors); its
    high-pass is the profile minus a `window`-px moving average (reflected at the ends); the energy
    is the mean length of the high-passed 2-vectors. A stroke that colours a sky evenly scores
    about what the sky's own colour does (~0.1-0.2); 1-D passes showing through score more.

    Args:
        effect: (2, H, W) ab with hints minus ab without (Lab units); a transposed map measures rows.
        rows: the rows to average (e.g. the sky's).
        window: the moving average's width in pixels.
    """
    profile = effect[:, rows].double().mean(dim=1).cpu().numpy()  # (2, W)
    high_pass = profile - _moving_average(profile, window)
    return float(torch.from_numpy(high_pass).norm(dim=0).mean())


def _moving_average(profile: np.ndarray, window: int) -> np.ndarray:
    # (C, W) mean over `window` neighbours along the last axis, the ends mirrored (d c b a | a b c d),
    # as scipy.ndimage.uniform_filter1d(mode="reflect")
    before = window // 2
    padded = np.pad(profile, [(0, 0), (before, window - 1 - before)], mode="symmetric")
    running = np.pad(padded.cumsum(axis=-1), [(0, 0), (1, 0)])
    return (running[:, window:] - running[:, :-window]) / window


def leak_ratio(effect: torch.Tensor, lightness: torch.Tensor, rows: slice, bright: float = 70.0, dark: float = 45.0) -> float:
    """How much of a hint's change reaches bright objects inside a dark hinted region.

    Mean |ab change| at pixels of `rows` brighter than `bright` L*, over the mean at pixels darker
    than `dark` (e.g. sheep on grass painted green: 0 = the sheep keep their colour, 1 = they
    change as much as the grass).

    Args:
        effect: (2, H, W) ab with hints minus ab without (Lab units).
        lightness: (H, W) L* of the photo.
        rows: the rows to measure.
    """
    change, band = effect[:, rows].norm(dim=0), lightness[rows]
    return float(change[band > bright].mean() / change[band < dark].mean())



def smooth_region_streaks(
    effect: torch.Tensor, lightness: torch.Tensor, band: int = 32, window: int = 25, flatness: float = 0.5
) -> float | None:
    """Column and row structure of a hint's effect where the photo itself has none, in ab units.

    The photo is cut into bands of `band` rows (for column structure) and of `band` columns (for row
    structure, on the transposed maps). A band counts when the photo's own L* profile along it is
    smooth: its high-pass (minus a `window`-px moving average) averages under `flatness` L*, as in a
    sky or a wall. The result is the mean `streak_energy` of the effect over those bands: stripes
    there come from the propagation, not from the photo's edges, which the effect rightly follows.

    Args:
        effect: (2, H, W) ab with hints minus ab without (Lab units).
        lightness: (H, W) L* of the photo.
        band: rows (columns) per band.
        window: the moving average's width in pixels.
        flatness: mean |high-pass| of a band's L* profile under which the band counts.

    Returns:
        The mean energy, or None when no band of the photo is smooth.
    """
    energies = []
    for effect_map, lightness_map in ((effect, lightness), (effect.transpose(1, 2), lightness.T)):
        for top in range(0, lightness_map.shape[0] - band + 1, band):
            rows = slice(top, top + band)
            if streak_energy(lightness_map[None, rows], slice(None), window) < flatness:
                energies.append(streak_energy(effect_map, rows, window))
    return sum(energies) / len(energies) if energies else None


def small_object_changes(
    effect: torch.Tensor, lightness: torch.Tensor, window: int = 21, contrast: float = 15.0
) -> tuple[float, float] | None:
    """Mean |ab change| at small objects and at the flat ground around them; None if either is missing.

    A pixel belongs to a small object when its L* differs from the mean L* of the `window`-px square
    around it by more than `contrast` (sheep on a field, posts, windows; also the first pixels on
    either side of a strong edge); to flat ground when by less than a quarter of that. Their ratio is
    a leak measure for any photo: a propagation that stops at the edges the photo's full resolution
    shows changes the objects far less than the ground. (A top-hat's objects, which leave out the
    edges of large regions, did not tell the propagations apart on the issue's sheep photo; these do.)

    Args:
        effect: (2, H, W) ab with hints minus ab without (Lab units).
        lightness: (H, W) L* of the photo.
        window: side of the square the local mean L* is taken over, in pixels (odd).
        contrast: L* difference from that mean that makes a pixel part of a small object.
    """
    lightness = lightness.float()[None, None]  # (1, 1, H, W)
    padded = F.pad(lightness, [window // 2] * 4, mode="replicate")
    difference = (lightness - F.avg_pool2d(padded, window, stride=1))[0, 0].abs()  # (H, W)
    change = effect.float().norm(dim=0)
    objects, ground = difference > contrast, difference < contrast / 4
    if not bool(objects.any()) or not bool(ground.any()):
        return None
    return float(change[objects].mean()), float(change[ground].mean())
