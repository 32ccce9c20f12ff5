"""ONNX export of the generator, fp32 or static int8, for the ONNX Runtime backend.

    colorgan export-onnx MODEL OUT.onnx [--quantize --calibration PHOTOS]

The graph takes (B, 4, H, W) generator input and gives (B, 2, H, W) ab / 110, like
`UNetGenerator`, with batch, height and width dynamic: the padding to the encoder's stride
(replicate) and the crop back are part of the graph.

The graph `export_onnx` writes is not the training graph: `export_form` rewrites the decoder into
the ops ONNX Runtime's CPU kernels run fastest, with the same maths. `quantize_onnx` makes static
QDQ int8 of it (per-channel weights, activations calibrated on photos): ONNX Runtime's dynamic
quantization runs convolutions as ConvInteger, which on a 2-core x86 CPU measured 5x slower than
fp32 rather than faster. `colorgan.onnx_runtime` runs the result.
"""
from __future__ import annotations

import copy
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .color import as_float_rgb
from .hints import sample_hints
from .imaging import atomic_path, decode, open_image
from .models import GENERATOR_INPUT_CHANNELS, DecoderBlock, UNetGenerator

ONNX_OPSET = 18  # supported by every onnxruntime on PyPI since 1.14 and by torch.onnx's exporter
# The graph's layout (see `_ExportDecoderBlock`); part of the export cache's key, so a cached export made
# by an earlier colorgan in another layout is exported again rather than reused.
EXPORT_FORM = 2
INPUT_NAME, OUTPUT_NAME = "input", "ab"
CALIBRATION_IMAGES = 16  # photos used to calibrate int8 activations by default
CALIBRATION_HINTS = 16  # hint points on the second calibration input of each photo
CALIBRATION_CROP = 128  # calibration inputs are cropped to one size: the percentile calibrator needs that
# Decoder levels (finest first) kept in fp32 by `quantize_onnx`, with the head. Measured on the starter
# model, all 43 val photos, against fp32's 21.31 dB PSNR, forward times as a ratio to torch's at 512x512:
# none (head only) 20.33 dB at 0.47x; the finest level 21.21 dB at 0.44-0.54x over five runs (0.52-0.58x
# before `_BlockedLayoutEntry`); two, 21.40 dB at 0.63x; three, 21.41 dB at 0.71x. The finest level sees the
# full-resolution detail, and int8 noise on what it hands the head shows as colour noise (SSIM 0.914 ->
# 0.858); the levels below it quantize almost for free.
FP32_DECODER_LEVELS = 1


class _ExportDecoderBlock(nn.Module):
    """A `DecoderBlock` rewritten into the ops ONNX Runtime's CPU kernels run fastest; the same maths.

    ONNX Runtime runs convolutions whose channel counts are multiples of 8 or 16 (AVX2 or AVX-512)
    in a blocked layout (NCHWc). The trained block concatenates the upsampled features with a skip
    whose channels fit no block (32 + 4 at full resolution, 64 + 24, ...), so each level paid a
    Concat, a copy of the result into the blocked layout and an upsampling outside it: 40% of the
    fp32 forward at 512x512. This block, built from a trained one in eval mode:
      - folds each BatchNorm into its convolution (its running statistics);
      - splits the first convolution by input channel: conv(cat(up, skip)) = conv_up(up) + conv_skip(skip),
        and the sum fuses into conv_up's output (see `_sum_conv_pairs`);
      - upsamples by scale factor 2 rather than to a size: the padded input makes every level exactly
        twice the one below, and only a constant scale lets ONNX Runtime upsample in the blocked layout.
    Dropout is the identity in eval mode and is left out.
    """

    def __init__(self, block: DecoderBlock, upsampled_channels: int):
        super().__init__()
        first, *rest = [fuse_conv_bn_eval(convs[0], convs[1]) for convs in block.convs]  # conv, BN, ReLU each
        self.upsampled_conv = self._conv_from(first, first.weight[:, :upsampled_channels], first.bias)
        skip_weight = first.weight[:, upsampled_channels:]
        self.skip_conv = self._conv_from(first, skip_weight, None) if skip_weight.shape[1] else None
        self.rest = nn.Sequential(*(module for conv in rest for module in (conv, nn.ReLU())))

    @staticmethod
    def _conv_from(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
        out_channels, in_channels = weight.shape[:2]
        part = nn.Conv2d(in_channels, out_channels, conv.kernel_size, padding=conv.padding, bias=bias is not None)
        part.weight.data.copy_(weight)
        if bias is not None:
            part.bias.data.copy_(bias)
        return part

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        # (B, C, h, w) + (B, S, 2h, 2w) -> (B, out, 2h, 2w); `size` is (2h, 2w) by construction
        y = self.upsampled_conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        if skip is not None and self.skip_conv is not None:
            y = y + self.skip_conv(skip)
        return self.rest(torch.relu(y))


class _BlockedLayoutEntry(nn.Module):
    """An identity 1x1 convolution in front of a decoder block: exact in fp32, and ~2 ms at 512x512.

    In an int8 graph the first decoder level left in fp32 receives an int8 convolution's output
    (ONNX Runtime runs those channels-last). Its blocked layout only starts at an fp32 convolution,
    so without this the level's upsampling ran as a plain Resize at full resolution and its 4x larger
    output was then copied into the blocked layout: 40 ms of a 140 ms int8 forward. Entering the
    layout here, at the level's input resolution, the upsampling runs blocked and nothing is copied.
    """

    def __init__(self, block: nn.Module, channels: int):
        super().__init__()
        self.block = block
        self.identity = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        self.identity.weight.data.copy_(torch.eye(channels)[:, :, None, None])

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        return self.block(self.identity(x), skip, size)


def _static_same_padding(conv: nn.Conv2d) -> nn.Module:
    """timm's `Conv2dSame` as a constant pad and a plain convolution: the same numbers, a static graph.

    TensorFlow's "same" padding depends on the input size, and the exporter's symbolic reasoning
    about that size did not finish in 10 minutes for MobileNetV2. Inside the generator every
    encoder convolution sees a multiple of its stride (the input is padded to the total stride),
    and then the padding is the constant max((k - 1) d + 1 - s, 0), split as timm splits it.
    """
    pads = []
    for kernel, stride, dilation in zip(conv.kernel_size, conv.stride, conv.dilation):
        total = max((kernel - 1) * dilation + 1 - stride, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    plain = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation, conv.groups,
        bias=conv.bias is not None,
    )
    plain.load_state_dict(conv.state_dict())
    if top == bottom and left == right:  # symmetric: the convolution pads by itself
        plain.padding = (top, left)
        return plain
    return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), plain)


def _replace_same_convolutions(module: nn.Module) -> None:
    from timm.layers import Conv2dSame

    for name, child in module.named_children():
        if isinstance(child, Conv2dSame):
            setattr(module, name, _static_same_padding(child))
        else:
            _replace_same_convolutions(child)


def export_form(generator: UNetGenerator, fp32_levels: int | None = None) -> UNetGenerator:
    """A float32, eval-mode copy of `generator` with `_ExportDecoderBlock`s and the encoder's TensorFlow
    "same" convolutions made static: what `export_onnx` exports.

    Its outputs equal the generator's in eval mode (to float rounding, ~1e-6).

    Args:
        generator: the trained generator (left untouched).
        fp32_levels: for the graph `quantize_onnx` makes int8 with this many finest decoder levels
            left in fp32: the first of them gets a `_BlockedLayoutEntry`. None for an fp32 graph.
    """
    model = copy.deepcopy(generator).float().cpu().to(memory_format=torch.contiguous_format).eval()
    if not isinstance(model, UNetGenerator):  # the reference Pix2PixUNet is exported as it is
        return model
    _replace_same_convolutions(model.encoder)
    upsampled_channels = model.encoder.feature_info.channels()[-1]
    first_fp32 = len(model.decoder) - fp32_levels if fp32_levels else None
    with torch.no_grad():
        for index, block in enumerate(model.decoder):
            model.decoder[index] = _ExportDecoderBlock(block, upsampled_channels)
            if index == first_fp32:
                model.decoder[index] = _BlockedLayoutEntry(model.decoder[index], upsampled_channels)
            upsampled_channels = block.convs[-1][0].out_channels
    return model.eval()


def _sum_conv_pairs(model) -> int:
    """Rewrite each Add of two Conv outputs as a Sum of two tensors of one shape; returns how many.

    ONNX Runtime fuses a blocked convolution with a following Sum (accumulating into its output
    buffer, then applying the ReLU after it) but not with an Add, and only when it can tell that
    both inputs have the same shape. In the decoder they do by construction (the padded input makes
    the upsampled branch exactly the skip's size), but the exporter names their sizes with two
    different expressions ("2*((h - 1)//32 + 1)" and "(h - 1)//16 + 1"); the upsampled branch is
    given the skip's. That saves two passes over a feature map per level, the largest at full size.
    """
    produced_by = {output: node.op_type for node in model.graph.node for output in node.output}
    shapes = {info.name: info.type.tensor_type.shape for info in model.graph.value_info}
    rewritten = 0
    for node in model.graph.node:
        if node.op_type == "Add" and len(node.input) == 2 and all(produced_by.get(i) == "Conv" for i in node.input):
            node.op_type = "Sum"
            rewritten += 1
            upsampled, skip = (shapes.get(name) for name in node.input)
            if upsampled is not None and skip is not None and _same_but_for_names(upsampled, skip):
                upsampled.CopyFrom(skip)
    return rewritten


def _same_but_for_names(first, second) -> bool:
    """Whether two ONNX shapes can be one: equal where both are numbers, else both symbolic (never 1 vs H)."""
    if len(first.dim) != len(second.dim):
        return False
    for a, b in zip(first.dim, second.dim):
        numbers = a.HasField("dim_value"), b.HasField("dim_value")
        if any(numbers) and (not all(numbers) or a.dim_value != b.dim_value):
            return False
    return True


class _PaddedGenerator(nn.Module):
    """The generator with its stride padding done in traceable ops, so the export keeps H and W dynamic.

    `UNetGenerator.forward` pads only when it must (a Python `if`); an export traces one branch.
    Padding here, with symbolic sizes, always hands it a multiple of the stride, so the branch it
    takes is the same for every input size.
    """

    def __init__(self, generator: UNetGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 4, H, W) -> (B, 2, H, W)
        height, width = x.shape[-2:]
        stride = self.generator.stride
        pad_w, pad_h = (stride - width % stride) % stride, (stride - height % stride) % stride
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return self.generator(padded)[..., :height, :width]


def export_onnx(
    generator: UNetGenerator, destination: str | os.PathLike, *, opset: int = ONNX_OPSET, fp32_levels: int | None = None
) -> Path:
    """Export a generator to ONNX with dynamic batch, height and width; written atomically.

    Args:
        generator: the generator (left untouched: its `export_form` copy is exported).
        destination: the `.onnx` file to write (one file: weights inline).
        opset: ONNX opset.
        fp32_levels: export the graph `quantize_onnx` is to make int8 with this many finest decoder
            levels left in fp32 (see `export_form`); None for the fp32 graph itself.

    Returns:
        The written path.
    """
    import warnings

    import onnx
    from torch.export import Dim

    destination = Path(destination)
    model = _PaddedGenerator(export_form(generator, fp32_levels)).eval()
    example = torch.zeros(2, GENERATOR_INPUT_CHANNELS, 80, 112)  # sizes other than 0, 1 and each other: none fixed
    dynamic = {"x": {0: Dim("batch"), 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals, not the user's business
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic,
            verbose=False,
        )
    graph = program.model_proto  # rewritten in memory, then written once (one file: weights inline)
    _sum_conv_pairs(graph)
    with atomic_path(destination) as temporary:
        onnx.save(graph, str(temporary))
    return destination


def _fine_decoder_convs(model_path: Path, levels: int) -> list[str]:
    """Names of the Conv nodes of the `levels` finest decoder blocks and of the head (from the exporter's scopes)."""
    import onnx

    def scopes(node) -> str:
        return next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")

    nodes = [node for node in onnx.load(str(model_path)).graph.node if node.op_type == "Conv"]
    blocks = {int(m) for node in nodes for m in re.findall(r"generator\.decoder\.(\d+)'", scopes(node))}
    fine = {f"generator.decoder.{index}" for index in sorted(blocks)[-levels:]} | {"generator.head"}
    return [node.name for node in nodes if any(f"'{scope}'" in scopes(node) for scope in fine)]


def quantize_onnx(
    fp32_path: str | os.PathLike,
    destination: str | os.PathLike,
    calibration_inputs: Iterable[torch.Tensor],
    fp32_levels: int = FP32_DECODER_LEVELS,
) -> Path:
    """Static int8 quantization (QDQ) of an exported generator's convolutions; written atomically.

    Weights are int8 per channel; activations uint8, their ranges the 99.999th percentiles seen on
    the calibration inputs. The decoder's `fp32_levels` finest blocks and the head stay fp32.

    Args:
        fp32_path: the fp32 export, made by `export_onnx(..., fp32_levels=fp32_levels)` (as `export_int8` does).
        destination: the int8 `.onnx` to write.
        calibration_inputs: (1, 4, h, w) generator inputs of real photos (see `Colorizer.model_input`);
            the top-left CALIBRATION_CROP square of each is used, smaller ones are skipped.
        fp32_levels: decoder levels, finest first, kept in fp32 (0 quantizes every conv).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, inputs: Iterable[torch.Tensor]):
            self.inputs = (x for x in inputs if min(x.shape[-2:]) >= CALIBRATION_CROP)
            self.used = 0

        def get_next(self) -> dict | None:
            tensor = next(self.inputs, None)
            if tensor is None:
                if not self.used:
                    raise ValueError(f"no calibration input is at least {CALIBRATION_CROP} px on each side")
                return None
            self.used += 1
            crop = tensor[..., :CALIBRATION_CROP, :CALIBRATION_CROP]
            return {INPUT_NAME: crop.float().cpu().contiguous().numpy()}

    destination = Path(destination)
    excluded = _fine_decoder_convs(Path(fp32_path), fp32_levels) if fp32_levels else []
    with atomic_path(destination) as temporary, tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(temporary),
            Reader(calibration_inputs),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
        )
    return destination


def export_int8(
    generator: UNetGenerator,
    destination: str | os.PathLike,
    calibration_inputs: Iterable[torch.Tensor],
    fp32_levels: int = FP32_DECODER_LEVELS,
) -> Path:
    """Export a generator as static int8 ONNX: `export_onnx` of the int8 form, then `quantize_onnx`.

    Args:
        generator: the generator (left untouched).
        destination: the int8 `.onnx` to write (atomically).
        calibration_inputs: generator inputs of real photos (see `calibration_inputs`).
        fp32_levels: decoder levels, finest first, kept in fp32.
    """
    with tempfile.TemporaryDirectory() as scratch:
        base = export_onnx(generator, Path(scratch) / "int8-base.onnx", fp32_levels=fp32_levels)
        return quantize_onnx(base, destination, calibration_inputs, fp32_levels=fp32_levels)


def calibration_inputs(
    colorizer, images: Iterable, render_size: int | None = None, hints: int = CALIBRATION_HINTS
) -> Iterator[torch.Tensor]:
    """The generator inputs of photos, as `colorizer` builds them, for `quantize_onnx`.

    Each photo gives two: without hints, and with `hints` points coloured from the photo itself
    (hint channels change the activations' ranges; calibrated without them, int8 weakened hints).

    Args:
        colorizer: a `colorgan.Colorizer` (its render size and input pipeline are used; this module
            sits below it, so it is not imported here).
        images: paths or bytes of colour photos.
        render_size: long side, by default the model's own.
        hints: hint points per photo for its second input.
    """
    random = torch.Generator().manual_seed(0)
    for image in images:
        photo = open_image(image)  # read and decode the file once for both inputs
        yield colorizer.model_input(photo, render_size=render_size)
        if hints:
            points = sample_hints(as_float_rgb(decode(photo).rgb), hints, random, radius=2)
            yield colorizer.model_input(photo, hints=points, render_size=render_size)
