"""`Colorizer`: the one inference path, used by the CLI, the app, the evaluation and the model card.

The generator sees the photo at `render_size` (long side); its ab prediction is
upsampled to the input's full resolution and recombined with the input's own
full-resolution L, so the output has exactly the input's size and luminance.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoint import DEFAULT_MAX_PARAMETERS, CheckpointError, check_config_file, hub_errors_as_checkpoint_errors
from .color import Srgb8Encoder, denormalize_ab, denormalize_l, fit_srgb8_into_gamut, lightness, normalize_l
from .hints import Hint, check_hint_layer, generator_input, layer_to_hints, points_to_hints
from .imaging import DecodedImage, decode, open_image, to_pil
from .models import RENDER_SIZE_LIMITS, Pix2PixUNet, UNetGenerator, generator_class_for
from .propagation import propagate_hints

if TYPE_CHECKING:
    from .video import VideoResult

STARTER_MODEL = Path(__file__).parent / "pretrained" / "starter"
ImageInput = str | os.PathLike | bytes | Image.Image
HintInput = Sequence[Hint | tuple] | Image.Image | None
# what runs the generator: torch, or ONNX Runtime on the CPU in fp32 or int8 (see colorgan.onnx_backend)
BACKENDS = ("torch", "onnx", "onnx-int8")
# full-resolution colour maths runs in slices of rows: small enough that a slice's float planes stay
# in the CPU's caches between the ~20 passes over them, large enough that per-call overhead stays small
CHUNK_PIXELS = 1 << 16
T = TypeVar("T")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else cuda, mps or cpu, whichever is there first."""
    if device is not None:
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r} (try cpu, cuda, cuda:1 or mps)") from None
        available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
        if chosen.type in available and not available[chosen.type]():
            raise ValueError(f"device {device!r} is not available on this machine")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def render_shape(width: int, height: int, render_size: int) -> tuple[int, int]:
    """(width, height) the generator sees: long side `render_size`, never upscaled."""
    scale = min(1.0, render_size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# Under OpenMP, torch.set_num_threads is per thread: a worker thread can run single-threaded ops
# without changing what the caller's thread (or any other) uses.
_THREAD_LOCAL_TORCH_THREADS = "parallel backend: OpenMP" in torch.__config__.parallel_info()


def _row_chunks(height: int, width: int):
    rows = max(1, CHUNK_PIXELS // width)
    for top in range(0, height, rows):
        yield slice(top, min(top + rows, height))


def _in_row_slices(
    height: int, width: int, device: torch.device, work: Callable[[Iterable[slice]], T]
) -> list[T]:
    """Run `work` over the row slices of an image: on the cpu, on one thread per torch thread.

    The slices' ops are small (~20 passes over 64 K pixels each); with torch's own intra-op threads
    every pass ends in a barrier, and on a loaded machine a thread waiting at one for a descheduled
    sibling spins for its whole time slice (measured: 28x the CPU time of one thread). So each thread
    runs single-threaded ops on whole slices, and they meet only once, at the end. The calling thread
    is one of them, and each takes the next slice when done with one: a helper that starts late (its
    core still held by the OpenMP worker that spins after the forward, for ~5 ms) then does less
    instead of holding everything up.
    """
    chunks = list(_row_chunks(height, width))
    workers = 1
    if device.type == "cpu" and _THREAD_LOCAL_TORCH_THREADS:
        workers = min(torch.get_num_threads(), len(chunks))
    if workers <= 1:
        return [work(chunks)]

    caller_threads = torch.get_num_threads()
    slices = _SharedSlices(chunks)

    def single_threaded() -> T:
        torch.set_num_threads(1)  # OpenMP's count for this thread only
        try:
            with torch.inference_mode():
                return work(slices)
        finally:
            torch.set_num_threads(caller_threads)  # it also set MKL's process-wide count: put that back

    helpers = [_row_pool(workers - 1).submit(single_threaded) for _ in range(workers - 1)]
    try:
        own = single_threaded()
    finally:
        results = [helper.result() for helper in helpers]  # also when the caller's share failed
    return [own, *results]


class _SharedSlices:
    """The row slices of one image, handed out one at a time to whichever thread asks next."""

    def __init__(self, chunks: list[slice]):
        self._chunks = iter(chunks)
        self._lock = threading.Lock()

    def __iter__(self) -> "_SharedSlices":
        return self

    def __next__(self) -> slice:
        with self._lock:
            return next(self._chunks)


_ROW_POOLS: dict[int, ThreadPoolExecutor] = {}
_ROW_POOLS_LOCK = threading.Lock()


def _row_pool(workers: int) -> ThreadPoolExecutor:
    # kept for the process: fresh threads per photo would each get a malloc arena that keeps what it freed
    with _ROW_POOLS_LOCK:
        if workers not in _ROW_POOLS:
            _ROW_POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="colorgan-rows")
        return _ROW_POOLS[workers]


def _bilinear_taps(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Source indices i0, i1 and weight of i1 per output position, as F.interpolate's bilinear (align_corners=False)."""
    scale = in_size / out_size
    source = ((torch.arange(out_size, device=device, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_(min=0)
    first = source.long().clamp_(max=in_size - 1)
    return first, (first + 1).clamp_(max=in_size - 1), source - first


class _RowUpsampler:
    """Bilinear upsampling of a small (C, h, w) map to (C, H, W), one slice of output rows at a time.

    Equals `F.interpolate(mode="bilinear", align_corners=False)` (within float rounding), but the
    full-resolution result never exists at once: columns are interpolated once, at (C, h, W), and
    each slice of rows is blended from two of those rows, in buffers reused from slice to slice.
    """

    def __init__(self, small: torch.Tensor, height: int, width: int):
        # the columns at (C, h, W): interpolating to the same height is exact, and torch's kernel is fast
        self.columns = small
        if small.shape[-1] != width:
            size = (small.shape[-2], width)
            self.columns = F.interpolate(small[None], size=size, mode="bilinear", align_corners=False)[0]
        self.top, self.bottom, self.weight = _bilinear_taps(small.shape[-2], height, small.device)

    def new_buffer(self, max_rows: int) -> torch.Tensor:
        """Scratch space for `rows` (one per thread)."""
        return self.columns.new_empty(2, self.columns.shape[0] * max_rows * self.columns.shape[-1])

    def rows(self, rows: slice, buffer: torch.Tensor) -> torch.Tensor:
        # -> (C, rows, W), in `buffer`
        channels, _, width = self.columns.shape
        size = channels * (rows.stop - rows.start) * width
        top, bottom = (half[:size].view(channels, -1, width) for half in buffer)
        torch.index_select(self.columns, 1, self.top[rows], out=top)
        torch.index_select(self.columns, 1, self.bottom[rows], out=bottom)
        return top.lerp_(bottom, self.weight[rows, None])


class Colorizer:
    """Colorizes photos with a trained `UNetGenerator` (or the reference `Pix2PixUNet`).

    Args:
        generator: the trained generator.
        device: where to run; by default cuda, mps or cpu, whichever is there first.
        onnx_generator: run the generator's forward with this `OnnxGenerator` (ONNX Runtime, cpu)
            instead of torch; `generator` still gives the model's settings.
    """

    def __init__(
        self, generator: UNetGenerator | Pix2PixUNet, device: str | torch.device | None = None, *, onnx_generator=None
    ):
        self.device = pick_device("cpu" if onnx_generator is not None and device is None else device)
        if onnx_generator is not None and self.device.type != "cpu":
            raise ValueError(f"the ONNX backend runs on the cpu, not {device}")
        self.onnx_generator = onnx_generator
        self.generator = generator.to(self.device).eval()
        if self.device.type == "cpu":
            self.generator = self.generator.to(memory_format=torch.channels_last)  # ~25% faster convs on CPU

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike | None = None,
        *,
        device: str | torch.device | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        max_parameters: int = DEFAULT_MAX_PARAMETERS,
        backend: str = "torch",
    ) -> "Colorizer":
        """Load a generator from a local folder or a Hub repo (safetensors only, strictly).

        Args:
            path_or_repo_id: a folder holding `config.json` + `model.safetensors`, or a Hub repo id;
                None loads the starter checkpoint shipped with the package.
            device: where to run; by default cuda, mps or cpu.
            revision: branch, tag or commit of a Hub repo.
            token: Hub token for private repos.
            cache_dir: HF cache folder.
            local_files_only: never touch the network (also implied by HF_HUB_OFFLINE=1).
            max_parameters: refuse a generator with more parameters than this (the config and the
                weights' header are checked against it before anything is allocated).
            backend: "torch", or "onnx" / "onnx-int8" to run the generator with ONNX Runtime on the
                cpu (needs the `onnx` extra). "onnx" uses the `model.onnx` shipped with the model, else
                exports one on first use into the Hugging Face cache; "onnx-int8" needs a shipped
                `model_int8.onnx` (see `colorgan.onnx_backend`).

        Raises:
            CheckpointError: with a one-line reason when the model cannot be loaded.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        source = str(path_or_repo_id) if path_or_repo_id is not None else str(STARTER_MODEL)
        if path_or_repo_id is None and not STARTER_MODEL.is_dir():
            raise CheckpointError("no starter checkpoint is bundled with this install; pass a model folder or repo id")
        # "user/repo" is a Hub id (even where os.sep is "/"); "/abs", "./rel", "a/b/c", "a\\b" are folders
        looks_local = os.path.isabs(source) or source.startswith(".") or source.count("/") > 1
        looks_local = looks_local or (os.sep != "/" and os.sep in source)
        if looks_local and not os.path.isdir(source):
            raise CheckpointError(f"{source}: no such model folder")
        download_kwargs = dict(revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only)
        with hub_errors_as_checkpoint_errors(source):  # config and weights are checked before anything is built
            generator_class = generator_class_for(check_config_file(source, **download_kwargs))
            generator = generator_class.from_pretrained(
                source,
                revision=revision,
                token=token,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                max_parameters=max_parameters,
            )
        onnx_generator = None
        if backend != "torch":
            from .onnx_backend import load_onnx_generator

            with hub_errors_as_checkpoint_errors(source):
                onnx_generator = load_onnx_generator(
                    source, generator, quantized=backend == "onnx-int8", **download_kwargs
                )
        return cls(generator, device=device, onnx_generator=onnx_generator)

    @property
    def backend(self) -> str:
        """What runs the generator: "torch", "onnx" or "onnx-int8"."""
        if self.onnx_generator is None:
            return "torch"
        return "onnx-int8" if self.onnx_generator.quantized else "onnx"

    @property
    def default_render_size(self) -> int:
        """The render size the model was trained for (from its config), used when none is given."""
        return self.generator.render_size

    def __call__(
        self,
        image: ImageInput,
        *,
        hints: HintInput = None,
        saturation: float = 1.0,
        render_size: int | None = None,
        propagate: bool = True,
    ) -> Image.Image:
        """Colorize one image.

        Args:
            image: a path, encoded bytes or a PIL image of any mode (L, LA, P, RGB, RGBA, CMYK,
                I;16, ...). Colour photos are accepted; only their luminance is used.
            hints: colour hints, either points `(x, y, (r, g, b))` in the image's pixel
                coordinates or a painted RGBA layer of the image's size (transparent = no hint).
            saturation: multiplies the predicted chroma (0 gives grayscale, 1 the model's colours).
            render_size: long side, in pixels, at which the generator runs (default: the model's
                own `default_render_size`); the output is always at the input's full resolution.
            propagate: spread each hint's colour over the region it sits in, bounded by the photo's
                edges (`colorgan.propagation`); False leaves hints to the network alone.

        Returns:
            An RGB image (RGBA when the input had alpha) of the input's size.
        """
        return self.colorize_batch(
            [image], hints=[hints], saturation=saturation, render_size=render_size, propagate=propagate
        )[0]

    def colorize_batch(
        self,
        images: Sequence[ImageInput],
        *,
        hints: Sequence[HintInput] | None = None,
        saturation: float = 1.0,
        render_size: int | None = None,
        propagate: bool = True,
    ) -> list[Image.Image]:
        """Colorize several images; those with the same render shape share one forward pass.

        Args are those of `__call__`, with `hints` one entry per image (or None).
        """
        render_size = self._checked_settings(saturation, render_size)
        hints = list(hints) if hints is not None else [None] * len(images)
        if len(hints) != len(images):
            raise ValueError(f"got {len(hints)} hint entries for {len(images)} images")
        decoded = [decode(open_image(image)) for image in images]
        with torch.inference_mode():
            lightness_maps = [self._full_resolution_lightness(item) for item in decoded]
            inputs = [
                self._generator_input(item, l_full, item_hints, render_size)
                for item, l_full, item_hints in zip(decoded, lightness_maps, hints)
            ]
            ab_small = [ab * saturation for ab in self._predict(inputs)]
            if propagate:  # after saturation, so hinted pixels keep their hint's colour at any saturation
                ab_small = [self._propagate(ab, tensor) for ab, tensor in zip(ab_small, inputs)]
            return [
                to_pil(self._recombine(l_full, ab), item.alpha)
                for item, l_full, ab in zip(decoded, lightness_maps, ab_small)
            ]

    def colorize_video(
        self,
        src: str | os.PathLike,
        dst: str | os.PathLike,
        *,
        hints: HintInput = None,
        hint_frame: int = 0,
        saturation: float = 1.0,
        render_size: int | None = None,
        temporal: bool = True,
        progress: bool = True,
    ) -> "VideoResult":
        """Colorize a video file, keeping its size, frame count, frame rate and audio.

        Colour is carried from frame to frame along the optical flow, so it does not flicker, and
        the memory is cleared at shot cuts (colorgan/temporal.py). Frames stream in batches; the
        output is written to a temporary file beside `dst` and renamed when complete.

        Args:
            src: the input video (any container and codec FFmpeg reads).
            dst: the output, `.mp4`, `.m4v`, `.mov` or `.mkv` (H.264 video, audio copied unchanged).
            hints: colour hints for frame `hint_frame`, as for a photo (points in the frame's pixel
                coordinates or an RGBA layer of the frame's size); they follow the motion until a shot cut
                (with `temporal=False`, only that frame gets them).
            hint_frame: the index of the frame the hints are given for.
            saturation: multiplies the predicted chroma.
            render_size: long side at which the generator runs (default: the model's own).
            temporal: False colorizes each frame on its own (for comparison; it flickers).
            progress: show a progress bar with frames per second on stderr.

        Raises:
            VideoError: a bad input or destination, with a one-line reason.
        """
        from .temporal import TemporalSettings
        from .video import colorize_video

        return colorize_video(
            self, src, dst, hints=hints, hint_frame=hint_frame, saturation=saturation, render_size=render_size,
            temporal=TemporalSettings() if temporal else None, progress=progress,
        )

    def _checked_settings(self, saturation: float, render_size: int | None) -> int:
        """Validate the shared settings; returns the render size to use."""
        render_size = self.default_render_size if render_size is None else render_size
        if not 0.0 <= saturation <= 4.0:
            raise ValueError(f"saturation must be between 0 and 4, got {saturation}")
        low, high = RENDER_SIZE_LIMITS
        if not low <= render_size <= high:
            raise ValueError(f"render_size must be between {low} and {high}, got {render_size}")
        return render_size

    def model_input(
        self, image: ImageInput, *, hints: HintInput = None, render_size: int | None = None
    ) -> torch.Tensor:
        """The generator's (1, 4, h, w) input for one image, as `__call__` builds it (e.g. to calibrate int8)."""
        item = decode(open_image(image))
        render_size = self.default_render_size if render_size is None else render_size
        with torch.inference_mode():
            return self._generator_input(item, self._full_resolution_lightness(item), hints, render_size)

    def _full_resolution_lightness(self, item: DecodedImage) -> torch.Tensor:
        # (1, 3, H, W) uint8/float on cpu -> (1, 1, H, W) L* float32 on the device
        height, width = item.rgb.shape[-2:]
        l_full = torch.empty(1, 1, height, width, device=self.device)

        def fill(share: Iterable[slice]) -> None:
            for rows in share:
                l_full[..., rows, :] = lightness(item.rgb[..., rows, :].to(self.device))

        _in_row_slices(height, width, self.device, fill)
        return l_full

    def _generator_input(
        self, item: DecodedImage, l_full: torch.Tensor, hints: HintInput, render_size: int
    ) -> torch.Tensor:
        # -> (1, 4, h, w) at render size: L in model space, hint ab, hint mask
        width, height = item.size
        small = render_shape(width, height, render_size)
        l_small = l_full
        if small != (width, height):
            l_small = F.interpolate(l_full, size=small[::-1], mode="bilinear", antialias=True, align_corners=False)
        if hints is None or (not isinstance(hints, Image.Image) and len(hints) == 0):
            return generator_input(normalize_l(l_small))
        if isinstance(hints, Image.Image):
            check_hint_layer(hints, (width, height))
            hint_ab, mask = layer_to_hints(hints, small)
        else:
            hint_ab, mask = points_to_hints(hints, (width, height), small)
        return generator_input(normalize_l(l_small), hint_ab.to(self.device), mask.to(self.device))

    def _predict(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run the generator on (1, 4, h, w) inputs, batching equal shapes -> (1, 2, h, w) ab in Lab units."""
        outputs: list[torch.Tensor | None] = [None] * len(inputs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, tensor in enumerate(inputs):
            groups.setdefault(tuple(tensor.shape), []).append(index)
        for indices in groups.values():
            batch = torch.cat([inputs[i] for i in indices])
            if self.onnx_generator is not None:
                ab_norm = self.onnx_generator(batch)
            else:
                if self.device.type == "cpu":
                    batch = batch.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                    ab_norm = self.generator(batch)
            for position, index in enumerate(indices):
                outputs[index] = denormalize_ab(ab_norm[position : position + 1].float())
        return outputs  # type: ignore[return-value]

    @staticmethod
    def _propagate(ab: torch.Tensor, generator_input: torch.Tensor) -> torch.Tensor:
        # (1, 2, h, w) ab + the (1, 4, h, w) input it came from (L, hint ab, mask) -> ab with hints spread
        l_small, hint_ab, mask = generator_input.float().split([1, 2, 1], dim=1)
        return propagate_hints(ab, denormalize_l(l_small), denormalize_ab(hint_ab), mask)

    def _recombine(self, l_full: torch.Tensor, ab_small: torch.Tensor) -> torch.Tensor:
        # full-res L (1, 1, H, W) + low-res ab (1, 2, h, w) -> (1, 3, H, W) uint8 on cpu
        height, width = l_full.shape[-2:]
        max_rows = next(_row_chunks(height, width)).stop
        upsampler = _RowUpsampler(ab_small[0].float(), height, width)
        rgb = torch.empty(3, height * width, dtype=torch.uint8)

        def encode(share: Iterable[slice]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
            # every slice of `share` into `rgb`; -> (indices, L, ab) of the pixels outside the gamut
            buffer, encoder = upsampler.new_buffer(max_rows), Srgb8Encoder(max_rows * width, self.device)
            on_cpu = self.device.type == "cpu"  # encode straight into `rgb`, else via a device buffer
            on_device = None if on_cpu else torch.empty_like(rgb[:, : max_rows * width], device=self.device)
            outside_pixels = []
            for rows in share:
                start, stop = rows.start * width, rows.stop * width
                ab = upsampler.rows(rows, buffer).view(2, -1)  # (2, n)
                lightness_values = l_full[0, 0, rows].reshape(-1)  # (n,)
                planes = rgb[:, start:stop] if on_cpu else on_device[:, : stop - start]
                outside = encoder(lightness_values, ab, planes)
                if not on_cpu:
                    rgb[:, start:stop] = planes.cpu()
                if len(outside):
                    outside_pixels.append((outside + start, lightness_values[outside], ab[:, outside]))
            return outside_pixels

        outside_pixels = [item for share in _in_row_slices(height, width, self.device, encode) for item in share]
        if outside_pixels:  # few pixels: fitted all at once, since a fitting call costs ~1 ms
            index, lightness_values, ab = zip(*outside_pixels)
            fitted = fit_srgb8_into_gamut(torch.cat(lightness_values), torch.cat(ab, dim=1))  # (3, m)
            rgb[:, torch.cat(index).cpu()] = fitted.cpu()
        return rgb.view(1, 3, height, width)
