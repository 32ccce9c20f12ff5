"""colorgan.color: sRGB <-> CIELAB against skimage, fp32 under autocast, gradients, model space."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

from colorgan import color
from conftest import val_photo_paths

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LAB_TOLERANCE = 1e-3  # Lab units, against skimage


def to_batch(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) numpy -> (1, 3, H, W) torch, dtype kept."""
    return torch.from_numpy(np.array(array)).permute(2, 0, 1)[None]


def to_hwc(tensor: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) torch -> (H, W, C) float64 numpy."""
    return tensor[0].permute(1, 2, 0).double().numpy()


def as_input(rgb_uint8: np.ndarray, kind: str) -> tuple[torch.Tensor, np.ndarray]:
    """An 8-bit RGB array as the torch input of `kind` and the float64 array skimage gets."""
    reference = rgb_uint8.astype(np.float64) / 255.0
    if kind == "uint8":
        return to_batch(rgb_uint8), reference
    dtype = {"float32": np.float32, "float64": np.float64}[kind]
    return to_batch(reference.astype(dtype)), reference


def rgb_cube(step: int = 5) -> np.ndarray:
    """Every `step`-th level of each channel, plus 255: (N, 1, 3) uint8 covering the sRGB gamut."""
    levels = np.unique(np.r_[np.arange(0, 256, step), 255]).astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1)
    return grid.reshape(-1, 1, 3)


def random_rgb(seed: int, shape=(48, 64)) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    rgb[0, 0], rgb[0, 1] = 0, 255  # pure black and white always included
    return rgb


def wild_lab(num_lightness: int = 21, num_ab: int = 25, ab_limit: float = 500.0) -> torch.Tensor:
    """(1, 3, num_lightness, num_ab**2) Lab: L over [0, 100], ab far outside the sRGB gamut."""
    lightness_values = torch.linspace(0.0, 100.0, num_lightness)
    ab_values = torch.linspace(-ab_limit, ab_limit, num_ab)
    L, a, b = torch.meshgrid(lightness_values, ab_values, ab_values, indexing="ij")
    return torch.stack([L, a, b]).reshape(1, 3, num_lightness, num_ab * num_ab)


@pytest.fixture(scope="module")
def real_photos(photos_dir) -> list[np.ndarray]:
    """Central 256x256 crops of three real photos (8-bit RGB)."""
    crops = []
    for path in val_photo_paths(photos_dir, 3):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        top, left = (rgb.shape[0] - 256) // 2, (rgb.shape[1] - 256) // 2
        crops.append(rgb[top : top + 256, left : left + 256])
    return crops


# ----------------------------------------------------------------------------- against skimage
@pytest.mark.parametrize("kind", ["uint8", "float32", "float64"])
@pytest.mark.parametrize("seed", [0, 1])
def test_rgb_to_lab_matches_skimage_on_random_images(seed, kind):
    rgb = random_rgb(seed)
    tensor, reference = as_input(rgb, kind)
    lab = color.rgb_to_lab(tensor)
    assert lab.dtype == torch.float32 and lab.shape == (1, 3, *rgb.shape[:2])
    np.testing.assert_allclose(to_hwc(lab), rgb2lab(reference), rtol=0, atol=LAB_TOLERANCE)


@pytest.mark.parametrize("kind", ["uint8", "float32", "float64"])
def test_rgb_to_lab_matches_skimage_over_the_rgb_cube(kind):
    tensor, reference = as_input(rgb_cube(), kind)
    np.testing.assert_allclose(to_hwc(color.rgb_to_lab(tensor)), rgb2lab(reference), rtol=0, atol=LAB_TOLERANCE)


@pytest.mark.parametrize("kind", ["uint8", "float32"])
def test_rgb_to_lab_and_lightness_match_skimage_on_real_photos(real_photos, kind):
    for rgb in real_photos:
        tensor, reference = as_input(rgb, kind)
        expected = rgb2lab(reference)
        np.testing.assert_allclose(to_hwc(color.rgb_to_lab(tensor)), expected, rtol=0, atol=LAB_TOLERANCE)
        L = color.lightness(tensor)
        assert L.dtype == torch.float32 and L.shape == (1, 1, *rgb.shape[:2])
        np.testing.assert_allclose(L[0, 0].double().numpy(), expected[..., 0], rtol=0, atol=LAB_TOLERANCE)


@pytest.mark.parametrize("kind", ["uint8", "float32", "float64"])
def test_lightness_matches_skimage_and_rgb_to_lab(kind):
    tensor, reference = as_input(np.concatenate([rgb_cube(), random_rgb(2).reshape(-1, 1, 3)]), kind)
    L = color.lightness(tensor)
    np.testing.assert_allclose(L[0, 0].double().numpy(), rgb2lab(reference)[..., 0], rtol=0, atol=LAB_TOLERANCE)
    torch.testing.assert_close(L, color.rgb_to_lab(tensor)[:, :1], rtol=0, atol=1e-4)


def test_batched_conversion_equals_per_image_conversion():
    batch = torch.from_numpy(np.stack([random_rgb(seed) for seed in range(3)])).permute(0, 3, 1, 2)
    lab = color.rgb_to_lab(batch)
    for index in range(3):
        torch.testing.assert_close(lab[index : index + 1], color.rgb_to_lab(batch[index : index + 1]))
        np.testing.assert_allclose(
            to_hwc(lab[index : index + 1]), rgb2lab(random_rgb(index)), rtol=0, atol=LAB_TOLERANCE
        )


def test_lab_to_rgb_matches_skimage_in_gamut():
    reference_lab = rgb2lab(rgb_cube())
    rgb = color.lab_to_rgb(to_batch(reference_lab.astype(np.float32)))
    np.testing.assert_allclose(to_hwc(rgb), lab2rgb(reference_lab), rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("source", ["rgb_cube", "random"])
def test_rgb_lab_rgb_round_trip_is_within_one_level(source):
    rgb = rgb_cube(step=4) if source == "rgb_cube" else random_rgb(3)
    back = color.lab_to_rgb(color.rgb_to_lab(to_batch(rgb)))
    assert back.dtype == torch.float32
    error = (back - to_batch(rgb).float() / 255).abs().max().item()
    assert error < 1 / 255
    assert torch.equal((back * 255).round().to(torch.uint8), to_batch(rgb))  # exact in 8 bits


def test_round_trip_on_real_photos(real_photos):
    for rgb in real_photos:
        back = color.lab_to_rgb(color.rgb_to_lab(to_batch(rgb)))
        assert torch.equal((back * 255).round().to(torch.uint8), to_batch(rgb))


def test_model_space_constants():
    torch.testing.assert_close(color.normalize_l(torch.tensor([0.0, 50.0, 100.0])), torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(color.normalize_ab(torch.tensor([-110.0, 0.0, 110.0])), torch.tensor([-1.0, 0.0, 1.0]))


def test_model_space_round_trip_and_range():
    rgb = to_batch(rgb_cube(step=4))
    l_norm, ab_norm = color.rgb_to_model_space(rgb)
    assert l_norm.shape == (1, 1, *rgb.shape[-2:]) and ab_norm.shape == (1, 2, *rgb.shape[-2:])
    assert l_norm.dtype == ab_norm.dtype == torch.float32
    # the generator's tanh output must be able to reach every sRGB colour
    assert l_norm.min() >= -1 and l_norm.max() <= 1 + 1e-6
    assert ab_norm.abs().max() <= 1
    lab = color.rgb_to_lab(rgb)
    torch.testing.assert_close(color.denormalize_l(l_norm), lab[:, :1])
    torch.testing.assert_close(color.denormalize_ab(ab_norm), lab[:, 1:])
    back = color.model_space_to_rgb(l_norm, ab_norm)
    assert torch.equal((back * 255).round().to(torch.uint8), rgb)


# ----------------------------------------------------------------------------- fp32 under autocast
def _conversions(rgb: torch.Tensor, lab: torch.Tensor) -> dict[str, torch.Tensor]:
    l_norm, ab_norm = color.rgb_to_model_space(rgb)
    return {
        "rgb_to_lab": color.rgb_to_lab(rgb),
        "rgb_to_lab_uint8": color.rgb_to_lab((rgb * 255).round().to(torch.uint8)),
        "lightness": color.lightness(rgb),
        "lightness_uint8": color.lightness((rgb * 255).round().to(torch.uint8)),
        "lab_to_rgb": color.lab_to_rgb(lab),
        "lab_to_rgb_keeping_lightness": color.lab_to_rgb_keeping_lightness(lab),
        "model_space_l": l_norm,
        "model_space_ab": ab_norm,
        "model_space_to_rgb": color.model_space_to_rgb(l_norm, ab_norm),
        "model_space_to_rgb_from_bf16": color.model_space_to_rgb(l_norm, ab_norm.to(torch.bfloat16)),
    }


def test_conversions_stay_fp32_under_bf16_autocast():
    rgb = to_batch(random_rgb(4)).float() / 255
    lab = wild_lab(num_lightness=5, num_ab=9, ab_limit=150.0)
    expected = _conversions(rgb, lab)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.matmul(rgb[0, 0], rgb[0, 0].T).dtype == torch.bfloat16  # autocast is really on
        actual = _conversions(rgb, lab)
    for name, tensor in actual.items():
        assert tensor.dtype == torch.float32, name
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-5, msg=name)


# ----------------------------------------------------------------------------- gradients
def test_rgb_to_lab_gradients_are_finite_and_positive_in_lightness():
    # black, white, the sRGB and CIELAB thresholds, and random colours
    special = torch.tensor([0.0, 1.0, 0.04045, 0.0031308, 0.5, 1e-7])
    grays = special[:, None].expand(-1, 3)
    primaries = torch.eye(3)
    randoms = torch.rand(64, 3, generator=torch.Generator().manual_seed(0))
    rgb = torch.cat([grays, primaries, randoms]).T.reshape(1, 3, 1, -1).clone().requires_grad_()
    lab = color.rgb_to_lab(rgb)
    grads = [torch.autograd.grad(lab[:, channel].sum(), rgb, retain_graph=True)[0] for channel in range(3)]
    for grad in grads:
        assert torch.isfinite(grad).all()
    # L* rises with every channel everywhere, black and white included: no clamp swallowed the gradient
    assert (grads[0] > 0).all()
    grad_lightness = torch.autograd.grad(color.lightness(rgb).sum(), rgb)[0]
    assert torch.isfinite(grad_lightness).all() and (grad_lightness > 0).all()


@pytest.mark.parametrize("transfer", [color.srgb_to_linear, color.linear_to_srgb], ids=lambda f: f.__name__)
def test_srgb_transfer_curves_have_finite_positive_gradients(transfer):
    values = torch.cat([torch.tensor([0.0, 1e-8, 0.0031308, 0.04045, 1.0]), torch.linspace(0, 1, 101)])
    values = values.clone().requires_grad_()
    (grad,) = torch.autograd.grad(transfer(values).sum(), values)
    assert torch.isfinite(grad).all() and (grad > 0).all()


def test_lab_to_rgb_gradients_are_finite():
    lab = torch.cat(
        [
            torch.tensor([[0.0, 0, 0], [100, 0, 0], [50, 0, 0], [8, 0, 0], [0, 80, -80], [100, -120, 120]]),
            wild_lab(num_lightness=5, num_ab=5).reshape(3, -1).T,
        ]
    ).T.reshape(1, 3, 1, -1)
    lab = lab.clone().requires_grad_()
    for convert in (color.lab_to_rgb, color.lab_to_rgb_keeping_lightness):
        (grad,) = torch.autograd.grad(convert(lab).sum(), lab)
        assert torch.isfinite(grad).all(), convert.__name__
        assert grad[0, 0, 0, 2] > 0, convert.__name__  # mid gray gets lighter with L


def test_model_space_round_trip_gradients_are_finite_at_black_and_white():
    rgb = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5, 0.25]).view(1, 3, 1, 2).clone().requires_grad_()
    l_norm, ab_norm = color.rgb_to_model_space(rgb)
    (grad,) = torch.autograd.grad(color.model_space_to_rgb(l_norm, ab_norm).sum(), rgb)
    assert torch.isfinite(grad).all()


# ----------------------------------------------------------------------------- gamut handling
def test_lab_to_rgb_clips_wild_lab_into_range():
    lab = wild_lab()
    lab = torch.cat([lab, lab * torch.tensor([1.5, 1.0, 1.0]).view(1, 3, 1, 1) - 25], dim=-1)  # L in [-25, 125]
    rgb = color.lab_to_rgb(lab)
    assert torch.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1


def test_keeping_lightness_stays_in_range_and_keeps_lightness():
    lab = wild_lab()
    rgb = color.lab_to_rgb_keeping_lightness(lab)
    assert rgb.dtype == torch.float32 and rgb.shape == lab.shape
    assert torch.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1
    remeasured = color.rgb_to_lab(rgb)
    lightness_error = (remeasured[:, 0] - lab[:, 0]).abs()
    assert lightness_error.max() < 0.1, f"L* moved by up to {lightness_error.max():.3f}"
    # plain clipping does not keep L: the test data really is out of gamut
    assert (color.rgb_to_lab(color.lab_to_rgb(lab))[:, 0] - lab[:, 0]).abs().max() > 5


def test_keeping_lightness_only_lowers_chroma_and_keeps_hue():
    lab = wild_lab(num_lightness=11)
    remeasured = color.rgb_to_lab(color.lab_to_rgb_keeping_lightness(lab))
    chroma_in, chroma_out = lab[:, 1:].norm(dim=1), remeasured[:, 1:].norm(dim=1)
    assert (chroma_out <= chroma_in + 0.5).all()
    colourful = (chroma_out > 10) & (lab[:, 0] > 5) & (lab[:, 0] < 95)
    assert colourful.sum() > 100
    hue_in = torch.atan2(lab[:, 2], lab[:, 1])[colourful]
    hue_out = torch.atan2(remeasured[:, 2], remeasured[:, 1])[colourful]
    hue_error = torch.rad2deg(torch.remainder(hue_out - hue_in + torch.pi, 2 * torch.pi) - torch.pi).abs()
    assert hue_error.max() < 3.0


def test_keeping_lightness_leaves_in_gamut_colours_alone(real_photos):
    rgb = to_batch(np.concatenate([real_photos[0][:64, :64].reshape(-1, 1, 3), rgb_cube(step=15)]))
    lab = color.rgb_to_lab(rgb)
    kept = color.lab_to_rgb_keeping_lightness(lab)
    torch.testing.assert_close(kept, color.lab_to_rgb(lab), rtol=0, atol=1e-4)
    assert torch.equal((kept * 255).round().to(torch.uint8), rgb)


# ----------------------------------------------------------------------------- the 8-bit fast path
@pytest.mark.parametrize("ab_limit", [20.0, 150.0, 500.0], ids=["in_gamut", "saturated", "wild"])
def test_srgb8_fast_path_is_within_one_level_of_the_float_path(ab_limit):
    lab = wild_lab(num_lightness=41, num_ab=31, ab_limit=ab_limit)  # (1, 3, 41, 961)
    expected = (color.lab_to_rgb_keeping_lightness(lab) * 255).round().to(torch.uint8).reshape(3, -1)
    actual = color.lab_to_srgb8_keeping_lightness(lab[0, 0].reshape(-1), lab[0, 1:].reshape(2, -1))
    assert actual.shape == expected.shape and actual.dtype == torch.uint8
    difference = (actual.int() - expected.int()).abs()
    assert difference.max() <= 1 and difference.float().mean() < 0.01


@pytest.mark.parametrize("finder", ["numpy", "torch"])  # the cpu finds them with numpy, other devices with torch
def test_srgb8_encoder_reports_exactly_the_out_of_gamut_pixels(finder):
    lab = wild_lab(num_lightness=11, num_ab=21, ab_limit=200.0)
    lightness_values, ab = lab[0, 0].reshape(-1), lab[0, 1:].reshape(2, -1)
    out = torch.empty(3, lightness_values.numel(), dtype=torch.uint8)
    encoder = color.Srgb8Encoder(lightness_values.numel())
    if finder == "torch":
        encoder.gamut_scratch = None
    outside = encoder(lightness_values, ab, out)
    linear = color.lab_to_linear_rgb(lab).reshape(3, -1)
    expected = ((linear < -1e-4) | (linear > 1 + 1e-4)).any(dim=0).nonzero().squeeze(1)
    assert 0 < len(outside) < lightness_values.numel() and torch.equal(outside, expected)


@pytest.mark.parametrize("kind", ["gray_view_uint8", "gray_view_float", "rgb_uint8"])
def test_lightness_fast_paths_match_the_general_one(kind):
    gray = torch.arange(256, dtype=torch.uint8).repeat(3, 1)[None, :, None, :]  # (1, 3, 1, 256), R = G = B
    general = color.lightness(gray.float() / 255)
    if kind == "gray_view_uint8":
        rgb = gray[:, :1].expand(1, 3, 1, 256)  # stride-0 channels, as `decode` gives for 8-bit gray
    elif kind == "gray_view_float":
        rgb = (gray[:, :1].float() / 255).expand(1, 3, 1, 256)
    else:
        rgb = gray.clone()
    assert color._is_gray_view(rgb) == kind.startswith("gray_view")
    torch.testing.assert_close(color.lightness(rgb), general, atol=2e-4, rtol=0)
