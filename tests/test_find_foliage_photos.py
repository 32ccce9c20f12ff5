"""scripts/find_foliage_photos.py: lists the photos that are largely green foliage, and only those."""
from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


load("make_training_mix")  # the finder imports it as a sibling module
find_foliage_photos = load("find_foliage_photos")


def photo(path: Path, top: tuple[int, int, int], bottom: tuple[int, int, int], bottom_share: float) -> None:
    """A 200x120 photo: `top` colour above, `bottom` colour on the lowest `bottom_share` of the rows."""
    pixels = np.empty((120, 200, 3), np.uint8)
    split = round(120 * (1 - bottom_share))
    pixels[:split], pixels[split:] = top, bottom
    Image.fromarray(pixels).save(path, quality=95)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    sky, grass, dry_grass, face = (110, 160, 220), (70, 130, 40), (170, 140, 80), (220, 170, 140)
    photo(folder / "meadow.jpg", sky, grass, 0.5)
    photo(folder / "dry-meadow.jpg", sky, dry_grass, 0.5)
    photo(folder / "portrait.jpg", face, grass, 0.05)  # a sliver of lawn: not a foliage photo
    photo(folder / "sea.jpg", sky, (30, 120, 110), 0.5)  # teal water is not foliage
    path = tmp_path / "manifest.tsv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "folder", "source"])
        for name in ("meadow.jpg", "dry-meadow.jpg", "portrait.jpg", "sea.jpg"):
            writer.writerow([name, "photos", "owner/repo"])
    return path


def test_lists_green_foliage_only(manifest: Path, capsys):
    folder = manifest.parent / "photos"
    assert find_foliage_photos.foliage_share(folder / "meadow.jpg") == pytest.approx(0.5, abs=0.03)
    find_foliage_photos.main([str(manifest), "--folder", f"photos={folder}", "--min-share", "0.15"])
    captured = capsys.readouterr()
    assert captured.out.split() == ["meadow.jpg"]
    assert "1 of 4 photos have 15% or more foliage" in captured.err


def test_refuses_a_missing_folder_or_photo(manifest: Path):
    with pytest.raises(SystemExit, match="no --folder for photos"):
        find_foliage_photos.main([str(manifest)])
    (manifest.parent / "photos" / "sea.jpg").unlink()
    with pytest.raises(SystemExit, match="sea.jpg: photo of the manifest not found"):
        find_foliage_photos.main([str(manifest), "--folder", f"photos={manifest.parent / 'photos'}"])
