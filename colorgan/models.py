"""The conditional GAN: a hint-aware U-Net generator over any timm encoder, and a PatchGAN.

Both models hold no optimizer, device or I/O logic. They subclass
`huggingface_hub.PyTorchModelHubMixin` (through `StrictHubMixin`), so
`save_pretrained` writes `model.safetensors` + `config.json` and `from_pretrained`
rebuilds the model from that config and loads the weights strictly, once both have been
checked against `CONFIG_LIMITS` and each other without allocating anything (checkpoint.py).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import ConfigLimit, StrictHubMixin
from .limits import RENDER_SIZE

HUB_METADATA = dict(
    library_name="colorgan",
    pipeline_tag="image-to-image",
    tags=["colorization", "pix2pix", "gan"],
    repo_url="https://github.com/colorgan/colorgan",
    license="mit",
)
GENERATOR_INPUT_CHANNELS = 4  # L, hint a, hint b, hint mask
HINT_SUMMARY_CHANNELS = 3  # per decoder cell: mean hint a, mean hint b, any hint there
DISCRIMINATOR_NORMS = ("batch", "spectral")  # PatchDiscriminator(norm=...)
ENCODER_PAD_TYPES = ("", "same")  # timm's pad_type: "" its symmetric default, "same" TensorFlow's


@functools.cache
def timm_model_names() -> frozenset[str]:
    """Every model name timm can build offline, with and without a pretrained tag ("resnet18.a1_in1k").

    Nothing else may name an encoder in a config: not a path, and not "hf-hub:..." (timm would fetch it).
    """
    return frozenset(timm.list_models()) | frozenset(timm.list_pretrained())


# What a config.json may ask of each constructor argument of both models, checked before anything is
# built (`StrictHubMixin.from_pretrained`). The bounds are far beyond any sensible model and far below
# what would exhaust a machine; the parameter cap (checkpoint.DEFAULT_MAX_PARAMETERS) bounds the total.
CONFIG_LIMITS = {
    # UNetGenerator
    "encoder_name": ConfigLimit(
        str, choices=timm_model_names, why="only model names timm lists are built, never a path or an hf-hub: id"
    ),
    "pretrained_encoder": ConfigLimit(bool),  # ignored when loading: the checkpoint holds the weights
    # "same" is TensorFlow's asymmetric padding, which encoders trained in TF (the bundled starter's) need
    "encoder_pad_type": ConfigLimit(str, choices=lambda: frozenset(ENCODER_PAD_TYPES)),
    # 5 blocks for a stride-32 encoder, up to 8 for stride 256; 4096 channels is 16x the default's widest
    "decoder_channels": ConfigLimit(
        int, 1, 4096, length=(1, 8), why="colorgan decoders have 1-8 blocks of 1-4096 channels"
    ),
    "decoder_hints": ConfigLimit(bool),
    "hint_spread": ConfigLimit(int, 0, 8, why="a hint summary reaches at most 8 cells each way"),
    "dropout": ConfigLimit(float, 0.0, 1.0),  # a probability
    "dropout_blocks": ConfigLimit(int, 0, 8),  # at most one per decoder block
    "render_size": ConfigLimit(int, RENDER_SIZE.low, RENDER_SIZE.high, why="the sizes Colorizer runs at"),
    # PatchDiscriminator: widths grow to 8x base_channels; 1024 -> 8192 channels is past any PatchGAN
    "base_channels": ConfigLimit(int, 1, 1024),
    "num_layers": ConfigLimit(int, 1, 8),  # 8 stride-2 layers already judge 2302x2302 patches
    "input_channels": ConfigLimit(int, 1, 16),  # (L, a, b) is 3
    "norm": ConfigLimit(str, choices=lambda: frozenset(DISCRIMINATOR_NORMS)),
    # Pix2PixUNet: 8 halvings is pix2pix's unet_256; 10 already needs 1024-pixel inputs
    "num_downsamplings": ConfigLimit(int, 1, 10),
}


def pad_to_multiple(x: torch.Tensor, stride: int) -> torch.Tensor:
    # (B, C, H, W) -> (B, C, H', W'), H' and W' the next multiples of stride (edge pixels repeated)
    pad_h, pad_w = -x.shape[-2] % stride, -x.shape[-1] % stride
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


def hint_summary(x: torch.Tensor, reduction: int, spread: int = 0) -> torch.Tensor:
    """What the hints say about each reduction x reduction cell of the generator's input.

    (B, 4, H, W) generator input -> (B, 3, H/r, W/r): the mean hint ab over the hinted pixels of the
    cell, or with `spread` > 0 of the (2 spread + 1)^2 cells around it (0 where there are none), and 1
    where there is any. A mean over the whole cell would shrink a 3x3 hint point to 1/30 of its colour
    at reduction 16; this keeps the colour whole at every scale. `spread` hands the decoder the nearest
    hints' colour beyond the hinted cell, which it then keeps or drops by what the photo shows there.
    """
    dtype = x.dtype
    hint_ab, mask = x[:, 1:3].float(), x[:, 3:4].float()  # fp32: coverage of one pixel in 32x32 cells is ~1e-3
    pooled = F.avg_pool2d(torch.cat([hint_ab * mask, mask], dim=1), reduction)  # (B, 3, H/r, W/r)
    if spread:  # the same mean over the neighbouring cells; the border counts only cells inside the image
        pooled = F.avg_pool2d(pooled, 2 * spread + 1, stride=1, padding=spread, count_include_pad=False)
    coverage = pooled[:, 2:3]
    mean_ab = pooled[:, :2] / coverage.clamp_min(1e-12)
    return torch.cat([mean_ab, (coverage > 0).float()], dim=1).to(dtype)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DecoderBlock(nn.Module):
    """Upsample x2 (to the skip's size), concatenate the skip, 3x3 convs, optional dropout."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, num_convs: int, dropout: float):
        super().__init__()
        convs = [conv_bn_relu(in_channels + skip_channels, out_channels)]
        convs += [conv_bn_relu(out_channels, out_channels) for _ in range(num_convs - 1)]
        self.convs = nn.Sequential(*convs)
        # pix2pix's noise z: dropout in the deepest decoder blocks, active while training
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.dropout(self.convs(x))


class UNetGenerator(nn.Module, StrictHubMixin, **HUB_METADATA):
    """U-Net that predicts the ab channels of CIELAB from L and optional colour hints.

    Input (B, 4, H, W): normalized L, hint ab (zero where no hint) and the hint mask.
    Output (B, 2, H, W): ab / 110 in [-1, 1]. Any H, W work: the input is padded to
    the encoder's stride and the output cropped back.

    Args:
        encoder_name: any timm model that supports `features_only` (resnet18, efficientnet_b0,
            convnext_atto, mobilenetv3_large_100, ...).
        pretrained_encoder: load timm's ImageNet weights when building for training (needs the
            Hub); never used when the model is rebuilt from a saved config.
        decoder_channels: output channels of the decoder blocks, deepest first; one block per
            2x upsampling step, so as many entries as log2 of the encoder's total stride.
        dropout: dropout probability in the deepest decoder blocks (pix2pix uses 0.5).
        dropout_blocks: how many of the deepest decoder blocks get dropout.
        render_size: long side, in pixels, at which a whole photo looks like the training crops
            did; `Colorizer` runs the model at this size unless told otherwise. Metadata only.
        encoder_pad_type: timm's `pad_type` for the encoder's convolutions: "" (timm's symmetric
            padding) or "same" (TensorFlow's, asymmetric on stride 2), which an encoder whose
            weights came from TensorFlow needs to see its features as it was trained.
        decoder_hints: also give every decoder block above full resolution the hints summarised per
            cell of its scale (`hint_summary`), so a hint can colour a region. Without it hints enter
            only through the encoder's stem, where a pretrained encoder's L weights drown them,
            and the full-resolution skip, whose one 3x3 conv gives only a halo.
        hint_spread: with decoder_hints, each cell's summary covers the (2 hint_spread + 1)^2 cells
            around it, so a hint reaches the decoder over a neighbourhood and not its own cell only
            (at reduction 16 and spread 2, 80x80 px). 0: each cell's own hints.
    """

    config_limits = CONFIG_LIMITS

    def __init__(
        self,
        encoder_name: str = "regnetx_002",  # ~110 ms for 512x512 on 2 CPU cores
        pretrained_encoder: bool = False,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        dropout: float = 0.5,
        dropout_blocks: int = 2,
        render_size: int = 512,
        encoder_pad_type: str = "",
        decoder_hints: bool = False,
        hint_spread: int = 0,
    ):
        super().__init__()
        if encoder_pad_type not in ENCODER_PAD_TYPES:
            raise ValueError(f"encoder_pad_type must be one of {ENCODER_PAD_TYPES}, not {encoder_pad_type!r}")
        self.render_size = render_size
        self.decoder_hints = decoder_hints
        if hint_spread < 0 or (hint_spread and not decoder_hints):
            raise ValueError(f"hint_spread must be >= 0 and needs decoder_hints, got {hint_spread}")
        self.hint_spread = hint_spread
        # pad_type is passed only when set: not every timm family takes it, and "" is their default anyway
        padding = {"pad_type": encoder_pad_type} if encoder_pad_type else {}
        try:
            self.encoder = timm.create_model(
                encoder_name, features_only=True, pretrained=pretrained_encoder, in_chans=GENERATOR_INPUT_CHANNELS,
                **padding,
            )
        except TypeError as error:  # a family without pad_type (ResNet, ConvNeXt, RegNet) names the keyword here
            if not padding or "pad_type" not in str(error):
                raise
            raise ValueError(f"encoder {encoder_name} does not take encoder_pad_type {encoder_pad_type!r}") from None
        reductions = self.encoder.feature_info.reduction()
        channels = self.encoder.feature_info.channels()
        self.stride = max(reductions)
        steps = int(math.log2(self.stride))
        if 2**steps != self.stride or len(decoder_channels) != steps:
            raise ValueError(
                f"{encoder_name} has total stride {self.stride}: decoder_channels needs {steps} entries,"
                f" got {len(decoder_channels)}"
            )
        skip_channels_at = dict(zip(reductions, channels))
        self.skip_reductions = []  # for each decoder block, the reduction of the skip it takes
        blocks, in_channels = [], channels[-1]
        for index, out_channels in enumerate(decoder_channels):
            reduction = self.stride >> (index + 1)  # 16, 8, 4, 2, 1 for a stride-32 encoder
            skip_channels = GENERATOR_INPUT_CHANNELS if reduction == 1 else skip_channels_at.get(reduction, 0)
            if decoder_hints and reduction > 1:
                skip_channels += HINT_SUMMARY_CHANNELS
            # one conv at the two finest scales: they cost most, and ab there is smooth
            num_convs = 2 if reduction >= 4 else 1
            block_dropout = dropout if index < dropout_blocks else 0.0
            blocks.append(DecoderBlock(in_channels, skip_channels, out_channels, num_convs, block_dropout))
            self.skip_reductions.append(reduction)
            in_channels = out_channels
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(in_channels, 2, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        padded = pad_to_multiple(x, self.stride)
        features = dict(zip(self.encoder.feature_info.reduction(), self.encoder(padded)))
        features[1] = padded  # the input itself is the full-resolution skip
        y = features[self.stride]  # (B, C, H/32, W/32)
        for block, reduction in zip(self.decoder, self.skip_reductions):
            size = (padded.shape[-2] // reduction, padded.shape[-1] // reduction)
            y = block(y, self.skip(features, padded, reduction), size)
        ab = torch.tanh(self.head(y))  # (B, 2, H_pad, W_pad)
        return ab[..., :height, :width]

    def skip(self, features: dict[int, torch.Tensor], padded: torch.Tensor, reduction: int) -> torch.Tensor | None:
        """The decoder block's extra input at `reduction`: encoder features, with the hint summary if enabled."""
        skip = features.get(reduction)
        if not self.decoder_hints or reduction == 1:
            return skip
        hints = hint_summary(padded, reduction, self.hint_spread)  # (B, 3, H/r, W/r)
        return hints if skip is None else torch.cat([skip, hints], dim=1)


class PatchDiscriminator(nn.Module, StrictHubMixin, **HUB_METADATA):
    """pix2pix's conditional PatchGAN: judges overlapping patches of an (L, ab) image.

    With `num_layers=3` each output logit sees a 70x70 patch.

    Args:
        base_channels: width of the first conv; doubles each layer up to 8x.
        num_layers: stride-2 layers; more layers, larger patches (3 -> 70x70, 4 -> 142x142).
        input_channels: 3 for (L, a, b).
        norm: "batch" (pix2pix) or "spectral": spectral normalization of every conv instead of
            BatchNorm, which bounds D's Lipschitz constant and keeps its gradients to G tame.
    """

    config_limits = CONFIG_LIMITS

    def __init__(self, base_channels: int = 64, num_layers: int = 3, input_channels: int = 3, norm: str = "batch"):
        super().__init__()
        if norm not in DISCRIMINATOR_NORMS:
            raise ValueError(f"norm must be one of {DISCRIMINATOR_NORMS}, not {norm!r}")
        spectral = norm == "spectral"

        def conv(in_channels: int, out_channels: int, stride: int, bias: bool) -> nn.Module:
            layer = nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=stride, padding=1, bias=bias)
            return nn.utils.parametrizations.spectral_norm(layer) if spectral else layer

        layers: list[nn.Module] = [conv(input_channels, base_channels, 2, True), nn.LeakyReLU(0.2, inplace=True)]
        width = base_channels
        for index in range(1, num_layers + 1):
            next_width = base_channels * min(2**index, 8)
            stride = 2 if index < num_layers else 1  # the last layer keeps resolution, as in pix2pix
            layers.append(conv(width, next_width, stride, bias=spectral))  # BatchNorm brings its own bias
            if not spectral:
                layers.append(nn.BatchNorm2d(next_width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width = next_width
        layers.append(conv(width, 1, 1, True))
        self.layers = nn.Sequential(*layers)

    def forward(self, l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
        # (B, 1, H, W) + (B, 2, H, W) -> (B, 1, H/8 - 2, W/8 - 2) logits for num_layers=3
        return self.layers(torch.cat([l_norm, ab_norm], dim=1))


class Pix2PixUNet(nn.Module, StrictHubMixin, **HUB_METADATA):
    """pix2pix's U-Net generator (`--netG unet_256`), the recipe colorization tutorials train.

    Kept as the reference peer that `UNetGenerator` is measured against: trained from scratch,
    no pretrained encoder, 54 M parameters at the defaults. Same interface as `UNetGenerator`:
    (B, 4, H, W) in (hint channels are zero when trained without hints), (B, 2, H, W) ab / 110 out.

    Down path: 4x4 stride-2 convs, LeakyReLU(0.2), BatchNorm except on the outermost and innermost
    layers. Up path: ReLU, 4x4 stride-2 transposed convs, BatchNorm, dropout in the three blocks
    under the innermost one; each level concatenates the down path's features (the skips).

    Args:
        base_channels: width of the outermost level; doubles per level up to 8x.
        num_downsamplings: halvings; 8 is unet_256, whose input must be a multiple of 256 (padded).
        dropout: dropout probability in the three up blocks below the innermost one (0.5 in pix2pix).
        render_size: long side `Colorizer` runs the model at by default. Metadata only.
    """

    config_limits = CONFIG_LIMITS

    def __init__(
        self, base_channels: int = 64, num_downsamplings: int = 8, dropout: float = 0.5, render_size: int = 256
    ):
        super().__init__()
        self.render_size = render_size
        self.stride = 2**num_downsamplings
        widths = [base_channels * min(2**level, 8) for level in range(num_downsamplings)]  # 64, 128, ..., 512
        innermost = num_downsamplings - 1
        self.down = nn.ModuleList()
        for level, width in enumerate(widths):
            in_channels = GENERATOR_INPUT_CHANNELS if level == 0 else widths[level - 1]
            has_norm = 0 < level < innermost
            layers = [] if level == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(in_channels, width, kernel_size=4, stride=2, padding=1, bias=not has_norm))
            layers += [nn.BatchNorm2d(width)] if has_norm else []
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for level in reversed(range(num_downsamplings)):  # innermost first
            in_channels = widths[level] * (1 if level == innermost else 2)  # + the skip, except innermost
            out_channels = widths[level - 1] if level > 0 else 2
            layers = [nn.ReLU(), nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=level == 0)]
            if level > 0:
                layers.append(nn.BatchNorm2d(out_channels))
            if innermost - 3 <= level < innermost and level > 0 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        y = pad_to_multiple(x, self.stride)
        skips = []
        for block in self.down:  # (B, 4, H, W) -> (B, 512, H/256, W/256)
            y = block(y)
            skips.append(y)
        skips.pop()  # the innermost output feeds the up path directly
        for index, block in enumerate(self.up):
            y = block(y if index == 0 else torch.cat([y, skips.pop()], dim=1))
        return torch.tanh(y)[..., :height, :width]  # (B, 2, H, W)


def generator_class_for(config: Mapping[str, object]) -> type[UNetGenerator] | type[Pix2PixUNet]:
    """The generator class a saved `config.json` describes (only the reference peer has `num_downsamplings`)."""
    return Pix2PixUNet if "num_downsamplings" in config else UNetGenerator
