"""How much colorized video flickers, and how close it stays to the truth (`colorgan eval-video`).

Flicker is the mean |Δab| (Euclidean distance in a*b*, Lab units) between consecutive output
frames after motion compensation: the previous frame is warped onto the current one along the
optical flow of their L* (Farnebäck, deliberately not the DIS flow the temporal method uses), and
only pixels the flow explains are counted (forward-backward consistent, matching L*, inside the
frame). A still scene coloured identically in every frame scores 0.

Clips come from colour videos or, from a folder of colour photos, as synthetic pans and zooms over
each photo. Every clip is colorized from its L* twice, frame by frame and with temporal
consistency, and both are scored: flicker, and PSNR against the clip's own colour frames.

    for name, frames in clips_from(["your_photos/", "film.mp4"], frames=32, size=(320, 240), limit=8,
                                   max_frames=240, max_side=480):
        print(evaluate_clip(colorizer, name, frames).flicker_ratio)
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from PIL import Image

from ..color import rgb_to_lab
from ..imaging import list_images, open_image
from ..metrics import psnr
from ..pipeline import Colorizer
from ..temporal import TemporalSettings, flow_confidence, lightness_u8, warp
from ..video import BATCH_SIZE, FrameColorizer, VideoError, batched, ffmpeg_reason, open_video

FLICKER_MAX_SIDE = 320  # flicker is measured on frames shrunk to this (ab is smooth; flow is costly)
VALID_CONFIDENCE = 0.5
MOTIONS = ("pan", "zoom")


# ----------------------------------------------------------------------------- the metric
class FlickerMeter:
    """Accumulates motion-compensated |Δab| over consecutive frames of one clip."""

    def __init__(self, max_side: int = FLICKER_MAX_SIDE):
        self.max_side = max_side
        self.previous: tuple[np.ndarray, np.ndarray] | None = None  # (L* uint8 (h, w), ab (h, w, 2))
        self.total = 0.0
        self.pixels = 0

    def _lab(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1.0:
            frame = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        lab = rgb_to_lab(torch.from_numpy(np.require(frame, requirements="CW")).permute(2, 0, 1)[None])  # (1, 3, h, w)
        return lightness_u8(lab[:, :1]), np.ascontiguousarray(lab[0, 1:].permute(1, 2, 0).numpy())

    def update(self, frame: np.ndarray) -> None:
        """Add the clip's next (H, W, 3) uint8 RGB frame."""
        current_l, current_ab = self._lab(frame)
        if self.previous is not None and self.previous[0].shape == current_l.shape:
            previous_l, previous_ab = self.previous
            backward = cv2.calcOpticalFlowFarneback(current_l, previous_l, None, 0.5, 4, 15, 3, 5, 1.2, 0)
            forward = cv2.calcOpticalFlowFarneback(previous_l, current_l, None, 0.5, 4, 15, 3, 5, 1.2, 0)
            grid, confidence = flow_confidence(current_l, previous_l, backward, forward, lightness_sigma=6.0)
            valid = confidence >= VALID_CONFIDENCE
            difference = np.linalg.norm(current_ab - warp(previous_ab, grid), axis=-1)
            self.total += float(difference[valid].sum())
            self.pixels += int(valid.sum())
        self.previous = current_l, current_ab

    @property
    def value(self) -> float:
        """Mean |Δab| in Lab units over all counted pixels (NaN before two frames)."""
        return self.total / self.pixels if self.pixels else float("nan")


def flicker(frames: Iterable[np.ndarray], max_side: int = FLICKER_MAX_SIDE) -> float:
    """Mean motion-compensated |Δab| between consecutive (H, W, 3) uint8 RGB frames, in Lab units."""
    meter = FlickerMeter(max_side)
    for frame in frames:
        meter.update(frame)
    return meter.value


# ----------------------------------------------------------------------------- clips
def synthetic_clip(photo: Image.Image, motion: str, size: tuple[int, int], frames: int) -> Iterator[np.ndarray]:
    """A camera move over a photo: (h, w, 3) uint8 frames of `size` (width, height).

    pan: a window of 75% of the photo's largest `size`-shaped crop slides diagonally across it;
    zoom: the window shrinks from 95% to 60% of that crop around the centre (a zoom in).
    Sub-pixel window positions are resampled bilinearly, as a camera would blur them.
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    photo = photo.convert("RGB")
    aspect = size[0] / size[1]
    full_w = min(photo.width, photo.height * aspect)
    full_h = full_w / aspect
    for index in range(frames):
        t = index / max(frames - 1, 1)
        if motion == "pan":
            width, height = 0.75 * full_w, 0.75 * full_h
            left = t * (photo.width - width)
            top = (photo.height - height) * (0.25 + 0.5 * t)
        else:
            scale = 0.95 - 0.35 * t
            width, height = scale * full_w, scale * full_h
            left, top = (photo.width - width) / 2, (photo.height - height) / 2
        box = (left, top, left + width, top + height)
        yield np.asarray(photo.resize(size, Image.Resampling.BILINEAR, box=box))


def read_frames(path: str | Path, max_frames: int | None = None, max_side: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video's frames as (H, W, 3) uint8 RGB, optionally only the first few and shrunk."""
    with open_video(path) as (container, stream, _):
        count = 0
        try:
            for frame in container.decode(stream):
                if max_frames is not None and count >= max_frames:
                    return
                if max_side and max(frame.width, frame.height) > max_side:
                    scale = max_side / max(frame.width, frame.height)
                    width, height = 2 * round(frame.width * scale / 2), 2 * round(frame.height * scale / 2)
                    frame = frame.reformat(width=width, height=height)
                yield frame.to_ndarray(format="rgb24")
                count += 1
        except av.error.FFmpegError as error:
            raise VideoError(f"{path}: corrupt or truncated video ({ffmpeg_reason(error)})") from None


def encode_clip(
    frames: Iterable[np.ndarray],
    path: str | Path,
    fps: int = 24,
    *,
    audio_hz: float | None = None,
    codec: str = "libx264",
) -> int:
    """Write (H, W, 3) uint8 frames as a video (tests and benchmarks), optionally with a sine tone.

    Returns the number of frames written. The tone (AAC, 16 kHz mono) lasts as long as the video.
    """
    count = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuv420p"
        audio = None
        if audio_hz is not None:
            audio = container.add_stream("aac", rate=16000, layout="mono")
        for frame in frames:
            if count == 0:
                stream.height, stream.width = frame.shape[:2]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            count += 1
        container.mux(stream.encode(None))
        if audio is not None:
            samples = int(16000 * count / fps)
            tone = (0.3 * np.sin(2 * np.pi * audio_hz * np.arange(samples) / 16000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
                container.mux(audio.encode(chunk))
            container.mux(audio.encode(None))
    return count


# ----------------------------------------------------------------------------- evaluation
@dataclass
class ClipScores:
    """Flicker (|Δab|, lower is steadier) and PSNR (dB) of one clip, per-frame vs temporal."""

    name: str
    frames: int
    flicker_per_frame: float
    flicker_temporal: float
    psnr_per_frame: float
    psnr_temporal: float
    seconds_per_frame: float
    seconds_temporal: float

    @property
    def flicker_ratio(self) -> float:
        return self.flicker_temporal / self.flicker_per_frame


def evaluate_clip(
    colorizer: Colorizer,
    name: str,
    frames: Iterable[np.ndarray],
    *,
    render_size: int | None = None,
    settings: TemporalSettings = TemporalSettings(),
    batch_size: int = BATCH_SIZE,
) -> ClipScores:
    """Colorize a colour clip from its L*, per frame and with temporal consistency, and score both.

    Frames stream through in batches; only one batch is held at a time.
    """
    runs = {
        "per_frame": FrameColorizer(colorizer, render_size=render_size, temporal=None),
        "temporal": FrameColorizer(colorizer, render_size=render_size, temporal=settings),
    }
    meters = {key: FlickerMeter() for key in runs}
    psnr_sums = dict.fromkeys(runs, 0.0)
    seconds = dict.fromkeys(runs, 0.0)
    count = 0
    for batch in batched(frames, batch_size):
        truth = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
        for key, run in runs.items():
            started = time.perf_counter()
            outputs = run(batch)  # only L* of the colour frames is used
            seconds[key] += time.perf_counter() - started
            for output in outputs:
                meters[key].update(output)
            psnr_sums[key] += float(psnr(torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2), truth).sum())
        count += len(batch)
    if count == 0:
        raise VideoError(f"{name}: no frames")
    return ClipScores(
        name,
        count,
        meters["per_frame"].value,
        meters["temporal"].value,
        psnr_sums["per_frame"] / count,
        psnr_sums["temporal"] / count,
        seconds["per_frame"],
        seconds["temporal"],
    )


def clips_from(
    sources: list[str], *, frames: int, size: tuple[int, int], limit: int | None, max_frames: int, max_side: int
) -> Iterator[tuple[str, Iterator[np.ndarray]]]:
    """(name, frames) of each clip: video files as they are, photo folders as pans and zooms."""
    for source in map(Path, sources):
        if source.is_dir():
            for photo_path in list_images(source)[:limit]:
                photo = open_image(photo_path)
                for motion in MOTIONS:
                    yield f"{photo_path.name} {motion}", synthetic_clip(photo, motion, size, frames)
        else:
            yield source.name, read_frames(source, max_frames=max_frames, max_side=max_side)


def summary_table(scores: list[ClipScores]) -> str:
    """A markdown table: one row per clip and the mean."""
    lines = [
        "| clip | frames | flicker per-frame | flicker temporal | ratio | PSNR per-frame (dB) | PSNR temporal (dB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def row(name, frames, a, b, c, d):
        return f"| {name} | {frames} | {a:.2f} | {b:.2f} | {b / a:.2f} | {c:.2f} | {d:.2f} |"

    for s in scores:
        lines.append(row(s.name, s.frames, s.flicker_per_frame, s.flicker_temporal, s.psnr_per_frame, s.psnr_temporal))
    if len(scores) > 1:
        mean = lambda key: float(np.mean([getattr(s, key) for s in scores]))  # noqa: E731
        lines.append(
            row("**mean**", sum(s.frames for s in scores), mean("flicker_per_frame"), mean("flicker_temporal"),
                mean("psnr_per_frame"), mean("psnr_temporal"))
        )
    return "\n".join(lines)
