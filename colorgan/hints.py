"""Colour hints: user points, painted layers and the simulated hints used in training.

A hint is ab (model space, ab/110) at some pixels plus a mask saying where. The
generator's input is (B, 4, H, W) = L, hint a, hint b, mask, as in Zhang et al. 2017
("Real-Time User-Guided Image Colorization with Learned Deep Priors").
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from numbers import Real
from typing import NamedTuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .color import normalize_ab, rgb_to_lab
from .limits import HINT_POINTS


class Hint(NamedTuple):
    """A colour at a point, in the input image's pixel coordinates."""

    x: float
    y: float
    color: tuple[int, int, int]  # sRGB 0-255; only its chroma (ab) is used, L comes from the photo


# what every colorize call takes as hints: points `(x, y, (r, g, b))`, a painted RGBA layer, or none
HintInput = Union[Sequence[Union[Hint, tuple]], Image.Image, None]


def has_hints(hints: HintInput) -> bool:
    """Whether `hints` gives any: a layer always does, a list when it is not empty."""
    return hints is not None and (isinstance(hints, Image.Image) or len(hints) > 0)


def _finite_number(value) -> float | None:
    """`value` as a float when it is a real number (not a string, not a bool) that is finite, else None.

    Strict on purpose: float("255") would read a string, and a string colour iterated channel by
    channel read (10, 10, "255") as (2, 5, 5); float(10**400) raises OverflowError.
    """
    if isinstance(value, bool) or not isinstance(value, (Real, np.number)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _check_colour(color) -> tuple[int, int, int]:
    # an sRGB triple of numbers in 0..255 (strings, NaN, infinities, other lengths and ranges refused)
    channels = [_finite_number(channel) for channel in color] if isinstance(color, (tuple, list)) else None
    if channels is None or len(channels) != 3 or not all(c is not None and 0 <= c <= 255 for c in channels):
        raise ValueError(f"hint colour {color!r:.60} is not three numbers (r, g, b) in 0..255")
    return tuple(round(channel) for channel in channels)  # type: ignore[return-value]


def parse_hex_color(text: str) -> tuple[int, int, int]:
    """`#RRGGBB` (or `RRGGBB`) -> (r, g, b).

    Raises:
        ValueError: not six hex digits; the message is one line.
    """
    digits = text.strip().removeprefix("#")
    if len(digits) != 6 or any(digit not in "0123456789abcdefABCDEF" for digit in digits):
        raise ValueError(f"colour {text!r:.30} is not #RRGGBB")
    return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def points_from_records(cell) -> list[tuple]:
    """Hint points as a dataset stores them -> `(x, y, color)` tuples for `parse_hint` to check.

    A cell is None (no hints), a list of points, or that list as a JSON string. A point is
    `[x, y, color]` or `{"x": .., "y": .., "color": ..}`; a colour is `[r, g, b]` or `"#RRGGBB"`.

    Raises:
        ValueError: not a list of points in one of those forms, or more than `HINT_POINTS` allows; one line.
    """
    if cell is None:
        return []
    if isinstance(cell, str):
        try:
            cell = json.loads(cell) if cell.strip() else []
        except json.JSONDecodeError as error:
            raise ValueError(f"hints {cell!r:.40} are not JSON ({error.msg})") from None
    if not isinstance(cell, (list, tuple)):
        raise ValueError(f"hints must be a list of points, got {type(cell).__name__}")
    if len(cell) > HINT_POINTS.high:
        raise ValueError(f"{len(cell)} hint points, more than the {HINT_POINTS.high:,} allowed")
    points = []
    for point in cell:
        if isinstance(point, dict):
            if not {"x", "y", "color"} <= point.keys():
                raise ValueError(f"hint {point!r:.60} needs x, y and color")
            point = (point["x"], point["y"], point["color"])
        if isinstance(point, (list, tuple)) and len(point) == 3 and isinstance(point[2], str):
            point = (point[0], point[1], parse_hex_color(point[2]))
        points.append(tuple(point) if isinstance(point, list) else point)
    return points


def parse_hint(point: Hint | Sequence, image_size: tuple[int, int]) -> Hint:
    """Check one `(x, y, (r, g, b))` point against the image it is for.

    Raises:
        ValueError: not three fields, coordinates not finite or outside the image, or a colour
            that is not three numbers in 0..255; the message is one line.
    """
    width, height = image_size
    try:
        x, y, color = point
    except (TypeError, ValueError):
        raise ValueError(f"hint {point!r:.60} is not (x, y, (r, g, b))") from None
    if _finite_number(x) is None or _finite_number(y) is None:
        raise ValueError(f"hint at ({x!r:.30}, {y!r:.30}): x and y must be finite numbers")
    x, y = float(x), float(y)
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"hint at ({x:g}, {y:g}) is outside the {width}x{height} image")
    return Hint(x, y, _check_colour(color))


def check_hint_layer(layer: Image.Image, image_size: tuple[int, int]) -> None:
    """A painted hint layer must be RGBA (transparent where there is no hint) and of the image's size.

    Raises:
        ValueError: another mode or size; the message is one line.
    """
    if not isinstance(layer, Image.Image) or layer.mode != "RGBA":
        what = f"mode {layer.mode}" if isinstance(layer, Image.Image) else type(layer).__name__
        raise ValueError(f"the hint layer must be an RGBA image, transparent where there is no hint (got {what})")
    if layer.size != tuple(image_size):
        width, height = image_size
        raise ValueError(f"hint layer is {layer.width}x{layer.height}, the image {width}x{height}")


def with_alpha(layer: Image.Image) -> Image.Image:
    """A hint layer read from a file, as RGBA: it must carry transparency (RGBA, LA, or a palette
    with a transparent colour), since a layer without any would hint every pixel.

    Raises:
        ValueError: the layer has no alpha channel or transparency; the message is one line.
    """
    if layer.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in layer.info:
        return layer.convert("RGBA")
    raise ValueError(f"the hint layer must be RGBA, transparent where there is no hint (got mode {layer.mode})")


def generator_input(l_norm: torch.Tensor, hint_ab: torch.Tensor | None = None, hint_mask: torch.Tensor | None = None):
    """(B, 1, H, W) L [+ (B, 2, H, W) hint ab, (B, 1, H, W) mask] -> (B, 4, H, W)."""
    if hint_ab is None:
        return torch.cat([l_norm, l_norm.new_zeros(l_norm.shape[0], 3, *l_norm.shape[-2:])], dim=1)
    return torch.cat([l_norm, hint_ab * hint_mask, hint_mask], dim=1)


# A painted stroke covering more of the render than this share reaches the network as a grid of points
# (`hints_as_trained`); point hints stay far below it (30 points of 3x3 px are 0.8 % at render 224).
DENSE_HINT_SHARE = 0.01
# the grid's spacing in render pixels, and the side of each point's patch (that of `points_to_hints`).
# 20 px: on synthetic strokes over val/ (benchmarks/bench_strokes.py, docs/quality.md) the PSNR gain
# rises from dense strokes through 6-12 px cells to a plateau at 14-32 px (224 and 320) and 18-40 px
# (512), where 20 px is at the top at every render size; on the sheep photo its neighbours 16 and 24
# px stay under the bar too, where 8 px's neighbours 6 and 12 did not.
THINNED_SPACING = 20
THINNED_PATCH = 3


def hints_as_trained(
    network_input: torch.Tensor,
    max_share: float = DENSE_HINT_SHARE,
    spacing: int = THINNED_SPACING,
    patch: int = THINNED_PATCH,
) -> torch.Tensor:
    """The generator's input with large painted strokes thinned to a grid of point hints.

    The network was trained with a few small patches of true colour (`sample_training_hints`); fed a
    broad stroke at every pixel, it spreads the stroke's colour over whatever lies under and beside
    it, bright objects included (the sheep of issue 20 turn green). When the hints are propagated
    afterwards (`colorgan.propagation`, which keeps the whole stroke), the network only needs the
    stroke's colours as points: each `spacing` x `spacing` cell the stroke touches keeps one
    `patch` x `patch` point, on the stroke pixel nearest the cell's centre. Images whose hints cover
    at most `max_share` of the render (point hints) are returned unchanged.

    Args:
        network_input: (B, 4, h, w) L, hint ab (already masked), hint mask, as `generator_input` makes.
        max_share: share of the render's pixels above which an image's hints are thinned.
        spacing: the grid's cell side in render pixels.
        patch: each kept point's side in pixels (odd), clipped to the stroke.

    Returns:
        (B, 4, h, w): the input itself when no image is thinned, else a new tensor.
    """
    l_norm, hint_ab, mask = network_input.split([1, 2, 1], dim=1)
    dense = mask.flatten(1).mean(dim=1) > max_share  # (B,)
    if not bool(dense.any()):
        return network_input
    thinned = torch.where(dense[:, None, None, None], _grid_points(mask, spacing, patch), mask)
    return generator_input(l_norm, hint_ab, thinned)


def _grid_points(mask: torch.Tensor, spacing: int, patch: int) -> torch.Tensor:
    # (B, 1, h, w) mask -> the mask kept only at one patch per grid cell. In each cell, the kept point
    # is the masked pixel with the most masked neighbours (a point hint's centre, so a point hint stays
    # whole; a stroke's inside rather than its rim), the one nearest the cell's centre among those:
    # a max-pool over the cells of that score (neighbours 1..9, plus a bump in (0.5, 1] peaking at
    # each cell's centre, so the count decides first and no unmasked pixel scores above 0)
    height, width = mask.shape[-2:]
    offsets = lambda n: (torch.arange(n, device=mask.device) % spacing - (spacing - 1) / 2).abs()  # noqa: E731
    distance = offsets(height)[:, None] + offsets(width)[None, :]  # (h, w) city-block distance to the centre
    neighbours = (F.avg_pool2d(mask, 3, stride=1, padding=1, count_include_pad=True) * 9).round()
    score = mask * (neighbours + 1 - distance / (4 * spacing))
    best, where = F.max_pool2d(score, spacing, stride=spacing, ceil_mode=True, return_indices=True)
    centres = torch.zeros_like(mask).flatten(2).scatter_(2, where.flatten(2), (best > 0).to(mask.dtype).flatten(2))
    points = F.max_pool2d(centres.view_as(mask), patch, stride=1, padding=patch // 2)
    return points * mask


def points_to_hints(
    points: Sequence[Hint | tuple], image_size: tuple[int, int], render_size: tuple[int, int], radius: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hint points in image coordinates -> (1, 2, h, w) hint ab and (1, 1, h, w) mask at render size.

    Each point becomes a (2*radius+1)^2 patch, like the small patches seen in training.
    Every point is checked (`parse_hint`) before any is used.

    Raises:
        ValueError: more points than `HINT_POINTS` allows, or a bad point; one line.
    """
    (width, height), (render_w, render_h) = image_size, render_size
    if len(points) > HINT_POINTS.high:
        raise ValueError(f"{len(points)} hint points, more than the {HINT_POINTS.high:,} allowed")
    hint_ab, mask = torch.zeros(1, 2, render_h, render_w), torch.zeros(1, 1, render_h, render_w)
    if not points:
        return hint_ab, mask
    points = [parse_hint(point, image_size) for point in points]
    colors = torch.tensor([list(point.color) for point in points], dtype=torch.uint8)  # (N, 3)
    ab = normalize_ab(rgb_to_lab(colors.T[None, :, :, None])[0, 1:, :, 0])  # (2, N)
    for index, (x, y, _) in enumerate(points):
        col, row = int(x * render_w / width), int(y * render_h / height)
        rows = slice(max(row - radius, 0), row + radius + 1)
        cols = slice(max(col - radius, 0), col + radius + 1)
        hint_ab[0, :, rows, cols] = ab[:, index, None, None]
        mask[0, :, rows, cols] = 1.0
    return hint_ab, mask


def layer_to_hints(layer: Image.Image, render_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A painted RGBA layer (transparent where unpainted) -> hint ab and mask at render size.

    The layer is box-filtered with premultiplied alpha, so thin strokes survive downscaling
    and their colour is not darkened by the transparent pixels around them.
    """
    small = layer.convert("RGBa").resize(render_size, Image.Resampling.BOX).convert("RGBA")
    pixels = torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1)[None]  # (1, 4, h, w)
    mask = (pixels[:, 3:] >= 64).float()  # at least a quarter of the render pixel painted
    hint_ab = normalize_ab(rgb_to_lab(pixels[:, :3])[:, 1:]) * mask
    return hint_ab, mask


def sample_training_hints(
    ab_norm: torch.Tensor, probability: float = 0.5, mean_points: float = 8.0, max_patch: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulated user hints revealing the true ab of a few small patches.

    With `probability` an image gets hints; their number is geometric with mean
    `mean_points` (Zhang et al. 2017 use p = 1/8); each patch is 1..max_patch pixels wide
    and carries the mean ab of the patch. Uses torch's global RNG, so seeded runs repeat.

    Args:
        ab_norm: (B, 2, H, W) true ab in model space.

    Returns:
        hint_ab (B, 2, H, W) and mask (B, 1, H, W).
    """
    batch, _, height, width = ab_norm.shape
    hint_ab = torch.zeros_like(ab_norm)
    mask = torch.zeros(batch, 1, height, width, device=ab_norm.device, dtype=ab_norm.dtype)
    has_hints = torch.rand(batch) < probability
    geometric = torch.distributions.Geometric(probs=torch.tensor(1.0 / mean_points))
    for index in has_hints.nonzero().flatten().tolist():
        for _ in range(int(geometric.sample().item()) + 1):
            size = int(torch.randint(1, max_patch + 1, ()).item())
            top = int(torch.randint(0, max(height - size, 0) + 1, ()).item())
            left = int(torch.randint(0, max(width - size, 0) + 1, ()).item())
            patch = (slice(top, top + size), slice(left, left + size))
            hint_ab[index, :, patch[0], patch[1]] = ab_norm[index, :, patch[0], patch[1]].mean(dim=(1, 2), keepdim=True)
            mask[index, :, patch[0], patch[1]] = 1.0
    return hint_ab, mask


def sample_hints(truth: torch.Tensor, count: int, generator: torch.Generator, radius: int = 1) -> list[Hint]:
    """`count` hint points at random pixels, each coloured like the ground truth around it.

    Args:
        truth: (1, 3, H, W) ground-truth RGB float in [0, 1].
        count: number of points.
        generator: the random source (seed it for repeatable hints).
        radius: the colour is the mean of the (2 radius + 1)^2 patch around the point (clipped to the image).

    Returns:
        `Hint(x, y, (r, g, b))` points at pixel centres, in the image's pixel coordinates.
    """
    height, width = truth.shape[-2:]
    columns = torch.randint(0, width, (count,), generator=generator).tolist()
    rows = torch.randint(0, height, (count,), generator=generator).tolist()
    points = []
    for column, row in zip(columns, rows):
        patch = truth[0, :, max(row - radius, 0) : row + radius + 1, max(column - radius, 0) : column + radius + 1]
        red, green, blue = (patch.float().mean(dim=(1, 2)) * 255).round().to(torch.uint8).tolist()
        points.append(Hint(column + 0.5, row + 0.5, (red, green, blue)))
    return points
