"""Safetensors-only weight loading shared by every colorgan model class.

`huggingface_hub.PyTorchModelHubMixin` loads leniently (strict=False) and falls back
to unpickling `pytorch_model.bin`; colorgan does neither. A checkpoint whose keys or
shapes do not match the model built from its `config.json` is refused with one line.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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

WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE  # "model.safetensors"
PICKLE_WEIGHT_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, pickle-only or not matching its model."""


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


def load_weights_strictly(model: torch.nn.Module, weights_file: str, map_location: str | torch.device = "cpu") -> None:
    """Load a safetensors file into `model`, refusing any key or shape mismatch in one line."""
    try:
        state = load_file(weights_file, device=str(map_location))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights_file} is not a readable safetensors file ({error})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or reshaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if reshaped:
            key = reshaped[0]
            problems.append(
                f"{len(reshaped)} shape mismatches (e.g. {key}: checkpoint {tuple(state[key].shape)}"
                f" vs model {tuple(expected[key].shape)})"
            )
        raise CheckpointError(
            f"checkpoint {weights_file} does not match {type(model).__name__}: " + ", ".join(problems)
        )
    model.load_state_dict(state, strict=True)


class StrictHubMixin(PyTorchModelHubMixin):
    """`PyTorchModelHubMixin` that loads safetensors only, strictly, and never downloads backbones."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):
        folder = str(pretrained_model_name_or_path)
        if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, constants.CONFIG_NAME)):
            raise CheckpointError(f"{folder} has no {constants.CONFIG_NAME}: it is not a saved colorgan model")
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
        model = cls(**model_kwargs)
        load_weights_strictly(model, weights_file, map_location)
        model.eval()
        return model

