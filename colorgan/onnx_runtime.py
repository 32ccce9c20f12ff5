"""The ONNX Runtime backend: running an exported generator on the CPU, and finding its graph.

    Colorizer.from_pretrained(MODEL, device="cpu", backend="onnx")       # or backend="onnx-int8"

Where `backend="onnx"` finds its graph, in order:
  1. `model.onnx` in the model folder or Hub repo (as `colorgan push --onnx` uploads it);
  2. an export cached under `$HF_HOME/colorgan/onnx/<safetensors sha256>-opset<N>-form<M>/model.onnx`;
  3. a fresh export into that cache (`colorgan.onnx_export`; written atomically, never into the
     package or model folder).
Every graph, shipped, cached or fresh, is checked before ONNX Runtime loads it (`colorgan.onnx_check`:
operator allow-list, bounded initializers and inferred shapes) and is trusted only after a probe
forward agrees with the torch model loaded from the safetensors weights. A cache entry is keyed by
the weights' hash and checked against the hash of the graph it was written with (a `.sha256` file
beside it). A cached export that fails any check is exported again; a shipped `model.onnx` or
`model_int8.onnx` that fails is refused with a one-line `CheckpointError`.

`backend="onnx-int8"` needs `model_int8.onnx` in the folder or repo: quantizing needs
calibration photos, so it is made by `colorgan export-onnx --quantize` or `colorgan push --onnx
--quantize`, never on the fly.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .checkpoint import ONNX_INT8_NAME, ONNX_NAME, CheckpointError, resolve_weights_file
from .imaging import atomic_path
from .models import GENERATOR_INPUT_CHANNELS, UNetGenerator
from .onnx_check import check_graph, check_probe
from .onnx_export import EXPORT_FORM, ONNX_OPSET, export_onnx


def onnx_file_name(quantized: bool) -> str:
    return ONNX_INT8_NAME if quantized else ONNX_NAME


def onnx_cache_root() -> Path:
    """Where exports made on first use are kept: `$HF_HOME/colorgan/onnx`."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "colorgan" / "onnx"



class OnnxGenerator:
    """An exported generator run by ONNX Runtime on the CPU; called like `UNetGenerator`.

    Args:
        path: the `.onnx` file.
        threads: ONNX Runtime intra-op threads; by default torch's current thread count, so one
            setting (`torch.set_num_threads`, OMP_NUM_THREADS) governs both backends.

    Raises:
        CheckpointError: the file is missing, not ONNX, or not a colorgan generator (one line).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise CheckpointError("the ONNX backend needs onnxruntime: pip install 'colorgan[onnx]'") from None
        self.path = Path(path)
        check_graph(self.path)  # before ONNX Runtime parses or allocates anything for it
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: its warnings are about its own optimizer
        # Its worker threads otherwise keep spinning after each run, on the cores that the colour
        # maths (torch) needs next: on 2 cores that made the work after the forward ~1.5x slower.
        options.add_session_config_entry("session.force_spinning_stop", "1")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, NoSuchFile...)
            reason = " ".join(str(error).split())[:300]
            raise CheckpointError(f"{self.path} is not a loadable ONNX model ({reason})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shapes_fit = (
            len(inputs) == 1
            and len(outputs) == 1
            and len(inputs[0].shape) == 4
            and inputs[0].shape[1] == GENERATOR_INPUT_CHANNELS
            and len(outputs[0].shape) == 4
            and outputs[0].shape[1] == 2
        )
        if not shapes_fit:
            found = ", ".join(f"{item.name} {item.shape}" for item in [*inputs, *outputs])
            raise CheckpointError(
                f"{self.path} is not a colorgan generator: it should map (B, 4, H, W) to (B, 2, H, W), found {found}"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.quantized = self._is_quantized()

    def _is_quantized(self) -> bool:
        try:
            import onnx
        except ImportError:  # onnxruntime alone can run the graph; then trust the file's name
            return self.path.name == ONNX_INT8_NAME
        graph = onnx.load(str(self.path), load_external_data=False).graph
        return any(node.op_type == "QuantizeLinear" for node in graph.node)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 4, H, W) -> (B, 2, H, W) ab / 110, float32 on the cpu
        feed = {self.input_name: x.detach().to("cpu", torch.float32).contiguous().numpy()}
        return torch.from_numpy(self.session.run([self.output_name], feed)[0])


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shipped_onnx(source: str, name: str, download_kwargs: dict) -> str | None:
    """`name` from the model folder or Hub repo, or None when it has none (or the Hub cannot say, offline)."""
    if os.path.isdir(source):
        path = os.path.join(source, name)
        return path if os.path.isfile(path) else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return hf_hub_download(repo_id=source, filename=name, **download_kwargs)
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None


def load_onnx_generator(
    source: str, generator: UNetGenerator, *, quantized: bool = False, **download_kwargs
) -> OnnxGenerator:
    """The ONNX Runtime generator for a model folder or Hub repo (see the module doc for where it comes from).

    Args:
        source: the model folder or Hub repo id `generator` was loaded from.
        generator: the loaded torch generator, exported when no graph is shipped or cached.
        quantized: load `model_int8.onnx` instead.
        download_kwargs: revision, token, cache_dir, local_files_only, as for `hf_hub_download`.

    Raises:
        CheckpointError: one line, when no usable graph can be found or made.
    """
    name = onnx_file_name(quantized)
    shipped = _shipped_onnx(source, name, download_kwargs)
    if shipped is not None:
        return _trusted(OnnxGenerator(shipped), generator)
    if quantized:
        raise CheckpointError(
            f"{source} has no {name}; make one with `colorgan export-onnx MODEL {name} --quantize"
            " --calibration PHOTOS` or `colorgan push --onnx --quantize`"
        )
    weights = resolve_weights_file(source, **download_kwargs)
    cached = onnx_cache_root() / f"{_file_sha256(weights)[:16]}-opset{ONNX_OPSET}-form{EXPORT_FORM}" / name
    recorded = cached.with_name(cached.name + ".sha256")  # the hash of the graph as it was exported
    if cached.is_file():
        try:
            if not recorded.is_file() or recorded.read_text().strip() != _file_sha256(str(cached)):
                raise CheckpointError(f"{cached} is not the graph exported there")
            return _trusted(OnnxGenerator(cached), generator)
        except (CheckpointError, OSError):
            cached.unlink(missing_ok=True)  # damaged or replaced: export it again
    try:
        export_onnx(generator, cached)
        with atomic_path(recorded) as temporary:
            temporary.write_text(_file_sha256(str(cached)) + "\n")
    except OSError as error:
        raise CheckpointError(f"cannot write the ONNX export to {cached.parent} ({error})") from None
    return _trusted(OnnxGenerator(cached), generator)


def _trusted(onnx_generator: OnnxGenerator, generator: UNetGenerator) -> OnnxGenerator:
    """`onnx_generator` once its probe forward agrees with the torch generator's (`onnx_check.check_probe`)."""
    check_probe(onnx_generator.path, onnx_generator, generator, onnx_generator.quantized)
    return onnx_generator
