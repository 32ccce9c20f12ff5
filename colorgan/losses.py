"""The generator's L1 on ab (optionally weighted towards colourful pixels) and GAN losses on PatchGAN logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_LOSSES = ("vanilla", "lsgan", "hinge")


def chroma_weighted_l1(fake_ab: torch.Tensor, real_ab: torch.Tensor, chroma_weight: float = 0.0) -> torch.Tensor:
    """L1 between predicted and true ab, each pixel weighted by how colourful it truly is.

    Plain L1 pulls an ambiguous pixel (gray stone or blue sky?) to the median, which is dull;
    weighting a pixel by `1 + chroma_weight * chroma` makes missing a colourful pixel cost more
    than tinting a gray one, the idea of Zhang et al. 2016's class rebalancing without a colour
    histogram. The weights are normalised to average 1 over the batch, so the loss keeps its
    scale against the GAN term; `chroma_weight=0` is plain L1.

    Args:
        fake_ab: (B, 2, H, W) predicted ab in model space (ab / 110).
        real_ab: (B, 2, H, W) true ab in model space.
        chroma_weight: extra weight per unit of true chroma |ab| in model space (0 to ~1.4).
    """
    error = (fake_ab.float() - real_ab.float()).abs()  # (B, 2, H, W)
    if chroma_weight == 0:
        return error.mean()
    weight = 1 + chroma_weight * torch.linalg.vector_norm(real_ab.float(), dim=1, keepdim=True)  # (B, 1, H, W)
    return (error * weight).mean() / weight.mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "vanilla") -> torch.Tensor:
    """How wrong the discriminator is on real (L, ab) and generated (L, G(L)) patches.

    Args:
        kind: `vanilla` (pix2pix's cross-entropy), `lsgan` (least squares) or `hinge`.
    """
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "vanilla":
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    elif kind == "lsgan":
        real, fake = ((real_logits - 1) ** 2).mean(), (fake_logits**2).mean()
    elif kind == "hinge":
        real, fake = F.relu(1 - real_logits).mean(), F.relu(1 + fake_logits).mean()
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; choose from {GAN_LOSSES}")
    return (real + fake) / 2  # halved as in pix2pix, so D learns slower than G


def generator_adversarial_loss(fake_logits: torch.Tensor, kind: str = "vanilla") -> torch.Tensor:
    """How well generated patches fool the discriminator (lower is better for G)."""
    fake_logits = fake_logits.float()
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if kind == "lsgan":
        return ((fake_logits - 1) ** 2).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; choose from {GAN_LOSSES}")
