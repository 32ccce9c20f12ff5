"""Temporal consistency for video: optical flow on L*, warping, flow confidence and shot cuts.

Per-frame colorization flickers: the generator sees each frame afresh and small changes in
the input move its colours. `ColorMemory` keeps the previous frame's output ab, warps it onto
the current frame along the optical flow (OpenCV's DIS, computed on L* at render size) and
blends it with the current prediction, weighted by how much the flow can be trusted there
(forward-backward consistency and the L* warp error). An L* histogram jump that the flow cannot
explain (little of the frame warps onto the previous one) is a shot cut: the memory is cleared, so a
new shot starts from its own colours.

Everything here works at render size on (h, w) numpy arrays or (1, C, h, w) tensors; the
colour maths stays in `colorgan.color`.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch

HISTOGRAM_BINS = 32


@dataclass(frozen=True)
class TemporalSettings:
    """How strongly colour is carried from frame to frame.

    Args:
        memory: weight of the warped previous colour where the flow is fully trusted, in [0, 1);
            0 is per-frame colorization.
        cut_threshold: L1 distance between consecutive normalised L* histograms (0..2) above which
            a frame starts a new shot, if it is also `cut_ratio` times the shot's recent median
            distance (so steady fast motion, flicker of the film and fades are not cuts) ...
        cut_ratio: ... that factor.
        hard_cut_threshold: ... and above which it always does, ...
        cut_confidence: ... provided the mean flow confidence from the previous frame is below this:
            a fade or a lighting change moves the histogram too (a flat frame fading to black jumps
            whole bins), but its pixels still warp onto the previous frame's.
        lightness_sigma: L* warp error (Lab units) at which confidence falls to 1/e.
        hint_threshold: flow confidence below which a carried hint pixel is dropped.
    """

    # measured (docs/quality.md, "Video flicker"): 0.7, 0.85 and 0.95 left 36%, 25% and 19% of the per-frame flicker on
    # synthetic pans and zooms, 30% and 23% (0.85, 0.95) on real clips, PSNR rising with it each time
    memory: float = 0.95
    # measured (docs/quality.md): within a shot, consecutive distances stay below 0.08 on synthetic pans
    # and zooms and below 0.18 on real footage (a hand-held camera at 2 fps); the shot/reverse-shot cuts
    # of a dialogue measured 0.22-0.32, cuts between different photos 0.3 and up
    cut_threshold: float = 0.2
    cut_ratio: float = 4.0
    hard_cut_threshold: float = 0.6
    # measured (docs/quality.md, "Shot cuts"): the 4 cuts of Megamind.avi had a mean flow confidence of 0.01-0.04;
    # histogram jumps without a cut, 0.46-0.77 (hand-held tree.avi) and 0.81-0.98 (a.mp4's fade to black)
    cut_confidence: float = 0.15
    lightness_sigma: float = 6.0
    hint_threshold: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.memory < 1.0:
            raise ValueError(f"memory must be in [0, 1), got {self.memory}")


@dataclass
class Motion:
    """How the previous frame maps onto the current one, at render size.

    grid: (h, w, 2) float32 pixel coordinates in the previous frame of each current pixel.
    confidence: (h, w) float32 in [0, 1]: how much a warped value can be trusted.
    """

    grid: np.ndarray
    confidence: np.ndarray


def lightness_u8(l_star: torch.Tensor) -> np.ndarray:
    """(1, 1, h, w) L* in [0, 100] -> (h, w) uint8, what OpenCV's flow wants."""
    return (l_star[0, 0].float().cpu().numpy() * 2.55).clip(0, 255).round().astype(np.uint8)


def histogram(l_u8: np.ndarray) -> np.ndarray:
    """(h, w) uint8 -> normalised L* histogram (HISTOGRAM_BINS,), summing to 1."""
    counts = np.bincount(l_u8.ravel() // (256 // HISTOGRAM_BINS), minlength=HISTOGRAM_BINS).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def histogram_distance(first: np.ndarray, second: np.ndarray) -> float:
    """L1 distance of two normalised histograms: 0 (same) to 2 (disjoint)."""
    return float(np.abs(first - second).sum())


def warp(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Sample (h, w[, C]) float32 `values` at `grid` (h, w, 2) pixel coordinates, bilinearly, edges clamped."""
    return cv2.remap(values, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def identity_grid(height: int, width: int) -> np.ndarray:
    """(h, w, 2) float32 pixel coordinates (x, y) of each pixel."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.stack([xs, ys], axis=-1)


def flow_confidence(
    current: np.ndarray, previous: np.ndarray, backward: np.ndarray, forward: np.ndarray, lightness_sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """The sampling grid of current pixels in the previous frame and the confidence of each.

    Args:
        current, previous: (h, w) uint8 L* (x 2.55) of the two frames.
        backward: (h, w, 2) flow current -> previous (current(p) ~ previous(p + backward(p))).
        forward: (h, w, 2) flow previous -> current.
        lightness_sigma: L* warp error at which the photometric confidence is 1/e.

    Returns:
        grid (h, w, 2) and confidence (h, w) in [0, 1]: zero where a pixel comes from outside the
        previous frame, low where the forward and backward flows disagree (occlusions, bad
        matches, Sundaram et al. 2010's tolerance) or where the warped L* does not match.
    """
    height, width = current.shape
    grid = identity_grid(height, width) + backward
    inside = (grid[..., 0] >= 0) & (grid[..., 0] <= width - 1) & (grid[..., 1] >= 0) & (grid[..., 1] <= height - 1)
    forward_there = warp(forward, grid)  # (h, w, 2): where the previous pixel goes; ~ -backward if consistent
    mismatch = np.square(backward + forward_there).sum(-1)
    tolerance = 0.01 * (np.square(backward).sum(-1) + np.square(forward_there).sum(-1)) + 0.5
    consistency = np.exp(-mismatch / tolerance)
    # warp error in L* units, smoothed so single noisy pixels do not punch holes in the memory
    error = np.abs(current.astype(np.float32) - warp(previous.astype(np.float32), grid)) / 2.55
    error = cv2.GaussianBlur(error, (0, 0), 1.0)
    photometric = np.exp(-np.square(error / lightness_sigma))
    return grid, (consistency * photometric * inside).astype(np.float32)


class ColorMemory:
    """The colour of the previous frame, carried to the next along the optical flow.

    Call `track` with each frame's L* (in order), then `blend` with its predicted ab. Frames may
    be tracked a batch ahead of blending (flow needs only L*), as long as each frame's `blend`
    follows its own `track` in the same order.

    Args:
        settings: blending weights and thresholds.
    """

    def __init__(self, settings: TemporalSettings | None = None):
        self.settings = settings or TemporalSettings()
        # DIS "medium": ~2-10 ms for a 224x168 flow on one core. "fast" is ~4x quicker but biased by
        # 10-15% on sub-pixel motion, which adds up when hints are followed over many frames
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.previous_lightness: np.ndarray | None = None
        self.previous_histogram: np.ndarray | None = None
        self.previous_ab: np.ndarray | None = None  # (h, w, 2) float32, the last blended output
        self.recent_distances: deque[float] = deque(maxlen=8)  # histogram steps within the current shot
        self.cuts = 0

    def reset(self) -> None:
        """Forget everything (the next frame is treated as the first of a shot)."""
        self.previous_lightness = self.previous_histogram = self.previous_ab = None
        self.recent_distances.clear()

    def is_cut(self, distance: float, mean_confidence: float) -> bool:
        """Whether a histogram step of `distance`, with this mean flow confidence, from the previous frame is a shot cut."""
        settings = self.settings
        # the first steps of a shot have no "usual" to compare with: only a hard jump counts there
        usual = float(np.median(self.recent_distances)) if len(self.recent_distances) >= 2 else np.inf
        jump = distance > settings.hard_cut_threshold or (
            distance > settings.cut_threshold and distance > settings.cut_ratio * usual
        )
        if jump and mean_confidence < settings.cut_confidence:
            self.recent_distances.clear()
            return True
        self.recent_distances.append(distance)
        return False

    def track(self, l_star: torch.Tensor) -> Motion | None:
        """Register the next frame's (1, 1, h, w) L*; its motion from the previous frame, or None.

        None means nothing is carried into this frame: the first frame, a shot cut (L* histogram
        jump) or a change of size.
        """
        current = lightness_u8(l_star)
        current_histogram = histogram(current)
        previous, previous_histogram = self.previous_lightness, self.previous_histogram
        self.previous_lightness, self.previous_histogram = current, current_histogram
        if previous is None or previous.shape != current.shape:
            return None
        backward = self.flow.calc(current, previous, None)
        forward = self.flow.calc(previous, current, None)
        motion = Motion(*flow_confidence(current, previous, backward, forward, self.settings.lightness_sigma))
        distance = histogram_distance(current_histogram, previous_histogram)
        if self.is_cut(distance, float(motion.confidence.mean())):
            self.cuts += 1
            return None
        return motion

    def blend(self, ab: torch.Tensor, motion: Motion | None) -> torch.Tensor:
        """Blend a frame's predicted (1, 2, h, w) ab with the warped memory; returns and remembers the result."""
        predicted = ab[0].permute(1, 2, 0).float().cpu().numpy()  # (h, w, 2)
        if motion is None or self.previous_ab is None or self.previous_ab.shape != predicted.shape:
            blended = predicted
        else:
            weight = (self.settings.memory * motion.confidence)[..., None]
            blended = weight * warp(self.previous_ab, motion.grid) + (1.0 - weight) * predicted
        self.previous_ab = np.ascontiguousarray(blended, dtype=np.float32)
        return torch.from_numpy(self.previous_ab).permute(2, 0, 1)[None].to(ab.device, ab.dtype)


class CarriedHints:
    """Hints given on one frame, followed to later frames along the flow.

    Rather than re-warping the hint raster every frame (bilinear warps blur a small patch away
    within a few dozen frames, nearest ones lose sub-pixel motion), each current pixel keeps its
    coordinates in the hint frame, composed frame by frame, and the original raster is sampled
    there: a hint moves with fractional accuracy and stays as sharp as it was painted.

    Args:
        hint_ab: (1, 2, h, w) hint ab (model space, premultiplied by the mask) at render size.
        mask: (1, 1, h, w) 1 where a hint is given.
        threshold: flow confidence below which a pixel loses its hint for good (occlusions).
    """

    def __init__(self, hint_ab: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5):
        self.hint_ab = np.ascontiguousarray(hint_ab[0].permute(1, 2, 0).float().cpu().numpy())  # (h, w, 2)
        self.mask = np.ascontiguousarray(mask[0, 0].float().cpu().numpy())  # (h, w)
        self.threshold = threshold
        height, width = self.mask.shape
        self.coordinates = identity_grid(height, width)  # where each current pixel was in the hint frame
        self.valid = np.ones((height, width), np.float32)  # followed there without an unreliable step

    def follow(self, motion: Motion) -> None:
        """Advance to the next frame, whose motion from the current one is `motion`."""
        self.coordinates = warp(self.coordinates, motion.grid)
        self.valid = warp(self.valid, motion.grid) * (motion.confidence >= self.threshold)

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The hints on the current frame: (1, 2, h, w) ab and (1, 1, h, w) mask."""
        x, y = self.coordinates[..., 0], self.coordinates[..., 1]
        mask = cv2.remap(self.mask, x, y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT) * (self.valid >= 0.5)
        ab = cv2.remap(self.hint_ab, x, y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT) * mask[..., None]
        return (
            torch.from_numpy(np.ascontiguousarray(ab)).permute(2, 0, 1)[None].to(device),
            torch.from_numpy(mask.astype(np.float32))[None, None].to(device),
        )
