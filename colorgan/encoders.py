"""Start a generator's encoder from ImageNet-trained RGB weights: a local file or timm's own.

An RGB classifier's first convolution sees three normalised colour channels; colorgan's encoder
sees L* (scaled to [-1, 1]) and three hint channels. For a gray photo every colour channel holds
the same value, so the RGB filter's response is that of one filter, the sum of its three: the L
channel gets the summed weights (rescaled for the encoder's input normalisation) and the hint
channels start at zero, so at step 0 the encoder computes exactly what the classifier computed on
the gray photo. timm's own `in_chans=4` adaptation instead repeats R, G, B, R and scales by 3/4,
which feeds the hint mask into the "red" filter.

Where the weights come from:
- `--encoder-weights FILE.safetensors`: a state dict of timm's `features_only` encoder with an
  RGB first convolution, e.g. the one `scripts/import_tflite_encoder.py` writes. Its metadata may
  give `input_mean` / `input_std` (comma-separated, for RGB in [0, 1]); without them the file is
  taken to expect RGB scaled to [-1, 1] (mean = std = 0.5), as the TFLite import does.
- `--encoder-pretrained`: timm's ImageNet weights (`pretrained=True`, from the Hugging Face Hub or
  timm's cache), with the mean and std from the model's `pretrained_cfg`.

The generator (models.py) holds no I/O: this module reads the file or asks timm, then loads the
adapted state dict into `generator.encoder` strictly.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError

RGB_CHANNELS = 3
MINUS_ONE_TO_ONE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # (mean, std) of RGB in [0, 1] -> [-1, 1]


@dataclass
class RgbEncoderWeights:
    """An ImageNet-trained encoder's RGB state dict and how its inputs were prepared."""

    state: dict[str, torch.Tensor]
    mean: Sequence[float]  # of RGB in [0, 1]
    std: Sequence[float]
    pad_type: str | None = None  # timm pad_type it was trained with, when known ("same" for TensorFlow's)


def read_encoder_file(path: str | Path) -> RgbEncoderWeights:
    """The RGB state dict in a safetensors file, the (mean, std) its inputs were normalised with
    (`input_mean` / `input_std` metadata, else [-1, 1] scaling) and its `pad_type` metadata.

    Raises:
        CheckpointError: no such file, not a safetensors file, or malformed normalisation metadata.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such encoder weights file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a safetensors file ({str(error).splitlines()[0]})") from None
    try:
        mean = _three_floats(metadata.get("input_mean"), MINUS_ONE_TO_ONE[0])
        std = _three_floats(metadata.get("input_std"), MINUS_ONE_TO_ONE[1])
        if min(std) <= 0:
            raise ValueError(f"input_std {metadata.get('input_std')!r} must be positive")
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    pad_type = metadata.get("pad_type")
    return RgbEncoderWeights(state, mean, std, pad_type if pad_type in ("", "same") else None)


def _three_floats(text: str | None, default: Sequence[float]) -> Sequence[float]:
    if text is None:
        return default
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != RGB_CHANNELS or not all(math.isfinite(v) for v in values):
        raise ValueError(f"input normalisation {text!r} is not three finite numbers")
    return values


def timm_pretrained_encoder(encoder_name: str, **timm_kwargs) -> RgbEncoderWeights:
    """timm's ImageNet weights for `encoder_name` (`features_only`, RGB) and their input mean and std.

    This is the users' normal path: the `model.safetensors` of the encoder's Hub repo
    (`pretrained_cfg["hf_hub_id"]`, e.g. `timm/mobilenetv2_100.ra_in1k`), from the Hub or from
    huggingface_hub's cache (`HF_HUB_OFFLINE=1` works with a filled cache). Only the safetensors
    file is fetched, never timm's pickle fallback; timm then maps it onto the feature extractor.

    Raises:
        CheckpointError: timm has no Hub weights for the encoder, or they cannot be fetched.
    """
    import timm
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    config = timm.create_model(encoder_name, pretrained=False).pretrained_cfg
    repo_id = config.get("hf_hub_id")
    if not repo_id:
        raise CheckpointError(f"timm has no Hugging Face Hub weights for {encoder_name}")
    repo_id, _, revision = repo_id.partition("@")
    try:
        path = hf_hub_download(repo_id, "model.safetensors", revision=revision or None)
    except Exception as error:  # network, offline-and-not-cached, missing repo: one line either way
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"ImageNet weights for {encoder_name} ({repo_id}): {reason}") from None
    model = timm.create_model(
        encoder_name, features_only=True, pretrained=True, pretrained_cfg_overlay={"state_dict": load_file(path)},
        **timm_kwargs,
    )
    return RgbEncoderWeights(model.state_dict(), tuple(config["mean"]), tuple(config["std"]), timm_kwargs.get("pad_type"))


def load_rgb_encoder_weights(encoder: nn.Module, weights: RgbEncoderWeights) -> None:
    """Load an RGB encoder's weights into `encoder`, whose first convolution takes L + hints.

    Every tensor must match the encoder's own in name and shape except the first convolution's
    weight, (C, 3, k, k) against the encoder's (C, 1 + hints, k, k).

    Args:
        encoder: the generator's timm `features_only` encoder (input: L/50 - 1, hint a, b, mask).
        weights: the RGB encoder's state dict and input normalisation.

    Raises:
        CheckpointError: the state dict belongs to another architecture.
    """
    rgb_state, own = weights.state, encoder.state_dict()
    missing, unexpected = sorted(own.keys() - rgb_state.keys()), sorted(rgb_state.keys() - own.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"encoder weights do not fit {type(encoder).__name__}: "
            f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    # the first convolution: the first 4-D weight, taking L + hints here and RGB there
    stem = next(key for key, tensor in own.items() if tensor.ndim == 4)
    if rgb_state[stem].shape[1] != RGB_CHANNELS:
        raise CheckpointError(f"encoder weights: {stem} takes {rgb_state[stem].shape[1]} channels, not RGB's 3")
    for key, tensor in own.items():
        expected = (tensor.shape[0], RGB_CHANNELS, *tensor.shape[2:]) if key == stem else tensor.shape
        if rgb_state[key].shape != expected:
            raise CheckpointError(f"encoder weights: {key} has shape {tuple(rgb_state[key].shape)}, "
                                  f"the encoder needs {tuple(expected)}")
    state = dict(rgb_state)
    state[stem], offset = lightness_stem(rgb_state[stem], own[stem].shape[1], weights.mean, weights.std)
    _fold_offset(encoder, stem.removesuffix(".weight"), state, offset)
    encoder.load_state_dict(state, strict=True)


def lightness_stem(
    rgb_weight: torch.Tensor, in_channels: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first convolution for (L, hints) inputs from an RGB one, and the constant it must add.

    A gray photo has R = G = B = g in [0, 1], and the generator sees L = 2g - 1 (L*/50 - 1; L* is
    not linear in luminance, but it is what the model sees). The RGB filter computes
    sum_c w_c (g - mean_c) / std_c = sum_c w_c / (2 std_c) * L + sum_c w_c (1/2 - mean_c) / std_c,
    so L gets the first sum and the second is a per-channel constant, zero for [-1, 1] inputs.

    Args:
        rgb_weight: (C, 3, k, k).
        in_channels: the encoder's input channels (L first, then the hint channels, which get 0).

    Returns:
        weight (C, in_channels, k, k) and offset (C,).
    """
    mean_t = torch.tensor(mean, dtype=rgb_weight.dtype).view(1, RGB_CHANNELS, 1, 1)
    std_t = torch.tensor(std, dtype=rgb_weight.dtype).view(1, RGB_CHANNELS, 1, 1)
    weight = torch.zeros(rgb_weight.shape[0], in_channels, *rgb_weight.shape[2:], dtype=rgb_weight.dtype)
    weight[:, :1] = (rgb_weight / (2 * std_t)).sum(dim=1, keepdim=True)  # (C, 3, k, k) -> (C, 1, k, k)
    offset = (rgb_weight * (0.5 - mean_t) / std_t).sum(dim=(1, 2, 3))  # (C,)
    return weight, offset


def _fold_offset(encoder: nn.Module, stem_name: str, state: dict, offset: torch.Tensor) -> None:
    """Add the stem's constant to its bias, or take it off the running mean of the BatchNorm after it."""
    if not offset.abs().max() > 0:
        return
    if f"{stem_name}.bias" in state:
        state[f"{stem_name}.bias"] = state[f"{stem_name}.bias"] + offset
        return
    norm_name = _norm_after(encoder, stem_name)
    if norm_name is None:  # no place to put it; train-mode batch statistics remove a constant anyway
        return
    # BN computes (x - running_mean) / ...; x gained -offset relative to the RGB model, so the mean does too
    state[f"{norm_name}.running_mean"] = state[f"{norm_name}.running_mean"] - offset


def _norm_after(encoder: nn.Module, stem_name: str) -> str | None:
    """Name of the BatchNorm that runs right after the module `stem_name`, found from one tiny forward."""
    order: list[str] = []
    hooks = [module.register_forward_pre_hook(lambda _m, _i, name=name: order.append(name))
             for name, module in encoder.named_modules()
             if isinstance(module, nn.modules.batchnorm._BatchNorm) or not list(module.children())]
    stem = encoder.get_submodule(stem_name)
    try:
        training = encoder.training
        with torch.no_grad():
            encoder.eval()(torch.zeros(1, stem.in_channels, 64, 64))
        encoder.train(training)
    finally:
        for hook in hooks:
            hook.remove()
    following = order[order.index(stem_name) + 1:] if stem_name in order else []
    if following and isinstance(encoder.get_submodule(following[0]), nn.modules.batchnorm._BatchNorm):
        return following[0]
    return None
