"""Convert TensorFlow's ImageNet-trained MobileNetV2 (a quantized TFLite file) into timm weights.

    python scripts/import_tflite_encoder.py third_party/mobilenet_v2/mobilenet_v2_1.0_224_quant.tflite \
        --calibration-photos YOUR_PHOTOS --output runs/encoders/mobilenetv2_100_imagenet.safetensors \
        --verify-photos OTHER_PHOTOS

The output is a safetensors state dict of timm's `mobilenetv2_100` encoder (`features_only`, RGB
input scaled to [-1, 1]), which `train_accelerate.py --encoder mobilenetv2_100 --encoder-pad-type same
--encoder-weights FILE` starts from (the generator adapts the first convolution to L + hints).

Steps:
1. Read the TFLite graph with the `tflite` package; take its CONV_2D / DEPTHWISE_CONV_2D ops in graph
   order and timm's convolutions in forward order, and check every pair: kind, shape, stride, padding
   and the fused activation (RELU6 against timm's ReLU6, NONE against a linear bottleneck).
2. Dequantize each weight as scale * (q - zero_point) (per tensor or per output channel) and each
   int32 bias with its own scale.
3. TFLite folds BatchNorm into the convolutions; timm keeps a BatchNorm after each. Set every BN so that
   in eval mode it adds exactly the folded bias, but with running statistics measured on calibration
   photos (gray, as colorgan's generator sees them): mean mu and variance var of the conv output,
   weight sqrt(var + eps), bias b + mu. Eval mode is unchanged; train-mode batch statistics then match
   the running ones instead of collapsing the features.
4. Verify against the TFLite interpreter (`ai-edge-litert`) on colour photos: top-1 agreement of the
   1000 ImageNet classes and the correlation of the logits (the classifier is converted for this check
   only; the saved encoder leaves it out).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

TIMM_NAME = "mobilenetv2_100"
INPUT_SIZE = 224  # the TFLite model's input side
CALIBRATION_SIDE = 256  # gray calibration photos: short side resized to this, then centre-cropped square
MIN_VARIANCE = 1e-4  # floor for a channel's calibration variance, so a dead channel is not amplified
TFLITE_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
TFLITE_ACTIVATIONS = {0: "none", 1: "relu", 3: "relu6"}  # tflite.ActivationFunctionType
TFLITE_PADDINGS = {0: "same", 1: "valid"}  # tflite.Padding


@dataclass
class TfliteConv:
    """One convolution of the TFLite graph, dequantized, in torch layout."""

    kind: str  # "conv" or "depthwise"
    weight: torch.Tensor  # (out, in, kh, kw) or (out, 1, kh, kw) for depthwise
    bias: torch.Tensor  # (out,)
    stride: tuple[int, int]
    padding: str  # "same" or "valid"
    activation: str  # "none", "relu" or "relu6"


def dequantize(tensor, buffer: np.ndarray, axis_size: int) -> np.ndarray:
    """scale * (q - zero_point), per tensor or per channel along the tensor's quantized dimension."""
    quant = tensor.Quantization()
    scale, zero_point = quant.ScaleAsNumpy().astype(np.float64), quant.ZeroPointAsNumpy().astype(np.float64)
    values = buffer.astype(np.float64)
    if scale.size > 1:  # per channel
        shape = [1] * values.ndim
        shape[quant.QuantizedDimension()] = axis_size
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return scale * (values - zero_point)


def read_tflite_convs(path: Path) -> list[TfliteConv]:
    """Every CONV_2D / DEPTHWISE_CONV_2D of the graph, in graph order, dequantized."""
    import tflite  # a build-time tool: only this script needs it

    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    op_names = {value: name for name, value in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
    dtypes = {tflite.TensorType.UINT8: np.uint8, tflite.TensorType.INT8: np.int8, tflite.TensorType.INT32: np.int32}

    def tensor_data(index: int) -> tuple[object, np.ndarray]:
        tensor = graph.Tensors(index)
        raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
        return tensor, np.frombuffer(raw.tobytes(), dtype=dtypes[tensor.Type()]).reshape(tensor.ShapeAsNumpy())

    convs = []
    for op_index in range(graph.OperatorsLength()):
        op = graph.Operators(op_index)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        if name not in TFLITE_CONV_OPS:
            continue
        depthwise = name == "DEPTHWISE_CONV_2D"
        options_class = tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions
        options = options_class()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        weight_tensor, weight_q = tensor_data(op.Inputs(1))
        bias_tensor, bias_q = tensor_data(op.Inputs(2))
        out_channels = weight_q.shape[3] if depthwise else weight_q.shape[0]
        weight = dequantize(weight_tensor, weight_q, weight_q.shape[weight_tensor.Quantization().QuantizedDimension()])
        bias = dequantize(bias_tensor, bias_q, out_channels)
        # TFLite: conv (out, kh, kw, in), depthwise (1, kh, kw, out) -> torch (out, in, kh, kw)
        weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
        convs.append(TfliteConv(
            kind="depthwise" if depthwise else "conv",
            weight=torch.from_numpy(np.ascontiguousarray(weight)).float(),
            bias=torch.from_numpy(bias).float(),
            stride=(options.StrideH(), options.StrideW()),
            padding=TFLITE_PADDINGS[options.Padding()],
            activation=TFLITE_ACTIVATIONS[options.FusedActivationFunction()],
        ))
    return convs


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
    """timm's convolutions in forward order, each with the BatchNorm that follows it."""
    pairs, pending = [], None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if pending is not None:
                raise ValueError(f"{pending[0]} has no BatchNorm after it")
            pending = (name, module)
        elif isinstance(module, nn.BatchNorm2d) and pending is not None:
            pairs.append((pending[0], pending[1], module))
            pending = None
    if pending is not None:
        raise ValueError(f"{pending[0]} has no BatchNorm after it")
    return pairs


def activation_of(bn: nn.BatchNorm2d) -> str:
    act = getattr(bn, "act", None)  # timm's BatchNormAct2d
    return {nn.ReLU6: "relu6", nn.ReLU: "relu", nn.Identity: "none", type(None): "none"}[type(act)]


def load_into_timm(convs: list[TfliteConv], model: nn.Module, pad_type: str) -> None:
    """Copy the dequantized convs into `model` (timm mobilenetv2_100 with its classifier), checking each pair.

    The last TFLite conv is the classifier (1280 -> 1001 logits, row 0 "background"), which becomes
    timm's Linear classifier (1000 classes); BNs are set to add the folded bias exactly.
    """
    pairs = conv_bn_pairs(model)
    if len(convs) != len(pairs) + 1:
        raise ValueError(f"TFLite graph has {len(convs)} convolutions, timm {TIMM_NAME} {len(pairs)} + classifier")
    for (name, conv, bn), source in zip(pairs, convs):
        depthwise = conv.groups > 1
        problems = []
        if tuple(conv.weight.shape) != tuple(source.weight.shape):
            problems.append(f"shape {tuple(conv.weight.shape)} vs {tuple(source.weight.shape)}")
        if depthwise != (source.kind == "depthwise"):
            problems.append(f"kind {source.kind}")
        if tuple(conv.stride) != source.stride:
            problems.append(f"stride {conv.stride} vs {source.stride}")
        if activation_of(bn) != source.activation:
            problems.append(f"activation {activation_of(bn)} vs {source.activation}")
        if source.padding != "same":
            problems.append(f"padding {source.padding}")
        if problems:
            raise ValueError(f"{name}: " + ", ".join(problems))
        with torch.no_grad():
            conv.weight.copy_(source.weight)
            bn.weight.fill_(1.0)
            bn.bias.copy_(source.bias)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(1 - eps + eps) = x: eval BN adds the bias only
    classifier = convs[-1]
    if tuple(classifier.weight.shape[:2]) != (model.classifier.out_features + 1, model.classifier.in_features):
        raise ValueError(f"classifier shape {tuple(classifier.weight.shape)} does not fit {model.classifier}")
    with torch.no_grad():
        model.classifier.weight.copy_(classifier.weight[1:, :, 0, 0])  # row 0 is "background"
        model.classifier.bias.copy_(classifier.bias[1:])
    del pad_type  # recorded by the caller; timm built the model with it


def gray_batch(paths: list[Path], side: int) -> torch.Tensor:
    """(N, 3, side, side): each photo's CIELAB L* scaled as colorgan's generator sees it (L/50 - 1), x3."""
    from colorgan.color import rgb_to_model_space

    images = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = side / min(image.size)
            image = image.resize((max(side, round(image.width * scale)), max(side, round(image.height * scale))),
                                 Image.Resampling.BICUBIC)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            images.append(torch.from_numpy(np.asarray(image.crop((left, top, left + side, top + side))).copy()))
    rgb = torch.stack(images).permute(0, 3, 1, 2).float() / 255  # (N, 3, side, side)
    l_norm, _ = rgb_to_model_space(rgb)  # (N, 1, side, side) in [-1, 1]
    return l_norm.expand(-1, 3, -1, -1)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, photos: torch.Tensor, batch_size: int = 16) -> None:
    """Set each BN's running statistics to those of its conv's output on `photos`, keeping eval outputs exact."""
    pairs = conv_bn_pairs(model)
    sums = {name: 0.0 for name, _, _ in pairs}
    squares = dict(sums)
    counts = dict.fromkeys(sums, 0)
    hooks = []
    for name, conv, _ in pairs:
        def record(_module, _inputs, output, name=name):
            flat = output.double().transpose(0, 1).reshape(output.shape[1], -1)  # (C, N*H*W)
            sums[name] = sums[name] + flat.sum(dim=1)
            squares[name] = squares[name] + (flat * flat).sum(dim=1)
            counts[name] += flat.shape[1]
        hooks.append(conv.register_forward_hook(record))
    model.eval()
    for start in range(0, len(photos), batch_size):
        model(photos[start:start + batch_size])
    for hook in hooks:
        hook.remove()
    for name, _, bn in pairs:
        mean = sums[name] / counts[name]
        variance = (squares[name] / counts[name] - mean * mean).clamp_min(MIN_VARIANCE)
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(variance.float())
        bn.weight.copy_(torch.sqrt(variance + bn.eps).float())  # undoes the normalization exactly
        bn.bias.add_(mean.float())  # b + mu: the folded bias, after the mean is taken away


def list_photos(folder: Path, limit: int) -> list[Path]:
    from colorgan.imaging import list_images

    photos = sorted(list_images(folder))[:limit]
    if not photos:
        sys.exit(f"error: no photos in {folder}")
    return photos


def verify(model: nn.Module, tflite_path: Path, photos: list[Path]) -> dict:
    """Top-1 agreement and logit correlation of `model` against the TFLite interpreter on colour photos."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    # the logits: the output of the last CONV_2D (before Reshape and Softmax)
    logits_index = max(
        (d for d in interpreter.get_tensor_details() if tuple(d["shape"]) == (1, 1, 1, 1001)), key=lambda d: d["index"]
    )
    agree, tflite_logits, torch_logits = 0, [], []
    model.eval()
    for path in photos:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR))
        interpreter.set_tensor(input_detail["index"], rgb[None].astype(input_detail["dtype"]))
        interpreter.invoke()
        q = interpreter.get_tensor(logits_index["index"]).reshape(-1).astype(np.float64)
        scale, zero_point = logits_index["quantization"]
        reference = (scale * (q - zero_point))[1:]  # drop "background"
        x = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None] / 128 - 1  # TF's (x - 128) / 128
        with torch.no_grad():
            ours = model(x)[0].double().numpy()
        agree += int(np.argmax(ours) == np.argmax(reference))
        tflite_logits.append(reference)
        torch_logits.append(ours)
    correlation = float(np.corrcoef(np.concatenate(tflite_logits), np.concatenate(torch_logits))[0, 1])
    return {"photos": len(photos), "top1_agreement": agree / len(photos), "logit_correlation": correlation}


def convert(tflite_path: Path, calibration_photos: list[Path], pad_type: str = "same") -> nn.Module:
    """timm `mobilenetv2_100` (with classifier) holding the TFLite weights and calibrated BatchNorms."""
    model = timm.create_model(TIMM_NAME, pretrained=False, pad_type=pad_type)
    load_into_timm(read_tflite_convs(tflite_path), model, pad_type)
    calibrate_batchnorm(model, gray_batch(calibration_photos, CALIBRATION_SIDE))
    return model


def encoder_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The keys of timm's `features_only` encoder (no head, no classifier), RGB first conv."""
    encoder_keys = timm.create_model(TIMM_NAME, features_only=True, pretrained=False).state_dict().keys()
    state = model.state_dict()
    return {key: state[key].contiguous() for key in encoder_keys}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tflite", type=Path, help="the uint8 MobileNetV2 TFLite file (mobilenet_v2_1.0_224_quant.tflite)")
    parser.add_argument("--output", type=Path, required=True, help="safetensors file to write (the encoder's weights)")
    parser.add_argument("--calibration-photos", type=Path, required=True,
                        help="folder of photos whose gray versions set the BatchNorm statistics")
    parser.add_argument("--calibration-count", type=int, default=64, help="how many calibration photos to use")
    parser.add_argument("--verify-photos", type=Path, help="folder of colour photos to compare against the interpreter")
    parser.add_argument("--verify-count", type=int, default=60, help="how many photos to verify on")
    parser.add_argument("--pad-type", choices=["same", ""], default="same",
                        help="timm padding: 'same' reproduces TF's asymmetric padding; '' is timm's symmetric default")
    args = parser.parse_args(argv)
    if not args.tflite.is_file():
        parser.error(f"{args.tflite}: no such file")
    if args.calibration_count < 1:
        parser.error("--calibration-count must be at least 1")
    return args


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = convert(args.tflite, list_photos(args.calibration_photos, args.calibration_count), args.pad_type)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"source": args.tflite.name, "timm_name": TIMM_NAME, "pad_type": args.pad_type,
                "input": "RGB (or L* x3) scaled to [-1, 1]",
                "input_mean": "0.5,0.5,0.5", "input_std": "0.5,0.5,0.5", "calibration_photos": str(args.calibration_count)}
    save_file(encoder_state_dict(model), str(args.output), metadata=metadata)
    print(f"wrote {args.output}")
    if args.verify_photos:
        report = verify(model, args.tflite, list_photos(args.verify_photos, args.verify_count))
        print(json.dumps(report))


if __name__ == "__main__":
    main(parse_args())
