"""Colorizing video files: PyAV in and out, frames in batches, colour carried along the motion.

    colorize_video(colorizer, "film.mp4", "film_color.mp4")

The container is read and written with PyAV. Frames are decoded, colorized and encoded in
batches of `batch_size`, so memory does not grow with the clip's length. Each frame goes through
`Colorizer`'s own steps (full-resolution L*, generator input at render size, prediction,
recombination with the frame's own L*); between prediction and recombination, `ColorMemory`
(colorgan/temporal.py) blends the predicted ab with the previous output warped along the flow.
The output keeps the input's size, frame count and timestamps (so its frame rate); audio packets
are copied unchanged. It is written to a hidden temporary file beside `dst` and renamed at the end.
"""
from __future__ import annotations

import errno
import heapq
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from tqdm import tqdm

from .color import denormalize_l
from .errors import one_line
from .hints import HintInput, generator_input, has_hints, hints_as_trained
from .imaging import DecodedImage, atomic_path, check_destination
from .limits import MAX_VIDEO_FPS, MAX_VIDEO_FRAME_PIXELS
from .pipeline import Colorizer
from .temporal import CarriedHints, ColorMemory, Motion, TemporalSettings
from .threads import CODEC_THREADS, use_threads

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv"}  # containers that take H.264 (or MPEG-4) video
BATCH_SIZE = 8  # frames decoded, predicted and encoded together
REORDER_DEPTH = 4  # decoded frames held back to put timestamps stamped in decoding order right
X264_OPTIONS = {"crf": "18", "preset": "veryfast"}  # visually lossless-ish; veryfast suits a small CPU


class VideoError(ValueError):
    """An input or output video that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class VideoLimits:
    """What a video may hold, enforced on every decoded frame (a header can say anything).

    Every frame must also have the size the header declares: the decoder is told to refuse larger
    ones before it allocates them.

    Args:
        max_frame_pixels: the largest frame, width x height (also checked on the header).
        max_frames: the most frames decoded; None for no cap.
        max_pixel_frames: the budget in pixels x frames, summed over decoded frames; None for none.
        max_fps: the most frames per second of stream time (with one second's grace), so a
            1-second clip cannot hold 1000 frames.
        max_seconds: the longest stream time, from the first frame's timestamp; None for no cap.
    """

    max_frame_pixels: int = MAX_VIDEO_FRAME_PIXELS
    max_frames: int | None = None
    max_pixel_frames: int | None = None
    max_fps: float = MAX_VIDEO_FPS
    max_seconds: float | None = None


class FrameBudget:
    """Counts a stream's decoded frames against `VideoLimits`; `admit` refuses the first frame over them.

    Args:
        limits: the limits.
        name: the file, named in messages.
        stream: the video stream (its header's frame size and time base).
    """

    def __init__(self, limits: VideoLimits, name: str, stream):
        self.limits, self.name = limits, name
        self.size = (stream.width, stream.height)
        self.time_base = stream.time_base
        self.frames = self.pixel_frames = 0
        self.first_pts: int | None = None

    def admit(self, frame) -> None:
        """Check one decoded frame (before it is converted or kept).

        Raises:
            VideoError: one line naming the file, the frame and the limit it breaks.
        """
        limits, index = self.limits, self.frames
        if (frame.width, frame.height) != self.size:
            raise VideoError(
                f"{self.name}: frame {index} is {frame.width}x{frame.height} but the header says"
                f" {self.size[0]}x{self.size[1]}; a video must keep one frame size"
            )
        self.frames += 1
        self.pixel_frames += frame.width * frame.height
        if limits.max_frames is not None and self.frames > limits.max_frames:
            raise VideoError(f"{self.name}: more than {limits.max_frames} frames, the limit")
        if limits.max_pixel_frames is not None and self.pixel_frames > limits.max_pixel_frames:
            raise VideoError(
                f"{self.name}: more than {limits.max_pixel_frames / 1e6:.0f} M pixels x frames by frame {index},"
                " the limit; shorten or shrink it"
            )
        if frame.pts is None or not self.time_base:
            return
        self.first_pts = frame.pts if self.first_pts is None else min(self.first_pts, frame.pts)
        seconds = float((frame.pts - self.first_pts) * self.time_base)
        if limits.max_seconds is not None and seconds > limits.max_seconds:
            raise VideoError(f"{self.name}: runs past {limits.max_seconds:g} s, the limit (frame {index} at {seconds:.1f} s)")
        if index > limits.max_fps * (seconds + 1):
            raise VideoError(
                f"{self.name}: {index + 1} frames within {seconds:.2f} s, over {limits.max_fps:g} frames per second"
            )


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns from a video's header.

    frames is the count the container declares (0 when it does not say); duration is in seconds.
    """

    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float
    codec: str
    audio_streams: int


@dataclass(frozen=True)
class VideoResult:
    """What `colorize_video` did: frames written, their rate, shot cuts found and the time taken."""

    frames: int
    fps: Fraction
    cuts: int
    seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def ffmpeg_reason(error: av.error.FFmpegError) -> str:
    """An FFmpeg error's own text, in one line, without the file name the caller's message already gives."""
    return one_line(error.strerror or error)


# FFmpeg checks its max_pixels against the buffers it allocates, which some decoders pad by edges and
# alignment: MPEG-4 Part 2 needs 240x224 for a 64x48 frame. 256 px either way covers them.
CODED_SIZE_SLACK = 256


@contextmanager
def open_video(source: str | os.PathLike, max_frame_pixels: int = MAX_VIDEO_FRAME_PIXELS):
    """Open a video file for reading: yields (container, video stream, audio streams).

    The decoder is told to refuse frames larger than the header's size (FFmpeg's `max_pixels`),
    so a stream whose later frames grow is stopped before they are allocated.

    Args:
        source: the file.
        max_frame_pixels: refuse a header whose frame size is larger.

    Raises:
        VideoError: missing or empty file, not a video, no video stream, no decoder for its codec,
            frames over `max_frame_pixels`.
    """
    path = Path(source)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file, no video data")
    try:
        container = av.open(str(path), "r")
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: not a video file, or a corrupt one ({ffmpeg_reason(error)})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None or stream.codec_context.codec is None or not stream.codec_context.codec.name:
            raise VideoError(f"{path}: no decoder for its video codec")
        if not stream.width or not stream.height:
            raise VideoError(f"{path}: video stream has no frame size (unsupported or corrupt codec data)")
        if stream.width * stream.height > max_frame_pixels:
            raise VideoError(
                f"{path}: {stream.width}x{stream.height} frames are over the {max_frame_pixels / 1e6:.1f} MP limit"
            )
        coded = (stream.width + CODED_SIZE_SLACK) * (stream.height + CODED_SIZE_SLACK)
        stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(coded)}
        stream.thread_count = CODEC_THREADS  # FFmpeg's default, one per core, oversubscribes beside torch
        yield container, stream, list(container.streams.audio)
    finally:
        container.close()


def _frame_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def _declared_seconds(stream) -> float | None:
    """The video stream's own duration from the header (MP4 field or Matroska DURATION tag), if any."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (AttributeError, ValueError):
        return None


def probe(source: str | os.PathLike) -> VideoInfo:
    """Read a video's header (no decoding): size, frame rate, declared frames, duration, codec."""
    with open_video(source) as (container, stream, audio):
        fps = _frame_rate(stream)
        duration = _declared_seconds(stream)
        if duration is None and container.duration is not None:
            duration = container.duration / av.time_base
        if duration is None:
            duration = stream.frames / float(fps) if stream.frames else 0.0
        return VideoInfo(
            stream.width, stream.height, fps, int(stream.frames or 0), duration, stream.codec_context.name, len(audio)
        )


class FrameColorizer:
    """Colorizes a clip's frames in order, batch by batch, through `Colorizer`'s own steps.

    Args:
        colorizer: the loaded model.
        hints: colour hints for frame `hint_frame` (points or a painted RGBA layer of the frame's
            size, as for a photo); with temporal consistency on they are carried along the flow to
            the following frames, until a shot cut.
        hint_frame: index of the frame the hints are given for.
        saturation: chroma multiplier.
        render_size: long side at which the generator runs (default: the model's own).
        temporal: blending settings; None colorizes every frame on its own (flickers).
    """

    def __init__(
        self,
        colorizer: Colorizer,
        *,
        hints: HintInput = None,
        hint_frame: int = 0,
        saturation: float = 1.0,
        render_size: int | None = None,
        temporal: TemporalSettings | None = TemporalSettings(),
    ):
        if hint_frame < 0:
            raise ValueError(f"hint_frame must be >= 0, got {hint_frame}")
        self.colorizer = colorizer
        self.hints = hints
        self.hinted_frame = hint_frame if has_hints(hints) else None  # the frame the hints are given on, if any
        self.saturation = saturation
        self.render_size = colorizer.default_render_size if render_size is None else render_size
        self.memory = ColorMemory(temporal) if temporal is not None else None
        self.carried_hints: CarriedHints | None = None
        self.frames_done = 0

    @property
    def cuts(self) -> int:
        return self.memory.cuts if self.memory is not None else 0

    def _with_hints(
        self, item: DecodedImage, l_full: torch.Tensor, plain_input: torch.Tensor, motion: Motion | None, index: int
    ) -> torch.Tensor:
        # (1, 4, h, w) generator input without hints -> with this frame's (given or carried) hints
        if index == self.hinted_frame:
            hinted = self.colorizer.generator_input(item, l_full, self.hints, self.render_size)
            if self.memory is not None:
                threshold = self.memory.settings.hint_threshold
                self.carried_hints = CarriedHints(hinted[:, 1:3], hinted[:, 3:4], threshold)
            return hinted
        if self.carried_hints is None:
            return plain_input
        if motion is None:  # a shot cut: the hints belonged to the previous shot
            self.carried_hints = None
            return plain_input
        self.carried_hints.follow(motion)
        return generator_input(plain_input[:, :1], *self.carried_hints.tensors(plain_input.device))

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Colorize the next frames of the clip.

        Args:
            frames: (H, W, 3) uint8 RGB arrays, in display order, following those of earlier calls.

        Returns:
            (H, W, 3) uint8 RGB colour frames, same sizes.
        """
        colorizer = self.colorizer
        # (H, W, 3) uint8 -> (1, 3, H, W), copied only when read-only (torch wants writable arrays)
        rgb = [torch.from_numpy(np.require(frame, requirements="CW")).permute(2, 0, 1)[None] for frame in frames]
        items = [DecodedImage(tensor, None) for tensor in rgb]
        with torch.inference_mode():
            lightness_maps = [colorizer.full_resolution_lightness(item) for item in items]
            inputs, motions = [], []
            for item, l_full in zip(items, lightness_maps):
                plain = colorizer.generator_input(item, l_full, None, self.render_size)
                # flow needs only L*, so the whole batch is tracked before one batched prediction
                motion = self.memory.track(denormalize_l(plain[:, :1])) if self.memory is not None else None
                inputs.append(self._with_hints(item, l_full, plain, motion, self.frames_done))
                # new hints restart the colour there, rather than fading in under the memory's weight
                motions.append(None if self.frames_done == self.hinted_frame else motion)
                self.frames_done += 1
            # as for photos: strokes reach the network thinned to points, and are propagated whole
            predictions = colorizer.predict([hints_as_trained(tensor) for tensor in inputs])
            outputs = []
            for l_full, ab, frame_input, motion in zip(lightness_maps, predictions, inputs, motions):
                # as for photos: saturation first, then each (given or carried) hint spread over its region
                ab = colorizer.propagate(ab * self.saturation, frame_input)
                if self.memory is not None:
                    ab = self.memory.blend(ab, motion)
                rgb = colorizer.recombine(l_full, ab)  # (1, 3, H, W) uint8
                outputs.append(rgb[0].permute(1, 2, 0).contiguous().numpy())
            return outputs


# ----------------------------------------------------------------------------- writing
def _video_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class VideoWriter:
    """Encodes RGB frames with the timestamps of the input's frames and copies its audio packets.

    Args:
        container: an output container opened for writing.
        template: the input video stream (size, frame rate and time base are kept).
        audio_streams: input audio streams whose packets `copy` will remux unchanged.
    """

    def __init__(self, container, template, audio_streams):
        self.container = container
        codec = _video_codec()
        self.stream = container.add_stream(codec, rate=_frame_rate(template))
        self.stream.width, self.stream.height = template.width, template.height
        # 4:2:0 needs even sides; keep an odd size exactly by not subsampling the chroma
        even = template.width % 2 == 0 and template.height % 2 == 0
        self.stream.pix_fmt = "yuv420p" if even or codec != "libx264" else "yuv444p"
        if codec != "libx264" and not even:
            raise VideoError(f"the {template.width}x{template.height} size is odd and {codec} needs even sides")
        self.stream.time_base = template.time_base
        self.stream.codec_context.time_base = template.time_base
        self.stream.options = X264_OPTIONS if codec == "libx264" else {"qscale": "3"}
        self.stream.codec_context.thread_count = CODEC_THREADS  # x264's default is 1.5 per core
        self.time_base = template.time_base
        self.step = max(1, round(1 / (_frame_rate(template) * template.time_base))) if template.time_base else 1
        self.last_pts: int | None = None
        self.audio = {}  # input stream -> output stream, packets copied
        self.transcoded = {}  # input stream -> AAC output stream, for codecs the container cannot hold
        supported = container.supported_codecs
        for audio in audio_streams:
            if audio.codec_context.name in supported:
                self.audio[audio] = container.add_stream_from_template(audio)
            else:  # e.g. a camcorder AVI's ADPCM in an MP4: re-encoded, the one case it is not copied
                rate = audio.codec_context.sample_rate or 48000
                layout = "mono" if audio.codec_context.channels == 1 else "stereo"  # AAC wants a named layout
                self.transcoded[audio] = container.add_stream("aac", rate=rate, layout=layout)

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        """Encode one (H, W, 3) uint8 frame at the input frame's `pts` (None: right after the last)."""
        if pts is None or (self.last_pts is not None and pts <= self.last_pts):
            pts = 0 if self.last_pts is None else self.last_pts + self.step
        self.last_pts = pts
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        self.container.mux(self.stream.encode(frame))

    def copy(self, packet) -> None:
        """Remux one input audio packet unchanged (AAC-encode it where the container cannot hold its codec)."""
        if packet.stream in self.transcoded:
            output = self.transcoded[packet.stream]
            for frame in packet.decode():  # the demuxer's final empty packet flushes the decoder
                frame.pts = None  # the encoder counts samples from the start
                self.container.mux(output.encode(frame))
            return
        if packet.dts is None or packet.size == 0:  # the demuxer's flush packets
            return
        packet.stream = self.audio[packet.stream]
        self.container.mux(packet)

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        for output in self.transcoded.values():
            self.container.mux(output.encode(None))
        self.container.close()


def _decoding_failure(name: str, error: av.error.FFmpegError, frames: int) -> VideoError:
    """What a decoder error means for the user: memory, a frame over the header's size, or damage."""
    if error.errno == errno.ENOMEM:
        return VideoError(f"{name}: not enough memory to decode frame {frames}")
    if error.errno == errno.EINVAL and frames:  # what the decoder's max_pixels refusal reads as
        return VideoError(f"{name}: frame {frames} is corrupt or larger than the header's frame size")
    return VideoError(f"{name}: corrupt or truncated video ({ffmpeg_reason(error)})")


def _decoded_frames(
    container, stream, audio_streams, writer: VideoWriter, name: str, budget: FrameBudget | None = None
) -> Iterator[tuple[np.ndarray, int | None]]:
    """(H, W, 3) uint8 RGB frames in display order with their timestamps; audio packets go to `writer`.

    Frames come out of the decoder in display order, but some containers (AVI with packed B-frames)
    stamp them with their packets' decoding order: 1, 2, 3, 5, 4. The timestamps of the last
    REORDER_DEPTH frames are therefore pooled and each frame takes the smallest, as FFmpeg's own
    best-effort timestamps do; the frames themselves keep their order.
    """
    budget = FrameBudget(VideoLimits(), name, stream) if budget is None else budget
    waiting: deque[np.ndarray] = deque()
    stamps: list[int] = []  # a heap
    try:
        for packet in container.demux(stream, *audio_streams):
            if packet.stream is not stream:
                try:
                    writer.copy(packet)
                except av.error.FFmpegError as error:  # not the video's fault: say what failed
                    raise VideoError(f"{name}: cannot carry its audio over ({ffmpeg_reason(error)})") from None
                continue
            for frame in packet.decode():
                budget.admit(frame)  # before the frame is converted to RGB or kept
                waiting.append(frame.to_ndarray(format="rgb24"))
                if frame.pts is not None:
                    heapq.heappush(stamps, frame.pts)
                if len(waiting) > REORDER_DEPTH:
                    yield waiting.popleft(), heapq.heappop(stamps) if stamps else None
    except av.error.FFmpegError as error:
        raise _decoding_failure(name, error, budget.frames) from None
    while waiting:
        yield waiting.popleft(), heapq.heappop(stamps) if stamps else None


def colorize_video(
    colorizer: Colorizer,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    hints: HintInput = None,
    hint_frame: int = 0,
    saturation: float = 1.0,
    render_size: int | None = None,
    temporal: TemporalSettings | None = TemporalSettings(),
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    limits: VideoLimits = VideoLimits(),
    overwrite: bool = False,
    threads: int | None = None,
) -> VideoResult:
    """Colorize a video file into `dst` (MP4, MOV or MKV), keeping size, frames, timing and audio.

    Colour is carried from frame to frame along the optical flow, so it does not flicker, and the
    memory is cleared at shot cuts (colorgan/temporal.py). Frames stream in batches; the output is
    written to a temporary file beside `dst` and renamed when complete.

    Args:
        colorizer: the loaded model.
        src: the input video (any container and codec FFmpeg reads).
        dst: the output, `.mp4`, `.m4v`, `.mov` or `.mkv` (H.264 video, audio copied unchanged).
        hints: colour hints for frame `hint_frame`, as for a photo (points in the frame's pixel
            coordinates or an RGBA layer of the frame's size); they follow the motion until a shot cut
            (with `temporal=None`, only that frame gets them).
        hint_frame: the index of the frame the hints are given for.
        saturation: multiplies the predicted chroma.
        render_size: long side at which the generator runs (default: the model's own).
        temporal: how strongly colour is carried between frames; None colorizes each frame on its
            own (for comparison; it flickers).
        batch_size: frames decoded, predicted and encoded together.
        progress: show a progress bar with frames per second on stderr.
        limits: frame size, frame count, pixels x frames, frame rate and duration, checked on every
            decoded frame (a front end sets its own).
        overwrite: replace an existing `dst` (never `src` itself).
        threads: torch threads for the call; by default `colorgan.threads`' policy: the cores this
            process may use but one (OMP_NUM_THREADS when set). OpenCV, the decoder and the encoder
            get one thread each.

    Returns:
        What was written: frames, frame rate, shot cuts and the time taken.

    Raises:
        VideoError: unreadable, truncated or frameless input, one over `limits` (one line).
        OutputError: an unusable destination (a folder, existing, the input, unwritable), before any work.
        ValueError: bad saturation, render size or hints.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"{dst}: write to one of {', '.join(sorted(VIDEO_SUFFIXES))}")
    if not dst.parent.is_dir():
        raise VideoError(f"{dst.parent}: no such folder")
    check_destination(dst, overwrite=overwrite, source=src)
    render_size = colorizer.checked_settings(saturation, render_size)
    frame_colorizer = FrameColorizer(
        colorizer, hints=hints, hint_frame=hint_frame, saturation=saturation, render_size=render_size, temporal=temporal
    )
    started = time.perf_counter()
    with use_threads(threads, video=True), open_video(src, limits.max_frame_pixels) as (container, stream, audio_streams), \
            atomic_path(dst) as temporary:
        declared = int(stream.frames or 0)
        fps = _frame_rate(stream)
        try:
            # MP4/MOV: the index goes first, so a browser can play while downloading
            options = {"movflags": "+faststart"} if dst.suffix.lower() != ".mkv" else {}
            output = av.open(str(temporary), "w", options=options)
            try:
                writer = VideoWriter(output, stream, audio_streams)
            except BaseException:
                output.close()
                raise
        except av.error.FFmpegError as error:
            raise VideoError(f"{dst}: cannot write this video ({ffmpeg_reason(error)})") from None
        bar = tqdm(total=declared or None, unit="frame", disable=not progress, file=sys.stderr, desc=src.name)
        written, first_pts = 0, None
        try:
            budget = FrameBudget(limits, str(src), stream)
            decoded = _decoded_frames(container, stream, audio_streams, writer, str(src), budget)
            for batch in batched(decoded, batch_size):
                for colour, (_, pts) in zip(frame_colorizer([rgb for rgb, _ in batch]), batch):
                    writer.write(colour, pts)
                    first_pts = writer.last_pts if first_pts is None else first_pts
                written += len(batch)
                bar.update(len(batch))
            if written == 0:
                raise VideoError(f"{src}: the video stream has no frames")
            # by time, not by the declared frame count: AVI counts time ticks there, not frames
            seconds = _declared_seconds(stream)
            decoded_seconds = float((writer.last_pts - first_pts) * stream.time_base + 1 / fps)
            if seconds and decoded_seconds < seconds - max(2 / float(fps), 0.05 * seconds):
                raise VideoError(
                    f"{src}: truncated video, its {written} frames end at {decoded_seconds:.2f} s of {seconds:.2f} s"
                )
            if frame_colorizer.hinted_frame is not None and hint_frame >= written:
                raise VideoError(f"hints are for frame {hint_frame} but the video has {written} frames")
            writer.close()
        except av.error.FFmpegError as error:
            raise VideoError(f"{dst}: cannot encode the video ({ffmpeg_reason(error)})") from None
        finally:
            bar.close()
            writer.container.close()
    return VideoResult(written, fps, frame_colorizer.cuts, time.perf_counter() - started)


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive items (the last one shorter), drawn lazily."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
