"""sRGB <-> CIELAB (D65) in torch, and the model-space scaling of Lab.

This module is the one owner of colour maths in colorgan. Everything is batched
(B, C, H, W), differentiable, runs on whatever device the input lives on and is
always computed in float32, also under autocast: bf16 Lab is off by ~0.5 units.
The constants and formulas match ``skimage.color`` (CIE 1931 2-degree observer).
"""
from __future__ import annotations

import numpy as np
import torch

# Linear sRGB -> XYZ (D65), the matrix skimage uses; XYZ -> RGB is its inverse.
_XYZ_FROM_RGB = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_RGB_FROM_WHITE_XYZ = (_RGB_FROM_XYZ * _D65_WHITE).float()  # XYZ / white -> linear RGB

_EPSILON = 0.008856  # (6/29)^3: below it CIELAB's cube root turns linear
_KAPPA = 7.787  # slope of that linear part
_DELTA = 0.2068966  # 6/29, the same threshold after the cube root

# Model space: L in [0, 100] -> [-1, 1], ab in about [-110, 110] -> [-1, 1].
L_SCALE, L_SHIFT = 50.0, 1.0
AB_SCALE = 110.0


def as_float_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] RGB -> float32 [0, 1]."""
    if rgb.dtype == torch.uint8:
        return rgb.float() / 255.0
    return rgb.float()


def _matmul_channels(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    # (B, 3, H, W) x (3, 3) -> (B, 3, H, W)
    return torch.einsum("ij,bjhw->bihw", matrix.to(image.device, torch.float32), image)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    # clamp inside pow so the unused branch never makes NaN gradients
    return torch.where(rgb > 0.04045, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    return torch.where(
        linear > 0.0031308, 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, linear * 12.92
    )


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    # XYZ / white -> CIELAB's f: a cube root with a linear toe below EPSILON (clamped so the unused
    # branch never makes NaN gradients)
    return torch.where(t > _EPSILON, t.clamp(min=_EPSILON) ** (1 / 3), _KAPPA * t + 16 / 116)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB -> CIELAB.

    Args:
        rgb: (B, 3, H, W), uint8 in [0, 255] or float in [0, 1].

    Returns:
        (B, 3, H, W) float32 Lab: L in [0, 100], a and b in about [-128, 127].
    """
    with torch.autocast(rgb.device.type, enabled=False):
        xyz = _matmul_channels(srgb_to_linear(as_float_rgb(rgb)), _XYZ_FROM_RGB)
        xyz = xyz / _D65_WHITE.to(xyz.device, torch.float32).view(1, 3, 1, 1)
        fx, fy, fz = _lab_f(xyz).unbind(dim=1)
        return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_linear_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB -> linear RGB, not clipped (values outside [0, 1] are out of gamut)."""
    with torch.autocast(lab.device.type, enabled=False):
        L, a, b = lab.float().unbind(dim=1)
        fy = (L + 16) / 116
        f = torch.stack([fy + a / 500, fy, (fy - b / 200).clamp(min=0)], dim=1)
        return _matmul_channels(_lab_f_to_xyz(f), _RGB_FROM_WHITE_XYZ)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB -> sRGB float32 in [0, 1]; out-of-gamut colours are clipped.

    Args:
        lab: (B, 3, H, W) Lab as returned by :func:`rgb_to_lab`.
    """
    with torch.autocast(lab.device.type, enabled=False):
        return linear_to_srgb(lab_to_linear_rgb(lab).clamp(0.0, 1.0))


def _y_to_lightness(y: torch.Tensor) -> torch.Tensor:
    # relative luminance Y (white = 1) -> L*
    return 116 * _lab_f(y) - 16


_UINT8_TO_LINEAR = srgb_to_linear(torch.arange(256, dtype=torch.float32) / 255.0)
# 8-bit channel -> its share of Y (the XYZ row of R, G or B times the channel's linear value), (3, 256)
_UINT8_TO_Y_SHARE = _XYZ_FROM_RGB[1, :, None].float() * _UINT8_TO_LINEAR
# Y -> L* without a cube root per pixel: linear interpolation in a table over Y in steps of 1/Y_STEPS
# (64 KB, so it stays in cache). L* is smooth there (its toe meets the cube root tangentially), and the
# interpolation error is under 1e-4 L* everywhere; pow() took half the time of an 8-bit RGB photo's L*.
_Y_STEPS = 1 << 14
_LIGHTNESS_ON_Y_GRID = _y_to_lightness(torch.arange(_Y_STEPS + 2, dtype=torch.float64) / _Y_STEPS)
_LIGHTNESS_AT_STEP = _LIGHTNESS_ON_Y_GRID[:-1].float()
_LIGHTNESS_PER_STEP = _LIGHTNESS_ON_Y_GRID.diff().float()


def _y_to_lightness_interpolated(y: torch.Tensor) -> torch.Tensor:
    # Y in [0, 1] (float32) -> L*, from the table above
    position = y.mul(_Y_STEPS).clamp_(0, _Y_STEPS)
    step = position.int()  # truncation: the grid point at or below
    fraction = position.sub_(step)
    return _lookup(_LIGHTNESS_AT_STEP, step).addcmul_(fraction, _lookup(_LIGHTNESS_PER_STEP, step))


# 8-bit gray (R = G = B, so Y is the linear value: the Y row sums to 1) -> L*, computed in float64
_GRAY8_TO_LIGHTNESS = _y_to_lightness(srgb_to_linear(torch.arange(256, dtype=torch.float64) / 255.0)).float()


def _is_gray_view(rgb: torch.Tensor) -> bool:
    """A gray image seen as RGB without a copy: its 3 channels are one plane (stride 0), as `decode` gives."""
    return rgb.dim() == 4 and rgb.shape[1] == 3 and rgb.stride(1) == 0


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    # table[index] for 8-bit or integer indices of any shape; index_select is ~8x faster than advanced indexing
    return table.to(index.device).index_select(0, index.reshape(-1).int()).view(index.shape)


def lightness(rgb: torch.Tensor) -> torch.Tensor:
    """L* of sRGB, (B, 3, H, W) -> (B, 1, H, W); cheaper than the full conversion.

    8-bit input is looked up in tables instead of running pow() on every pixel; a gray
    image viewed as RGB with a stride-0 channel axis (see `colorgan.imaging.decode`) costs one lookup.
    """
    with torch.autocast(rgb.device.type, enabled=False):
        if rgb.dtype == torch.uint8 and _is_gray_view(rgb):
            return _lookup(_GRAY8_TO_LIGHTNESS, rgb[:, :1])
        if rgb.dtype == torch.uint8:
            y = _lookup(_UINT8_TO_Y_SHARE[0], rgb[:, 0:1])
            y += _lookup(_UINT8_TO_Y_SHARE[1], rgb[:, 1:2])
            y += _lookup(_UINT8_TO_Y_SHARE[2], rgb[:, 2:3])
            return _y_to_lightness_interpolated(y)
        if _is_gray_view(rgb):
            y = srgb_to_linear(rgb[:, :1].float())
        else:
            y = _matmul_channels(srgb_to_linear(rgb.float()), _XYZ_FROM_RGB[1:2])  # white Y is 1
        return _y_to_lightness(y)


# ----------------------------------------------------------------------------- model space
def normalize_l(L: torch.Tensor) -> torch.Tensor:
    return L.float() / L_SCALE - L_SHIFT


def denormalize_l(l_norm: torch.Tensor) -> torch.Tensor:
    return (l_norm.float() + L_SHIFT) * L_SCALE


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    return ab.float() / AB_SCALE


def denormalize_ab(ab_norm: torch.Tensor) -> torch.Tensor:
    return ab_norm.float() * AB_SCALE


def rgb_to_model_space(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB batch -> (L in [-1, 1] of shape (B, 1, H, W), ab/110 of shape (B, 2, H, W))."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[:, :1]), normalize_ab(lab[:, 1:])


def model_space_to_rgb(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) and (B, 2, H, W) model-space Lab -> (B, 3, H, W) sRGB in [0, 1]."""
    return lab_to_rgb(torch.cat([denormalize_l(l_norm), denormalize_ab(ab_norm)], dim=1))


def _lab_f_to_xyz(f: torch.Tensor) -> torch.Tensor:
    """CIELAB f values -> XYZ / white without torch.where (10x slower than arithmetic here).

    XYZ / white is f^3 above the cube root's linear toe at DELTA and (f - 16/116) / kappa below it.
    The toe is f^3's tangent at DELTA, so that is max(f, DELTA)^3 + (min(f, DELTA) - DELTA) / kappa
    (`Srgb8Encoder` computes the same in buffers).
    """
    cube = f.clamp(min=_DELTA)
    return cube * cube * cube + (f.clamp(max=_DELTA) - _DELTA) / _KAPPA


def _linear_rgb_along_chroma(fy: torch.Tensor, ab: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # (N,) fy = (L + 16) / 116, (2, N) ab and (N,) chroma scale -> (3, N) linear RGB of (L, scale * ab)
    f = torch.stack([fy + ab[0] * scale / 500, fy, (fy - ab[1] * scale / 200).clamp(min=0)])
    return _RGB_FROM_WHITE_XYZ.to(f.device) @ _lab_f_to_xyz(f)


def _fit_chroma_into_gamut(
    lightness_values: torch.Tensor, ab: torch.Tensor, steps: int, tolerance: float
) -> torch.Tensor:
    """Bisect the chroma scale of out-of-gamut colours: (N,) L and (2, N) ab -> (3, N) linear RGB that fits."""
    fy = (lightness_values + 16) / 116
    low = torch.zeros_like(lightness_values)  # chroma scale known to fit
    high = torch.ones_like(lightness_values)  # chroma scale known not to fit
    for _ in range(steps):
        middle = (low + high) / 2
        rgb = _linear_rgb_along_chroma(fy, ab, middle)
        fits = (rgb.amin(dim=0) >= -tolerance) & (rgb.amax(dim=0) <= 1 + tolerance)
        low = torch.where(fits, middle, low)
        high = torch.where(fits, high, middle)
    return _linear_rgb_along_chroma(fy, ab, low)


def lab_to_rgb_keeping_lightness(lab: torch.Tensor, steps: int = 10, tolerance: float = 1e-4) -> torch.Tensor:
    """CIELAB -> sRGB in [0, 1], bringing out-of-gamut colours in by lowering their chroma.

    `lab_to_rgb` clips RGB, which changes the lightness of saturated pixels; this keeps L,
    so a colorized photo keeps the luminance of its input. Only out-of-gamut pixels are
    bisected on their chroma scale, so the cost follows how many there are.

    Args:
        lab: (B, 3, H, W) Lab.
        steps: bisection steps on the chroma scale (10 -> within 0.1%).
        tolerance: how far outside [0, 1] linear RGB may stray before it counts as outside; just above
            the 8e-5 by which neutral white overshoots, since what is let through is clipped and
            moves L* by up to ~900x this near black (1e-3 moved it by 0.8).
    """
    with torch.autocast(lab.device.type, enabled=False):
        lab = lab.float()
        linear = lab_to_linear_rgb(lab)
        outside = ((linear < -tolerance) | (linear > 1 + tolerance)).any(dim=1)  # (B, H, W)
        if bool(outside.any()):
            where = outside.nonzero(as_tuple=True)
            lightness_values = lab[:, 0][where]  # (N,)
            ab = lab[:, 1:].permute(1, 0, 2, 3)[:, where[0], where[1], where[2]]  # (2, N)
            linear.permute(0, 2, 3, 1)[where] = _fit_chroma_into_gamut(lightness_values, ab, steps, tolerance).T
        return linear_to_srgb(linear.clamp_(0.0, 1.0))


# linear RGB in [0, 1] cut into 2^16 bins -> 8-bit sRGB of each bin's centre. Encoding through it instead of
# pow() moves a pixel by one level only where its value lies within half a bin (7.6e-6) of a rounding edge.
_LINEAR_BINS = 1 << 16
_LINEAR_TO_SRGB8 = (
    (linear_to_srgb(((torch.arange(_LINEAR_BINS, dtype=torch.float64) + 0.5) / _LINEAR_BINS).clamp(max=1)) * 255)
    .round()
    .to(torch.uint8)
)
# XYZ / white -> linear RGB in bins: the table's scale folded into the matrix
_BINS_FROM_WHITE_XYZ = _RGB_FROM_WHITE_XYZ * _LINEAR_BINS


def _encode_bins(
    linear_bins: torch.Tensor, index: torch.Tensor, out: torch.Tensor, table: torch.Tensor | None = None
) -> torch.Tensor:
    # (3, n) linear RGB * bins, clobbered -> (3, n) uint8 sRGB in `out`, through `index`, an int32 buffer
    table = _LINEAR_TO_SRGB8.to(index.device) if table is None else table
    index.copy_(linear_bins.clamp_(0, _LINEAR_BINS - 1))  # truncates to the bin
    for channel in range(3):
        torch.index_select(table, 0, index[channel], out=out[channel])
    return out


class Srgb8Encoder:
    """CIELAB -> 8-bit sRGB planes for a photo's slices, the fast path of `Colorizer`.

    Within one level of `(lab_to_rgb(lab) * 255).round()`. Pixels outside the gamut are only
    clipped here; their indices are returned so that the caller can fit them all at once with
    `fit_srgb8_into_gamut` (bisection has a high fixed cost per call). Every pass writes into
    buffers kept from slice to slice: a fresh multi-megabyte tensor costs a page fault per 4 KiB.

    Args:
        max_pixels: the largest slice that will be encoded.
        device: where the maths runs.
        tolerance: as in `lab_to_rgb_keeping_lightness`.
    """

    def __init__(self, max_pixels: int, device: torch.device | str = "cpu", tolerance: float = 1e-4):
        device = torch.device(device)
        self.low_limit, self.high_limit = -tolerance * _LINEAR_BINS, (1 + tolerance) * _LINEAR_BINS
        self.floats = torch.empty(7 * max_pixels, device=device)
        self.index = torch.empty(3 * max_pixels, dtype=torch.int32, device=device)
        self.bins_from_xyz = _BINS_FROM_WHITE_XYZ.to(device)
        self.table = _LINEAR_TO_SRGB8.to(device)
        # 0-d constants: torch.add(constant, x, alpha=k) is one pass, x * k + constant two
        self.fy_offset = torch.tensor(16 / 116, device=device)
        self.toe_offset = torch.tensor(-_DELTA / _KAPPA, device=device)
        # on the cpu numpy finds the out-of-gamut pixels ~5x faster than torch's comparisons and nonzero
        self.gamut_scratch = _GamutScratch(max_pixels) if device.type == "cpu" else None

    def __call__(self, lightness_values: torch.Tensor, ab: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Encode `n` pixels.

        Args:
            lightness_values: (n,) L*.
            ab: (2, n) a* and b*.
            out: (3, n) uint8 on the same device, each plane contiguous: receives sRGB.

        Returns:
            (m,) int64 indices of the pixels outside the gamut (clipped in `out`).
        """
        n = lightness_values.shape[0]
        f, xyz, scratch = self.floats[: 7 * n].split([3 * n, 3 * n, n])
        f, xyz = f.view(3, n), xyz.view(3, n)
        torch.add(self.fy_offset, lightness_values, alpha=1 / 116, out=f[1])  # fy = (L + 16) / 116
        torch.add(f[1], ab[0], alpha=1 / 500, out=f[0])
        torch.sub(f[1], ab[1], alpha=1 / 200, out=f[2]).clamp_(min=0)
        for channel in range(3):
            self._f_to_xyz(f[channel], xyz[channel], scratch)
        linear = torch.mm(self.bins_from_xyz, xyz, out=f)  # (3, 3) @ (3, n): one pass, into f's buffer
        if self.gamut_scratch is not None:
            outside = self.gamut_scratch.outside(linear, self.low_limit, self.high_limit)
        else:
            outside = ((linear < self.low_limit) | (linear > self.high_limit)).any(dim=0).nonzero().squeeze(1)
        _encode_bins(linear, self.index[: 3 * n].view(3, n), out, self.table)
        return outside

    def _f_to_xyz(self, f: torch.Tensor, out: torch.Tensor, scratch: torch.Tensor) -> None:
        # `_lab_f_to_xyz` in six passes: max(f, DELTA)^3 + min(f / kappa - DELTA / kappa, 0); clobbers f
        torch.clamp(f, min=_DELTA, out=out)
        torch.mul(out, out, out=scratch)
        out.mul_(scratch).add_(torch.add(self.toe_offset, f, alpha=1 / _KAPPA, out=f).clamp_(max=0))


class _GamutScratch:
    """Buffers for finding the pixels of (3, n) linear RGB bins outside [low, high] with numpy, on the cpu."""

    def __init__(self, max_pixels: int):
        self.extreme = np.empty(max_pixels, dtype=np.float32)
        self.below, self.above = np.empty(max_pixels, dtype=bool), np.empty(max_pixels, dtype=bool)

    def outside(self, linear: torch.Tensor, low: float, high: float) -> torch.Tensor:
        # (3, n) float32 on the cpu -> (m,) int64 indices of the pixels with a channel below low or above high
        red, green, blue = linear.numpy()
        n = red.shape[0]
        extreme, below, above = self.extreme[:n], self.below[:n], self.above[:n]
        np.less(np.minimum(np.minimum(red, green, out=extreme), blue, out=extreme), low, out=below)
        np.greater(np.maximum(np.maximum(red, green, out=extreme), blue, out=extreme), high, out=above)
        return torch.from_numpy(np.flatnonzero(np.logical_or(below, above, out=below)))


def fit_srgb8_into_gamut(
    lightness_values: torch.Tensor, ab: torch.Tensor, steps: int = 10, tolerance: float = 1e-4
) -> torch.Tensor:
    """Out-of-gamut Lab colours -> 8-bit sRGB, chroma lowered by bisection as in `lab_to_rgb_keeping_lightness`.

    Args:
        lightness_values: (m,) L*.
        ab: (2, m) a* and b*.

    Returns:
        (3, m) uint8 sRGB.
    """
    with torch.autocast(lightness_values.device.type, enabled=False):
        linear = _fit_chroma_into_gamut(lightness_values.float(), ab.float(), steps, tolerance)
        index = torch.empty(linear.shape, dtype=torch.int32, device=linear.device)
        return _encode_bins(linear.mul_(_LINEAR_BINS), index, torch.empty_like(index, dtype=torch.uint8))


def lab_to_srgb8_keeping_lightness(
    lightness_values: torch.Tensor, ab: torch.Tensor, steps: int = 10, tolerance: float = 1e-4
) -> torch.Tensor:
    """CIELAB pixels -> 8-bit sRGB planes, keeping L as `lab_to_rgb_keeping_lightness` does.

    Within one level of `(lab_to_rgb_keeping_lightness(lab) * 255).round()`.

    Args:
        lightness_values: (n,) L*.
        ab: (2, n) a* and b*.
        steps, tolerance: as in `lab_to_rgb_keeping_lightness`.

    Returns:
        (3, n) uint8 sRGB.
    """
    with torch.autocast(lightness_values.device.type, enabled=False):
        lightness_values, ab = lightness_values.float().contiguous(), ab.float()
        out = torch.empty(3, lightness_values.shape[0], dtype=torch.uint8, device=lightness_values.device)
        outside = Srgb8Encoder(len(lightness_values), lightness_values.device, tolerance)(lightness_values, ab, out)
        if len(outside):
            out[:, outside] = fit_srgb8_into_gamut(lightness_values[outside], ab[:, outside], steps, tolerance)
        return out
