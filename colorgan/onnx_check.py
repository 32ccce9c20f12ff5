"""What an ONNX graph must pass before colorgan lets ONNX Runtime load or trust it.

A `.onnx` file is a program: a shipped `model.onnx`, a `model_int8.onnx` the app picks by itself, or
a cached export someone overwrote can be the wrong model (gray output) or a bomb (a 300-byte
`ConstantOfShape` graph that allocates 2.8 GB per forward). `check_graph` reads the graph without
running it:

- weights inline, the file within `MAX_ONNX_BYTES`;
- only standard-domain operators from `ALLOWED_OPS` (what colorgan's exports and timm encoders
  need; nothing that makes a tensor of a size read from data, no subgraphs);
- every initializer within `MAX_ONNX_TENSOR_ELEMENTS`, all of them within the parameter cap;
- every tensor's shape inferred at the probe input (1, 4, 64, 64) and, together, within
  `MAX_ONNX_TENSOR_ELEMENTS`: the shape arithmetic (Shape, Mod, Pad sizes...) is evaluated first, and
  a graph whose shapes cannot be inferred is refused.

`check_probe` then runs one forward at that size and compares it with the torch model's.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError
from .limits import (
    DEFAULT_MAX_PARAMETERS,
    MAX_ONNX_BYTES,
    MAX_ONNX_TENSOR_ELEMENTS,
    ONNX_INT8_PROBE_TOLERANCE,
    ONNX_PROBE_SIZE,
    ONNX_PROBE_TOLERANCE,
)
from .models import GENERATOR_INPUT_CHANNELS

ALLOWED_OPS = frozenset(
    """Abs Add AveragePool BatchNormalization Cast Ceil Clip Concat Constant Conv ConvTranspose
    DequantizeLinear Div Equal Erf Exp Flatten Floor Gather Gelu Gemm GlobalAveragePool GlobalMaxPool Greater
    GroupNormalization HardSigmoid HardSwish Identity InstanceNormalization LayerNormalization LeakyRelu
    MatMul Max MaxPool Mean Min Mod Mul Neg Pad Pow QuantizeLinear Reciprocal ReduceMax ReduceMean
    ReduceSum Relu Reshape Resize Shape Sigmoid Slice Softmax Split Sqrt Squeeze Sub Sum Tanh Transpose
    Unsqueeze Where""".split()
)
STANDARD_DOMAINS = ("", "ai.onnx")
SHAPE_VALUE_ELEMENTS = 64  # integer tensors up to this size are shape arithmetic, evaluated while checking
PROBE_SHAPE = (1, GENERATOR_INPUT_CHANNELS, ONNX_PROBE_SIZE, ONNX_PROBE_SIZE)


def _refuse(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a loadable ONNX model ({reason})")


def check_graph(path: str | os.PathLike, max_parameters: int = DEFAULT_MAX_PARAMETERS) -> None:
    """Refuse a graph that could be unsafe to load or run, without running it (see the module doc).

    Args:
        path: the `.onnx` file.
        max_parameters: the most weights all initializers together may hold.

    Raises:
        CheckpointError: one line naming the file and the first problem.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    size = path.stat().st_size
    if size > MAX_ONNX_BYTES:
        raise _refuse(path, f"{size} bytes, over the {MAX_ONNX_BYTES}-byte cap")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RecursionError, OSError) as error:
        raise _refuse(path, f"not an ONNX protobuf: {' '.join(str(error).split())[:200]}") from None
    graph = model.graph
    for node in graph.node:
        if node.domain not in STANDARD_DOMAINS or node.op_type not in ALLOWED_OPS:
            raise _refuse(path, f"operator {node.domain or 'ai.onnx'}.{node.op_type} is not allowed")
        if any(attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attribute in node.attribute):
            raise _refuse(path, f"node {node.name!r} holds a subgraph")
    tensors = list(graph.initializer) + [
        attribute.t for node in graph.node if node.op_type == "Constant" for attribute in node.attribute if attribute.t.dims
    ]
    total = 0
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise _refuse(path, f"initializer {tensor.name!r} is stored outside the file")
        elements = math.prod(tensor.dims)
        if elements > MAX_ONNX_TENSOR_ELEMENTS:
            raise _refuse(path, f"initializer {tensor.name!r} has {elements:,} elements")
        total += elements
    if total > max_parameters:
        raise _refuse(path, f"{total:,} weights, over the cap of {max_parameters:,}")
    _check_inferred_shapes(path, model)


def _check_inferred_shapes(path: Path, model) -> None:
    """Infer every tensor's shape at PROBE_SHAPE; refuse unknown ones and a total over the cap."""
    import onnx
    from onnx import shape_inference

    graph = model.graph
    if not graph.node:
        raise _refuse(path, "an empty graph")
    if len(graph.input) != 1 or len(graph.input[0].type.tensor_type.shape.dim) != len(PROBE_SHAPE):
        raise CheckpointError(f"{path} is not a colorgan generator: it should map (B, 4, H, W) to (B, 2, H, W)")
    for dim, value in zip(graph.input[0].type.tensor_type.shape.dim, PROBE_SHAPE):
        dim.Clear()
        dim.dim_value = value
    graph.ClearField("value_info")  # inferred afresh: the file's own claims are not evidence
    for name, value in _shape_values(graph).items():
        graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    kept = [node for node in graph.node if not all(output in _names(graph.initializer) for output in node.output)]
    del graph.node[:]
    graph.node.extend(kept)
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True).graph
    except (onnx.shape_inference.InferenceError, ValueError, RecursionError) as error:
        raise _refuse(path, f"its shapes cannot be inferred: {' '.join(str(error).split())[:200]}") from None
    total = 0
    for value in [*inferred.value_info, *inferred.output]:
        shape = value.type.tensor_type.shape
        if not value.type.tensor_type.HasField("shape") or not all(dim.HasField("dim_value") for dim in shape.dim):
            raise _refuse(path, f"the size of tensor {value.name!r} cannot be bounded before running it")
        total += math.prod(dim.dim_value for dim in shape.dim)
    if total > MAX_ONNX_TENSOR_ELEMENTS:
        raise _refuse(path, f"its tensors at {PROBE_SHAPE} hold {total:,} elements, over {MAX_ONNX_TENSOR_ELEMENTS:,}")


def _names(tensors) -> set[str]:
    return {tensor.name for tensor in tensors}


def _shape_values(graph) -> dict[str, np.ndarray]:
    """The values of the graph's shape arithmetic (small integer tensors) at PROBE_SHAPE, evaluated.

    Starts from the input's Shape and small integer initializers; evaluates, in graph order, each
    node whose inputs are all known and whose outputs are again small integer tensors.
    """
    import onnx
    from onnx.reference import ReferenceEvaluator

    def small_integers(value: np.ndarray) -> bool:
        return value.size <= SHAPE_VALUE_ELEMENTS and value.dtype.kind in "iu"

    known = {}
    for tensor in graph.initializer:
        if math.prod(tensor.dims) <= SHAPE_VALUE_ELEMENTS:
            value = onnx.numpy_helper.to_array(tensor)
            if small_integers(value):
                known[tensor.name] = value
    input_name, folded = graph.input[0].name, {}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "Shape" and node.input[0] == input_name:
            values = [np.zeros(PROBE_SHAPE, np.float32)]
        elif inputs and all(name in known for name in inputs) or node.op_type == "Constant":
            values = [known[name] for name in inputs]
        else:
            continue
        try:
            single = onnx.helper.make_graph(
                [node], "fold", [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in inputs],
                [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output],
            )
            outputs = ReferenceEvaluator(onnx.helper.make_model(single)).run(None, dict(zip(inputs, values)))
        except Exception:  # not shape arithmetic the reference runtime can do: left to inference
            continue
        for name, value in zip(node.output, outputs):
            value = np.asarray(value)
            if small_integers(value):
                known[name] = folded[name] = value
    return folded


def probe_input() -> torch.Tensor:
    """The fixed (1, 4, 64, 64) input both backends are compared on: smooth L, a few hint patches."""
    generator = torch.Generator().manual_seed(0)
    lightness = torch.nn.functional.interpolate(torch.rand(1, 1, 8, 8, generator=generator), size=PROBE_SHAPE[-2:], mode="bilinear")
    hint_ab = torch.zeros(1, 2, *PROBE_SHAPE[-2:])
    mask = torch.zeros(1, 1, *PROBE_SHAPE[-2:])
    for row, col in ((10, 12), (40, 50), (50, 8)):
        hint_ab[0, :, row - 1 : row + 2, col - 1 : col + 2] = torch.rand(2, 1, 1, generator=generator) - 0.5
        mask[0, :, row - 1 : row + 2, col - 1 : col + 2] = 1.0
    return torch.cat([lightness * 2 - 1, hint_ab, mask], dim=1)


def check_probe(path: str | os.PathLike, run_onnx, generator: torch.nn.Module, quantized: bool) -> None:
    """Refuse a graph whose forward on `probe_input` differs from the torch generator's.

    Args:
        path: the graph's file, named in the message.
        run_onnx: runs the graph: (B, 4, H, W) -> (B, 2, H, W).
        generator: the torch generator loaded from the checked safetensors weights.
        quantized: an int8 graph, compared on its mean difference with a looser tolerance.

    Raises:
        CheckpointError: another model's graph, or one that gives NaN; one line.
    """
    probe = probe_input()
    with torch.inference_mode():
        expected = generator.float().cpu()(probe).float()
    actual = torch.as_tensor(run_onnx(probe)).float()
    if actual.shape != expected.shape:
        raise CheckpointError(f"{path} is not this model's graph: output {tuple(actual.shape)}, not {tuple(expected.shape)}")
    difference = (actual - expected).abs()
    measured = difference.mean() if quantized else difference.max()
    tolerance = ONNX_INT8_PROBE_TOLERANCE if quantized else ONNX_PROBE_TOLERANCE
    if not bool(torch.isfinite(measured)) or measured > tolerance:
        kind = "mean" if quantized else "largest"
        raise CheckpointError(
            f"{path} does not match the model's weights: {kind} difference {float(measured):.3g} from the torch"
            f" model on the probe input, over {tolerance}"
        )
