"""colorgan.metrics against skimage and numpy references, on real photos."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import val_photo_paths
from PIL import Image, ImageFilter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colorgan.color import rgb_to_lab
from colorgan.metrics import MAX_PSNR, ab_auc, colorfulness, psnr, ssim

CROP = 160  # a common size so several photos form one batch


def to_batch(arrays: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) float arrays in [0, 1] -> (B, 3, H, W) float32."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


@pytest.fixture(scope="module")
def photo_pairs(photos_dir) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Centre crops of 3 real photos and degraded versions of them (blur, noise, channel shift)."""
    truths, degraded = [], []
    rng = np.random.default_rng(0)
    for index, path in enumerate(val_photo_paths(photos_dir, 3)):
        image = Image.open(path).convert("RGB")
        left, top = (image.width - CROP) // 2, (image.height - CROP) // 2
        image = image.crop((left, top, left + CROP, top + CROP))
        truth = np.asarray(image, dtype=np.float32) / 255
        if index == 0:
            other = np.asarray(image.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32) / 255
        elif index == 1:
            other = np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1).astype(np.float32)
        else:
            other = np.clip(truth * np.array([1.1, 0.9, 1.0]) + 0.03, 0, 1).astype(np.float32)
        truths.append(truth)
        degraded.append(other)
    return truths, degraded


def test_psnr_matches_skimage(photo_pairs):
    truths, degraded = photo_pairs
    ours = psnr(to_batch(degraded), to_batch(truths))
    reference = [
        peak_signal_noise_ratio(truth.astype(np.float64), other.astype(np.float64), data_range=1)
        for truth, other in zip(truths, degraded)
    ]
    assert ours.shape == (3,)
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-4)


def test_ssim_matches_skimage(photo_pairs):
    truths, degraded = photo_pairs
    ours = ssim(to_batch(degraded), to_batch(truths))
    reference = [
        structural_similarity(
            d.astype(np.float64), t.astype(np.float64), channel_axis=-1, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1,
        )
        for t, d in zip(truths, degraded)
    ]  # fmt: skip
    assert ours.shape == (3,)
    assert len(set(np.round(reference, 2))) == 3, "the degradations should give distinct SSIMs"
    np.testing.assert_allclose(ours.numpy(), reference, atol=2e-4)


def test_ssim_matches_skimage_on_a_full_non_square_photo(photos_dir):
    image = Image.open(val_photo_paths(photos_dir, 1)[0]).convert("RGB")
    truth = np.asarray(image, dtype=np.float64) / 255
    gray = np.repeat(truth.mean(axis=2, keepdims=True), 3, axis=2)
    reference = structural_similarity(
        gray, truth, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1
    )
    ours = ssim(to_batch([gray.astype(np.float32)]), to_batch([truth.astype(np.float32)]))
    assert abs(ours.item() - reference) < 2e-4


def test_identical_images_score_perfectly(photo_pairs):
    truth = to_batch(photo_pairs[0])
    assert torch.equal(psnr(truth, truth), torch.full((3,), MAX_PSNR))
    torch.testing.assert_close(ssim(truth, truth), torch.ones(3), atol=1e-5, rtol=0)


def numpy_colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk 2003, straight from the paper, on an (H, W, 3) image in 0..255."""
    red, green, blue = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = red - green, 0.5 * (red + green) - blue
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def test_colorfulness_of_gray_is_zero(photo_pairs):
    gray = to_batch(photo_pairs[0]).mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    torch.testing.assert_close(colorfulness(gray), torch.zeros(3), atol=1e-3, rtol=0)


def test_colorfulness_of_saturated_image_is_large_and_matches_numpy():
    saturated = np.zeros((32, 32, 3), dtype=np.uint8)
    saturated[:, :16] = (255, 0, 0)
    saturated[:, 16:] = (0, 0, 255)
    ours = colorfulness(torch.from_numpy(saturated).permute(2, 0, 1)[None].float() / 255).item()
    assert ours > 100  # "extremely colourful" in the paper's scale ends at ~109
    assert ours == pytest.approx(numpy_colorfulness(saturated), rel=1e-5)


def test_colorfulness_of_photos_matches_numpy(photo_pairs):
    truths = photo_pairs[0]
    ours = colorfulness(to_batch(truths))
    reference = [numpy_colorfulness(t * 255) for t in truths]
    assert min(reference) > 10
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-4)


def test_ab_auc_is_one_for_identical_ab_and_falls_with_noise(photo_pairs):
    truth_ab = rgb_to_lab(to_batch(photo_pairs[0]))[:, 1:]
    assert torch.equal(ab_auc(truth_ab, truth_ab), torch.ones(3))
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(truth_ab.shape, generator=generator)
    scores = [ab_auc(truth_ab + sigma * noise, truth_ab) for sigma in (1, 5, 20, 60)]
    for better, worse in itertools.pairwise(scores):
        assert (better > worse).all()
    assert (scores[-1] > 0).all() and (scores[0] < 1).all()


def test_ab_auc_of_a_constant_error():
    # every pixel 30 units off: the curve is 0 up to t = 29 and 1 from t = 30 on; the trapezoid
    # rule adds half a step between them, so the area is (150 - 30 + 0.5) / 150
    target = torch.zeros(2, 2, 8, 8)
    prediction = target.clone()
    prediction[:, 0] = 18.0
    prediction[:, 1] = 24.0  # sqrt(18^2 + 24^2) = 30
    torch.testing.assert_close(ab_auc(prediction, target), torch.full((2,), 120.5 / 150))


def test_ab_auc_matches_a_direct_sum(photo_pairs):
    truth_ab = rgb_to_lab(to_batch(photo_pairs[0]))[:, 1:]
    prediction_ab = rgb_to_lab(to_batch(photo_pairs[1]))[:, 1:] * 0.5
    error = np.linalg.norm((prediction_ab - truth_ab).numpy().astype(np.float64), axis=1).reshape(3, -1)
    thresholds = np.linspace(0, 150, 151)
    within = (error[:, None, :] <= thresholds[None, :, None]).mean(axis=2)  # (B, 151)
    reference = np.trapezoid(within, thresholds, axis=1) / 150
    np.testing.assert_allclose(ab_auc(prediction_ab, truth_ab).numpy(), reference, atol=1e-5)


def test_outputs_are_float32_per_image_whatever_the_input_dtype(photo_pairs):
    truth, other = to_batch(photo_pairs[0]), to_batch(photo_pairs[1])
    expected = {"psnr": psnr(other, truth), "ssim": ssim(other, truth), "colorfulness": colorfulness(other)}
    casts = {"float64": lambda x: x.double(), "uint8": lambda x: (x * 255).round().to(torch.uint8)}
    for dtype, cast in casts.items():
        got = {
            "psnr": psnr(cast(other), cast(truth)),
            "ssim": ssim(cast(other), cast(truth)),
            "colorfulness": colorfulness(cast(other)),
        }
        for name, value in got.items():
            assert value.dtype == torch.float32 and value.shape == (3,), (name, dtype)
            torch.testing.assert_close(value, expected[name], atol=0.05 if name == "psnr" else 2e-3, rtol=1e-3)
    truth_ab = rgb_to_lab(truth)[:, 1:]
    assert ab_auc(truth_ab.double(), truth_ab.double()).dtype == torch.float32


def test_autocast_does_not_lower_precision(photo_pairs):
    truth, other = to_batch(photo_pairs[0]), to_batch(photo_pairs[1])
    expected = ssim(other, truth)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = ssim(other, truth)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, expected)


def test_psnr_and_ssim_are_differentiable(photo_pairs):
    truth = to_batch(photo_pairs[0])
    prediction = to_batch(photo_pairs[1]).requires_grad_()
    (psnr(prediction, truth).mean() + ssim(prediction, truth).mean()).backward()
    assert prediction.grad is not None and torch.isfinite(prediction.grad).all()


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(1, 3, 8, 40), torch.rand(1, 3, 8, 40))
    with pytest.raises(ValueError, match="B, 2, H, W"):
        ab_auc(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_run_on_the_gpu(photo_pairs):
    truth, other = to_batch(photo_pairs[0]), to_batch(photo_pairs[1])
    truth_ab, other_ab = rgb_to_lab(truth)[:, 1:], rgb_to_lab(other)[:, 1:]
    cases = [(psnr, (other, truth)), (ssim, (other, truth)), (colorfulness, (other,)), (ab_auc, (other_ab, truth_ab))]
    for metric, args in cases:
        on_gpu = metric(*(a.cuda() for a in args))
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), metric(*args), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- hint propagation measures
def test_streak_energy_sees_column_stripes_and_not_a_smooth_ramp():
    from colorgan.metrics import streak_energy

    columns = torch.arange(120, dtype=torch.float32)
    ramp = torch.stack([columns * 0.1, -columns * 0.05])[:, None, :].expand(2, 40, 120)  # (2, H, W)
    stripes = ramp + torch.tensor([1.0, 0.0])[:, None, None] * (columns % 6 < 3).float()  # 1 ab, 6 px period
    assert streak_energy(ramp, slice(None)) < 0.1  # only the mirrored ends bend a ramp
    assert 0.4 < streak_energy(stripes, slice(None)) < 0.6  # a +-0.5 square wave about its mean
    assert streak_energy(stripes.transpose(1, 2), slice(None)) < 0.01, "transposed, it measures rows"


def test_moving_average_mirrors_the_ends_as_scipy_does():
    ndimage = pytest.importorskip("scipy.ndimage")
    from colorgan.metrics import _moving_average

    profile = np.random.default_rng(0).normal(size=(2, 37))
    for window in (1, 4, 25, 60):
        expected = ndimage.uniform_filter1d(profile, window, axis=-1, mode="reflect")
        np.testing.assert_allclose(_moving_average(profile, window), expected, atol=1e-12)


def sky_and_posts(height: int = 96, width: int = 160) -> torch.Tensor:
    """(H, W) L*: a smooth sky over a field of bright 3 px posts every 24 px."""
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    lightness = torch.where(rows < height // 2, 80 - rows * 0.2, torch.full_like(rows, 40.0))
    posts = (torch.arange(width) % 24 < 3)[None, :] & (rows >= height // 2 + 8)
    return torch.where(posts, torch.full_like(lightness, 85.0), lightness)


def test_smooth_region_streaks_count_stripes_in_the_sky_not_edges_the_photo_has():
    from colorgan.metrics import smooth_region_streaks

    lightness = sky_and_posts()
    even = torch.zeros(2, *lightness.shape)
    even[1] = -30.0  # a stroke's effect: blue everywhere
    follows_posts = even.clone()
    follows_posts[:, lightness > 82] = 0.0  # the posts keep their colour: structure the photo has
    striped = even.clone()
    striped[1, : lightness.shape[0] // 2, ::8] -= 4.0  # columns in the sky: structure it has not
    assert smooth_region_streaks(even, lightness) < 0.01
    assert smooth_region_streaks(follows_posts, lightness) < 0.01, "the posts' bands are not smooth: not counted"
    assert smooth_region_streaks(striped, lightness) > 0.3
    textured = torch.rand(64, 64, generator=torch.Generator().manual_seed(0)) * 40
    assert smooth_region_streaks(torch.zeros(2, 64, 64), textured) is None, "no smooth band, no measure"


def test_small_object_changes_compare_posts_with_the_field_around_them():
    from colorgan.metrics import small_object_changes

    lightness = torch.full((64, 160), 40.0)
    posts = (torch.arange(160) % 24 < 3)[None, :] & (torch.arange(64) >= 8)[:, None]
    lightness[posts] = 85.0
    uniform = torch.zeros(2, *lightness.shape)
    uniform[0] = 20.0
    objects, ground = small_object_changes(uniform, lightness)
    assert objects == pytest.approx(20.0) and ground == pytest.approx(20.0)
    kept = uniform.clone()
    kept[:, posts] = 0.0
    objects, ground = small_object_changes(kept, lightness)
    assert objects < 0.2 * ground and ground == pytest.approx(20.0)  # (field pixels by the replicated border count too)
    assert small_object_changes(uniform, torch.full((32, 32), 50.0)) is None, "no small objects"
