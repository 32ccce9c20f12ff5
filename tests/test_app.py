"""The Gradio app (app.py + colorgan/webapp.py), driven over HTTP by gradio_client.

The app is launched in-process on 127.0.0.1 around tiny CPU models: the random tiny generator
(colourful but meaningless output) and, for the hint test, a tiny generator whose last layers
are set to copy the hint channels, so painted colour provably reaches the model.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
PHOTO_NAME = "python3-scipy__face.jpg"  # 512x384 raccoon among leaves: lots of texture
QUIET_GRADIO = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
RED = (220, 30, 30)


# ----------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lab(image: Image.Image) -> np.ndarray:
    """(H, W, 3) CIELAB of an image's 8-bit RGB, measured by skimage (independent of colorgan)."""
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(image.convert("RGB")))


def one_line(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text.strip()


@pytest.fixture(scope="module")
def app_module(tmp_path_factory):
    """app.py, imported from the repo root by path (it is a script, not part of the package)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in QUIET_GRADIO.items():
            patch.setenv(name, value)
        patch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path_factory.mktemp("examples_cache")))  # not in the checkout
        spec = importlib.util.spec_from_file_location("colorgan_app", REPO / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def launch(app_module, model_dir: Path):
    """Build the app around `model_dir` and serve it on a free 127.0.0.1 port -> (demo, url)."""
    from colorgan import Colorizer

    demo = app_module.build_demo(Colorizer.from_pretrained(model_dir, device="cpu"))
    _, url, _ = demo.launch(
        **app_module.LAUNCH_OPTIONS,
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
    )
    return demo, url


def client_for(url: str, download_dir: Path):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(download_dir), analytics_enabled=False)


@pytest.fixture(scope="module")
def app_url(app_module, tiny_model_dir):
    demo, url = launch(app_module, tiny_model_dir)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(app_url, tmp_path_factory):
    return client_for(app_url, tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="module")
def photo_path(photos_dir) -> Path:
    return photos_dir / "val" / PHOTO_NAME


@pytest.fixture(scope="module")
def hint_copying_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny generator with its last decoder block and head set to copy the hint channels.

    Everything before the last block still runs, but its features are weighted 0: the output is
    tanh(hint ab) where a hint is painted and 0 (gray) elsewhere, a model for which hints provably matter, so the test measures
    whether the app delivers the painted colour to the generator, not what a model learned.
    """
    import torch

    from colorgan import UNetGenerator

    generator = UNetGenerator.from_pretrained(tiny_model_dir)
    conv, norm, _ = generator.decoder[-1].convs[0]  # input: upsampled features + (L, hint a, hint b, mask)
    hint_a, hint_b = conv.in_channels - 3, conv.in_channels - 2
    with torch.no_grad():
        conv.weight.zero_()
        for channel, (source, sign) in enumerate([(hint_a, 1), (hint_a, -1), (hint_b, 1), (hint_b, -1)]):
            conv.weight[channel, source, 1, 1] = sign  # centre tap: relu(+a), relu(-a), relu(+b), relu(-b)
        norm.weight.fill_(1.0)  # batch norm (in eval mode) made the identity
        norm.bias.zero_()
        norm.running_mean.zero_()
        norm.running_var.fill_(1.0)
        generator.head.weight.zero_()
        generator.head.bias.zero_()
        generator.head.weight[0, :2, 0, 0] = torch.tensor([1.0, -1.0])  # a = relu(a) - relu(-a)
        generator.head.weight[1, 2:4, 0, 0] = torch.tensor([1.0, -1.0])  # b likewise
    folder = tmp_path_factory.mktemp("hint_copying_model")
    generator.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------- webapp, no server
def test_header_checked_editor_reaches_the_browser_as_gradios_own_image_editor():
    """A subclass is served as a custom component (its own frontend files, which it has none of) and
    sends only its own __init__'s arguments: both left the app with an empty page and no #photo."""
    from colorgan.app_editor import HeaderCheckedImageEditor

    editor = HeaderCheckedImageEditor(label="Photo", elem_id="photo", brush=False)
    config = editor.get_config()
    assert editor.get_block_name() == "imageeditor"
    assert config["label"] == "Photo" and config["elem_id"] == "photo" and config["brush"] is False
    assert config["type"] == "filepath"


def test_editor_value_splits_into_photo_and_merged_hint_layer():
    from colorgan.webapp import split_editor_value

    background = Image.new("RGBA", (40, 30), (90, 90, 90, 255))
    first, second = Image.new("RGBA", (40, 30)), Image.new("RGBA", (40, 30))
    ImageDraw.Draw(first).rectangle([0, 0, 9, 9], fill=(255, 0, 0, 255))
    ImageDraw.Draw(second).rectangle([5, 5, 14, 14], fill=(0, 0, 255, 255))
    photo, hints = split_editor_value({"background": background, "layers": [first, second], "composite": None})
    assert photo.mode == "RGB" and photo.size == (40, 30)  # the editor's all-opaque alpha is dropped
    assert hints.mode == "RGBA" and hints.size == (40, 30)
    assert hints.getpixel((2, 2)) == (255, 0, 0, 255)
    assert hints.getpixel((7, 7)) == (0, 0, 255, 255)  # the later layer paints over the earlier
    assert hints.getpixel((30, 20))[3] == 0  # unpainted stays transparent: no hint there


def test_editor_value_without_strokes_means_automatic_and_real_alpha_is_kept():
    from colorgan.webapp import split_editor_value

    background = Image.new("RGBA", (20, 10), (90, 90, 90, 255))
    background.putpixel((0, 0), (90, 90, 90, 0))
    photo, hints = split_editor_value({"background": background, "layers": [Image.new("RGBA", (20, 10))]})
    assert hints is None
    assert photo.mode == "RGBA"  # a photo with real transparency keeps it


def test_editor_layer_of_canvas_size_is_stretched_onto_the_photo():
    from colorgan.webapp import split_editor_value

    layer = Image.new("RGBA", (20, 10))
    ImageDraw.Draw(layer).rectangle([10, 0, 19, 9], fill=(0, 200, 0, 255))  # right half
    _, hints = split_editor_value({"background": Image.new("RGB", (40, 20), "gray"), "layers": [layer]})
    assert hints.size == (40, 20)
    assert hints.getpixel((35, 10))[3] == 255 and hints.getpixel((5, 10))[3] == 0


@pytest.mark.parametrize("value", [None, {}, {"background": None, "layers": [], "composite": None}])
def test_editor_value_without_a_photo_is_a_clear_error(value):
    from colorgan import ImageError
    from colorgan.webapp import split_editor_value

    with pytest.raises(ImageError, match="no photo"):
        split_editor_value(value)


def test_colorize_photo_checks_settings_and_hint_size(tiny_model_dir):
    from colorgan import Colorizer, ImageError
    from colorgan.webapp import colorize_photo

    colorizer = Colorizer.from_pretrained(tiny_model_dir, device="cpu")
    photo = Image.new("L", (48, 32), 128)
    with pytest.raises(ValueError, match="saturation"):
        colorize_photo(colorizer, photo, saturation=2.5)
    with pytest.raises(ValueError, match="render resolution"):
        colorize_photo(colorizer, photo, render_size=4096)
    with pytest.raises(ImageError, match="hint layer is 10x10 but the photo is 48x32"):
        colorize_photo(colorizer, photo, Image.new("RGBA", (10, 10)))
    with pytest.raises(ImageError, match="MP limit"):
        colorize_photo(colorizer, photo, max_pixels=1000)
    assert colorize_photo(colorizer, photo, render_size=128).size == (48, 32)


# ----------------------------------------------------------------------------- the running app
def test_api_colorize_needs_only_the_image(client):
    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/colorize"]
    required = [p["parameter_name"] for p in endpoint["parameters"] if not p["parameter_has_default"]]
    optional = {
        p["parameter_name"]: p["parameter_default"] for p in endpoint["parameters"] if p["parameter_has_default"]
    }
    assert required == ["image"]
    assert optional == {"hints": None, "saturation": 1.0, "render_size": 512}


def test_real_photo_comes_back_full_size_with_the_same_lightness(client, photo_path):
    from gradio_client import handle_file

    result = Image.open(client.predict(handle_file(str(photo_path)), api_name="/colorize"))
    photo = Image.open(photo_path)
    assert result.format == "PNG" and result.mode == "RGB"
    assert result.size == photo.size
    lightness_error = np.abs(lab(result)[..., 0] - lab(photo)[..., 0])
    print(f"\nL* error: max {lightness_error.max():.2f}, mean {lightness_error.mean():.3f}")
    assert lightness_error.max() <= 1.0, f"L* differs by up to {lightness_error.max():.2f}"
    chroma = np.hypot(*lab(result)[..., 1:].transpose(2, 0, 1))
    assert chroma.mean() > 1.0  # it is coloured, not a gray copy (the random model is colourful)


def test_common_formats_are_accepted(client, photo_path, tmp_path):
    from gradio_client import handle_file

    photo = Image.open(photo_path).convert("RGB").resize((192, 144))
    gray16 = Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257)  # 16-bit grayscale
    with_alpha = photo.convert("RGBA")
    with_alpha.putalpha(Image.linear_gradient("L").resize(photo.size))
    files = {"16bit.png": gray16, "alpha.png": with_alpha, "photo.webp": photo, "photo.tif": photo}
    files |= {"photo.bmp": photo, "photo.gif": photo.convert("P"), "gray.jpg": photo.convert("L")}
    for name, image in files.items():
        image.save(tmp_path / name)
        result = Image.open(client.predict(handle_file(str(tmp_path / name)), render_size=128, api_name="/colorize"))
        assert result.size == photo.size, name
        assert result.mode == ("RGBA" if name == "alpha.png" else "RGB"), name
        if name == "alpha.png":  # transparency survives, pixel for pixel
            assert np.array_equal(np.asarray(result.getchannel("A")), np.asarray(with_alpha.getchannel("A")))
        if name == "16bit.png":  # 16-bit input is read at full depth, not clipped to white
            assert abs(lab(result)[..., 0].mean() - lab(photo)[..., 0].mean()) < 1.0


def test_ui_endpoint_returns_before_after_and_full_size_png(client, photo_path):
    from gradio_client import handle_file

    editor_value = {"background": handle_file(str(photo_path)), "layers": [], "composite": None}
    (before, after), png = client.predict(editor_value, 1.0, 256, "photo", api_name="/colorize_editor")
    photo = Image.open(photo_path)
    assert Image.open(before).size == Image.open(after).size == photo.size
    before_rgb = np.asarray(Image.open(before).convert("RGB")).astype(int)
    assert np.abs(before_rgb - before_rgb[..., :1]).max() <= 3  # the "before" side is grayscale (webp-lossy)
    assert np.abs(lab(Image.open(after))[..., 1:]).mean() > 1.0  # the "after" side has colour
    full = Image.open(png)
    assert full.format == "PNG" and full.size == photo.size


def test_painted_hint_pulls_the_region_toward_the_hint_colour(app_module, hint_copying_model_dir, photo_path, tmp_path):
    from gradio_client import handle_file

    photo = Image.open(photo_path)
    stroke_box = (60, 170, 450, 200)  # a thick red stroke across the raccoon's face
    layer = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle(stroke_box, fill=(*RED, 255))
    layer_path = tmp_path / "hints.png"
    layer.save(layer_path)
    inside = (slice(stroke_box[1] + 5, stroke_box[3] - 5), slice(stroke_box[0] + 10, stroke_box[2] - 10))
    hint_ab = lab(Image.new("RGB", (1, 1), RED))[0, 0, 1:]
    direction = hint_ab / np.linalg.norm(hint_ab)

    demo, url = launch(app_module, hint_copying_model_dir)
    try:
        hint_client = client_for(url, tmp_path)
        image = handle_file(str(photo_path))
        plain = lab(Image.open(hint_client.predict(image, api_name="/colorize")))
        via_api = lab(Image.open(hint_client.predict(image, hints=handle_file(str(layer_path)), api_name="/colorize")))
        editor_value = {"background": image, "layers": [handle_file(str(layer_path))], "composite": None}
        _, png = hint_client.predict(editor_value, 1.0, 512, "photo", api_name="/colorize_editor")
        via_editor = lab(Image.open(png))
    finally:
        demo.close()

    plain_ab = plain[inside][..., 1:].reshape(-1, 2).mean(axis=0)
    for hinted in (via_api, via_editor):
        hinted_ab = hinted[inside][..., 1:].reshape(-1, 2).mean(axis=0)
        moved_toward_hint = float((hinted_ab - plain_ab) @ direction)
        print(f"\nhint {hint_ab.round(1)}: region ab {plain_ab.round(1)} without, {hinted_ab.round(1)} with the stroke")
        assert moved_toward_hint > 25, f"moved only {moved_toward_hint:.1f} toward the hint: {plain_ab} -> {hinted_ab}"
        hue_error = np.degrees(np.arccos(np.clip(hinted_ab @ direction / np.linalg.norm(hinted_ab), -1, 1)))
        assert hue_error < 15, f"hinted region's hue is {hue_error:.0f} degrees off the hint's"
        # how far a stroke spreads (its region, up to the photo's edges) is tested in test_propagation.py
        # and, through the browser, in test_app_browser.py
        assert np.abs(hinted[..., 0] - plain[..., 0]).max() <= 1.0  # hints never change lightness


def bad_inputs(folder: Path, photo_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words the error must contain)."""
    jpeg = photo_path.read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not a photo\n")
    (folder / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    Image.new("L", (6000, 5000)).save(folder / "huge.png")  # 30 MP, a few kB on disk
    return {
        "corrupt": (folder / "truncated.jpg", "corrupt or truncated"),
        "empty": (folder / "empty.png", "empty file"),
        "non-image": (folder / "notes.txt", "not an image"),
        "broken png": (folder / "fake.png", "png"),
        "oversize": (folder / "huge.png", "30 MP, more than the 25 MP limit"),
    }


def test_bad_inputs_get_clear_errors_and_the_server_keeps_serving(client, photo_path, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    good, photo_size = handle_file(str(photo_path)), Image.open(photo_path).size
    for name, (path, words) in bad_inputs(tmp_path, photo_path).items():
        with pytest.raises(AppError) as caught:
            client.predict(handle_file(str(path)), api_name="/colorize")
        message = str(caught.value)
        assert words.lower() in message.lower(), f"{name}: {message}"
        assert one_line(message) and str(tmp_path) not in message, f"{name}: {message!r}"
        assert Image.open(client.predict(good, render_size=128, api_name="/colorize")).size == photo_size

    wrong_size_hints = tmp_path / "small_hints.png"
    Image.new("RGBA", (10, 10), (*RED, 255)).save(wrong_size_hints)
    with pytest.raises(AppError, match="hint layer is 10x10"):
        client.predict(good, hints=handle_file(str(wrong_size_hints)), api_name="/colorize")
    with pytest.raises(AppError, match="no image given"):
        client.predict(None, api_name="/colorize")
    with pytest.raises(AppError, match="no photo"):
        client.predict({"background": None, "layers": [], "composite": None}, 1.0, 512, "photo", api_name="/colorize_editor")
    with pytest.raises(AppError):  # the slider's bounds are enforced for API callers too
        client.predict(good, saturation=7.0, api_name="/colorize")
    assert Image.open(client.predict(good, api_name="/colorize")).size == photo_size


def test_upload_over_the_file_size_limit_is_refused(client, app_url, app_module, photo_path, tmp_path):
    import httpx
    from gradio_client import handle_file

    from colorgan.limits import APP_MAX_FILE_SIZE

    limit = int(APP_MAX_FILE_SIZE.removesuffix("mb")) * 1024 * 1024
    too_big = tmp_path / "too_big.jpg"
    with open(too_big, "wb") as handle:
        handle.write(photo_path.read_bytes())
        handle.truncate(limit + 1024)
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client reads the limit from the app
        client.predict(handle_file(str(too_big)), api_name="/colorize")
    with open(too_big, "rb") as handle:  # a client that ignores it is stopped by the server
        response = httpx.post(f"{app_url}gradio_api/upload", files={"files": handle}, timeout=60)
    assert response.status_code == 413 and "maximum allowed size" in response.text
    served = Image.open(client.predict(handle_file(str(photo_path)), api_name="/colorize"))
    assert served.size == Image.open(photo_path).size


def test_editor_refuses_a_huge_photo_from_its_header_and_keeps_serving(client, app_url, photo_path, tmp_path):
    """Issue 21: the editor used to decode a 169 MP upload (Gradio's own decode) before colorgan's check."""
    import resource

    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    huge = tmp_path / "huge.png"
    Image.new("L", (13000, 13000)).save(huge, compress_level=1)  # ~170 KB on disk
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(AppError, match="huge.png: 13000x13000 is 169 MP, more than the 25 MP limit") as caught:
        client.predict({"background": handle_file(str(huge)), "layers": [], "composite": None}, 1.0, 256, "photo",
                       api_name="/colorize_editor")
    assert time.perf_counter() - started < 5 and one_line(str(caught.value))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 100, grown_mb  # a decode of the photo alone would be 169 MB (L) to 676 MB (RGBA)
    editor_value = {"background": handle_file(str(photo_path)), "layers": [], "composite": None}
    (_, after), _ = client.predict(editor_value, 1.0, 256, "photo", api_name="/colorize_editor")
    assert Image.open(after).size == Image.open(photo_path).size


def test_load_8_concurrent_clients_x_5_requests(app_url, photos_dir, tmp_path):
    import psutil
    from gradio_client import handle_file

    photos = sorted((photos_dir / "val").glob("*.jpg"))[:8]
    process = psutil.Process()
    baseline = peak = process.memory_info().rss
    done = threading.Event()

    def sample_rss():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.01)

    def user(index: int) -> list[tuple[int, int]]:
        user_client = client_for(app_url, tmp_path / f"user{index}")
        photo = photos[index % len(photos)]
        return [Image.open(user_client.predict(handle_file(str(photo)), api_name="/colorize")).size for _ in range(5)]

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            sizes = list(pool.map(user, range(8)))
    finally:
        done.set()
        sampler.join()
    elapsed = time.perf_counter() - started
    for index, user_sizes in enumerate(sizes):
        assert user_sizes == [Image.open(photos[index]).size] * 5
    mib = 1024 * 1024
    print(
        f"\nload: 40 requests from 8 clients in {elapsed:.1f} s; process RSS {baseline / mib:.0f} MiB before,"
        f" peak {peak / mib:.0f} MiB (+{(peak - baseline) / mib:.0f} MiB)"
    )
    assert peak - baseline < 1024 * mib, "serving 40 small photos grew the process by over 1 GiB"
    assert peak < 4096 * mib


# ----------------------------------------------------------------------------- python app.py
def app_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "COLORGAN_"))}
    return {**env, **QUIET_GRADIO, **extra}


def test_app_stops_with_one_line_when_the_model_cannot_be_loaded(tmp_path):
    finished = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "--model", "/nonexistent"],
        cwd=tmp_path,
        env=app_environment(),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode != 0
    assert one_line(finished.stderr), finished.stderr
    assert "/nonexistent" in finished.stderr and "model" in finished.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory


def test_python_app_py_serves_on_gradio_server_port(tiny_model_dir, tmp_path):
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--model", str(tiny_model_dir)],
        cwd=tmp_path,
        env=app_environment(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"app.py exited early:\n{server.stdout.read()}"
            assert time.monotonic() < deadline, "app.py did not start serving within 120 s"
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                if page.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert "colorgan" in page.text
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).json()
        assert any(d.get("api_name") == "colorize" for d in config["dependencies"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory


# ----------------------------------------------------------------------------- the Video tab
def make_clip(path: Path, photo_path: Path, size=(96, 64), frames=10, fps=12, audio=True) -> Path:
    from colorgan.evaluation.video import encode_clip, synthetic_clip

    encode_clip(synthetic_clip(Image.open(photo_path), "pan", size, frames), path, fps, audio_hz=440.0 if audio else None)
    return path


def test_api_colorize_video_returns_an_mp4_with_the_clips_frames_and_sound(client, photo_path, tmp_path):
    from gradio_client import handle_file

    from colorgan.video import probe

    clip = make_clip(tmp_path / "home movie.mp4", photo_path)
    result = client.predict(handle_file(str(clip)), api_name="/colorize_video")
    path = Path(result)  # the MP4's path, downloaded
    info, original = probe(path), probe(clip)
    assert path.name == "home movie_color.mp4"
    assert (info.width, info.height, info.frames, info.fps) == (96, 64, 10, original.fps)
    assert info.codec == "h264" and info.audio_streams == 1


def test_video_tab_limits_and_bad_clips_get_one_line_errors(app_module, client, photo_path, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from colorgan.limits import APP_MAX_VIDEO_SIDES
    from colorgan.webapp import colorize_clip
    from colorgan.video import VideoError

    wide = make_clip(tmp_path / "wide.mp4", photo_path, size=(APP_MAX_VIDEO_SIDES[0] + 2, 96), frames=2)
    (tmp_path / "notes.mp4").write_text("not a video")
    for path, words in [(wide, "larger than the app takes"), (tmp_path / "notes.mp4", "not a video file")]:
        with pytest.raises(AppError) as caught:
            client.predict(handle_file(str(path)), api_name="/colorize_video")
        message = str(caught.value)
        assert words in message and one_line(message) and str(tmp_path) not in message, message
    # the duration limit, checked without a long upload: a 2 s clip against a 1 s limit
    long_clip = make_clip(tmp_path / "long.mp4", photo_path, frames=24, fps=12)
    with pytest.raises(VideoError, match="long.mp4: 2 s is longer than the app's 1 s"):
        colorize_clip(client_colorizer(tmp_path), long_clip, tmp_path / "out", max_seconds=1)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.mp4"))


def client_colorizer(folder: Path):
    """A stand-in model: the limits are checked before any colorizing."""

    class NoModel:
        default_render_size = 256

        def checked_settings(self, saturation, render_size, **ranges):
            return render_size or self.default_render_size

        def full_resolution_lightness(self, *args, **kwargs):
            raise AssertionError("a clip over the limits must not be colorized")

    return NoModel()


def test_example_cache_stays_out_of_the_working_directory(app_module, tiny_model_dir, monkeypatch, tmp_path):
    import gradio.utils

    monkeypatch.delenv("GRADIO_EXAMPLES_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    from colorgan import Colorizer

    app_module.build_demo(Colorizer.from_pretrained(tiny_model_dir, device="cpu"))
    cache = gradio.utils.get_cache_folder().resolve()
    assert tmp_path not in cache.parents and cache != tmp_path
    assert not any(tmp_path.iterdir()), "building the app wrote into the working directory"
