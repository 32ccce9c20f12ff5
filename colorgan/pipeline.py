"""`Colorizer`: the one inference path, used by the CLI, the app, the evaluation and the model card.

The generator sees the photo at `render_size` (long side); its ab prediction is
upsampled to the input's full resolution and recombined with the input's own
full-resolution L, so the output has exactly the input's size and luminance.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoint import DEFAULT_MAX_PARAMETERS, CheckpointError, hub_errors_as_checkpoint_errors
from .color import denormalize_ab, denormalize_l, lab_to_rgb_keeping_lightness, lightness, normalize_l
from .hints import Hint, check_hint_layer, generator_input, layer_to_hints, points_to_hints
from .imaging import DecodedImage, decode, open_image, to_pil
from .models import RENDER_SIZE_LIMITS, UNetGenerator
from .propagation import propagate_hints

if TYPE_CHECKING:
    from .video import VideoResult

STARTER_MODEL = Path(__file__).parent / "pretrained" / "starter"
ImageInput = str | os.PathLike | bytes | Image.Image
HintInput = Sequence[Hint | tuple] | Image.Image | None
CHUNK_PIXELS = 1 << 20  # full-resolution colour maths runs in slices of ~1 MP to bound memory


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


class Colorizer:
    """Colorizes photos with a trained `UNetGenerator`.

    Args:
        generator: the trained generator.
        device: where to run; by default cuda, mps or cpu, whichever is there first.
    """

    def __init__(self, generator: UNetGenerator, device: str | torch.device | None = None):
        self.device = pick_device(device)
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

        Raises:
            CheckpointError: with a one-line reason when the model cannot be loaded.
        """
        source = str(path_or_repo_id) if path_or_repo_id is not None else str(STARTER_MODEL)
        if path_or_repo_id is None and not STARTER_MODEL.is_dir():
            raise CheckpointError("no starter checkpoint is bundled with this install; pass a model folder or repo id")
        # "user/repo" is a Hub id (even where os.sep is "/"); "/abs", "./rel", "a/b/c", "a\\b" are folders
        looks_local = os.path.isabs(source) or source.startswith(".") or source.count("/") > 1
        looks_local = looks_local or (os.sep != "/" and os.sep in source)
        if looks_local and not os.path.isdir(source):
            raise CheckpointError(f"{source}: no such model folder")
        with hub_errors_as_checkpoint_errors(source):  # config and weights are checked before anything is built
            generator = UNetGenerator.from_pretrained(
                source,
                revision=revision,
                token=token,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                max_parameters=max_parameters,
            )
        return cls(generator, device=device)

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
        if not bool(generator_input[:, 3].any()):
            return ab
        l_small, hint_ab, mask = generator_input.float().split([1, 2, 1], dim=1)
        return propagate_hints(ab, denormalize_l(l_small), denormalize_ab(hint_ab), mask)

    def _recombine(self, l_full: torch.Tensor, ab_small: torch.Tensor) -> torch.Tensor:
        # full-res L (1, 1, H, W) + low-res ab (1, 2, h, w) -> (1, 3, H, W) uint8 on cpu
        height, width = l_full.shape[-2:]
        ab_full = F.interpolate(ab_small, size=(height, width), mode="bilinear", align_corners=False)
        rgb = torch.empty(1, 3, height, width, dtype=torch.uint8)
        for rows in _row_chunks(height, width):
            lab = torch.cat([l_full[..., rows, :], ab_full[..., rows, :]], dim=1)
            rgb[..., rows, :] = (lab_to_rgb_keeping_lightness(lab) * 255).round_().to("cpu", torch.uint8)
        return rgb
