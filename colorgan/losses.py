"""GAN losses on PatchGAN logits. L1 is plain `(fake_ab - real_ab).abs().mean()`."""
from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_LOSSES = ("vanilla", "lsgan", "hinge")


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
