"""sRGB <-> CIELAB (D65) in torch, and the model-space scaling of Lab.

This module is the one owner of colour maths in colorgan. Everything is batched
(B, C, H, W), differentiable, runs on whatever device the input lives on and is
always computed in float32, also under autocast: bf16 Lab is off by ~0.5 units.
The constants and formulas match ``skimage.color`` (CIE 1931 2-degree observer).
"""
from __future__ import annotations

import torch

# Linear sRGB -> XYZ (D65), the matrix skimage uses; XYZ -> RGB is its inverse.
_XYZ_FROM_RGB = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)

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
        f = torch.where(xyz > _EPSILON, xyz.clamp(min=_EPSILON) ** (1 / 3), _KAPPA * xyz + 16 / 116)
        fx, fy, fz = f.unbind(dim=1)
        return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_linear_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB -> linear RGB, not clipped (values outside [0, 1] are out of gamut)."""
    with torch.autocast(lab.device.type, enabled=False):
        L, a, b = lab.float().unbind(dim=1)
        fy = (L + 16) / 116
        f = torch.stack([fy + a / 500, fy, (fy - b / 200).clamp(min=0)], dim=1)
        xyz = torch.where(f > _DELTA, f**3, (f - 16 / 116) / _KAPPA)
        xyz = xyz * _D65_WHITE.to(xyz.device, torch.float32).view(1, 3, 1, 1)
        return _matmul_channels(xyz, _RGB_FROM_XYZ)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB -> sRGB float32 in [0, 1]; out-of-gamut colours are clipped.

    Args:
        lab: (B, 3, H, W) Lab as returned by :func:`rgb_to_lab`.
    """
    with torch.autocast(lab.device.type, enabled=False):
        return linear_to_srgb(lab_to_linear_rgb(lab).clamp(0.0, 1.0))


_UINT8_TO_LINEAR = srgb_to_linear(torch.arange(256, dtype=torch.float32) / 255.0)


def lightness(rgb: torch.Tensor) -> torch.Tensor:
    """L* of sRGB, (B, 3, H, W) -> (B, 1, H, W); cheaper than the full conversion."""
    with torch.autocast(rgb.device.type, enabled=False):
        if rgb.dtype == torch.uint8:  # a 256-entry table beats pow() on full-resolution photos
            linear = _UINT8_TO_LINEAR.to(rgb.device)[rgb.long()]
        else:
            linear = srgb_to_linear(rgb.float())
        y = _matmul_channels(linear, _XYZ_FROM_RGB[1:2])  # white Y is 1
        fy = torch.where(y > _EPSILON, y.clamp(min=_EPSILON) ** (1 / 3), _KAPPA * y + 16 / 116)
        return 116 * fy - 16


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
            ab = lab[:, 1:].permute(0, 2, 3, 1)[where]  # (N, 2)
            low = torch.zeros_like(lightness_values)  # chroma scale known to fit
            high = torch.ones_like(lightness_values)  # chroma scale known not to fit
            for _ in range(steps):
                middle = (low + high) / 2
                candidate = torch.cat([lightness_values[:, None], ab * middle[:, None]], dim=1)
                rgb = lab_to_linear_rgb(candidate[:, :, None, None])[:, :, 0, 0]
                fits = ((rgb >= -tolerance) & (rgb <= 1 + tolerance)).all(dim=1)
                low = torch.where(fits, middle, low)
                high = torch.where(fits, high, middle)
            fitted = torch.cat([lightness_values[:, None], ab * low[:, None]], dim=1)
            linear.permute(0, 2, 3, 1)[where] = lab_to_linear_rgb(fitted[:, :, None, None])[:, :, 0, 0]
        return linear_to_srgb(linear.clamp_(0.0, 1.0))
