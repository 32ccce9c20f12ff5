"""Encoders from ImageNet weights: the first convolution adapted to L + hints, local files, timm's Hub path."""
from __future__ import annotations

import timm
import torch
from safetensors.torch import save_file

import pytest

from colorgan import CheckpointError, UNetGenerator
from colorgan.encoders import (
    MINUS_ONE_TO_ONE,
    RgbEncoderWeights,
    load_rgb_encoder_weights,
    read_encoder_file,
    timm_pretrained_encoder,
)

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SMALL = dict(decoder_channels=[16, 8, 8, 8, 8])


def rgb_encoder(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(3)
    encoder = timm.create_model(name, features_only=True, **kwargs).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a wrong fold would show
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return encoder


def gray_as_rgb(l_norm: torch.Tensor, mean, std) -> torch.Tensor:
    """What the RGB encoder sees for a gray photo: R = G = B = (L + 1) / 2, normalised."""
    gray = ((l_norm + 1) / 2).repeat(1, 3, 1, 1)
    return (gray - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize("name,pad_type", [("mobilenetv2_050", "same"), ("mobilenetv2_050", ""), ("resnet18", "")])
@pytest.mark.parametrize("normalisation", [MINUS_ONE_TO_ONE, IMAGENET], ids=["minus1-1", "imagenet"])
def test_adapted_encoder_sees_a_gray_photo_as_the_rgb_one_did(name, pad_type, normalisation):
    padding = {"pad_type": pad_type} if pad_type else {}
    rgb = rgb_encoder(name, **padding)
    generator = UNetGenerator(name, encoder_pad_type=pad_type, **({} if name != "resnet18" else SMALL)).eval()
    load_rgb_encoder_weights(generator.encoder, RgbEncoderWeights(rgb.state_dict(), *normalisation))
    l_norm = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ours = generator.encoder(torch.cat([l_norm, torch.zeros(2, 3, 96, 96)], dim=1))
        theirs = rgb(gray_as_rgb(l_norm, *normalisation))
    # the first feature map, away from the border (zero padding differs there when the inputs are normalised)
    first_ours, first_theirs = ours[0][..., 2:-2, 2:-2], theirs[0][..., 2:-2, 2:-2]
    assert torch.allclose(first_ours, first_theirs, atol=1e-4 * first_theirs.abs().max().item())
    if normalisation == MINUS_ONE_TO_ONE:  # no constant to fold: equal everywhere, at every depth
        for mine, reference in zip(ours, theirs):
            assert torch.allclose(mine, reference, atol=1e-4 * reference.abs().max().item())


def test_hint_channels_start_at_zero_and_lightness_gets_the_summed_filter():
    rgb = rgb_encoder("mobilenetv2_050")
    generator = UNetGenerator("mobilenetv2_050")
    load_rgb_encoder_weights(generator.encoder, RgbEncoderWeights(rgb.state_dict(), *MINUS_ONE_TO_ONE))
    stem, rgb_stem = generator.encoder.conv_stem.weight, rgb.conv_stem.weight
    assert stem.shape[1] == 4
    assert stem[:, 1:].abs().max() == 0
    assert torch.allclose(stem[:, 0], rgb_stem.sum(dim=1))


def test_weights_of_another_architecture_are_refused_in_one_line():
    generator = UNetGenerator("mobilenetv2_050")
    other = rgb_encoder("mobilenetv2_100").state_dict()
    with pytest.raises(CheckpointError, match="encoder weights: .* has shape") as error:
        load_rgb_encoder_weights(generator.encoder, RgbEncoderWeights(other, *MINUS_ONE_TO_ONE))
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_rgb_encoder_weights(generator.encoder, RgbEncoderWeights(rgb_encoder("resnet18").state_dict(), *IMAGENET))


def test_encoder_file_metadata_gives_normalisation_and_padding(tmp_path):
    state = rgb_encoder("mobilenetv2_050").state_dict()
    path = tmp_path / "encoder.safetensors"
    save_file(state, str(path), metadata={"pad_type": "same", "input_mean": "0.4,0.5,0.6", "input_std": "0.2,0.2,0.2"})
    weights = read_encoder_file(path)
    assert weights.pad_type == "same" and list(weights.mean) == [0.4, 0.5, 0.6] and list(weights.std) == [0.2] * 3
    save_file(state, str(path))  # no metadata: [-1, 1] inputs, padding unknown
    weights = read_encoder_file(path)
    assert (weights.mean, weights.std, weights.pad_type) == (*MINUS_ONE_TO_ONE, None)


@pytest.mark.parametrize("metadata", [{"input_std": "0,1,1"}, {"input_mean": "nan,0,0"}, {"input_mean": "1,2"}])
def test_bad_normalisation_metadata_is_refused(tmp_path, metadata):
    path = tmp_path / "encoder.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="encoder.safetensors"):
        read_encoder_file(path)


@pytest.mark.parametrize("content", [b"", b"\x80\x04pickle", b"{" * 100])
def test_a_file_that_is_not_safetensors_is_refused(tmp_path, content):
    path = tmp_path / "encoder.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_encoder_file(path)
    with pytest.raises(CheckpointError, match="no such encoder weights file"):
        read_encoder_file(tmp_path / "missing.safetensors")


def fill_hf_cache(cache: "Path", repo_id: str, files: dict[str, bytes]) -> None:
    """A Hub cache as huggingface_hub leaves it after a download: refs/main -> snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


def test_timm_pretrained_weights_come_from_the_hub_cache_offline(tmp_path, monkeypatch):
    """The users' path (timm's own Hub weights), offline with a filled cache: safetensors only."""
    import huggingface_hub.constants

    full = timm.create_model("mobilenetv2_050", pretrained=False)
    with torch.no_grad():
        full.conv_stem.weight.normal_()
    expected = {key: value.clone() for key, value in full.state_dict().items()}
    weights_file = tmp_path / "model.safetensors"
    save_file(expected, str(weights_file))
    cache = tmp_path / "hub"
    fill_hf_cache(cache, full.pretrained_cfg["hf_hub_id"], {"model.safetensors": weights_file.read_bytes()})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    weights = timm_pretrained_encoder("mobilenetv2_050")
    assert tuple(weights.mean) == IMAGENET[0] and tuple(weights.std) == IMAGENET[1]
    assert torch.equal(weights.state["conv_stem.weight"], expected["conv_stem.weight"])
    assert torch.equal(weights.state["blocks.6.0.conv_pwl.weight"], expected["blocks.6.0.conv_pwl.weight"])

    fill_hf_cache(tmp_path / "empty", "timm/other", {})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="mobilenetv2_050") as error:  # not cached, offline: one line
        timm_pretrained_encoder("mobilenetv2_050")
    assert "\n" not in str(error.value)


def test_training_starts_from_an_encoder_file_and_records_its_padding(photos_dir, tmp_path):
    """--encoder-weights with a frozen encoder: the exported encoder is the file's, adapted; config has pad_type."""
    pytest.importorskip("accelerate", reason="training needs the train extra")
    from test_train import make_photo_folder, train

    from colorgan import Colorizer

    rgb = rgb_encoder("mobilenetv2_050", pad_type="same")
    weights_file = tmp_path / "encoder.safetensors"
    save_file(rgb.state_dict(), str(weights_file), metadata={"pad_type": "same"})
    data = make_photo_folder(tmp_path / "data", sorted((photos_dir / "train").glob("*.jpg"))[:5])
    output = tmp_path / "run"
    train(output, "--dataset", str(data), "--val-count", "1", "--batch-size", "2", "--max-steps", "3",
          "--pretrain-steps", "3", "--num-workers", "0", "--encoder", "mobilenetv2_050",
          "--encoder-weights", str(weights_file), "--encoder-frozen-steps", "3", "--ema-decay", "0",
          "--decoder-hints")
    colorizer = Colorizer.from_pretrained(output)
    generator = colorizer.generator
    assert type(generator.encoder.conv_stem).__name__ == "Conv2dSame"  # rebuilt from config.json's pad type
    assert generator.decoder_hints  # and from its decoder_hints
    expected = RgbEncoderWeights(rgb.state_dict(), *MINUS_ONE_TO_ONE)
    reference = UNetGenerator("mobilenetv2_050", encoder_pad_type="same", decoder_hints=True)
    load_rgb_encoder_weights(reference.encoder, expected)
    trained, start = generator.encoder.state_dict(), reference.encoder.state_dict()
    frozen = [key for key in start if key.endswith("weight") and "bn" not in key]
    assert all(torch.equal(trained[key], start[key]) for key in frozen)  # learning rate 0 while frozen
    assert not torch.equal(generator.head.weight, reference.head.weight)  # the decoder did train


def test_encoder_options_that_cannot_work_together_are_refused(tmp_path):
    from train_accelerate import parse_args

    base = ["--dataset", "x", "--output-dir", str(tmp_path)]
    for extra, message in [
        (["--encoder-pretrained", "--encoder-weights", __file__], "use one"),
        (["--encoder-weights", str(tmp_path / "missing.safetensors")], "no such file"),
        (["--init-from", "x", "--encoder-pad-type", "same"], "drop --encoder-pretrained"),
        (["--encoder-lr-scale", "-1"], "cannot be negative"),
    ]:
        with pytest.raises(SystemExit):
            parse_args(base + extra)
