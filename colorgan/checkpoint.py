"""Safetensors-only weight loading shared by every colorgan model class, safe for untrusted checkpoints.

`huggingface_hub.PyTorchModelHubMixin` builds the model from `config.json` first, then loads
leniently (strict=False), falling back to unpickling `pytorch_model.bin`; colorgan does none of
that. Whatever a folder or Hub repo holds, `StrictHubMixin.from_pretrained`:

1. fetches `config.json` and `model.safetensors` (pickle weights are refused unread);
2. checks every config value against the model class's table of limits (type and range);
3. reads the safetensors header only (names, dtypes, shapes), bounded by `MAX_HEADER_BYTES`,
   and checks that the tensor data it describes lies inside the file;
4. builds the model on the `meta` device (no memory), caps its parameter count, and compares
   its state dict with the header: keys, shapes and float-ness of dtypes;
5. only then builds the real model and loads the weights strictly.

Any refusal is a one-line `CheckpointError`, raised before anything large is allocated.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Container, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError
from safetensors.torch import load_file

from .limits import DEFAULT_MAX_PARAMETERS, MAX_CONFIG_BYTES, MAX_HEADER_BYTES, MAX_JSON_DEPTH, MAX_JSON_INTEGER_DIGITS

# The files of a model folder (laid out like a Hub repo; colorgan.hub describes each)
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE  # "model.safetensors"
CONFIG_NAME = constants.CONFIG_NAME  # "config.json"
DISCRIMINATOR_FOLDER = "discriminator"  # the PatchGAN, for fine-tuning
FACTS_NAME = "training_facts.json"  # what the model card says about the run (hub_card.CardFacts)
ONNX_NAME = "model.onnx"  # the generator for ONNX Runtime, fp32 (colorgan.onnx_runtime)
ONNX_INT8_NAME = "model_int8.onnx"  # ... and static int8
PICKLE_WEIGHT_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")
STARTER_MODEL = Path(__file__).parent / "pretrained" / "starter"  # shipped with the package

# bytes per element of the dtypes a colorgan checkpoint may hold; any other dtype (bool, fp8,
# complex...) is refused. Floats for parameters, integers for counters (BatchNorm's num_batches_tracked).
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
INTEGER_DTYPES = {"I8": 1, "U8": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4, "I64": 8, "U64": 8}
HEADER_LENGTH_BYTES = 8  # a safetensors file starts with its header's length, u64 little-endian
MAX_EXAMPLES = 3  # keys named per kind of mismatch in an error message


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, pickle-only, unsafe or not matching its model."""


def model_source(path_or_repo_id: str | os.PathLike | None) -> str:
    """Where to load a model from: a local folder or a Hub repo id, as a string.

    "user/repo" is a Hub id (even where os.sep is "/"); "/abs", "./rel", "a/b/c" and "a\\b" are
    folders, which must exist (a typo in a path must not become a Hub download). None is the
    starter model shipped with the package.

    Raises:
        CheckpointError: a folder that does not exist, or no starter model in this install.
    """
    if path_or_repo_id is None:
        if not STARTER_MODEL.is_dir():
            raise CheckpointError("no starter checkpoint is bundled with this install; pass a model folder or repo id")
        return str(STARTER_MODEL)
    source = str(path_or_repo_id)
    looks_local = os.path.isabs(source) or source.startswith(".") or source.count("/") > 1
    looks_local = looks_local or (os.sep != "/" and os.sep in source)
    if looks_local and not os.path.isdir(source):
        raise CheckpointError(f"{source}: no such model folder")
    return source


# ----------------------------------------------------------------------------- untrusted JSON
def parse_untrusted_json(raw: str | bytes) -> Any:
    """Parse JSON from an untrusted file (config.json, a safetensors header), within colorgan's limits.

    Python's parser recurses once per nesting level (a RecursionError traceback at ~1000) and
    converts any integer, up to its 4300-digit limit, quadratically; both are refused here with a reason.

    Raises:
        ValueError: not JSON, nested deeper than `MAX_JSON_DEPTH`, or an integer longer than
            `MAX_JSON_INTEGER_DIGITS` digits; one line, for the caller to name its file in.
    """

    def bounded_int(text: str) -> int:
        if len(text.lstrip("-")) > MAX_JSON_INTEGER_DIGITS:
            raise ValueError(f"an integer of {len(text.lstrip('-'))} digits, over {MAX_JSON_INTEGER_DIGITS}")
        return int(text)

    try:
        value = json.loads(raw, parse_int=bounded_int)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error.reason})") from None
    # iteratively, so checking a deep value cannot itself recurse
    level, containers = 0, [value]
    while containers:
        level += 1
        if level > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        containers = [
            item
            for container in containers
            if isinstance(container, (dict, list))
            for item in (container.values() if isinstance(container, dict) else container)
            if isinstance(item, (dict, list))
        ]
    return value


# ----------------------------------------------------------------------------- config limits
@dataclass(frozen=True)
class ConfigLimit:
    """What one `config.json` value may be.

    Args:
        kind: the JSON type: bool, int, float (an int is accepted too) or str; of each item for a list.
        low: smallest allowed number, inclusive.
        high: largest allowed number, inclusive.
        length: (shortest, longest) for a list value; None means the value is not a list.
        choices: for str values, a function returning the allowed names (called only when checking).
        why: the reason for the bounds, shown in the error message.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    length: tuple[int, int] | None = None
    choices: Callable[[], Container[str]] | None = None
    why: str = ""

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None when it is."""
        if self.length is None:
            return self._item_problem(value)
        if not isinstance(value, (list, tuple)):
            return "must be a list"
        shortest, longest = self.length
        if not shortest <= len(value) <= longest:
            return f"must have {shortest} to {longest} entries, has {len(value)}"
        for index, item in enumerate(value):
            problem = self._item_problem(item)
            if problem:
                return f"entry {index} {problem}"
        return None

    def _item_problem(self, value: Any) -> str | None:
        allowed = (int, float) if self.kind is float else self.kind
        if (isinstance(value, bool) and self.kind is not bool) or not isinstance(value, allowed):
            return f"must be {self.kind.__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be finite"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return f"must be in [{self.low}, {self.high}]"
        if self.choices is not None and value not in self.choices():
            return "is not an allowed name"
        return None


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_config(source: str, values: Mapping[str, Any], limits: Mapping[str, ConfigLimit]) -> None:
    """Refuse any config value outside its limit (names without one are left to the constructor).

    Raises:
        CheckpointError: a value of the wrong type or out of range, naming the first one.
    """
    for name, value in values.items():
        problem = limits[name].problem(value) if name in limits else None
        if problem:
            why = f" ({limits[name].why})" if limits[name].why else ""
            raise CheckpointError(f"{source}: {CONFIG_NAME} asks for {name}={_short_repr(value)}, which {problem}{why}")


# ----------------------------------------------------------------------------- the safetensors header
@dataclass(frozen=True)
class TensorInfo:
    """A tensor as a safetensors header describes it."""

    dtype: str
    shape: tuple[int, ...]


def read_safetensors_header(path: str, max_header_bytes: int = MAX_HEADER_BYTES) -> dict[str, TensorInfo]:
    """The tensors a safetensors file holds, read from its header only (never the tensor data).

    Args:
        path: the .safetensors file.
        max_header_bytes: refuse headers longer than this without reading them.

    Raises:
        CheckpointError: not a safetensors file, a header over the cap, a dtype colorgan does not
            load, or tensors whose bytes lie (partly) outside the file.
    """

    def refuse(reason: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a readable safetensors file ({reason})")

    try:
        file_size = os.path.getsize(path)
        with open(path, "rb") as handle:
            prefix = handle.read(HEADER_LENGTH_BYTES)
            if len(prefix) < HEADER_LENGTH_BYTES:
                raise refuse(f"{file_size} bytes, shorter than a header")
            header_size = int.from_bytes(prefix, "little")
            if header_size > file_size - HEADER_LENGTH_BYTES:
                raise refuse(f"its header claims {header_size} bytes but the file has {file_size}: truncated?")
            if header_size > max_header_bytes:
                raise refuse(f"its header of {header_size} bytes is over the {max_header_bytes}-byte cap")
            raw = handle.read(header_size)
    except OSError as error:
        raise refuse(f"{error.strerror or error}") from None
    try:
        header = parse_untrusted_json(raw)
    except ValueError as error:
        raise refuse(f"its header is not usable JSON: {' '.join(str(error).split())}") from None
    if not isinstance(header, dict):
        raise refuse("its header is not a JSON object")
    data_size = file_size - HEADER_LENGTH_BYTES - header_size
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensor, problem = _parse_tensor_entry(entry, data_size)
        if problem:
            raise refuse(f"tensor {_short_repr(name)} {problem}")
        tensors[name] = tensor
    return tensors


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_tensor_entry(entry: Any, data_size: int) -> tuple[TensorInfo | None, str | None]:
    """(the tensor, None), or (None, what is wrong with the header entry)."""
    if not isinstance(entry, dict):
        return None, "is not described by a JSON object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    itemsize = (FLOAT_DTYPES.get(dtype) or INTEGER_DTYPES.get(dtype)) if isinstance(dtype, str) else None
    if itemsize is None:
        return None, f"has dtype {_short_repr(dtype)}, not one colorgan loads ({', '.join(FLOAT_DTYPES)}; integers)"
    if not isinstance(shape, list) or not all(_is_count(side) for side in shape):
        return None, f"has an invalid shape {_short_repr(shape)}"
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(offset) for offset in offsets):
        return None, f"has invalid data_offsets {_short_repr(offsets)}"
    begin, end = offsets
    if end > data_size:
        return None, f"claims bytes up to {end} but the file holds only {data_size} bytes of tensor data"
    if end - begin != math.prod(shape) * itemsize:
        return None, f"has {max(end - begin, 0)} bytes for shape {tuple(shape)} of {dtype}"
    return TensorInfo(dtype, tuple(shape)), None


def _examples(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_EXAMPLES])
    return f"{shown}, ..." if len(keys) > MAX_EXAMPLES else shown


def check_weights_match(
    expected: Mapping[str, torch.Tensor], tensors: Mapping[str, TensorInfo], weights_file: str, model_name: str
) -> None:
    """Refuse a checkpoint whose tensors (from its header) differ from the model's state dict.

    Args:
        expected: the model's state dict; meta tensors are fine, only shapes and dtypes are read.
        tensors: the checkpoint's tensors, from `read_safetensors_header`.
        weights_file: named in the message.
        model_name: the model class, named in the message.

    Raises:
        CheckpointError: missing or unexpected keys, other shapes, or integer tensors where the
            model has floats (and the reverse), naming the first few of each.
    """
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    common = sorted(set(tensors) & set(expected))
    reshaped = [key for key in common if tensors[key].shape != tuple(expected[key].shape)]
    retyped = [key for key in common if (tensors[key].dtype in FLOAT_DTYPES) != expected[key].is_floating_point()]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {_examples(unexpected)})")
    if reshaped:
        shapes = [
            f"{key}: checkpoint {tensors[key].shape} vs model {tuple(expected[key].shape)}"
            for key in reshaped[:MAX_EXAMPLES]
        ]
        problems.append(f"{len(reshaped)} shape mismatches (e.g. {_examples(shapes + reshaped[MAX_EXAMPLES:])})")
    if retyped:
        dtypes = [f"{key}: checkpoint {tensors[key].dtype} vs model {expected[key].dtype}" for key in retyped]
        problems.append(f"{len(retyped)} dtype mismatches, integer vs float (e.g. {_examples(dtypes)})")
    if problems:
        raise CheckpointError(f"checkpoint {weights_file} does not match {model_name}: " + ", ".join(problems))


# ----------------------------------------------------------------------------- fetching the files
def _refuse_missing_weights(model_id: str, found_pickle: bool) -> CheckpointError:
    if found_pickle:
        return CheckpointError(
            f"{model_id} holds only pickle weights; colorgan loads model.safetensors only and never unpickles"
        )
    return CheckpointError(f"{model_id} has no {WEIGHTS_NAME}")


def resolve_weights_file(model_id: str, **download_kwargs: Any) -> str:
    """Path of `model.safetensors` in a local folder or a Hub repo (downloaded into the HF cache).

    Raises:
        CheckpointError: the folder or repo has no safetensors weights (pickle ones are refused).
    """
    if os.path.isdir(model_id):
        path = os.path.join(model_id, WEIGHTS_NAME)
        if not os.path.isfile(path):
            found_pickle = any(os.path.isfile(os.path.join(model_id, name)) for name in PICKLE_WEIGHT_NAMES)
            raise _refuse_missing_weights(model_id, found_pickle)
        return path
    try:
        return hf_hub_download(repo_id=model_id, filename=WEIGHTS_NAME, **download_kwargs)
    except LocalEntryNotFoundError:
        raise  # not cached while offline: says nothing about what the repo holds
    except EntryNotFoundError:
        raise _refuse_missing_weights(model_id, found_pickle=_repo_has_pickle(model_id, download_kwargs)) from None


def _repo_has_pickle(model_id: str, download_kwargs: dict[str, Any]) -> bool:
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files(
            model_id, revision=download_kwargs.get("revision"), token=download_kwargs.get("token")
        )
    except Exception:  # the listing only improves the message; the refusal stands either way
        return False
    return any(Path(name).name in PICKLE_WEIGHT_NAMES for name in files)


def check_config_file(model_id: str, **download_kwargs: Any) -> dict[str, Any]:
    """The `config.json` of a folder or Hub repo; refuses a missing, too large or non-object one.

    Downloads it from a Hub repo (into the HF cache, where `from_pretrained` then finds it).
    """
    if os.path.isdir(model_id):
        path = os.path.join(model_id, CONFIG_NAME)
        if not os.path.isfile(path):
            raise CheckpointError(f"{model_id} has no {CONFIG_NAME}: it is not a saved colorgan model")
    else:
        try:
            path = hf_hub_download(repo_id=model_id, filename=CONFIG_NAME, **download_kwargs)
        except LocalEntryNotFoundError:
            raise  # not cached while offline
        except EntryNotFoundError:
            raise CheckpointError(f"{model_id} has no {CONFIG_NAME}: it is not a saved colorgan model") from None
    size = os.path.getsize(path)
    if size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{model_id}: its {CONFIG_NAME} of {size} bytes is over the {MAX_CONFIG_BYTES}-byte cap")
    try:
        with open(path, "rb") as handle:
            config = parse_untrusted_json(handle.read())
    except ValueError as error:
        raise CheckpointError(f"{model_id}: {CONFIG_NAME} is not valid JSON ({' '.join(str(error).split())})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{model_id}: {CONFIG_NAME} is not a JSON object")
    return config


@contextmanager
def hub_errors_as_checkpoint_errors(source: str) -> Iterator[None]:
    """Turn the Hub client's download errors into one-line `CheckpointError`s naming `source`."""
    try:
        yield
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{source}: not in the local Hugging Face cache and the Hub cannot be reached (offline?)"
        ) from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{source}: no such model repo on the Hub (or it is private: pass a token)") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{source}: no such revision on the Hub") from None
    except HfHubHTTPError as error:
        reason = str(error).splitlines()[0]
        raise CheckpointError(f"{source}: could not be fetched from the Hub ({reason})") from None


# ----------------------------------------------------------------------------- loading
def _read_checked_weights(weights_file: str, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose header `check_weights_match` has accepted."""
    try:
        tensors = load_file(weights_file, device=str(map_location))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights_file} is not a readable safetensors file ({error})") from None
    for name, tensor in tensors.items():  # NaN weights would surface far later, as an IndexError in the colour maths
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{weights_file}: tensor {_short_repr(name)} holds NaN or infinite values")
    return tensors


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


class StrictHubMixin(PyTorchModelHubMixin):
    """`PyTorchModelHubMixin` that loads safetensors only, strictly, checked before anything is allocated.

    Subclasses list, in `config_limits`, what each constructor argument may be in a `config.json`.
    """

    config_limits: ClassVar[Mapping[str, ConfigLimit]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        parameters = cls._hub_mixin_init_parameters.values()
        unlimited = [p.name for p in parameters if p.name != "self" and p.name not in cls.config_limits]
        if unlimited:  # every value a config.json can set is checked before loading
            raise TypeError(f"{cls.__name__}.config_limits has no entry for {', '.join(unlimited)}")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):
        """Load from a folder or Hub repo holding `config.json` + `model.safetensors`, refusing unsafe ones.

        Takes `huggingface_hub`'s arguments (revision, token, cache_dir, force_download,
        local_files_only, map_location), plus `max_parameters` (default `DEFAULT_MAX_PARAMETERS`):
        refuse models with more parameters than this.

        Raises:
            CheckpointError: with a one-line reason, before the model is built, for anything that
                cannot be a model of this class.
        """
        download_kwargs = {
            key: kwargs[key] for key in ("revision", "cache_dir", "force_download", "token", "local_files_only")
            if key in kwargs
        }
        check_config_file(str(pretrained_model_name_or_path), **download_kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        max_parameters: int = DEFAULT_MAX_PARAMETERS,
        **model_kwargs: Any,
    ):
        if not strict:
            raise ValueError("colorgan models load strictly; strict=False is not supported")
        if "pretrained_encoder" in cls._hub_mixin_init_parameters:
            model_kwargs["pretrained_encoder"] = False  # the checkpoint holds the weights
        weights_file = resolve_weights_file(
            model_id,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
        check_config(model_id, model_kwargs, cls.config_limits)
        tensors = read_safetensors_header(weights_file)
        skeleton = cls._build_on_meta(model_id, model_kwargs)
        num_parameters = count_parameters(skeleton)
        if num_parameters > max_parameters:
            raise CheckpointError(
                f"{model_id}: its {CONFIG_NAME} describes a {cls.__name__} of {num_parameters:,} parameters,"
                f" over the cap of {max_parameters:,}; pass max_parameters={num_parameters} to load it anyway"
            )
        check_weights_match(skeleton.state_dict(), tensors, weights_file, cls.__name__)
        del skeleton
        model = cls(**model_kwargs)  # checked: now allocate for real
        model.load_state_dict(_read_checked_weights(weights_file, map_location), strict=True)
        model.eval()
        return model

    @classmethod
    def _build_on_meta(cls, model_id: str, model_kwargs: dict[str, Any]) -> torch.nn.Module:
        """The model `config.json` describes, with shapes but no memory (on the meta device)."""
        try:
            with torch.device("meta"):
                return cls(**model_kwargs)
        except Exception as error:  # whatever the config makes timm or the model raise is the config's fault
            reason = " ".join(str(error).split()) or type(error).__name__
            raise CheckpointError(f"{model_id}: {CONFIG_NAME} does not describe a {cls.__name__} ({reason})") from None
