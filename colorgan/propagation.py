"""Edge-aware hint propagation: a hint recolours the region it sits in, not just a dot.

After the generator predicts ab, each hint is spread over the photo along paths that are cheap
within a region and costly across an edge of the photo's own lightness, after the domain
transform of Gastal & Oliveira 2011 ("Domain Transform for Edge-Aware Image and Video
Processing"). Two fields come out of the same edge costs:

- *which* colour a pixel gets: a normalized convolution of the hints' colours with the domain
  transform's recursive filter, iterated three times (rows, then columns) with the paper's
  halving schedule, so a pixel takes the colours of the hints it is best connected to, weighted,
  and no column or row structure of the 1-D passes shows;
- *how much* of it: the pixel's reach from its best-connected hint, the product of the edge
  weights along the best row/column path (a geodesic distance, exponentiated). It is 1 at a
  hint, stays near 1 across a flat region and falls by exp(-sqrt(2) (dL - threshold) / range_sigma)
  at each step of height dL, so a stroke on a sky colours the sky and stops at the roof line.

Edges are taken where they exist: given the photo's full-resolution L* (`guide`), the spreading runs
on a grid of at most `max_side` whose edge weights are the cheapest paths through the guide
(`edge_log_weights_from_guide`), and each output pixel keeps a cell's reach only as far as its own L*
matches that cell's (`GuideReach`, applied slice by slice in `finish_at_guide`), so objects a few
pixels wide stop a stroke.

Each 1D pass is a first-order recurrence along rows or columns, y[n] = w[n] y[n-1] + x[n] (and
its max-product twin for the reach), solved as a parallel prefix scan in log2(length) vectorized
steps: a handful of tensor ops on any device, no Python loop over pixels. It is deterministic,
needs no training and works with any checkpoint; `Colorizer` runs it on the render-size prediction,
guided by the photo's full-resolution L* (video: at render size, where the flow memory works).

What spreads is the hint's *colour*, blended into the prediction by the reach, not the hint's
correction (hint minus prediction): the network's errors vary from pixel to pixel within a
region, a region's true colour much less. Measured on 30 training photos with 10 ground-truth
points (bundled model, render 224, this module's first settings): spreading colours +4.4 dB PSNR,
spreading corrections -2.2 dB.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .fullres import RowUpsampler, bilinear_taps, in_row_slices, row_slices


@dataclass(frozen=True)
class PropagationSettings:
    """How far and how freely a hint spreads.

    Args:
        range_sigma: lightness step (L* units, above the noise threshold) whose crossing costs a
            factor exp(-sqrt(2)) ~ 0.24 in reach; the smaller, the fainter the edges that stop a hint.
        reach_sigma: distance, as a fraction of the long side, over which reach falls by exp(-sqrt(2))
            inside a flat region; 4 lets a stroke fill a sky that spans the photo.
        noise_threshold: lightness steps (L* per pixel) up to this size are free: smooth gradients
            (a sky, a cheek) and leftover noise do not stop a hint, real edges do.
        sweeps: row-then-column sweeps of the reach; the second lets paths turn a corner twice.
        iterations: domain-transform iterations of the colour blend, each a row pass and a column
            pass, with the paper's schedule (the spatial sigma halved at each; Gastal & Oliveira 2011
            use 3): the later, shorter passes even out the column and row structure the first leaves.
        edge_smoothing: L* is box-blurred over this many pixels (at the working size) before its
            steps are taken, so film grain and JPEG noise do not count as edges.
        max_side: the colour blend and the reach run at most at this long side (their cost grows
            faster than the pixel count once the scans' arrays leave the cache).
        guide_max_side: the result is taken back up to the photo's lightness at most at this long
            side (`GuideReach`): a pixel keeps the reach of a working cell only as far as its own
            L* matches that cell's, so objects a few pixels wide stop a stroke even where the working
            size has blurred them away.
        guide_threshold: L* difference between a pixel and its working cell that is free in that
            last step (texture within a region, the blur of the working size); above it the reach
            falls as at an edge, by exp(-sqrt(2) (dL - threshold) / range_sigma).
    """

    range_sigma: float = 4.0
    noise_threshold: float = 3.5
    reach_sigma: float = 4.0
    sweeps: int = 2
    iterations: int = 3
    edge_smoothing: int = 2
    max_side: int = 128
    guide_max_side: int = 1024
    guide_threshold: float = 8.0


DEFAULT_SETTINGS = PropagationSettings()
# `finish_at_guide` works in slices of this many pixels
FINISH_PIXELS = 1 << 16


def edge_scan(edges: torch.Tensor, sums: torch.Tensor, best: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Two recurrences along the last dim that share their weights, with y[-1] = 0:

        sums[n] = edges[n] * sums[n-1] + x[n]          (path-weighted sums, for the blend)
        best[n] = max(edges[n] * best[n-1], x[n])      (best path weight, for the reach)

    A Hillis-Steele prefix scan (`_scan`): log2(N) steps, each composing every element's map with
    the one `shift` places before it, so y[n] covers all of x[0..n]. Only multiplies weights in
    [0, 1] and adds, so it is numerically safe. The inputs are left as they are.

    Args:
        edges: (..., 1, H, N) weight between elements n-1 and n at n, in [0, 1]; index 0 is ignored.
        sums: (..., C, H, N) the sequences to sum.
        best: (..., 1, H, N) the seeds of the reach, or None (then None comes back for it).
    """
    channels = sums.shape[-3]
    data = sums.clone() if best is None else torch.cat([sums, best], dim=-3)
    data = _scan(edges.clone(), data, channels, dim=-1)
    return data.narrow(-3, 0, channels), None if best is None else data.narrow(-3, channels, 1)


def _scan(edges: torch.Tensor, data: torch.Tensor, summed: int, dim: int) -> torch.Tensor:
    # `edge_scan`'s recurrences along `dim` of (..., K, H, W) `data`, whose first `summed` channels sum
    # and the others keep the best; `edges` (..., 1, H, W) is overwritten, `data` may be. Two buffers
    # take turns (each step reads one and writes the other), so no step allocates: the products are
    # written straight into the other buffer, then the current values added (or maxed) in place.
    length, shift = data.shape[dim], 1
    edges.narrow(dim, 0, 1).zero_()
    spare_data, spare_edges = torch.empty_like(data), torch.empty_like(edges)
    while shift < length:
        kept = length - shift
        weights = edges.narrow(dim, shift, kept)
        out = spare_data.narrow(dim, shift, kept)
        torch.mul(weights, data.narrow(dim, 0, kept), out=out)
        current = data.narrow(dim, shift, kept)
        out[..., :summed, :, :].add_(current[..., :summed, :, :])
        if summed < data.shape[-3]:
            torch.maximum(out[..., summed:, :, :], current[..., summed:, :, :], out=out[..., summed:, :, :])
        spare_data.narrow(dim, 0, shift).copy_(data.narrow(dim, 0, shift))
        data, spare_data = spare_data, data
        if 2 * shift < length:  # the composed weights are needed by a next step only
            torch.mul(weights, edges.narrow(dim, 0, kept), out=spare_edges.narrow(dim, shift, kept))
            spare_edges.narrow(dim, 0, shift).zero_()  # the composed weight of a span that starts before 0
            edges, spare_edges = spare_edges, edges
        shift *= 2
    return data


def _both_ways(log_weights: torch.Tensor, data: torch.Tensor, summed: int, dim: int) -> torch.Tensor:
    # (B, K, H, W) data spread along `dim` in both directions at once: `log_weights` (2, B, 1, H, W)
    # holds the forward weights' logs and the backward ones' flipped along `dim` (`_directions`), so
    # the backward scan runs as a forward scan on the flipped data, stacked with the forward one
    stacked = _scan(log_weights.exp(), torch.stack([data, data.flip(dim)]), summed, dim)  # dim < 0: the same in both
    forward, backward = stacked[0], stacked[1].flip(dim)
    # each direction includes pixel n itself, so it is taken away once from the sums
    sums = forward[:, :summed].add_(backward[:, :summed]).sub_(data[:, :summed])
    if summed == data.shape[1]:
        return sums
    return torch.cat([sums, torch.maximum(forward[:, summed:], backward[:, summed:])], dim=1)


def _directions(log_weights: torch.Tensor, dim: int) -> torch.Tensor:
    # (B, 1, H, W) log weight between n-1 and n at n -> (2, B, 1, H, W): as is, and the weight between
    # n and n+1 at n (0 past the end), flipped along `dim`, for `_both_ways`
    length = log_weights.shape[dim]
    backward = torch.cat([log_weights.narrow(dim, 1, length - 1), torch.zeros_like(log_weights.narrow(dim, 0, 1))], dim)
    return torch.stack([log_weights, backward.flip(dim)])


def smoothed_lightness(lightness: torch.Tensor, smoothing: int) -> torch.Tensor:
    """L* box-blurred over `smoothing` pixels (replicated borders); (B, 1, H, W) float."""
    lightness = lightness.float()
    if smoothing <= 1:
        return lightness
    if smoothing <= 3:
        padded = F.pad(lightness, [smoothing // 2, (smoothing - 1) // 2] * 2, mode="replicate")
        return F.avg_pool2d(padded, smoothing, stride=1)
    return _box_along(_box_along(lightness, smoothing, -1), smoothing, -2)  # wider: O(1) per pixel


def _box_along(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    # mean over `size` neighbours along `dim` (replicated borders), from differences of a running sum
    length = x.shape[dim]
    before, after = size // 2, (size - 1) // 2
    first, last = x.narrow(dim, 0, 1), x.narrow(dim, length - 1, 1)
    padded = torch.cat([first.repeat_interleave(before + 1, dim), x, last.repeat_interleave(after, dim)], dim)
    running = padded.cumsum(dim)  # double precision is not needed: L* sums over a row stay < 1e6
    return (running.narrow(dim, size, length) - running.narrow(dim, 0, length)) / size


def reach_between(
    base: torch.Tensor,
    lightness: torch.Tensor,
    other: torch.Tensor,
    threshold: float,
    gain: float,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    """The log reach of a pixel one step on from a neighbour, in place in `base`.

    The step is free while the two L* are within `threshold` of each other, and costs `gain` per L*
    above it. With the neighbour's log reach r passed as base = r + gain * threshold, the result
    base - gain * max(|lightness - other|, threshold) = r - gain * max(|lightness - other| - threshold, 0)
    takes four passes and allocates nothing (callers add the offset once, on a smaller grid).

    Args:
        base: the neighbour's log reach plus gain * threshold; overwritten with the result.
        lightness: the pixel's L*.
        other: the neighbour's L* (the same shape as `lightness`).
        threshold: the free L* difference.
        gain: the log reach lost per L* above it.
        scratch: where to put |lightness - other| (that shape), or None for a new tensor.
    """
    step = torch.sub(lightness, other, out=scratch) if scratch is not None else lightness - other
    return base.sub_(step.abs_().clamp_min_(threshold), alpha=gain)


def edge_log_weights(lightness: torch.Tensor, settings: PropagationSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Log weights between neighbours along rows and along columns, both (B, 1, H, W).

    At index n along its dim, the log weight between pixels n-1 and n (index 0 unused): each pixel of
    flat ground costs sqrt(2) / reach (reach in pixels), and a lightness step dL above the noise
    threshold sqrt(2) (dL - threshold) / range_sigma more.

    Args:
        lightness: (B, 1, H, W) L* in [0, 100].
        settings: the edge and reach settings.
    """
    lightness = smoothed_lightness(lightness, settings.edge_smoothing)
    flat_cost = math.sqrt(2) / (settings.reach_sigma * max(lightness.shape[-2:]))
    gain = math.sqrt(2) / settings.range_sigma

    def along(dim: int) -> torch.Tensor:
        length = lightness.shape[dim]
        after, before = lightness.narrow(dim, 1, length - 1), lightness.narrow(dim, 0, length - 1)
        base = torch.full_like(after, gain * settings.noise_threshold - flat_cost)  # -flat_cost, offset
        log_weights = reach_between(base, after, before, settings.noise_threshold, gain)
        return torch.cat([torch.zeros_like(lightness.narrow(dim, 0, 1)), log_weights], dim)

    return along(-1), along(-2)


def edge_weights(lightness: torch.Tensor, settings: PropagationSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """`edge_log_weights` as weights in [0, 1]: along rows and along columns, both (B, 1, H, W)."""
    along_rows, along_columns = edge_log_weights(lightness, settings)
    return along_rows.exp(), along_columns.exp()


def edge_log_weights_from_guide(
    guide: torch.Tensor, size: tuple[int, int], settings: PropagationSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """`edge_log_weights` on a grid of `size` (h, w) taken from the larger L* `guide` (B, 1, H, W).

    Between two neighbouring cells, the weight is that of the best straight path between their
    centres at the guide's resolution, among the guide's rows (for neighbours along a row) or
    columns (along a column) that the cells span: the product of the guide's own edge weights
    along it. So a thin line that the small grid would blur away still stops a hint crossing it,
    while texture a path can go around does not. The flat cost is that of the small grid.

    Returns:
        The log weights along rows and along columns, both (B, 1, h, w).
    """
    height, width = size
    # paths are followed at no more than twice the small grid's size: a line a few pixels wide
    # keeps most of its depth there, and the cost stays a small multiple of the grid's
    guide = _at_most(guide, 2 * max(size))
    # the noise and texture the small grid's smoothing would remove, removed at the guide's scale
    lightness = smoothed_lightness(guide, max(1, round(settings.edge_smoothing * guide.shape[-1] / width)))
    flat_cost = math.sqrt(2) / (settings.reach_sigma * max(size))
    gain = math.sqrt(2) / settings.range_sigma

    def along_last(lightness: torch.Tensor, cells: int, other_cells: int) -> torch.Tensor:
        # (B, 1, A, N) -> (B, 1, other_cells, cells) log weights between cells along the last dim
        # the path's total variation: a step up and back down (a thin line) counts twice, a soft
        # edge spread over several pixels as its whole height, as the small grid would see it
        cumulative = F.pad((lightness[..., 1:] - lightness[..., :-1]).abs_().cumsum(-1), [1, 0])
        length = lightness.shape[-1]
        centres = ((torch.arange(cells, device=guide.device) + 0.5) * (length / cells)).long().clamp_max(length - 1)
        at_centres = cumulative.index_select(-1, centres)
        between = F.pad(at_centres[..., 1:] - at_centres[..., :-1], [1, 0])  # (B, 1, A, cells)
        smoothest = F.adaptive_max_pool2d(between.neg_(), (other_cells, cells)).neg_()
        return (smoothest - settings.noise_threshold).clamp_min_(0).mul_(-gain).sub_(flat_cost)

    along_rows = along_last(lightness, width, height)
    along_columns = along_last(lightness.transpose(-1, -2), height, width)  # (B, 1, w, h)
    return along_rows, along_columns.transpose(-1, -2).contiguous()


def schedule_exponents(iterations: int) -> list[float]:
    """Powers of the edge weights at each domain-transform iteration (Gastal & Oliveira 2011, eq. 14).

    Iteration i (0-based) of N uses sigma_i = sigma sqrt(3) 2^(N-i-1) / sqrt(4^N - 1): the weight
    a = exp(-cost / sigma) becomes a^(sigma / sigma_i). The sigmas' squares add up to sigma^2.
    """
    return [math.sqrt(4**iterations - 1) / (math.sqrt(3) * 2 ** (iterations - 1 - i)) for i in range(iterations)]


def blend_and_reach(
    values: torch.Tensor,
    seeds: torch.Tensor,
    lightness: torch.Tensor,
    settings: PropagationSettings = DEFAULT_SETTINGS,
    log_weights: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spread seeded values over the photo along edge-aware paths.

    Args:
        values: (B, C, H, W) values at the seeds (ignored elsewhere).
        seeds: (B, 1, H, W) seed weights in [0, 1] (0 = no seed).
        lightness: (B, 1, H, W) L* in [0, 100], the guide.
        settings: edge sensitivity, reach, sweeps and iterations.
        log_weights: the log edge weights along rows and columns, both (B, 1, H, W), if not
            `edge_log_weights(lightness)` (`edge_log_weights_from_guide`).

    Returns:
        The weighted mean of the seeds' values at every pixel, (B, C, H, W): a normalized
        convolution with the iterated domain transform's recursive filter (rows, then columns,
        `iterations` times with the paper's halving schedule), whose weights fall with path cost;
        and the reach (B, 1, H, W) in [0, 1]: the best row/column path weight to any seed
        (1 at a seed, exp(-sqrt(2)) after `reach_sigma` long sides of flat ground, and
        exp(-sqrt(2) (dL - threshold) / range_sigma) less for each edge of height dL on the way).
    """
    along_rows, along_columns = log_weights if log_weights is not None else edge_log_weights(lightness, settings)
    # both directions' log weights, once: each iteration's weights are then one exp of a multiple
    directions = [(_directions(along_rows, -1), -1), (_directions(along_columns, -2), -2)]
    seeds = seeds.float()
    channels = values.shape[1] + 1
    # (B, C + 2, H, W): a normalized convolution's numerator and denominator, then the reach, which
    # rides along the first `sweeps` iterations' scans (same weights) and then stays
    data = torch.cat([values.float() * seeds, seeds, seeds], dim=1)
    for iteration, exponent in enumerate(schedule_exponents(max(settings.iterations, settings.sweeps))):
        smooth, reach = iteration < settings.iterations, iteration < settings.sweeps
        first, summed = (0 if smooth else channels), (channels if smooth else 0)
        moving = data[:, first : channels + int(reach)]
        for log_directions, dim in directions:
            moving = _both_ways(log_directions * exponent if exponent != 1 else log_directions, moving, summed, dim)
        data[:, first : channels + int(reach)] = moving
    # the weight sum adds up all the paths the reach takes the best of, so it underflows to 0 only
    # where the reach does; the mean there is 0, which a reach of 0 then ignores
    total = data[:, channels - 1 : channels]
    return data[:, : channels - 1] / total.clamp_min(torch.finfo(torch.float32).tiny), data[:, channels:]


class GuideReach:
    """The reach at the guide's size, from a reach computed on a coarser (or blurred) grid, by rows.

    A pixel is one more step from each of the four working cells around it (those a bilinear
    upsampling reads): the step is free while the pixel's L* is within `guide_threshold` of the
    cell's, and costs as an edge above that (`reach_between`). The pixel takes the best of the four.
    So a small bright object that the working size blurred into its surroundings, reached there at
    full strength, keeps almost none of it: none of its neighbouring cells is as bright as it is, or
    the one that is was itself hard to reach.

    Args:
        reach: (B, 1, h, w) reach at the working size.
        working_lightness: (B, 1, h, w) the L* the reach was computed on (smoothed as its edges were).
        size: (H, W) the guide's size (H, W >= h, w).
        settings: range_sigma and guide_threshold.
    """

    def __init__(
        self, reach: torch.Tensor, working_lightness: torch.Tensor, size: tuple[int, int], settings: PropagationSettings
    ):
        height, width = size
        self.threshold, self.gain = settings.guide_threshold, math.sqrt(2) / settings.range_sigma
        # in the log domain, with `reach_between`'s offset: one exp at the end instead of one per tap
        log_reach = reach.float().clamp_min(1e-30).log_().add_(self.gain * self.threshold)
        cells = torch.cat([log_reach, working_lightness.float()], dim=1)  # (B, 2, h, w)
        # both column taps picked once on the small grid: (B, 2, h, W) each; rows are then picked whole,
        # slice by slice (along the last dim, picking at full size is ~5x slower)
        column_taps = bilinear_taps(cells.shape[-1], width, cells.device)[:2]
        self.columns = [cells.index_select(-1, index) for index in column_taps]
        self.rows = bilinear_taps(cells.shape[-2], height, cells.device)[:2]

    def scratch_size(self, max_rows: int) -> int:
        """The elements of scratch space `log_reach` needs for up to `max_rows` rows (one per thread)."""
        batch, _, _, width = self.columns[0].shape
        return 4 * batch * max_rows * width

    def log_reach(self, rows: slice, lightness: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
        """(B, R, W) log reach of the guide's `rows`, whose L* is `lightness` (B, R, W), in `scratch`."""
        batch, _, _, width = self.columns[0].shape
        plane = batch * (rows.stop - rows.start) * width
        picked = scratch[: 2 * plane].view(batch, 2, -1, width)
        step, best = (scratch[start : start + plane].view_as(lightness) for start in (2 * plane, 3 * plane))
        first = True
        for columns in self.columns:
            for row_index in self.rows:
                torch.index_select(columns, -2, row_index[rows], out=picked)
                cell_log_reach, cell_lightness = picked.unbind(1)
                candidate = reach_between(cell_log_reach, lightness, cell_lightness, self.threshold, self.gain, step)
                torch.maximum(best, candidate, out=best) if not first else best.copy_(candidate)
                first = False
        return best


def finish_at_guide(
    ab: torch.Tensor,
    change: torch.Tensor,
    hint_mask: torch.Tensor,
    reach: GuideReach,
    guide: torch.Tensor,
) -> torch.Tensor:
    """ab + change * max(reach, hint mask) at the guide's size, one slice of rows at a time.

    The render-size maps are upsampled bilinearly (`fullres.RowUpsampler`) and the reach refined to
    the guide (`GuideReach`) slice by slice, in buffers reused from slice to slice: no full-size
    intermediate exists, and no slice allocates (fresh buffers of this size cost their page faults
    each time, ~40% of this step). On the cpu the slices are shared among torch's threads.

    Args:
        ab: (B, 2, h, w) the prediction, Lab units.
        change: (B, 2, h, w) the propagated colour minus the prediction (0 for images without hints).
        hint_mask: (B, 1, h, w) 1 at hinted pixels, which take their change whole.
        reach: the reach, to be refined at the guide's size.
        guide: (B, 1, H, W) L* at the output size.

    Returns:
        (B, 2, H, W) ab.
    """
    batch, (height, width) = ab.shape[0], guide.shape[-2:]
    # (B * 5, h, w): one upsampler for all three maps of every image
    upsampler = RowUpsampler(torch.cat([ab, change, hint_mask], dim=1).flatten(0, 1), height, width)
    max_rows = next(row_slices(height, width, FINISH_PIXELS)).stop
    out = ab.new_empty(batch, 2, height, width)

    def fill(share: Iterable[slice]) -> None:
        buffer_size = 2 * 5 * batch * max_rows * width  # `RowUpsampler.new_buffer`'s
        scratch = _workspace(buffer_size + reach.scratch_size(max_rows), guide.device)
        buffer = scratch[:buffer_size].view(2, -1)
        scratch = scratch[buffer_size:]
        for rows in share:
            log_reach = reach.log_reach(rows, guide[:, 0, rows], scratch)  # (B, R, W)
            prediction, change, mask = upsampler.rows(rows, buffer).view(batch, 5, -1, width).split([2, 2, 1], dim=1)
            weight = torch.maximum(log_reach.exp_()[:, None], mask, out=mask)
            torch.addcmul(prediction, change, weight, out=out[:, :, rows])

    in_row_slices(height, width, guide.device, fill, FINISH_PIXELS)
    return out


_WORKSPACES = threading.local()


def _workspace(size: int, device: torch.device) -> torch.Tensor:
    """A flat float32 scratch tensor of `size` elements, kept per thread and device for later calls.

    Fresh buffers of a few MB come from the system anew on each call and cost their page faults
    each time (measured: 1,400 faults and ~30% of `finish_at_guide` at render 224 with a 560 px
    guide); a kept one does not. It holds as much as the largest call needed (~4 MB an image).
    Always a normal tensor, even when first made under `torch.inference_mode()` (as `Colorizer`
    runs): an inference tensor could not be written in place by a later call outside that mode.
    """
    held = getattr(_WORKSPACES, "tensors", None)
    if held is None:
        held = _WORKSPACES.tensors = {}
    tensor = held.get(device)
    if tensor is None or tensor.numel() < size:
        with torch.inference_mode(False):
            tensor = held[device] = torch.empty(size, device=device)
    return tensor[:size]


def propagate_hints(
    ab: torch.Tensor,
    lightness: torch.Tensor,
    hint_ab: torch.Tensor,
    hint_mask: torch.Tensor,
    settings: PropagationSettings = DEFAULT_SETTINGS,
    guide: torch.Tensor | None = None,
) -> torch.Tensor:
    """Spread each hint's colour over its region; hinted pixels get the hint's ab.

    Args:
        ab: (B, 2, H, W) predicted ab in Lab units.
        lightness: (B, 1, H, W) L* of the photo at the same size.
        hint_ab: (B, 2, H, W) hint ab in Lab units (ignored where the mask is 0).
        hint_mask: (B, 1, H, W) 1 where a hint is, 0 elsewhere (fractions weigh partly).
        settings: edge sensitivity and reach.
        guide: optionally the photo's L* at a larger size (B, 1, H', W'), e.g. its full resolution:
            the result then comes at that size (at most `guide_max_side` long, shrunk by area),
            with edges that exist only there stopping the hints.

    Returns:
        (B, 2, H, W) ab in Lab units (or at the guide's size, as above); equal to `ab` (upsampled
        to the guide's size) where an image has no hints.
    """
    with torch.autocast(ab.device.type, enabled=False):
        ab, hint_ab, hint_mask, lightness = ab.float(), hint_ab.float(), hint_mask.float(), lightness.float()
        guide = lightness if guide is None else _at_most(guide.float(), settings.guide_max_side)
        if guide.shape[-2] < ab.shape[-2] or guide.shape[-1] < ab.shape[-1]:
            guide = lightness  # never smaller than the prediction
        has_hints = hint_mask.flatten(1).amax(dim=1) > 0  # (B,)
        if not bool(has_hints.any()):
            return ab if guide.shape[-2:] == ab.shape[-2:] else _bilinear(ab, guide.shape[-2:])
        size = _size_at_most(lightness.shape[-2:], settings.max_side)  # the working grid
        seeds_ab, seeds = _hints_at(hint_ab, hint_mask, size)
        working, log_weights = guide, None  # a guide no larger than the working grid is the grid
        if guide.shape[-2:] != size:
            log_weights = edge_log_weights_from_guide(guide, size, settings)
            # from the guide itself: from the paths' 2x grid, area's overlapping windows would blur it more
            working = F.interpolate(guide, size=size, mode="area")
        colour, reach = blend_and_reach(seeds_ab, seeds, working, settings, log_weights)
        # the colour at the prediction's size, exactly the hint's at hinted pixels
        colour = torch.lerp(_bilinear(colour, ab.shape[-2:]), hint_ab, hint_mask)
        change = (colour - ab).mul_(has_hints[:, None, None, None])  # images without hints keep their prediction
        return finish_at_guide(ab, change, hint_mask, GuideReach(reach, working, guide.shape[-2:], settings), guide)


def _bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _size_at_most(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    # (h, w) scaled down to a long side of at most `max_side` (never up)
    height, width = size
    scale = max_side / max(height, width)
    if scale >= 1:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def _at_most(lightness: torch.Tensor, max_side: int) -> torch.Tensor:
    # (B, C, H, W) shrunk by area to a long side of at most `max_side`
    size = _size_at_most(lightness.shape[-2:], max_side)
    return lightness if size == lightness.shape[-2:] else F.interpolate(lightness, size=size, mode="area")


def _hints_at(
    hint_ab: torch.Tensor, hint_mask: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    # hints shrunk (by area, in one call) to `size`: a cell holding any hint is a full seed, with the
    # mean colour of the hint pixels in it; (B, 2, h, w) colour and (B, 1, h, w) seeds
    if size == hint_mask.shape[-2:]:
        return hint_ab, hint_mask
    shrunk = F.interpolate(torch.cat([hint_ab * hint_mask, hint_mask], dim=1), size=size, mode="area")
    weighted, share = shrunk.split([2, 1], dim=1)
    return weighted / share.clamp_min(1e-12), (share > 0).float()
