"""What the web app (app.py) does, kept free of Gradio so it can be unit-tested: loading the model
with the fastest backend, the app's input limits (`colorgan.limits`), turning the image editor's value
into a photo plus a painted hint layer, and one colorize call per photo or clip.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageOps

from .checkpoint import CheckpointError
from .hints import with_alpha
from .imaging import ImageError, open_image
from .limits import (
    APP_MAX_PIXELS,
    APP_MAX_VIDEO_FPS,
    APP_MAX_VIDEO_FRAMES,
    APP_MAX_VIDEO_PIXEL_FRAMES,
    APP_MAX_VIDEO_SECONDS,
    APP_MAX_VIDEO_SIDES,
    APP_RENDER_SIZE,
    APP_SATURATION,
)
from .pipeline import Colorizer, pick_device
from .video import VideoError, VideoLimits, colorize_video, probe

PREVIEW_MAX_SIDE = 2048  # the before/after slider shows at most this; the download is full size

ImageSource = str | os.PathLike | Image.Image


def load_fastest_colorizer(
    model: str | None, device: str | None = None, log: Callable[[str], None] = print
) -> Colorizer:
    """Load the model with the fastest generator backend that works here, and log which it is.

    On the cpu: ONNX Runtime int8 when the model ships a `model_int8.onnx` (its author chose that
    trade-off), else ONNX Runtime fp32 (the model's `model.onnx`, or exported once into the Hugging
    Face cache), else torch. On a GPU: torch.

    Args:
        model: model folder or Hub repo id; None for the bundled starter model.
        device: cpu, cuda, mps; by default the best available.
        log: where the startup lines go.

    Raises:
        CheckpointError: the model cannot be loaded with any backend.
    """
    on_cpu = pick_device(device).type == "cpu"
    for backend in ("onnx-int8", "onnx", "torch") if on_cpu else ("torch",):
        try:
            colorizer = Colorizer.from_pretrained(model, device=device, backend=backend)
        except CheckpointError as error:
            if backend == "torch":
                raise
            log(f"colorgan: no {backend} backend: {error}")
            continue
        threads = f", {torch.get_num_threads()} threads per request" if on_cpu else ""
        where = f"{colorizer.backend} on {colorizer.device}{threads}"
        log(f"colorgan: model {model or 'starter'}, generator backend {where}")
        return colorizer
    raise AssertionError("unreachable: the torch backend either loads or raises")


def load_photo(source: ImageSource, *, max_pixels: int = APP_MAX_PIXELS, what: str = "image") -> Image.Image:
    """Open an uploaded image (a path or a PIL image) within the app's limits.

    Errors name the file by its base name, never by the server's upload path.

    Args:
        source: the uploaded file's path, or an image already decoded (by the image editor).
        max_pixels: refuse images with more pixels than this.
        what: how the messages call the input ("image", "hint layer").

    Raises:
        ImageError: empty, missing, corrupt, non-image or oversized input, in one line.
    """
    if isinstance(source, Image.Image):
        return open_image(source, max_pixels=max_pixels)
    path = Path(source)
    try:
        return open_image(path, max_pixels=max_pixels)
    except ImageError as error:
        message = _by_base_name(error, path)
        raise ImageError(f"{what} {message}" if what != "image" else message) from None


def _by_base_name(error: Exception, path: Path) -> str:
    """The error's message naming the upload by its file name, not the server's temporary path."""
    return str(error).replace(str(path), path.name)


def _is_opaque(image: Image.Image) -> bool:
    return image.getchannel("A").getextrema() == (255, 255)


def merge_hint_layers(layers: Sequence[ImageSource | None], size: tuple[int, int]) -> Image.Image | None:
    """Painted editor layers -> one RGBA hint layer of `size`, or None when nothing is painted.

    Later layers paint over earlier ones. A layer of another size (the editor's canvas) is
    stretched onto the photo, since the canvas always spans the whole photo.

    Args:
        layers: RGBA layers (images, or the paths of files the editor wrote), transparent where unpainted.
        size: (width, height) of the photo.
    """
    merged = Image.new("RGBA", size, (0, 0, 0, 0))
    for layer in layers:
        if layer is None:
            continue
        layer = load_photo(layer, what="hint layer").convert("RGBA")
        if layer.size != size:
            layer = layer.resize(size, Image.Resampling.NEAREST)
        merged = Image.alpha_composite(merged, layer)
    return merged if merged.getchannel("A").getextrema()[1] > 0 else None


def split_editor_value(
    value: Mapping | None, *, max_pixels: int = APP_MAX_PIXELS
) -> tuple[Image.Image, Image.Image | None]:
    """The image editor's value -> (photo, painted hint layer or None).

    Args:
        value: the image editor's value (`colorgan.app_editor`, paths; or `gr.ImageEditor(type="pil")`'s),
            a dict with `background` (the photo), `layers` (the painted strokes, RGBA) and
            `composite` (photo + strokes, unused).
        max_pixels: refuse photos with more pixels than this.

    Raises:
        ImageError: no photo was given, or it breaks the limits.
    """
    background = value.get("background") if value else None
    if background is None:
        raise ImageError("no photo yet: upload, paste or take one first")
    photo = load_photo(background, max_pixels=max_pixels)
    if photo.mode == "RGBA" and _is_opaque(photo):  # the editor adds alpha to every photo; keep it only if used
        photo = photo.convert("RGB")
    return photo, merge_hint_layers(value.get("layers") or [], photo.size)


def checked_settings(colorizer: Colorizer, saturation: float, render_size: int | None) -> int:
    """The colorizer's settings check with the app's narrower ranges; returns the render size to use.

    Without a render size the model's own is used, brought into the app's range (a model made for
    4096 px runs at the app's largest size rather than failing every request).

    Raises:
        ValueError: saturation or render size out of the app's range.
    """
    return colorizer.checked_settings(
        saturation, render_size, render_sizes=APP_RENDER_SIZE, saturations=APP_SATURATION
    )


def default_render_size(colorizer: Colorizer) -> int:
    """The render size the app's sliders start at: the model's own, within the app's range."""
    return checked_settings(colorizer, 1.0, None)


def colorize_photo(
    colorizer: Colorizer,
    image: ImageSource,
    hints: ImageSource | None = None,
    *,
    saturation: float = 1.0,
    render_size: int | None = None,
    max_pixels: int = APP_MAX_PIXELS,
) -> Image.Image:
    """The app's one piece of work: validate the inputs and colorize at full resolution.

    Args:
        colorizer: the loaded model.
        image: the photo, as an uploaded file's path or a PIL image.
        hints: optional RGBA layer of the photo's size, painted where colour is wanted and
            transparent elsewhere (a path or a PIL image).
        saturation: chroma multiplier, within `APP_SATURATION`.
        render_size: long side at which the generator runs, within `APP_RENDER_SIZE`.
        max_pixels: refuse inputs with more pixels than this.

    Returns:
        The colour image, at the photo's size (RGBA if the photo has alpha).

    Raises:
        ImageError: a bad photo or hint layer; the message is one line.
        ValueError: saturation or render size out of range.
    """
    render_size = checked_settings(colorizer, saturation, render_size)
    if image is None:
        raise ImageError("no image given")
    photo = load_photo(image, max_pixels=max_pixels)
    hint_layer = None
    if hints is not None:
        hint_layer = with_alpha(load_photo(hints, max_pixels=max_pixels, what="hint layer"))
        if hint_layer.size != photo.size:
            raise ImageError(
                f"the hint layer is {hint_layer.width}x{hint_layer.height} but the photo is"
                f" {photo.width}x{photo.height}; paint it at the photo's size"
            )
    return colorizer(photo, hints=hint_layer, saturation=saturation, render_size=int(render_size))


def preview(image: Image.Image, max_side: int = PREVIEW_MAX_SIDE) -> Image.Image:
    """A copy no larger than `max_side` on its long side, for showing in the browser."""
    if max(image.size) <= max_side:
        return image
    shown = image.copy()
    shown.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return shown


def before_and_after(
    photo: Image.Image, colorized: Image.Image, before: Image.Image | None = None
) -> tuple[Image.Image, Image.Image]:
    """The slider's pair: by default the photo as the model sees it (grayscale) and its colorization.

    Args:
        photo: the uploaded photo.
        colorized: the result.
        before: what to show on the "before" side instead of the grayscale photo (e.g. the
            colorization without hints, to show what the hints changed).
    """
    return preview(before if before is not None else ImageOps.grayscale(photo)), preview(colorized)


def save_png(image: Image.Image, folder: str | os.PathLike, stem: str = "colorized") -> str:
    """Write `image` as `<stem>.png` in a fresh subfolder of `folder`, so concurrent requests never clash.

    Args:
        image: the image to write, at full resolution.
        folder: where to write (the app passes Gradio's cache folder, which Gradio cleans).
        stem: the file name without `.png`, which is what a user downloading it sees.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=folder)) / f"{stem}.png"
    image.save(path, format="PNG", compress_level=3)  # level 3: ~3x faster than 6, a few % larger
    return str(path)


def app_video_limits(max_seconds: float = APP_MAX_VIDEO_SECONDS, max_sides: tuple[int, int] = APP_MAX_VIDEO_SIDES) -> VideoLimits:
    """The app's clip limits, as `colorize_video` enforces them on every decoded frame.

    The frame count and pixels x frames budget scale with `max_seconds` (30 frames per second of
    it), so a header that understates the duration or frame rate gains nothing.
    """
    frames = int(max_seconds * APP_MAX_VIDEO_FRAMES / APP_MAX_VIDEO_SECONDS)
    return VideoLimits(
        max_frame_pixels=max_sides[0] * max_sides[1],
        max_frames=frames,
        max_pixel_frames=int(APP_MAX_VIDEO_PIXEL_FRAMES * frames / APP_MAX_VIDEO_FRAMES),
        max_fps=APP_MAX_VIDEO_FPS,
        max_seconds=max_seconds,
    )


def check_clip(path: str | os.PathLike, *, max_seconds: float = APP_MAX_VIDEO_SECONDS,
               max_sides: tuple[int, int] = APP_MAX_VIDEO_SIDES) -> None:
    """Refuse, from its header, a clip that is not a readable video or is longer or larger than the app takes.

    The header may lie: `colorize_clip` enforces the same limits again on every decoded frame.

    Raises:
        VideoError: one line, naming the file by its base name.
    """
    path = Path(path)
    try:
        info = probe(path)
    except VideoError as error:
        raise VideoError(_by_base_name(error, path)) from None
    long_side, short_side = max(info.width, info.height), min(info.width, info.height)
    if long_side > max_sides[0] or short_side > max_sides[1]:
        raise VideoError(
            f"{path.name}: {info.width}x{info.height} is larger than the app takes"
            f" ({max_sides[0]}x{max_sides[1]}, 480p); shrink it first or use the colorgan command line"
        )
    if info.duration <= 0:
        raise VideoError(f"{path.name}: cannot tell how long the clip is")
    if info.duration > max_seconds:
        raise VideoError(
            f"{path.name}: {info.duration:.0f} s is longer than the app's {max_seconds:.0f} s;"
            " cut it first or use the colorgan command line"
        )
    limits = app_video_limits(max_seconds, max_sides)
    if info.frames > limits.max_frames:
        raise VideoError(f"{path.name}: {info.frames} frames, more than the app's {limits.max_frames}")


def colorize_clip(
    colorizer: Colorizer,
    video: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    saturation: float = 1.0,
    render_size: int | None = None,
    max_seconds: float = APP_MAX_VIDEO_SECONDS,
    max_sides: tuple[int, int] = APP_MAX_VIDEO_SIDES,
    threads: int | None = None,
) -> str:
    """The Video tab's work: check the clip's limits and colorize it into an MP4 with its sound.

    Args:
        colorizer: the loaded model.
        video: the uploaded clip's path.
        folder: where to write (a fresh subfolder of it; the app passes Gradio's cache).
        saturation: chroma multiplier, within `APP_SATURATION`.
        render_size: long side at which the generator runs, within `APP_RENDER_SIZE`.
        max_seconds, max_sides: the clip limits (duration; long and short side).
        threads: torch threads for this request (`colorgan.threads`; the app passes its workers' share).

    Returns:
        The path of `<name>_color.mp4`.

    Raises:
        VideoError: no clip, a bad one or one over the limits; one line naming the file by its base name.
        ValueError: saturation or render size out of range.
    """
    render_size = checked_settings(colorizer, saturation, render_size)
    if video is None:
        raise VideoError("no video given: upload a clip first")
    video = Path(video)
    check_clip(video, max_seconds=max_seconds, max_sides=max_sides)
    Path(folder).mkdir(parents=True, exist_ok=True)
    destination = Path(tempfile.mkdtemp(dir=folder)) / f"{video.stem}_color.mp4"
    try:
        colorize_video(
            colorizer, video, destination, saturation=saturation, render_size=render_size, progress=False,
            limits=app_video_limits(max_seconds, max_sides), threads=threads,
        )
    except VideoError as error:
        raise VideoError(_by_base_name(error, video)) from None
    finally:
        if not destination.exists():
            destination.parent.rmdir()  # the request's own folder, left empty by the failed writer
    return str(destination)
