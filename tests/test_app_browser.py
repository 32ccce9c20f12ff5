"""The app in a real browser: headless Chromium (Debian's) driven by Playwright.

A user uploads a photo, presses Colorize and gets the before/after slider and the PNG; then paints
a stroke with the brush, and the stroke reaches the model as a hint layer at the photo's size.
"""
from __future__ import annotations

import importlib.util
import io
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageColor

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHOTO_NAME = "python3-scipy__face.jpg"  # 512x384
RESULT_SHOWN = """() => {
    const images = document.querySelectorAll('#before-after img');
    const link = document.querySelector('#download a');
    return images.length === 2 && [...images].every(i => i.complete && i.naturalWidth > 0) && link !== null;
}"""

# the editor's canvas exists before any upload; it holds the photo once its prompt is gone and it can pan
PHOTO_LOADED = """() => {
    const editor = document.querySelector('#photo');
    const pan = editor && editor.querySelector("button[aria-label='Pan']");
    return pan !== null && !pan.disabled && !editor.innerText.includes('Upload an image');
}"""

SLIDER_SIZES = "images => images.map(i => [i.naturalWidth, i.naturalHeight])"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"the headless browser test needs Debian's chromium at {CHROMIUM}"
)


class RecordingColorizer:
    """Wraps a Colorizer and keeps the hint layer of every call, to see what the browser sent."""

    def __init__(self, colorizer):
        self.colorizer = colorizer
        self.hint_layers = []

    def __call__(self, image, *, hints=None, **settings):
        self.hint_layers.append(hints)
        return self.colorizer(image, hints=hints, **settings)

    def __getattr__(self, name):  # everything else (default_render_size, ...) is the real Colorizer's
        return getattr(self.colorizer, name)


@pytest.fixture(scope="module")
def served_app(tiny_model_dir, tmp_path_factory):
    """(url, recording colorizer, app module) of the app serving the tiny model on 127.0.0.1."""
    from colorgan import Colorizer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        patch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path_factory.mktemp("examples_cache")))  # not in the checkout
        spec = importlib.util.spec_from_file_location("colorgan_app_for_browser", REPO / "app.py")
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
        colorizer = RecordingColorizer(Colorizer.from_pretrained(tiny_model_dir, device="cpu"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        demo = app.build_demo(colorizer)
        _, url, _ = demo.launch(
            **app.LAUNCH_OPTIONS, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True
        )
        yield url, colorizer, app
        demo.close()


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()


def open_app(page, url: str) -> None:
    """Load the page and let its scripts finish: an upload before that would be lost."""
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.locator("#colorize").wait_for()


def upload_photo(page, path: Path) -> None:
    """Upload through the editor's file input and wait until the photo is on its canvas."""
    page.locator("#photo input[type=file]").set_input_files(str(path))
    page.wait_for_function(PHOTO_LOADED, timeout=60_000)


def colorize_and_wait(page) -> str:
    """Press Colorize on a fresh page, wait for the slider's two images and the download link -> its href."""
    page.locator("#colorize").click()
    page.wait_for_function(RESULT_SHOWN, timeout=90_000)
    return page.eval_on_selector("#download a", "link => link.href")


def test_upload_colorize_shows_slider_and_full_size_png(served_app, page, photos_dir, tmp_path):
    import httpx

    url, colorizer, _ = served_app
    photo_path = photos_dir / "val" / PHOTO_NAME
    open_app(page, url)
    upload_photo(page, photo_path)
    download = colorize_and_wait(page)
    screenshot = tmp_path / "colorized_in_browser.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nscreenshot: {screenshot}")

    photo = Image.open(photo_path)
    slider_sizes = page.eval_on_selector_all("#before-after img", SLIDER_SIZES)
    assert slider_sizes == [list(photo.size)] * 2  # before and after, shown at the photo's size
    full = Image.open(io.BytesIO(httpx.get(download, timeout=30).content))
    assert full.format == "PNG" and full.size == photo.size
    assert colorizer.hint_layers[-1] is None  # no strokes: automatic colorization
    assert Image.open(screenshot).size[0] == 1400


def test_brush_stroke_reaches_the_model_as_a_hint_layer(served_app, page, photos_dir, tmp_path):
    url, colorizer, app = served_app
    photo_path = photos_dir / "val" / PHOTO_NAME
    photo = Image.open(photo_path)
    open_app(page, url)
    upload_photo(page, photo_path)

    page.locator("#photo button[aria-label='Brush']").click()
    canvas = page.locator("#photo canvas").first.bounding_box()
    middle_y = canvas["y"] + canvas["height"] / 2
    page.mouse.move(canvas["x"] + canvas["width"] * 0.3, middle_y)
    page.mouse.down()
    page.mouse.move(canvas["x"] + canvas["width"] * 0.7, middle_y, steps=20)
    page.mouse.up()
    colorize_and_wait(page)
    page.screenshot(path=str(tmp_path / "with_hint_stroke.png"), full_page=True)

    hints = colorizer.hint_layers[-1]
    assert hints is not None, "the painted stroke did not reach the model"
    assert hints.mode == "RGBA" and hints.size == photo.size
    layer = np.asarray(hints)
    painted = layer[..., 3] > 128
    rows, columns = np.nonzero(painted)
    assert painted.sum() > 0.4 * photo.width * 2 * app.BRUSH_RADIUS  # a band 40% of the width, the brush's width
    assert abs(rows.mean() - photo.height / 2) < photo.height * 0.1  # a band across the middle
    assert columns.min() > photo.width * 0.1 and columns.max() < photo.width * 0.9
    brush_colour = np.array(ImageColor.getrgb(app.HINT_COLORS[0]))  # the brush's default colour
    assert np.abs(layer[painted][:, :3].mean(axis=0) - brush_colour).max() < 8


def test_example_click_colorizes_it_and_caches_the_result(served_app, page):
    url, colorizer, app = served_app
    open_app(page, url)
    calls_before = len(colorizer.hint_layers)
    page.locator("#examples img").first.click()
    page.wait_for_function(RESULT_SHOWN, timeout=90_000)  # lazily cached: run on first use
    example = min(app.EXAMPLES_DIR.glob("*.jpg"))  # the first one shown
    slider_sizes = page.eval_on_selector_all("#before-after img", SLIDER_SIZES)
    assert slider_sizes == [list(Image.open(example).size)] * 2
    assert len(colorizer.hint_layers) == calls_before + 1

    open_app(page, url)  # a second visitor clicking it gets the cached result without a new run
    page.locator("#examples img").first.click()
    page.wait_for_function(RESULT_SHOWN, timeout=90_000)
    assert len(colorizer.hint_layers) == calls_before + 1


def lab_ab(image: Image.Image) -> np.ndarray:
    """(H, W, 2) a*b* of an image, via colorgan's own conversion."""
    import torch

    from colorgan.color import rgb_to_lab

    rgb = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)[None]
    return rgb_to_lab(rgb)[0, 1:].permute(1, 2, 0).numpy()


def test_a_stroke_colours_its_whole_region_in_the_returned_image(served_app, page, tmp_path):
    import httpx

    url, colorizer, app = served_app
    photo = Image.new("L", (480, 320), 175)  # two flat regions: light left half, dark right half
    photo.paste(85, (240, 0, 480, 320))
    photo_path = tmp_path / "two_regions.png"
    photo.save(photo_path)
    open_app(page, url)
    upload_photo(page, photo_path)
    page.locator("#compare label", has_text="without your hints").click()

    page.locator("#photo button[aria-label='Brush']").click()
    canvas = page.locator("#photo canvas").first.bounding_box()
    y = canvas["y"] + canvas["height"] * 0.5
    page.mouse.move(canvas["x"] + canvas["width"] * 0.2, y)
    page.mouse.down()
    page.mouse.move(canvas["x"] + canvas["width"] * 0.3, y, steps=10)  # a short stroke in the left half
    page.mouse.up()
    download = colorize_and_wait(page)
    page.screenshot(path=str(tmp_path / "stroke_colours_region.png"), full_page=True)

    calls = colorizer.hint_layers[-2:]  # with the stroke, then without it for the slider's "before"
    assert calls[0] is not None and calls[1] is None
    painted = np.asarray(calls[0])[..., 3] > 128
    rows, columns = np.nonzero(painted)
    assert columns.max() < 230, "the stroke landed in the left region"
    far = np.ones_like(painted)  # pixels at least 16 px from every painted pixel
    far[max(rows.min() - 16, 0) : rows.max() + 17, max(columns.min() - 16, 0) : columns.max() + 17] = False
    left, right = far.copy(), far.copy()
    left[:, 232:], right[:, :248] = False, False  # 8 px either side of the edge left out

    result = lab_ab(Image.open(io.BytesIO(httpx.get(download, timeout=30).content)))
    without_hints = lab_ab(colorizer.colorizer(photo))
    brush = lab_ab(Image.new("RGB", (1, 1), app.HINT_COLORS[0]))[0, 0]
    distance_before = np.linalg.norm(without_hints[left] - brush, axis=1).mean()
    distance_after = np.linalg.norm(result[left] - brush, axis=1).mean()
    assert distance_after < 0.3 * distance_before, (distance_before, distance_after)
    assert np.abs(result[right] - without_hints[right]).max() < 3, "the other region keeps its colours"

    # the slider compares the colorization without the stroke to the one with it
    before_src = page.eval_on_selector_all("#before-after img", "images => images.map(i => i.src)")[0]
    before = lab_ab(Image.open(io.BytesIO(httpx.get(before_src, timeout=30).content)))
    assert np.abs(before - without_hints).mean() < 1.0  # the slider's images are lossy-compressed previews


def test_a_click_places_a_dot_hint_that_colours_its_region(served_app, page, tmp_path):
    import httpx

    url, colorizer, app = served_app
    photo = Image.new("L", (480, 320), 175)  # light left half, dark right half
    photo.paste(85, (240, 0, 480, 320))
    photo_path = tmp_path / "two_regions.png"
    photo.save(photo_path)
    open_app(page, url)
    upload_photo(page, photo_path)
    page.locator("#photo button[aria-label='Brush']").click()
    canvas = page.locator("#photo canvas").first.bounding_box()
    page.mouse.click(canvas["x"] + canvas["width"] * 0.25, canvas["y"] + canvas["height"] * 0.5)  # one click
    download = colorize_and_wait(page)

    dot = np.asarray(colorizer.hint_layers[-1])[..., 3] > 128
    rows, columns = np.nonzero(dot)
    assert 0 < dot.sum() < 0.03 * dot.size, "a click paints a dot"
    assert np.ptp(columns) + 1 <= 2 * app.BRUSH_RADIUS + 4, "a thin default brush: a dot does not cover small objects"
    assert columns.max() < 230
    result = lab_ab(Image.open(io.BytesIO(httpx.get(download, timeout=30).content)))
    without_hints = lab_ab(colorizer.colorizer(photo))
    brush = lab_ab(Image.new("RGB", (1, 1), app.HINT_COLORS[0]))[0, 0]
    far_left = np.zeros(dot.shape, bool)
    far_left[:, :232] = True
    far_left[max(rows.min() - 16, 0) : rows.max() + 17, max(columns.min() - 16, 0) : columns.max() + 17] = False
    before = np.linalg.norm(without_hints[far_left] - brush, axis=1).mean()
    after = np.linalg.norm(result[far_left] - brush, axis=1).mean()
    assert after < 0.3 * before, (before, after)


def two_regions_photo(tmp_path) -> tuple[Image.Image, Path]:
    photo = Image.new("L", (480, 320), 175)  # light left half, dark right half
    photo.paste(85, (240, 0, 480, 320))
    photo.save(tmp_path / "two_regions.png")
    return photo, tmp_path / "two_regions.png"


PALETTE_OPEN = "() => document.querySelector('#photo menu.swatch') !== null"
BEFORE_SIDE_CHANGED = """shown => {
    const image = document.querySelector('#before-after img');
    return image !== null && image.complete && image.src !== shown;
}"""


def test_a_colour_pick_closes_the_palette_and_the_next_click_places_a_dot_of_that_colour(served_app, page, tmp_path):
    url, colorizer, app = served_app
    photo, photo_path = two_regions_photo(tmp_path)
    open_app(page, url)
    upload_photo(page, photo_path)
    page.locator("#photo button[aria-label='Brush']").click()

    page.locator("#photo button[aria-label='Color']").click()
    page.wait_for_function(PALETTE_OPEN)
    page.keyboard.press("Escape")
    page.wait_for_function(f"() => !({PALETTE_OPEN})()", timeout=5_000)  # Escape closes it

    page.locator("#photo button[aria-label='Color']").click()
    page.wait_for_function(PALETTE_OPEN)
    palette = page.locator("#photo menu.swatch").bounding_box()
    page.locator("#photo menu.swatch button.color").nth(3).click()  # HINT_COLORS[3], a red
    page.wait_for_function(f"() => !({PALETTE_OPEN})()", timeout=5_000)  # a pick closes it

    # click where the palette was, if that is on the photo (it opens over it), else on the left half
    canvas = page.locator("#photo canvas").first.bounding_box()
    x, y = palette["x"] + palette["width"] / 2, palette["y"] + palette["height"] / 2
    if not (canvas["x"] + canvas["width"] * 0.05 < x < canvas["x"] + canvas["width"] * 0.45):
        x = canvas["x"] + canvas["width"] * 0.25
    if not (canvas["y"] + canvas["height"] * 0.1 < y < canvas["y"] + canvas["height"] * 0.9):
        y = canvas["y"] + canvas["height"] * 0.5
    page.mouse.click(x, y)
    colorize_and_wait(page)

    layer = np.asarray(colorizer.hint_layers[-1])
    dot = layer[..., 3] > 128
    assert 0 < dot.sum() < 0.03 * dot.size, "the click placed a dot"
    picked = np.array(ImageColor.getrgb(app.HINT_COLORS[3]))
    assert np.abs(layer[dot][:, :3].mean(axis=0) - picked).max() < 8, "in the colour picked"


def test_switching_the_comparison_updates_the_slider_without_a_new_colorize(served_app, page, tmp_path):
    import httpx

    url, colorizer, _ = served_app
    photo, photo_path = two_regions_photo(tmp_path)
    open_app(page, url)
    upload_photo(page, photo_path)
    page.locator("#photo button[aria-label='Brush']").click()
    canvas = page.locator("#photo canvas").first.bounding_box()
    page.mouse.click(canvas["x"] + canvas["width"] * 0.25, canvas["y"] + canvas["height"] * 0.5)
    colorize_and_wait(page)  # compares black-and-white -> colour

    def before_side() -> tuple[str, np.ndarray]:
        source = page.eval_on_selector_all("#before-after img", "images => images.map(i => i.src)")[0]
        return source, lab_ab(Image.open(io.BytesIO(httpx.get(source, timeout=30).content)))

    shown, before = before_side()
    assert np.abs(before).max() < 2, "the before side is the black-and-white photo"
    without_hints = lab_ab(colorizer.colorizer(photo))
    assert np.abs(without_hints).mean() > 5, "the tiny model colours the photo (else nothing to compare)"

    page.locator("#compare label", has_text="without your hints").click()  # no Colorize pressed
    page.wait_for_function(BEFORE_SIDE_CHANGED, arg=shown, timeout=60_000)
    shown, before = before_side()
    assert np.abs(before - without_hints).mean() < 1.0, "the before side is the colorization without the dot"

    page.locator("#compare label", has_text="black-and-white").click()
    page.wait_for_function(BEFORE_SIDE_CHANGED, arg=shown, timeout=60_000)
    assert np.abs(before_side()[1]).max() < 2, "and back to the black-and-white photo"


def refused_within_5_seconds(page, upload, message: str) -> str:
    """Run `upload`; an error toast containing `message` must show within 5 s -> its text."""
    started = time.perf_counter()
    upload()
    error = page.locator(".toast-body", has_text=message)
    error.wait_for(timeout=5_000)
    assert time.perf_counter() - started < 5
    return error.inner_text()


def test_a_file_that_is_not_an_image_is_refused_at_once(served_app, page, tmp_path):
    url, _, app = served_app
    fake = tmp_path / "holiday.jpg"
    fake.write_text("a text file renamed to .jpg\n" * 50)
    open_app(page, url)
    error = refused_within_5_seconds(
        page, lambda: page.locator("#photo input[type=file]").set_input_files(str(fake)), "not an image file"
    )
    assert "holiday.jpg" in error


def test_a_48_megapixel_upload_is_refused_within_5_seconds(served_app, page, tmp_path):
    """The browser decodes the upload once, as it must to show it, and reports one over the limit at once."""
    url, _, _ = served_app
    huge = tmp_path / "scan.jpg"
    Image.new("L", (8000, 6000), 128).save(huge, quality=50)  # 48 MP, a few hundred kB
    open_app(page, url)
    error = refused_within_5_seconds(
        page, lambda: page.locator("#photo input[type=file]").set_input_files(str(huge)), "MP limit"
    )
    assert "scan.jpg: 8000x6000 is 48 MP, more than the 25 MP limit" in error


# Drops a file built from base64 bytes on the editor's upload area, as a drag from the desktop does.
DROP_FILE = """([name, base64]) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const files = new DataTransfer();
    files.items.add(new File([bytes], name, { type: "image/jpeg" }));
    const target = document.querySelector("#photo input[type=file]").closest("button") ||
        document.querySelector("#photo input[type=file]").parentElement;
    target.dispatchEvent(new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: files }));
}"""


def test_a_dropped_photo_within_the_limit_reaches_the_editor_and_a_48_megapixel_one_does_not(
    served_app, page, photos_dir, tmp_path
):
    """The size check holds a drop back until the browser has opened the file, then passes it on."""
    import base64
    url, _, _ = served_app
    open_app(page, url)
    photo = (photos_dir / "val" / PHOTO_NAME).read_bytes()
    page.evaluate(DROP_FILE, [PHOTO_NAME, base64.b64encode(photo).decode()])
    page.wait_for_function(PHOTO_LOADED, timeout=60_000)

    open_app(page, url)
    huge = io.BytesIO()
    Image.new("L", (8000, 6000), 128).save(huge, format="JPEG", quality=50)
    drop = base64.b64encode(huge.getvalue()).decode()
    error = refused_within_5_seconds(page, lambda: page.evaluate(DROP_FILE, ["drop.jpg", drop]), "MP limit")
    assert "drop.jpg: 8000x6000 is 48 MP" in error
    assert not page.evaluate(PHOTO_LOADED), "the refused scan never reached the editor"
