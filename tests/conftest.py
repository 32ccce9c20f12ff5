"""Shared fixtures: the real photo set beside the checkout and tiny models for fast CPU tests."""
from __future__ import annotations

# ---- a fake Hugging Face Hub for the whole session (tests/hub_server.py). huggingface_hub reads
# HF_ENDPOINT and HF_HOME once, when imported, so this block runs before anything imports it: every
# Hub call of every test goes to 127.0.0.1, and nothing touches the user's cache or token.
import atexit
import os
import shutil
import sys
import tempfile

from hub_server import FakeHub  # tests/ is on sys.path: pytest puts a rootdir conftest's folder there

if "huggingface_hub" in sys.modules:
    raise RuntimeError("tests/conftest.py must set HF_ENDPOINT before huggingface_hub is imported")
FAKE_HUB = FakeHub.start()
_HF_HOME = tempfile.mkdtemp(prefix="colorgan-tests-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ.update(HF_ENDPOINT=FAKE_HUB.url, HF_HOME=_HF_HOME, HF_HUB_DISABLE_TELEMETRY="1")
for _name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
    os.environ.pop(_name, None)
# ---- end of the fake Hub block
# One torch thread per process (this one and the subprocesses tests start): the suite runs app
# workers, training processes and colorizations side by side on few cores, where a second OpenMP
# thread mostly spin-waits for a busy core (measured: up to 15x slower on 2 shared cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "photos"
# Small decoder widths keep generator tests fast; the structure is the real one.
TINY_GENERATOR = dict(encoder_name="resnet18", decoder_channels=[32, 16, 16, 8, 8])


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    if not (PHOTOS / "val").is_dir():
        pytest.skip(f"the real photo set is not at {PHOTOS}")
    return PHOTOS


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny generator (random weights), laid out like a Hub repo."""
    import torch

    from colorgan import UNetGenerator

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_model")
    UNetGenerator(**TINY_GENERATOR).save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------- shared test helpers
def val_photo_paths(photos_dir: Path, count: int) -> list[Path]:
    """The first `count` validation photos (sorted), so every test sees the same ones."""
    paths = sorted((photos_dir / "val").glob("*.jpg"))[:count]
    if len(paths) < count:
        pytest.skip(f"need {count} photos in {photos_dir / 'val'}, found {len(paths)}")
    return paths


def skimage_lightness(image):
    """L* (H, W) of a PIL image's 8-bit RGB, measured by skimage (the independent reference)."""
    import numpy as np
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(image.convert("RGB")))[..., 0]


def assert_one_line(message: str) -> None:
    """User-facing errors are one non-empty line."""
    text = str(message).strip()
    assert text, "empty error message"
    assert "\n" not in text, f"error message spans several lines: {text!r}"


@pytest.fixture(scope="session")
def fake_hub() -> FakeHub:
    """The fake Hub that HF_ENDPOINT points at for the whole session (see the top of this file)."""
    return FAKE_HUB


@pytest.fixture
def one_torch_thread():
    """Run torch single-threaded: on a small machine shared with other work, a second intra-op
    thread mostly spins waiting for a core (this suite: 200 s -> 29 s, measured). Use it with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
