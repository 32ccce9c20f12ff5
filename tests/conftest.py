"""Shared fixtures: the real photo set beside the checkout and tiny models for fast CPU tests."""
from __future__ import annotations

from pathlib import Path

import pytest

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
