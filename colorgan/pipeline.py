"""`Colorizer`: the one inference path, used by the CLI, the app, the evaluation and the model card.

The generator sees the photo at `render_size` (long side); its ab prediction is
upsampled to the input's full resolution and recombined with the input's own
full-resolution L, so the output has exactly the input's size and luminance.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoint import CheckpointError, hub_errors_as_checkpoint_errors
from .color import Srgb8Encoder, denormalize_ab, fit_srgb8_into_gamut, lightness, normalize_l
from .hints import Hint, generator_input, layer_to_hints, points_to_hints
from .imaging import DecodedImage, decode, open_image, to_pil
from .models import UNetGenerator

STARTER_MODEL = Path(__file__).parent / "pretrained" / "starter"
ImageInput = str | os.PathLike | bytes | Image.Image
HintInput = Sequence[Hint | tuple] | Image.Image | None
RENDER_SIZE_LIMITS = (16, 4096)  # long sides the generator may run at
# what runs the generator: torch, or ONNX Runtime on the CPU in fp32 or int8 (see colorgan.onnx_backend)
BACKENDS = ("torch", "onnx", "onnx-int8")
# full-resolution colour maths runs in slices of rows: small enough that a slice's float planes stay
# in the CPU's caches between the ~20 passes over them, large enough that per-call overhead stays small
CHUNK_PIXELS = 1 << 16


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


def _row_chunks(height: int, width: int):
    rows = max(1, CHUNK_PIXELS // width)
    for top in range(0, height, rows):
        yield slice(top, min(top + rows, height))


def _bilinear_taps(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices i0, i1 and weight of i1 for each output position: F.interpolate's bilinear, align_corners=False."""
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

    def __init__(self, small: torch.Tensor, height: int, width: int, max_rows: int):
        left, right, weight = _bilinear_taps(small.shape[-1], width, small.device)
        self.columns = torch.lerp(small.index_select(-1, left), small.index_select(-1, right), weight)  # (C, h, W)
        self.top, self.bottom, self.weight = _bilinear_taps(small.shape[-2], height, small.device)
        self.buffer = self.columns.new_empty(2, small.shape[0] * max_rows * width)

    def rows(self, rows: slice) -> torch.Tensor:
        # -> (C, rows, W)
        channels, _, width = self.columns.shape
        size = channels * (rows.stop - rows.start) * width
        top, bottom = (buffer[:size].view(channels, -1, width) for buffer in self.buffer)
        torch.index_select(self.columns, 1, self.top[rows], out=top)
        torch.index_select(self.columns, 1, self.bottom[rows], out=bottom)
        return top.lerp_(bottom, self.weight[rows, None])


class Colorizer:
    """Colorizes photos with a trained `UNetGenerator`.

    Args:
        generator: the trained generator.
        device: where to run; by default cuda, mps or cpu, whichever is there first.
        onnx_generator: run the generator's forward with this `OnnxGenerator` (ONNX Runtime, cpu)
            instead of torch; `generator` still gives the model's settings.
    """

    def __init__(
        self, generator: UNetGenerator, device: str | torch.device | None = None, *, onnx_generator=None
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
        try:
            with hub_errors_as_checkpoint_errors(source):
                generator = UNetGenerator.from_pretrained(
                    source, revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only
                )
        except TypeError as error:
            raise CheckpointError(f"{source}: config.json does not describe a colorgan generator ({error})") from None
        onnx_generator = None
        if backend != "torch":
            from .onnx_backend import load_onnx_generator

            download_kwargs = dict(revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only)
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
        self, image: ImageInput, *, hints: HintInput = None, saturation: float = 1.0, render_size: int | None = None
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

        Returns:
            An RGB image (RGBA when the input had alpha) of the input's size.
        """
        return self.colorize_batch([image], hints=[hints], saturation=saturation, render_size=render_size)[0]

    def colorize_batch(
        self,
        images: Sequence[ImageInput],
        *,
        hints: Sequence[HintInput] | None = None,
        saturation: float = 1.0,
        render_size: int | None = None,
    ) -> list[Image.Image]:
        """Colorize several images; those with the same render shape share one forward pass.

        Args are those of `__call__`, with `hints` one entry per image (or None).
        """
        render_size = self.default_render_size if render_size is None else render_size
        if not 0.0 <= saturation <= 4.0:
            raise ValueError(f"saturation must be between 0 and 4, got {saturation}")
        low, high = RENDER_SIZE_LIMITS
        if not low <= render_size <= high:
            raise ValueError(f"render_size must be between {low} and {high}, got {render_size}")
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
            ab_small = self._predict(inputs)
            return [
                to_pil(self._recombine(l_full, ab * saturation), item.alpha)
                for item, l_full, ab in zip(decoded, lightness_maps, ab_small)
            ]

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
        for rows in _row_chunks(height, width):
            l_full[..., rows, :] = lightness(item.rgb[..., rows, :].to(self.device))
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
            if hints.size != (width, height):
                raise ValueError(f"hint layer is {hints.size[0]}x{hints.size[1]}, the image {width}x{height}")
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

    def _recombine(self, l_full: torch.Tensor, ab_small: torch.Tensor) -> torch.Tensor:
        # full-res L (1, 1, H, W) + low-res ab (1, 2, h, w) -> (1, 3, H, W) uint8 on cpu
        height, width = l_full.shape[-2:]
        max_rows = next(_row_chunks(height, width)).stop
        upsampler = _RowUpsampler(ab_small[0].float(), height, width, max_rows)
        encoder = Srgb8Encoder(max_rows * width, self.device)
        rgb = torch.empty(3, height * width, dtype=torch.uint8)
        on_device = rgb if self.device.type == "cpu" else torch.empty_like(rgb[:, : max_rows * width], device=self.device)
        outside_index, outside_lightness, outside_ab = [], [], []
        for rows in _row_chunks(height, width):
            start, stop = rows.start * width, rows.stop * width
            ab = upsampler.rows(rows).view(2, -1)  # (2, n)
            lightness_values = l_full[0, 0, rows].reshape(-1)  # (n,)
            planes = rgb[:, start:stop] if on_device is rgb else on_device[:, : stop - start]
            outside = encoder(lightness_values, ab, planes)
            if on_device is not rgb:
                rgb[:, start:stop] = planes.cpu()
            if len(outside):  # few pixels: fitted all at once below, since a fitting call costs ~1 ms
                outside_index.append(outside + start)
                outside_lightness.append(lightness_values[outside])
                outside_ab.append(ab[:, outside])
        if outside_index:
            fitted = fit_srgb8_into_gamut(torch.cat(outside_lightness), torch.cat(outside_ab, dim=1))  # (3, m)
            rgb[:, torch.cat(outside_index).cpu()] = fitted.cpu()
        return rgb.view(1, 3, height, width)
