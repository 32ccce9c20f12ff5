"""Colorizer: every PIL mode, full-resolution luminance, alpha, EXIF, hints, batching, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps
from skimage.color import rgb2lab

from colorgan import CheckpointError, Colorizer, ImageError
from colorgan.hints import THINNED_SPACING, generator_input, hints_as_trained, points_to_hints
from conftest import assert_one_line, skimage_lightness, val_photo_paths

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_LIGHTNESS_ERROR = 1.0  # L* units, max over pixels
MEAN_LIGHTNESS_ERROR = 0.25


@pytest.fixture(scope="module")
def colorizer(tiny_model_dir) -> Colorizer:
    return Colorizer.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def photo(photos_dir) -> Image.Image:
    """A real colour photo at an odd size, small enough to run below the render size."""
    return Image.open(val_photo_paths(photos_dir, 1)[0]).convert("RGB").resize((201, 117), Image.Resampling.LANCZOS)


@pytest.fixture
def generator_inputs(colorizer):
    """Records the (B, 4, h, w) tensors the generator is called with."""
    captured = []
    handle = colorizer.generator.register_forward_pre_hook(lambda module, args: captured.append(args[0].clone()))
    yield captured
    handle.remove()


def gray16(photo: Image.Image) -> np.ndarray:
    """The photo's gray as 16-bit values that use all 16 bits (not just 8-bit values times 257).

    `Image.fromarray` of this uint16 array is an 'I;16' image."""
    noise = np.random.default_rng(0).integers(0, 257, photo.size[::-1])
    return (np.asarray(photo.convert("L")).astype(np.int64) * 257 + noise).clip(0, 65535).astype(np.uint16)


def gray16_as_8bit(array: np.ndarray) -> Image.Image:
    return Image.fromarray((array / 257).round().astype(np.uint8), "L")


def with_alpha_ramp(image: Image.Image) -> Image.Image:
    """Adds an alpha channel that takes every value from 0 to 255."""
    alpha = Image.linear_gradient("L").resize(image.size)
    image = image.copy()
    image.putalpha(alpha)
    return image


def palette_with_transparency(photo: Image.Image) -> Image.Image:
    image = photo.quantize(colors=64)
    image.info["transparency"] = 0  # palette entry 0 is transparent
    return image


def round_trip_png(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return Image.open(io.BytesIO(buffer.getvalue()))


# name -> (build input from the photo, 8-bit reference of its luminance, output mode)
MODES = {
    "L": (lambda p: p.convert("L"), None, "RGB"),
    "LA": (lambda p: with_alpha_ramp(p.convert("L")), None, "RGBA"),
    "P": (lambda p: p.convert("P"), None, "RGB"),
    "P_transparency": (palette_with_transparency, None, "RGBA"),
    "RGB": (lambda p: p, None, "RGB"),
    "RGBA": (lambda p: with_alpha_ramp(p), None, "RGBA"),
    "CMYK": (lambda p: p.convert("CMYK"), None, "RGB"),
    "I;16": (lambda p: Image.fromarray(gray16(p)), lambda p: gray16_as_8bit(gray16(p)), "RGB"),
    "png16_reopened": (
        lambda p: round_trip_png(Image.fromarray(gray16(p))),
        lambda p: gray16_as_8bit(gray16(p)),
        "RGB",
    ),
}


def assert_same_lightness(reference: Image.Image, output: Image.Image) -> None:
    error = np.abs(skimage_lightness(reference) - skimage_lightness(output))
    assert error.max() <= MAX_LIGHTNESS_ERROR, f"L* differs by up to {error.max():.3f}"
    assert error.mean() <= MEAN_LIGHTNESS_ERROR, f"L* differs by {error.mean():.3f} on average"


def chroma(image: Image.Image) -> np.ndarray:
    lab = rgb2lab(np.asarray(image.convert("RGB")))
    return np.hypot(lab[..., 1], lab[..., 2])


# ----------------------------------------------------------------------------- image modes
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_keeps_size_luminance_and_alpha(colorizer, photo, mode):
    build, reference_of, expected_mode = MODES[mode]
    image = build(photo)
    if mode != "png16_reopened":
        assert image.mode == mode.split("_")[0]
    else:
        assert image.mode.startswith("I") and np.asarray(image).max() > 255  # really 16 bits on disk
    output = colorizer(image)
    assert output.size == image.size
    assert output.mode == expected_mode
    assert_same_lightness(reference_of(photo) if reference_of else image, output)
    if expected_mode == "RGBA":
        expected_alpha = np.asarray(image.convert("RGBA"))[..., 3]
        assert len(np.unique(expected_alpha)) > 1  # the test image really has alpha
        np.testing.assert_array_equal(np.asarray(output)[..., 3], expected_alpha)
    assert chroma(output).mean() > 2  # it did colour something


def test_sixteen_bit_png_from_disk(colorizer, photo, tmp_path):
    path = tmp_path / "gray16.png"
    Image.fromarray(gray16(photo)).save(path)
    output = colorizer(path)
    assert output.size == photo.size and output.mode == "RGB"
    assert_same_lightness(gray16_as_8bit(gray16(photo)), output)


def test_full_size_colour_photo(colorizer, photos_dir):
    image = Image.open(val_photo_paths(photos_dir, 2)[1])
    output = colorizer(image)
    assert output.size == image.size and output.mode == "RGB"
    assert_same_lightness(image, output)


@pytest.mark.parametrize("source", ["path", "bytes", "pil"])
def test_path_bytes_and_pil_inputs_agree(colorizer, photo, tmp_path, source):
    path = tmp_path / "photo.png"
    photo.save(path)
    image = {"path": lambda: path, "bytes": path.read_bytes, "pil": lambda: Image.open(path)}[source]()
    expected = colorizer(photo)
    assert np.array_equal(np.asarray(colorizer(image)), np.asarray(expected))


def test_output_is_deterministic(colorizer, photo):
    assert np.array_equal(np.asarray(colorizer(photo)), np.asarray(colorizer(photo)))


def test_cpu_0_is_the_cpu(tiny_model_dir, photo):
    # accelerate names a cpu process's device "cpu:0"; tensor.to("cpu:0") would copy a gray photo's
    # stride-0 channels and send it down the RGB path, with other rounding
    gray = photo.convert("L")
    on_cpu_0 = Colorizer.from_pretrained(tiny_model_dir, device="cpu:0")
    assert on_cpu_0.device == torch.device("cpu")
    reference = Colorizer.from_pretrained(tiny_model_dir, device="cpu")
    assert np.array_equal(np.asarray(on_cpu_0(gray)), np.asarray(reference(gray)))


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("as_path", [True, False], ids=["path", "bytes"])
def test_exif_orientation_is_applied(colorizer, photo, tmp_path, as_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    photo.save(path, format="JPEG", quality=95, exif=exif)
    output = colorizer(path if as_path else path.read_bytes())
    assert output.size == (photo.height, photo.width)
    upright = ImageOps.exif_transpose(Image.open(path))
    assert upright.size == output.size
    assert_same_lightness(upright, output)  # the content is rotated the right way, not just the size


def test_one_pixel_image(colorizer):
    output = colorizer(Image.new("L", (1, 1), 77))
    assert output.size == (1, 1) and output.mode == "RGB"
    assert_same_lightness(Image.new("L", (1, 1), 77), output)


def test_24_megapixel_image(colorizer, photo):
    image = photo.convert("L").resize((6000, 4000), Image.Resampling.BILINEAR)
    # half saturation: the random model's colours are far out of gamut, and bringing 24 MP of them
    # back in would only slow the test down; the chroma search is tested on small images
    output = colorizer(image, saturation=0.5)
    assert output.size == (6000, 4000) and output.mode == "RGB"
    crop = (2700, 1700, 3212, 2212)  # full-resolution detail survives: compare a 512x512 crop
    assert_same_lightness(image.crop(crop), output.crop(crop))


@pytest.mark.parametrize("render_size", [16, 64, 1024])
def test_render_size_never_changes_output_size(colorizer, photo, render_size):
    output = colorizer(photo, render_size=render_size)
    assert output.size == photo.size
    assert_same_lightness(photo, output)


def test_generator_runs_at_render_size(colorizer, generator_inputs):
    colorizer(Image.new("L", (1000, 400), 128), render_size=250)
    colorizer(Image.new("L", (100, 40), 128), render_size=250)  # never upscaled
    assert [tuple(x.shape) for x in generator_inputs] == [(1, 4, 100, 250), (1, 4, 40, 100)]


# ----------------------------------------------------------------------------- saturation
def test_zero_saturation_gives_gray(colorizer, photo):
    output = np.asarray(colorizer(photo, saturation=0)).astype(int)
    spread = output.max(axis=-1) - output.min(axis=-1)
    assert spread.max() <= 1
    assert_same_lightness(photo, Image.fromarray(output.astype(np.uint8)))
    colourful = np.asarray(colorizer(photo)).astype(int)
    assert (colourful.max(axis=-1) - colourful.min(axis=-1)).mean() > 5


def test_saturation_scales_chroma(colorizer, photo):
    means = [chroma(colorizer(photo, saturation=s)).mean() for s in (0.1, 0.2, 1.0, 2.0)]
    assert means[0] < means[1] < means[2] < means[3]
    # proportional while the colours stay in gamut; the random model's full chroma does not
    assert means[0] == pytest.approx(means[1] / 2, rel=0.1)


@pytest.mark.parametrize("saturation", [-0.1, 4.5, float("nan")])
def test_bad_saturation_is_refused(colorizer, photo, saturation):
    with pytest.raises(ValueError, match="saturation"):
        colorizer(photo, saturation=saturation)


@pytest.mark.parametrize("render_size", [0, 15, 4097])
def test_bad_render_size_is_refused(colorizer, photo, render_size):
    with pytest.raises(ValueError, match="render_size"):
        colorizer(photo, render_size=render_size)


# ----------------------------------------------------------------------------- hints
RED_AB = rgb2lab(np.array([[[255, 0, 0]]], dtype=np.uint8))[0, 0, 1:] / 110
BLUE_AB = rgb2lab(np.array([[[0, 0, 255]]], dtype=np.uint8))[0, 0, 1:] / 110


def rgb_difference(first: Image.Image, second: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(first).astype(int) - np.asarray(second).astype(int)).mean(axis=-1)


def test_point_hint_reaches_the_generator_and_changes_the_colour_there(colorizer, photo, generator_inputs):
    plain = colorizer(photo)
    hinted = colorizer(photo, hints=[(100, 60, (255, 0, 0))])
    hint = generator_inputs[-1][0]  # (4, h, w) at render size = image size here
    mask = hint[3]
    assert mask.sum() == 9 and mask[59:62, 99:102].all()  # a 3x3 patch centred on the point
    np.testing.assert_allclose(hint[1:3, 60, 100].numpy(), RED_AB, atol=1e-3)
    assert (hint[1:3][:, mask == 0] == 0).all()
    difference = rgb_difference(plain, hinted)
    assert difference[57:64, 97:104].mean() > 0.5


def test_point_hints_scale_to_render_size(colorizer, generator_inputs):
    image = Image.new("L", (1000, 500), 128)
    colorizer(image, hints=[(999, 499, (0, 0, 255)), (0, 0, (255, 0, 0))], render_size=200)
    hint = generator_inputs[-1][0]
    assert hint.shape == (4, 100, 200)
    assert hint[3, 99, 199] == 1 and hint[3, 0, 0] == 1 and hint[3].sum() == 8  # two clipped 2x2 corners
    np.testing.assert_allclose(hint[1:3, 99, 199].numpy(), BLUE_AB, atol=1e-3)
    np.testing.assert_allclose(hint[1:3, 0, 0].numpy(), RED_AB, atol=1e-3)


def test_painted_layer_hint_changes_the_colour_in_the_stroke(colorizer, photo, generator_inputs):
    layer = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle([40, 30, 80, 70], fill=(0, 0, 255, 255))
    plain = colorizer(photo, propagate=False)
    hinted = colorizer(photo, hints=layer, propagate=False)  # the network alone sees the whole stroke
    hint = generator_inputs[-1][0]
    assert hint[3, 30:71, 40:81].all() and hint[3].sum() == 41 * 41
    np.testing.assert_allclose(hint[1:3, 50, 60].numpy(), BLUE_AB, atol=1e-3)
    assert rgb_difference(plain, hinted)[30:71, 40:81].mean() > 0.5
    assert_same_lightness(photo, hinted)  # hints steer colour, never luminance
    propagated = colorizer(photo, hints=layer)
    assert rgb_difference(colorizer(photo), propagated)[30:71, 40:81].mean() > 0.5
    assert_same_lightness(photo, propagated)


def test_large_strokes_reach_the_network_thinned_to_points_and_small_hints_unchanged(colorizer, photo, generator_inputs):
    # 41x41 px is 7% of the 201x117 render: as the network was trained, it gets a grid of 3x3 points
    layer = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle([40, 30, 80, 70], fill=(0, 0, 255, 255))
    colorizer(photo, hints=layer)
    mask, hint_ab = generator_inputs[-1][0, 3], generator_inputs[-1][0, 1:3]
    assert mask[30:71, 40:81].sum() == mask.sum()  # only on the stroke
    cells = torch.nn.functional.max_pool2d(mask[None, None], THINNED_SPACING, ceil_mode=True)
    touched = (70 // THINNED_SPACING - 30 // THINNED_SPACING + 1) * (80 // THINNED_SPACING - 40 // THINNED_SPACING + 1)
    assert cells.sum() == touched  # every grid cell the 41x41 stroke touches keeps a point...
    assert touched * 4 <= mask.sum() <= touched * 9  # ...of 3x3 px (2x2 and more where the stroke's rim cuts it)
    np.testing.assert_allclose(hint_ab[:, mask > 0].T.numpy(), np.broadcast_to(BLUE_AB, (int(mask.sum()), 2)), atol=1e-3)
    assert (hint_ab[:, mask == 0] == 0).all()
    # a stroke under 1% of the render (9x9 px: 0.3%) and point hints reach it as they are
    small = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    ImageDraw.Draw(small).rectangle([40, 30, 48, 38], fill=(0, 0, 255, 255))
    colorizer(photo, hints=small)
    assert generator_inputs[-1][0, 3, 30:39, 40:49].all() and generator_inputs[-1][0, 3].sum() == 81
    points = [(10 + 18 * i, 20 + 8 * i, (255, 0, 0)) for i in range(10)]
    colorizer(photo, hints=points)
    assert generator_inputs[-1][0, 3].sum() == 10 * 9


def test_hints_as_trained_keeps_point_hints_whole_in_a_dense_grid():
    # 36 points of 3x3, one in each of 6x6 grid cells (2.25% of the render at 20 px cells), are thinned,
    # but each cell keeps its whole point
    size = 6 * THINNED_SPACING
    grid = [(THINNED_SPACING * (i % 6 + 0.5), THINNED_SPACING * (i // 6 + 0.5), (0, 0, 255)) for i in range(36)]
    hint_ab, mask = points_to_hints(grid, (size, size), (size, size))
    network_input = generator_input(torch.zeros(1, 1, size, size), hint_ab, mask)
    assert hints_as_trained(network_input, max_share=36 * 9 / size**2) is network_input  # not above the share: the same tensor
    assert torch.equal(hints_as_trained(network_input, max_share=0.001), network_input)  # one point a cell: all kept
    row = [(4 + 4 * i, 4, (0, 0, 255)) for i in range(20)]  # 4 px apart: several to a cell
    crowded = generator_input(torch.zeros(1, 1, size, size), *points_to_hints(row, (size, size), (size, size)))
    thinned = hints_as_trained(crowded, max_share=0.001)
    assert thinned[0, 3].sum() < crowded[0, 3].sum() and (thinned[0, 3] <= crowded[0, 3]).all()


def test_propagate_step_is_guided_by_the_full_resolution_lightness(colorizer, photo):
    # the photo's own size is 201x117; at render 64 the prediction is 64x37 and the guide is the photo
    from colorgan.imaging import decode

    layer = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle([20, 10, 180, 30], fill=(0, 0, 255, 255))
    image = decode(photo)
    with torch.inference_mode():
        l_full = colorizer.full_resolution_lightness(image)
        inputs = colorizer.generator_input(image, l_full, layer, 64)
        (ab,) = colorizer.predict([hints_as_trained(inputs)])  # the stroke (20% of the render) thinned
        at_render_size = colorizer.propagate(ab, inputs)
        guided = colorizer.propagate(ab, inputs, l_full)
        assert at_render_size.shape[-2:] == (37, 64) and guided.shape[-2:] == (117, 201)
        recombined = colorizer.recombine(l_full, guided)
    assert recombined.shape == (1, 3, 117, 201)
    # the pipeline's own path is the guided one
    expected = Image.fromarray(recombined[0].permute(1, 2, 0).numpy())
    assert np.array_equal(np.asarray(colorizer(photo, hints=layer, render_size=64)), np.asarray(expected))
    unguided = np.asarray(Image.fromarray(colorizer.recombine(l_full, at_render_size)[0].permute(1, 2, 0).numpy()))
    assert not np.array_equal(unguided, np.asarray(expected)), "the guide changes the result"


def test_empty_hints_equal_no_hints(colorizer, photo):
    empty_layer = Image.new("RGBA", photo.size, (255, 0, 0, 0))
    plain = np.asarray(colorizer(photo))
    assert np.array_equal(np.asarray(colorizer(photo, hints=[])), plain)
    assert np.array_equal(np.asarray(colorizer(photo, hints=empty_layer)), plain)


@pytest.mark.parametrize("point", [(201, 10), (10, 117), (-1, 10), (10, -0.5)])
def test_hint_outside_the_image_is_refused(colorizer, photo, point):
    with pytest.raises(ValueError, match="outside"):
        colorizer(photo, hints=[(*point, (255, 0, 0))])


def test_hint_layer_of_the_wrong_size_is_refused(colorizer, photo):
    with pytest.raises(ValueError, match="hint layer"):
        colorizer(photo, hints=Image.new("RGBA", (photo.width + 1, photo.height)))


# ----------------------------------------------------------------------------- batches
def test_colorize_batch_equals_single_calls(colorizer, photo):
    layer = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).ellipse([10, 10, 60, 50], fill=(0, 200, 0, 255))
    images = [photo, photo.convert("L"), photo.resize((150, 90)), photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    hints = [None, [(20, 30, (250, 200, 0))], None, layer]
    batch = colorizer.colorize_batch(images, hints=hints, saturation=1.3)
    assert len(batch) == len(images)
    for image, image_hints, result in zip(images, hints, batch, strict=True):
        single = colorizer(image, hints=image_hints, saturation=1.3)
        assert result.size == image.size
        assert np.array_equal(np.asarray(result), np.asarray(single))


def test_colorize_batch_refuses_mismatched_hints(colorizer, photo):
    with pytest.raises(ValueError, match="hint"):
        colorizer.colorize_batch([photo, photo], hints=[None])


# ----------------------------------------------------------------------------- bad inputs
def _jpeg_bytes(photo: Image.Image) -> bytes:
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG")
    return buffer.getvalue()


def _file_with(path, data: bytes):
    path.write_bytes(data)
    return path


BAD_INPUTS = {
    "corrupt_bytes": lambda photo, tmp: b"this is not an image at all" * 10,
    "truncated_jpeg": lambda photo, tmp: _jpeg_bytes(photo)[: len(_jpeg_bytes(photo)) // 2],
    "jpeg_header_only": lambda photo, tmp: _jpeg_bytes(photo)[:20],
    "empty_bytes": lambda photo, tmp: b"",
    "missing_path": lambda photo, tmp: tmp / "no_such_photo.jpg",
    "corrupt_file": lambda photo, tmp: _file_with(tmp / "broken.png", b"\x89PNG\r\n garbage"),
    "empty_file": lambda photo, tmp: _file_with(tmp / "empty.jpg", b""),
}


@pytest.mark.parametrize("bad", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_raises_image_error_in_one_line(colorizer, photo, tmp_path, bad):
    source = bad(photo, tmp_path)
    with pytest.raises(ImageError) as error:
        colorizer(source)
    assert_one_line(str(error.value))
    if not isinstance(source, bytes):
        assert str(source) in str(error.value)  # names the file


def test_bad_image_in_a_batch_raises_image_error(colorizer, photo):
    with pytest.raises(ImageError):
        colorizer.colorize_batch([photo, b"garbage"])


# ----------------------------------------------------------------------------- loading
def test_from_pretrained_local_folder(tiny_model_dir):
    colorizer = Colorizer.from_pretrained(tiny_model_dir, device="cpu")
    assert colorizer.device == torch.device("cpu")
    assert not colorizer.generator.training


@pytest.mark.parametrize("source", ["no/such/dir/", "./no_such_dir", "/no/such/model/folder"])
def test_from_pretrained_missing_folder(source):
    with pytest.raises(CheckpointError) as error:
        Colorizer.from_pretrained(source)
    assert_one_line(str(error.value))


@pytest.mark.parametrize("size", [(1, 1), (301, 7), (640, 480)])
def test_row_upsampler_equals_bilinear_interpolate(size):
    from colorgan.fullres import RowUpsampler, row_slices

    width, height = size
    small = torch.randn(2, max(1, height // 5), max(1, width // 3))
    expected = torch.nn.functional.interpolate(small[None], size=(height, width), mode="bilinear")[0]
    upsampler = RowUpsampler(small, height, width)
    buffer = upsampler.new_buffer(next(row_slices(height, width)).stop)
    actual = torch.cat([upsampler.rows(rows, buffer).clone() for rows in row_slices(height, width)], dim=1)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)  # float rounding of the weights


def test_threaded_row_slices_give_the_same_image_and_leave_thread_counts_alone(colorizer, photo, monkeypatch):
    import colorgan.fullres as fullres

    monkeypatch.setattr(fullres, "CHUNK_PIXELS", 2048)  # many slices, so each thread gets several
    big = photo.resize((603, 351))
    single = np.asarray(colorizer(big, render_size=128))
    torch.set_num_threads(2)  # the one_torch_thread fixture restores it
    threaded = np.asarray(colorizer(big, render_size=128))
    assert torch.get_num_threads() == 2
    assert np.array_equal(single, threaded)


def test_row_slices_are_shared_out_and_the_caller_takes_part():
    import threading

    import colorgan.fullres as fullres

    torch.set_num_threads(2)  # the one_torch_thread fixture restores it
    taken: list[tuple[str, int]] = []

    def work(share):
        for rows in share:
            taken.append((threading.current_thread().name, rows.start))
        return len(taken)

    # the helper's thread is busy (as a core held by a spinning OpenMP worker would be): the caller does it all
    release = threading.Event()
    blocker = fullres._row_pool(1).submit(release.wait)
    threading.Timer(0.3, release.set).start()
    fullres.in_row_slices(256, 1024, torch.device("cpu"), work)
    blocker.result()
    starts = sorted(start for _, start in taken)
    assert starts == [rows.start for rows in fullres.row_slices(256, 1024)]  # every slice once
    assert {name for name, _ in taken} == {threading.current_thread().name}
    assert torch.get_num_threads() == 2
