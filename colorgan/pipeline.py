"""`Colorizer`: the one inference path, used by the CLI, the app, the evaluation, video and the model card.

The generator sees the photo at `render_size` (long side); its ab prediction is
upsampled to the input's full resolution and recombined with the input's own
full-resolution L, so the output has exactly the input's size and luminance.

A photo goes through five public steps, which `colorgan.video` also runs frame by frame:
`full_resolution_lightness` -> `generator_input` (at render size, with hints) -> `predict`
-> `propagate` (hints spread over their regions) -> `recombine` (with the full-resolution L*).
The full-resolution steps run on the CPU engine of `colorgan.fullres`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from . import fullres
from .checkpoint import (
    DEFAULT_MAX_PARAMETERS,
    check_config_file,
    hub_errors_as_checkpoint_errors,
    model_source,
)
from .color import denormalize_ab, denormalize_l, normalize_l
from .hints import (
    HintInput,
    check_hint_layer,
    generator_input,
    has_hints,
    hints_as_trained,
    layer_to_hints,
    points_to_hints,
)
from .imaging import DecodedImage, decode, open_image, to_pil
from .limits import BACKENDS, RENDER_SIZE, SATURATION, Range
from .models import Pix2PixUNet, UNetGenerator, generator_class_for
from .onnx_runtime import OnnxGenerator, load_onnx_generator
from .propagation import propagate_hints

ImageInput = str | os.PathLike | bytes | Image.Image  # what every colorize call takes as a photo


class ModelOutputError(ValueError):
    """The generator's output is unusable (NaN or infinite values); one line naming the model."""


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
        # "cpu:0" (accelerate's device for a cpu process) is the one cpu, but tensor.to("cpu:0") copies
        # a cpu tensor: a gray photo's stride-0 channels would then take the RGB path, with other rounding
        return torch.device("cpu") if chosen.type == "cpu" else chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def render_shape(width: int, height: int, render_size: int) -> tuple[int, int]:
    """(width, height) the generator sees: long side `render_size`, never upscaled."""
    scale = min(1.0, render_size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


class Colorizer:
    """Colorizes photos with a trained `UNetGenerator` (or the reference `Pix2PixUNet`).

    Args:
        generator: the trained generator.
        device: where to run; by default cuda, mps or cpu, whichever is there first.
        onnx_generator: run the generator's forward with this `OnnxGenerator` (ONNX Runtime, cpu)
            instead of torch; `generator` still gives the model's settings.
    """

    def __init__(
        self,
        generator: UNetGenerator | Pix2PixUNet,
        device: str | torch.device | None = None,
        *,
        onnx_generator: OnnxGenerator | None = None,
    ):
        self.device = pick_device("cpu" if onnx_generator is not None and device is None else device)
        if onnx_generator is not None and self.device.type != "cpu":
            raise ValueError(f"the ONNX backend runs on the cpu, not {device}")
        self.onnx_generator = onnx_generator
        self.model_name = str(onnx_generator.path) if onnx_generator is not None else type(generator).__name__
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
    ) -> Colorizer:
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
                `model_int8.onnx` (see `colorgan.onnx_runtime`).

        Raises:
            CheckpointError: with a one-line reason when the model cannot be loaded.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        source = model_source(path_or_repo_id)
        download_kwargs = dict(revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only)
        with hub_errors_as_checkpoint_errors(source):  # config and weights are checked before anything is built
            generator_class = generator_class_for(check_config_file(source, **download_kwargs))
            generator = generator_class.from_pretrained(source, max_parameters=max_parameters, **download_kwargs)
            onnx_generator = None
            if backend != "torch":
                onnx_generator = load_onnx_generator(
                    source, generator, quantized=backend == "onnx-int8", **download_kwargs
                )
        colorizer = cls(generator, device=device, onnx_generator=onnx_generator)
        if onnx_generator is None:
            colorizer.model_name = source  # named by errors about what the model does
        return colorizer

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
        render_size = self.checked_settings(saturation, render_size)
        hints = list(hints) if hints is not None else [None] * len(images)
        if len(hints) != len(images):
            raise ValueError(f"got {len(hints)} hint entries for {len(images)} images")
        decoded = [decode(open_image(image)) for image in images]
        with torch.inference_mode():
            lightness_maps = [self.full_resolution_lightness(item) for item in decoded]
            inputs = [
                self.generator_input(item, l_full, item_hints, render_size)
                for item, l_full, item_hints in zip(decoded, lightness_maps, hints)
            ]
            # propagated, a painted stroke reaches the network as the sparse points it was trained with
            network_inputs = [hints_as_trained(tensor) for tensor in inputs] if propagate else inputs
            ab_small = [ab * saturation for ab in self.predict(network_inputs)]
            if propagate:  # after saturation, so hinted pixels keep their hint's colour at any saturation
                ab_small = [
                    self.propagate(ab, tensor, l_full) for ab, tensor, l_full in zip(ab_small, inputs, lightness_maps)
                ]
            return [
                to_pil(self.recombine(l_full, ab), item.alpha)
                for item, l_full, ab in zip(decoded, lightness_maps, ab_small)
            ]

    def checked_settings(
        self,
        saturation: float,
        render_size: int | None,
        *,
        render_sizes: Range = RENDER_SIZE,
        saturations: Range = SATURATION,
    ) -> int:
        """The one check of the settings every colorize call shares; returns the render size to use.

        Args:
            saturation: the chroma multiplier asked for.
            render_size: the long side asked for; None is the model's own, brought into `render_sizes`.
            render_sizes: the allowed render sizes (a front end may pass a narrower range of `colorgan.limits`).
            saturations: the allowed saturations (likewise).

        Raises:
            ValueError: a setting outside its range, in one line.
        """
        saturations.check(saturation)
        if render_size is None:  # a model made for more than a front end allows runs at the front end's most
            return int(render_sizes.clamp(self.default_render_size))
        return int(render_sizes.check(render_size))

    def model_input(
        self, image: ImageInput, *, hints: HintInput = None, render_size: int | None = None
    ) -> torch.Tensor:
        """The generator's (1, 4, h, w) input for one image, as `__call__` feeds it (e.g. to calibrate int8):
        with hints propagated, so a broad stroke as points (`hints_as_trained`)."""
        item = decode(open_image(image))
        render_size = self.default_render_size if render_size is None else render_size
        with torch.inference_mode():
            return hints_as_trained(self.generator_input(item, self.full_resolution_lightness(item), hints, render_size))

    # ----------------------------------------------------------------------------- the steps
    def full_resolution_lightness(self, image: DecodedImage) -> torch.Tensor:
        """Step 1: the image's L* at full resolution.

        Args:
            image: the decoded image (`colorgan.imaging.decode`).

        Returns:
            (1, 1, H, W) L* float32 on the colorizer's device.
        """
        return fullres.full_resolution_lightness(image.rgb, self.device)

    def generator_input(
        self, image: DecodedImage, l_full: torch.Tensor, hints: HintInput, render_size: int
    ) -> torch.Tensor:
        """Step 2: the generator's input at render size: L in model space, hint ab and hint mask.

        Args:
            image: the decoded image (for its size).
            l_full: its full-resolution L* (step 1).
            hints: points in the image's pixel coordinates or an RGBA layer of its size, or None.
            render_size: long side the generator runs at.

        Returns:
            (1, 4, h, w) on the colorizer's device.

        Raises:
            ValueError: hints that do not fit the image, in one line.
        """
        width, height = image.size
        small = render_shape(width, height, render_size)
        l_small = l_full
        if small != (width, height):
            l_small = F.interpolate(l_full, size=small[::-1], mode="bilinear", antialias=True, align_corners=False)
        if not has_hints(hints):
            return generator_input(normalize_l(l_small))
        if isinstance(hints, Image.Image):
            check_hint_layer(hints, (width, height))
            hint_ab, mask = layer_to_hints(hints, small)
        else:
            hint_ab, mask = points_to_hints(hints, (width, height), small)
        return generator_input(normalize_l(l_small), hint_ab.to(self.device), mask.to(self.device))

    def predict(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Step 3: run the generator, one forward pass per group of equal input shapes.

        Args:
            inputs: (1, 4, h, w) generator inputs (step 2).

        Returns:
            (1, 2, h, w) ab in Lab units, one per input, in order.

        Raises:
            ModelOutputError: the generator gave NaN or infinite values (broken weights or graph).
        """
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
            if not bool(torch.isfinite(ab_norm).all()):  # before the colour maths, whose table lookup it would break
                raise ModelOutputError(f"{self.model_name}: the generator's output holds NaN or infinite values")
            for position, index in enumerate(indices):
                outputs[index] = denormalize_ab(ab_norm[position : position + 1].float())
        return outputs  # type: ignore[return-value]

    @staticmethod
    def propagate(ab: torch.Tensor, generator_input: torch.Tensor, l_full: torch.Tensor | None = None) -> torch.Tensor:
        """Step 4: spread each hint's colour over the region it sits in (`colorgan.propagation`).

        Args:
            ab: (1, 2, h, w) predicted ab in Lab units (step 3, after any saturation).
            generator_input: the (1, 4, h, w) input it was predicted from (L, hint ab, mask).
            l_full: the image's full-resolution L* (1, 1, H, W) (step 1), or None. Given, its edges
                stop the hints (small objects included) and the result comes at up to its size
                (`PropagationSettings.guide_max_side`); `recombine` takes either size.

        Returns:
            (1, 2, h, w) ab, or at the guide's size with `l_full`; unchanged where the input has no hints.
        """
        l_small, hint_ab, mask = generator_input.float().split([1, 2, 1], dim=1)
        return propagate_hints(ab, denormalize_l(l_small), denormalize_ab(hint_ab), mask, guide=l_full)

    def recombine(self, l_full: torch.Tensor, ab_small: torch.Tensor) -> torch.Tensor:
        """Step 5: the full-resolution 8-bit RGB image from the image's own L* and the predicted ab.

        Args:
            l_full: (1, 1, H, W) L* (step 1).
            ab_small: (1, 2, h, w) ab in Lab units at render size (step 3 or 4), or larger (step 4 with l_full).

        Returns:
            (1, 3, H, W) uint8 on the cpu.
        """
        return fullres.recombine(l_full, ab_small, self.device)
