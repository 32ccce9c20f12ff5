"""The generator's L1 (plain and chroma-weighted) and the GAN losses."""
from __future__ import annotations

import pytest
import torch

from colorgan.losses import GAN_LOSSES, chroma_weighted_l1, discriminator_loss, generator_adversarial_loss


def half_gray_half_colourful() -> torch.Tensor:
    """(2, 2, 8, 8) true ab in model space: the left half gray, the right half a saturated orange."""
    real_ab = torch.zeros(2, 2, 8, 8)
    real_ab[:, 0, :, 4:], real_ab[:, 1, :, 4:] = 0.4, 0.5
    return real_ab


def test_chroma_weight_zero_is_plain_l1():
    real_ab = half_gray_half_colourful()
    fake_ab = torch.randn_like(real_ab) * 0.3
    assert torch.equal(chroma_weighted_l1(fake_ab, real_ab), (fake_ab - real_ab).abs().mean())


@pytest.mark.parametrize("chroma_weight", [0.0, 1.0, 4.0])
def test_a_uniform_error_costs_the_same_whatever_the_weight(chroma_weight):
    """Normalised weights: the loss keeps its scale against the GAN term."""
    real_ab = half_gray_half_colourful()
    loss = chroma_weighted_l1(real_ab + 0.1, real_ab, chroma_weight)
    assert loss.item() == pytest.approx(0.1, rel=1e-5)


def test_a_dull_guess_on_colourful_pixels_costs_more_than_a_tint_on_gray_ones():
    real_ab = half_gray_half_colourful()
    dull = real_ab.clone()
    dull[:, :, :, 4:] -= 0.2  # the orange half pulled towards gray
    tinted = real_ab.clone()
    tinted[:, :, :, :4] += 0.2  # the gray half tinted
    assert chroma_weighted_l1(dull, real_ab).item() == pytest.approx(chroma_weighted_l1(tinted, real_ab).item())
    assert chroma_weighted_l1(dull, real_ab, 2.0) > 1.3 * chroma_weighted_l1(tinted, real_ab, 2.0)


def test_chroma_weighted_l1_gives_gradients_in_fp32_from_half_inputs():
    real_ab = half_gray_half_colourful().half()
    fake_ab = torch.zeros_like(real_ab, requires_grad=True)
    loss = chroma_weighted_l1(fake_ab, real_ab, 3.0)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(fake_ab.grad).all() and fake_ab.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", GAN_LOSSES)
def test_a_discriminator_that_is_right_has_a_lower_loss_than_one_that_is_fooled(kind):
    confident, fooled = torch.full((2, 1, 6, 6), 3.0), torch.full((2, 1, 6, 6), -3.0)
    assert discriminator_loss(confident, fooled, kind) < discriminator_loss(fooled, confident, kind)
    assert generator_adversarial_loss(confident, kind) < generator_adversarial_loss(fooled, kind)


def test_an_unknown_gan_loss_is_refused():
    with pytest.raises(ValueError, match="unknown GAN loss 'wasserstein'"):
        discriminator_loss(torch.zeros(1), torch.zeros(1), "wasserstein")
    with pytest.raises(ValueError, match="unknown GAN loss"):
        generator_adversarial_loss(torch.zeros(1), "wasserstein")
