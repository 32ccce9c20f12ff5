"""The starter checkpoint bundled with the package: loadable offline, small, carded, and really colorizing."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from huggingface_hub import ModelCard

from colorgan import Colorizer
from colorgan.evaluate import grayscale_version, sample_hints
from colorgan.imaging import decode, open_image, to_pil
from colorgan.metrics import colorfulness, psnr
from colorgan.pipeline import STARTER_MODEL

from conftest import val_photo_paths

MAX_BUNDLED_BYTES = 25 * 1024 * 1024


def test_starter_is_bundled_small_and_carded():
    weights = STARTER_MODEL / "model.safetensors"
    assert weights.is_file() and (STARTER_MODEL / "config.json").is_file()
    assert weights.stat().st_size <= MAX_BUNDLED_BYTES
    card = ModelCard.load(STARTER_MODEL / "README.md")
    assert card.data.library_name == "colorgan"
    assert card.data.eval_results, "the card carries the evaluation results"
    assert "Colorizer.from_pretrained" in card.text


def test_starter_loads_offline_on_a_fresh_process(tmp_path):
    code = "from colorgan import Colorizer; c = Colorizer.from_pretrained(); print(type(c.generator).__name__)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "UNetGenerator"


@pytest.fixture(scope="module")
def starter() -> Colorizer:
    return Colorizer.from_pretrained()


def test_starter_gives_colour_and_hints_help(starter, photos_dir):
    """On real validation photos: clearly colourful output, and 10 true-colour hints raise PSNR."""
    gains, colourfulness_values = [], []
    for path in val_photo_paths(photos_dir, 6):
        truth = decode(open_image(path)).rgb.float() / 255
        gray = to_pil(grayscale_version(truth))
        hints = sample_hints(truth, 10, torch.Generator().manual_seed(0))
        plain = decode(starter(gray)).rgb.float() / 255
        hinted = decode(starter(gray, hints=hints)).rgb.float() / 255
        gains.append((psnr(hinted, truth) - psnr(plain, truth)).item())
        colourfulness_values.append(colorfulness(plain).item())
    assert sum(colourfulness_values) / len(colourfulness_values) > 15, colourfulness_values  # not sepia or gray
    assert sum(gains) / len(gains) > 0.3, gains

