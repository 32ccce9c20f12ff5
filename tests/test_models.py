"""UNetGenerator and PatchDiscriminator: shapes, gradients, and strict safetensors checkpoints."""

from __future__ import annotations

import inspect
import json
import pickle
import re
import shutil
import socket

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch import nn

from colorgan import CheckpointError, Colorizer, PatchDiscriminator, Pix2PixUNet, UNetGenerator
from colorgan.models import hint_summary
from conftest import TINY_GENERATOR, assert_one_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENCODERS = ["resnet18", "efficientnet_b0", "convnext_atto", "regnetx_002"]  # regnetx_002 is the default
ODD_SIZES = [(1, 1), (37, 53), (65, 31)]
DISCRIMINATORS = {
    "pix2pix_70": dict(base_channels=8, num_layers=3, norm="batch"),  # the 70x70 PatchGAN, narrow
    "spectral_70": dict(base_channels=8, num_layers=3, norm="spectral"),
    "shallow_34": dict(base_channels=8, num_layers=2, norm="batch"),
    "deep_142": dict(base_channels=4, num_layers=4, norm="spectral"),
}


def tiny_generator(encoder_name: str, **overrides) -> UNetGenerator:
    torch.manual_seed(0)
    return UNetGenerator(**{**TINY_GENERATOR, "encoder_name": encoder_name, **overrides})


def make_generator_input(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(B, 4, H, W): L in [-1, 1], hint ab where the mask is set, the mask."""
    generator = torch.Generator().manual_seed(seed)
    l_norm = torch.rand(batch, 1, height, width, generator=generator) * 2 - 1
    mask = (torch.rand(batch, 1, height, width, generator=generator) < 0.05).float()
    hint_ab = (torch.rand(batch, 2, height, width, generator=generator) * 2 - 1) * mask
    return torch.cat([l_norm, hint_ab, mask], dim=1)


def discriminator_output_side(side: int, num_layers: int) -> int:
    for _ in range(num_layers):  # 4x4 stride-2 convs, padding 1
        side //= 2
    return side - 2  # two 4x4 stride-1 convs, padding 1


def live_batchnorm(model: nn.Module) -> nn.Module:
    """timm zero-initialises the last BN scale of residual blocks, which zeroes gradients upstream."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
    return model


def assert_every_parameter_gets_a_gradient(model: nn.Module) -> None:
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead, f"{len(dead)} parameters get no gradient, e.g. {dead[:3]}"
    broken = [name for name, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not broken, f"non-finite gradients in {broken[:3]}"


def train_briefly(model: nn.Module, *inputs: torch.Tensor) -> None:
    """A train-mode forward so BatchNorm running statistics move away from their initial values."""
    model.train()
    with torch.no_grad():
        model(*inputs)
    model.eval()


# ----------------------------------------------------------------------------- generator
@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_generator_output_shapes_for_odd_sizes(encoder_name):
    generator = tiny_generator(encoder_name).eval()
    for height, width in ODD_SIZES:
        with torch.no_grad():
            ab = generator(make_generator_input(1, height, width))
        assert ab.shape == (1, 2, height, width), (height, width)
        assert torch.isfinite(ab).all()
        assert ab.abs().max() <= 1  # tanh: ab / 110
    with torch.no_grad():
        assert generator(make_generator_input(3, 37, 53)).shape == (3, 2, 37, 53)


def test_default_generator_is_regnetx_002_and_handles_odd_sizes():
    generator = UNetGenerator().eval()
    regnet = timm.create_model("regnetx_002", features_only=True, in_chans=4)
    assert generator.encoder.feature_info.channels() == regnet.feature_info.channels()
    assert [block.convs[0][0].out_channels for block in generator.decoder] == [256, 128, 64, 32, 16]
    with torch.no_grad():
        ab = generator(make_generator_input(1, 37, 53))
    assert ab.shape == (1, 2, 37, 53) and torch.isfinite(ab).all()


@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_generator_every_parameter_receives_a_gradient(encoder_name):
    generator = live_batchnorm(tiny_generator(encoder_name)).train()
    ab = generator(make_generator_input(2, 33, 35))
    assert torch.isfinite(ab).all()
    ab.square().mean().backward()
    assert_every_parameter_gets_a_gradient(generator)


@pytest.mark.parametrize("encoder_name,hint_spread", [("resnet18", 0), ("regnetx_002", 0), ("regnetx_002", 2)])
def test_generator_with_decoder_hints_has_shapes_and_gradients_everywhere(encoder_name, hint_spread):
    generator = live_batchnorm(tiny_generator(encoder_name, decoder_hints=True, hint_spread=hint_spread)).train()
    for height, width in ODD_SIZES:
        assert generator(make_generator_input(2, height, width)).shape == (2, 2, height, width)
    x = make_generator_input(2, 33, 35).requires_grad_()
    ab = generator(x)
    assert torch.isfinite(ab).all()
    ab.square().mean().backward()
    assert_every_parameter_gets_a_gradient(generator)
    assert torch.isfinite(x.grad).all()


def test_hint_summary_keeps_each_cells_hint_colour_whole_and_marks_where_hints_are():
    x = torch.zeros(1, 4, 32, 48)
    x[0, 1:3, 2:5, 2:5] = torch.tensor([0.5, -0.25]).view(2, 1, 1)  # a 3x3 point in cell (0, 0)
    x[0, 3, 2:5, 2:5] = 1
    x[0, 1:3, 20, 40] = torch.tensor([-1.0, 1.0])  # one pixel in cell (1, 2)
    x[0, 3, 20, 40] = 1
    summary = hint_summary(x, 16)  # (1, 3, 2, 3)
    assert summary.shape == (1, 3, 2, 3)
    torch.testing.assert_close(summary[0, :, 0, 0], torch.tensor([0.5, -0.25, 1.0]))
    torch.testing.assert_close(summary[0, :, 1, 2], torch.tensor([-1.0, 1.0, 1.0]))
    others = torch.ones(2, 3, dtype=torch.bool)
    others[0, 0] = others[1, 2] = False
    assert (summary[0].permute(1, 2, 0)[others] == 0).all()  # no hint: no colour, no mark


def test_hint_summary_with_spread_gives_the_neighbouring_cells_the_hints_colour():
    x = torch.zeros(1, 4, 80, 96)  # 5 x 6 cells of 16 px
    x[0, 1:3, 40, 40] = torch.tensor([0.5, -0.25])  # one pixel in cell (2, 2)
    x[0, 3, 40, 40] = 1
    x[0, 1:3, 0:2, 94:96] = torch.tensor([-1.0, 1.0]).view(2, 1, 1)  # 2x2 px in cell (0, 5)
    x[0, 3, 0:2, 94:96] = 1
    own, spread = hint_summary(x, 16), hint_summary(x, 16, spread=1)  # (1, 3, 5, 6) each
    assert own[0, 2].sum() == 2  # each hint marks its own cell only
    assert spread[0, 2, 1:4, 1:4].all() and spread[0, 2, 0:2, 4:6].all()  # and its neighbours with spread 1
    assert spread[0, 2].sum() == 9 + 4  # nothing further: (4, 0) and (0, 0) are 2 cells away
    torch.testing.assert_close(spread[0, :2, 3, 1], torch.tensor([0.5, -0.25]))  # the colour kept whole
    torch.testing.assert_close(spread[0, :2, 1, 4], torch.tensor([-1.0, 1.0]))
    # where both reach (spread 2), the mean weighs each hint by its hinted pixels: 1 px against 4
    torch.testing.assert_close(hint_summary(x, 16, spread=2)[0, :2, 1, 3], (torch.tensor([0.5, -0.25]) + 4 * torch.tensor([-1.0, 1.0])) / 5)


def test_hint_spread_needs_decoder_hints():
    with pytest.raises(ValueError, match="decoder_hints"):
        tiny_generator("resnet18", hint_spread=1)


@pytest.mark.parametrize("decoder_hints", [False, True])
def test_with_a_stem_deaf_to_hints_only_decoder_hints_carry_a_hint_beyond_a_halo(decoder_hints):
    # An encoder adapted from RGB weights starts with zero stem weights on the hint channels.
    # Then the full-resolution skip is a hint's only way in, and its one 3x3 conv gives a halo;
    # decoder hints let it reach the whole region.
    generator = tiny_generator("resnet18", decoder_hints=decoder_hints).eval()
    with torch.no_grad():
        generator.encoder.conv1.weight[:, 1:] = 0
    x = make_generator_input(1, 64, 64) * torch.tensor([1.0, 0, 0, 0]).view(1, 4, 1, 1)  # L only
    hinted = x.clone()
    hinted[0, 1:3, 30:33, 30:33] = 0.8
    hinted[0, 3, 30:33, 30:33] = 1
    with torch.no_grad():
        moved = (generator(hinted) - generator(x)).abs().amax(dim=1)[0]  # (H, W)
    far = torch.ones(64, 64, dtype=torch.bool)
    far[24:40, 24:40] = False  # more than 6 pixels from the hint
    if decoder_hints:
        assert (moved[far] > 0).float().mean() > 0.9  # nearly every pixel far from the hint changes
    else:
        assert moved[far].max() == 0


def test_generator_gradient_reaches_the_input():
    generator = tiny_generator("resnet18").train()
    x = make_generator_input(2, 33, 35).requires_grad_()
    generator(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[:, 0].abs().sum() > 0 and x.grad[:, 3].abs().sum() > 0  # L and the hint mask matter


def test_generator_dropout_is_noise_in_train_mode_only():
    generator = tiny_generator("resnet18", dropout=0.5, dropout_blocks=2)
    x = make_generator_input(2, 32, 32)
    with torch.no_grad():
        generator.train()
        assert not torch.equal(generator(x), generator(x))
        generator.eval()
        assert torch.equal(generator(x), generator(x))


def test_generator_refuses_decoder_depth_that_does_not_match_the_encoder():
    with pytest.raises(ValueError, match="decoder_channels needs 5 entries"):
        UNetGenerator(encoder_name="resnet18", decoder_channels=[16, 8])


@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_generator_save_and_load_gives_identical_outputs(encoder_name, tmp_path):
    generator = tiny_generator(encoder_name)
    x = make_generator_input(2, 37, 53)
    train_briefly(generator, x)
    generator.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = UNetGenerator.from_pretrained(tmp_path)
    assert not loaded.training  # from_pretrained hands back an eval-mode model
    with torch.no_grad():
        assert torch.equal(loaded(x), generator(x))
    expected, actual = generator.state_dict(), loaded.state_dict()
    assert list(actual) == list(expected)
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name  # BN running stats too


# TensorFlow's "same" padding where the family takes a pad_type; ResNet, ConvNeXt and RegNet have none
PAD_TYPES = {"resnet18": "", "efficientnet_b0": "same", "convnext_atto": "", "regnetx_002": ""}


def test_an_encoder_without_pad_type_refuses_same_padding_in_one_line():
    with pytest.raises(ValueError, match="resnet18 does not take encoder_pad_type 'same'"):
        UNetGenerator("resnet18", pretrained_encoder=False, encoder_pad_type="same")


@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_generator_config_round_trips_every_constructor_argument(encoder_name, tmp_path):
    arguments = dict(
        encoder_name=encoder_name,
        pretrained_encoder=False,
        decoder_channels=[24, 16, 12, 8, 4],
        dropout=0.25,
        dropout_blocks=3,
        render_size=320,
        encoder_pad_type=PAD_TYPES[encoder_name],
        decoder_hints=True,
        hint_spread=2,
    )
    assert set(arguments) == set(inspect.signature(UNetGenerator.__init__).parameters) - {"self"}
    UNetGenerator(**arguments).save_pretrained(tmp_path / "first")
    assert json.loads((tmp_path / "first" / "config.json").read_text()) == arguments
    loaded = UNetGenerator.from_pretrained(tmp_path / "first")
    assert [block.convs[0][0].out_channels for block in loaded.decoder] == arguments["decoder_channels"]
    assert [getattr(block.dropout, "p", 0.0) for block in loaded.decoder] == [0.25, 0.25, 0.25, 0.0, 0.0]
    assert loaded.render_size == 320 and Colorizer(loaded).default_render_size == 320
    loaded.save_pretrained(tmp_path / "second")
    assert json.loads((tmp_path / "second" / "config.json").read_text()) == arguments


def test_generator_hub_metadata(tiny_model_dir):
    card = (tiny_model_dir / "README.md").read_text()
    assert "library_name: colorgan" in card and "pipeline_tag: image-to-image" in card


# ----------------------------------------------------------------------------- discriminator
@pytest.mark.parametrize("config", DISCRIMINATORS.values(), ids=DISCRIMINATORS.keys())
def test_discriminator_output_shapes(config):
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(**config).eval()
    num_layers = config["num_layers"]
    for height, width in [(70, 70), (37, 53), (65, 31), (256, 256)]:
        if discriminator_output_side(min(height, width), num_layers) < 1:
            continue  # smaller than one patch
        l_norm, ab_norm = torch.rand(2, 1, height, width) * 2 - 1, torch.rand(2, 2, height, width) * 2 - 1
        with torch.no_grad():
            logits = discriminator(l_norm, ab_norm)
        expected = (
            2,
            1,
            discriminator_output_side(height, num_layers),
            discriminator_output_side(width, num_layers),
        )
        assert logits.shape == expected
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("num_layers, patch", [(2, 34), (3, 70), (4, 142)], ids=["34x34", "70x70", "142x142"])
def test_discriminator_receptive_field_is_the_pix2pix_patch(num_layers, patch):
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(base_channels=4, num_layers=num_layers).eval()
    side = 2 * patch + 16
    l_norm = torch.rand(1, 1, side, side, requires_grad=True)
    logits = discriminator(l_norm, torch.rand(1, 2, side, side))
    centre = logits.shape[-1] // 2
    logits[0, 0, centre, centre].backward()
    seen = l_norm.grad[0, 0] != 0
    rows, cols = seen.any(dim=1).nonzero().flatten(), seen.any(dim=0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == patch and cols.max() - cols.min() + 1 == patch


@pytest.mark.parametrize("config", DISCRIMINATORS.values(), ids=DISCRIMINATORS.keys())
def test_discriminator_every_parameter_receives_a_gradient(config):
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(**config).train()
    ab_norm = (torch.rand(2, 2, 160, 160) * 2 - 1).requires_grad_()
    logits = discriminator(torch.rand(2, 1, 160, 160) * 2 - 1, ab_norm)
    logits.mean().backward()
    assert_every_parameter_gets_a_gradient(discriminator)
    assert torch.isfinite(ab_norm.grad).all() and ab_norm.grad.abs().sum() > 0  # the generator's signal


@pytest.mark.parametrize("config", DISCRIMINATORS.values(), ids=DISCRIMINATORS.keys())
def test_discriminator_save_and_load_gives_identical_outputs(config, tmp_path):
    torch.manual_seed(0)
    arguments = dict(config, input_channels=3)
    assert set(arguments) == set(inspect.signature(PatchDiscriminator.__init__).parameters) - {"self"}
    discriminator = PatchDiscriminator(**arguments)
    inputs = (torch.rand(2, 1, 160, 160), torch.rand(2, 2, 160, 160))
    train_briefly(discriminator, *inputs)
    discriminator.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == arguments
    loaded = PatchDiscriminator.from_pretrained(tmp_path)
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(*inputs), discriminator(*inputs))


# ----------------------------------------------------------------------------- refused checkpoints
@pytest.fixture
def saved_tiny_generator(tiny_model_dir, tmp_path):
    """A private copy of the session's saved tiny generator, free to damage."""
    return shutil.copytree(tiny_model_dir, tmp_path / "tiny")


@pytest.fixture(scope="module")
def foreign_weights(tmp_path_factory) -> dict:
    """model.safetensors files of models that are not the tiny generator."""
    others = {
        "other_decoder_widths": tiny_generator("resnet18", decoder_channels=[16, 16, 8, 8, 4]),
        "other_encoder": tiny_generator("efficientnet_b0"),
        "discriminator": PatchDiscriminator(base_channels=8),
    }
    folder = tmp_path_factory.mktemp("foreign")
    for name, model in others.items():
        model.save_pretrained(folder / name)
    return {name: folder / name / "model.safetensors" for name in others}


def _swap_in(name: str):
    return lambda folder, foreign: shutil.copy(foreign[name], folder / "model.safetensors")


def _edit_config(folder, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def _truncate(folder, keep: float) -> None:
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])


MISMATCHES = {
    "other_decoder_widths": _swap_in("other_decoder_widths"),
    "config_with_other_widths": lambda folder, _: _edit_config(folder, decoder_channels=[64, 32, 16, 8, 8]),
    "other_encoder": _swap_in("other_encoder"),
    "config_with_other_encoder": lambda folder, _: _edit_config(folder, encoder_name="convnext_atto"),
    "discriminator_weights": _swap_in("discriminator"),
    "truncated_safetensors": lambda folder, _: _truncate(folder, keep=0.5),
    "truncated_header": lambda folder, _: _truncate(folder, keep=0.001),
    "empty_safetensors": lambda folder, _: _truncate(folder, keep=0.0),
    "garbage_safetensors": lambda folder, _: (folder / "model.safetensors").write_bytes(b"\x13\x37" * 5000),
    "no_weights": lambda folder, _: (folder / "model.safetensors").unlink(),
}


@pytest.mark.parametrize("loader", ["UNetGenerator", "Colorizer"])
@pytest.mark.parametrize("mismatch", MISMATCHES.values(), ids=MISMATCHES.keys())
def test_mismatched_checkpoint_is_refused_in_one_line(saved_tiny_generator, foreign_weights, mismatch, loader):
    mismatch(saved_tiny_generator, foreign_weights)
    load = {"UNetGenerator": UNetGenerator.from_pretrained, "Colorizer": Colorizer.from_pretrained}[loader]
    with pytest.raises(CheckpointError) as error:
        load(saved_tiny_generator)
    assert_one_line(str(error.value))


def test_mismatch_message_names_the_problem(saved_tiny_generator, foreign_weights):
    MISMATCHES["other_decoder_widths"](saved_tiny_generator, foreign_weights)
    with pytest.raises(CheckpointError) as error:
        UNetGenerator.from_pretrained(saved_tiny_generator)
    message = str(error.value)
    assert str(saved_tiny_generator / "model.safetensors") in message
    assert re.search(r"shape mismatches \(e\.g\. decoder\.\S+: checkpoint \(16, .* vs model \(32, ", message), message


def test_generator_checkpoint_is_refused_by_the_discriminator(saved_tiny_generator):
    with pytest.raises(CheckpointError, match="does not match PatchDiscriminator") as error:
        PatchDiscriminator.from_pretrained(saved_tiny_generator)
    assert_one_line(str(error.value))


@pytest.fixture
def forbid_unpickling(monkeypatch):
    """torch.load / pickle.load(s) raise and are recorded if anything calls them."""
    calls = []

    def forbidden(name):
        def refuse(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called: colorgan must never unpickle")

        return refuse

    monkeypatch.setattr(torch, "load", forbidden("torch.load"))
    monkeypatch.setattr(torch.serialization, "load", forbidden("torch.serialization.load"))
    monkeypatch.setattr(pickle, "load", forbidden("pickle.load"))
    monkeypatch.setattr(pickle, "loads", forbidden("pickle.loads"))
    return calls


@pytest.mark.parametrize("loader", ["UNetGenerator", "Colorizer"])
def test_pickle_only_checkpoint_is_refused_without_unpickling(saved_tiny_generator, forbid_unpickling, loader):
    weights = saved_tiny_generator / "model.safetensors"
    torch.save(load_file(weights), saved_tiny_generator / "pytorch_model.bin")
    weights.unlink()
    load = {"UNetGenerator": UNetGenerator.from_pretrained, "Colorizer": Colorizer.from_pretrained}[loader]
    with pytest.raises(CheckpointError, match="pickle") as error:
        load(saved_tiny_generator)
    assert_one_line(str(error.value))
    assert forbid_unpickling == []


def test_non_strict_loading_is_refused(saved_tiny_generator):
    UNetGenerator.from_pretrained(saved_tiny_generator)  # the checkpoint itself is fine
    with pytest.raises(ValueError, match="strict"):
        UNetGenerator.from_pretrained(saved_tiny_generator, strict=False)


@pytest.fixture
def no_network(monkeypatch):
    """Record and refuse every connection attempt."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_config_asking_for_a_pretrained_encoder_never_downloads(saved_tiny_generator, monkeypatch, no_network):
    expected = UNetGenerator.from_pretrained(saved_tiny_generator)
    _edit_config(saved_tiny_generator, pretrained_encoder=True)
    requested = []
    create_model = timm.create_model

    def spy(*args, **kwargs):
        requested.append(kwargs.get("pretrained"))
        return create_model(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    loaded = UNetGenerator.from_pretrained(saved_tiny_generator)
    assert requested == [False, False]  # the meta-device check, then the real model: never pretrained
    assert no_network == []
    x = make_generator_input(1, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected(x))


# ----------------------------------------------------------------------------- the reference pix2pix U-Net
def test_pix2pix_unet_defaults_are_unet_256():
    with torch.device("meta"):
        model = Pix2PixUNet()
    assert sum(p.numel() for p in model.parameters()) == 54_413_506  # pix2pix's unet_256 with L in, ab out
    assert model.stride == 256 and len(model.down) == len(model.up) == 8
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 3


@pytest.mark.parametrize("num_downsamplings", [3, 5])
@pytest.mark.parametrize("height, width", ODD_SIZES)
def test_pix2pix_unet_output_shapes_for_odd_sizes(num_downsamplings, height, width):
    model = Pix2PixUNet(base_channels=4, num_downsamplings=num_downsamplings).eval()
    with torch.no_grad():
        ab = model(torch.rand(2, 4, height, width) * 2 - 1)
    assert ab.shape == (2, 2, height, width)
    assert torch.isfinite(ab).all() and ab.abs().max() <= 1


def test_pix2pix_unet_every_parameter_receives_a_gradient():
    torch.manual_seed(0)
    model = Pix2PixUNet(base_channels=4, num_downsamplings=5).train()
    model(torch.rand(2, 4, 64, 64) * 2 - 1).square().mean().backward()
    assert_every_parameter_gets_a_gradient(model)


def test_pix2pix_unet_loads_through_colorizer(tmp_path):
    """Colorizer.from_pretrained picks the class the config describes, so `colorgan eval` runs the peer."""
    torch.manual_seed(0)
    model = Pix2PixUNet(base_channels=4, num_downsamplings=5, render_size=96)
    train_briefly(model, torch.rand(2, 4, 64, 64))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == dict(
        base_channels=4, num_downsamplings=5, dropout=0.5, render_size=96
    )
    colorizer = Colorizer.from_pretrained(tmp_path, device="cpu")
    assert isinstance(colorizer.generator, Pix2PixUNet) and colorizer.default_render_size == 96
    inputs = torch.rand(1, 4, 40, 56)
    with torch.no_grad():
        # channels_last on cpu reorders the convs' sums: equal to float rounding
        torch.testing.assert_close(colorizer.generator(inputs), model.eval()(inputs), atol=1e-5, rtol=0)
    with pytest.raises(CheckpointError, match="does not match|UNetGenerator"):
        UNetGenerator.from_pretrained(tmp_path)  # the class itself still refuses a config it cannot build
