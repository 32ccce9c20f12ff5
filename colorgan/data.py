"""Training data: any image dataset streamed with `datasets`, decoded in DataLoader workers.

The same code path reads COCO or CelebA from the Hub, any Hub image dataset, or a local
folder (of images, or of parquet files): `datasets.load_dataset(..., streaming=True)`.
Workers decode raw bytes, skip unusable images (counted by reason), and yield fixed-size
uint8 RGB squares; random crops, flips and the Lab conversion happen batched on the
training device (`random_resized_crop`), which also keeps the loader deterministic so a
resumed run sees exactly the batches it would have seen.
"""
from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .color import rgb_to_lab
from .imaging import ImageError, image_files, open_image

# Preset name -> (Hub dataset id, image column)
PRESETS = {
    "coco": ("detection-datasets/coco", "image"),
    "celeba": ("nielsr/CelebA-faces", "image"),
}
SKIP_REASONS = ("undecodable", "tiny", "grayscale")
# Near-gray photos (COCO has black-and-white ones) would teach the model to predict gray.
GRAYSCALE_CHROMA = 4.0  # mean sqrt(a^2 + b^2) below this, in Lab units, counts as grayscale


SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "valid", "validation"), "test": ("test",)}


def _local_image_files(folder: Path, split: str) -> list[str]:
    """Images of a split: those under `folder/<split>/` if it exists, else all (train only)."""
    names = SPLIT_FOLDERS.get("validation" if split == "val" else split, (split,))
    roots = [folder / name for name in names if (folder / name).is_dir()]
    if not roots:
        if split != "train":
            raise ValueError(f"{folder} has no {split} subfolder")
        roots = [folder]
    files = sorted(str(path) for root in roots for path in image_files(root, recursive=True))
    if not files:
        raise ValueError(f"{folder}: no images found for split {split!r}")
    return files


def _read_files(paths: list[str]):
    for path in paths:
        yield {"image": {"bytes": None, "path": path}}


def open_stream(dataset: str, split: str = "train", image_column: str | None = None):
    """Stream a dataset with a single `image` column of raw (undecoded) image data.

    Hub datasets and local parquet are read with `datasets.load_dataset(..., streaming=True)`
    and resharded by parquet row group. A local image folder is streamed one shard per file
    (`IterableDataset.from_generator` over the file list): `load_dataset("imagefolder")`
    streams a folder as a single shard, which no two processes or workers could share.

    Args:
        dataset: a preset (`coco`, `celeba`), a Hub dataset id, or a local folder of images
            (optionally in `train/`, `val/` subfolders) or of parquet files.
        split: which split to read.
        image_column: the column holding images (default: the preset's, else the first
            column of type Image, else `image`).

    Raises:
        ValueError: the folder holds no images or the dataset has no image column.
    """
    import datasets

    if dataset in PRESETS:
        dataset, image_column = PRESETS[dataset][0], image_column or PRESETS[dataset][1]
    folder = Path(dataset)
    if folder.is_dir() and not parquet_files(dataset):
        files = _local_image_files(folder, split)
        return datasets.IterableDataset.from_generator(_read_files, gen_kwargs={"paths": files})
    stream, image_column = with_raw_images(load_table_stream(dataset, split), dataset, image_column)
    stream = stream.select_columns([image_column])
    return stream.rename_column(image_column, "image") if image_column != "image" else stream


def parquet_files(source: str) -> list[str]:
    """The local parquet files `source` names, sorted: a folder's (at any depth), one file, or a glob's.

    Args:
        source: a folder, a `.parquet` file or a glob pattern (`scans/*.parquet`); anything else
            (a Hub dataset id, a folder of images) names none.
    """
    path = Path(source)
    if path.is_dir():
        return sorted(str(found) for found in path.rglob("*.parquet"))
    if path.suffix == ".parquet" and path.is_file():
        return [str(path)]
    if glob.has_magic(source):
        return sorted(found for found in glob.glob(source, recursive=True) if found.endswith(".parquet"))
    return []


def load_table_stream(dataset: str, split: str = "train", *, token: str | None = None):
    """A Hub dataset or local parquet files, streamed with `datasets` and resharded by parquet row group.

    One shard per row group leaves room for many processes and DataLoader workers, and a shard is a
    fixed set of rows: the same on every read, whichever process reads it.

    Args:
        dataset: local parquet files (see `parquet_files`), else a Hub dataset id.
        split: which split to read.
        token: Hub token, for private datasets.

    Raises:
        FileNotFoundError: no such Hub dataset (datasets' `DatasetNotFoundError`), or no such split.
    """
    import datasets

    files = parquet_files(dataset)
    if files:
        stream = datasets.load_dataset("parquet", data_files={split: files}, split=split, streaming=True)
    else:
        stream = datasets.load_dataset(dataset, split=split, streaming=True, token=token)
    return stream.reshard()


def with_raw_images(stream, dataset: str, image_column: str | None = None):
    """`stream` with its image column left undecoded (raw bytes or paths), and that column's name.

    Args:
        stream: a `datasets.IterableDataset`.
        dataset: what it was read from, named by errors.
        image_column: the column holding images (default: the first column of type Image, else `image`).

    Raises:
        ValueError: the dataset has no such column.
    """
    import datasets

    features = stream.features or {}
    if image_column is None:
        image_columns = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
        image_column = image_columns[0] if image_columns else "image"
    if features and image_column not in features:
        raise ValueError(f"{dataset} has no column {image_column!r} (columns: {', '.join(features)})")
    if isinstance(features.get(image_column), datasets.Image):
        stream = stream.cast_column(image_column, datasets.Image(decode=False))
    return stream, image_column


def image_bytes(value) -> bytes:
    """An image cell (dict with bytes/path, raw bytes, or a path) -> encoded bytes.

    Raises:
        ImageError: a cell of another type; OSError: a path that cannot be read.
    """
    if value is None:
        raise ImageError("no image in this row")
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return Path(value).read_bytes()
    raise ImageError(f"unsupported image cell of type {type(value).__name__}")


class ExamplePreparer:
    """Decodes one example into a (size, size, 3) uint8 square, or marks why it was skipped.

    Runs in DataLoader workers; deterministic (no randomness), so resumed runs repeat exactly.

    Args:
        size: side of the square yielded.
        min_side: images whose short side is below this are skipped as tiny.
    """

    def __init__(self, size: int, min_side: int):
        self.size, self.min_side = size, min_side

    def __call__(self, example: dict) -> dict:
        try:
            image = open_image(image_bytes(example["image"]), draft_size=(self.size, self.size))
        except (ImageError, OSError):
            return self._skipped("undecodable")
        if min(image.size) < self.min_side:
            return self._skipped("tiny")
        image = image.convert("RGB")
        if self._is_grayscale(image):
            return self._skipped("grayscale")
        scale = self.size / min(image.size)
        width, height = max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
        left, top = (width - self.size) // 2, (height - self.size) // 2
        square = np.asarray(image.crop((left, top, left + self.size, top + self.size)))
        return {"pixels": square, "skip": ""}

    def _skipped(self, reason: str) -> dict:
        return {"pixels": np.zeros((self.size, self.size, 3), np.uint8), "skip": reason}

    @staticmethod
    def _is_grayscale(image: Image.Image) -> bool:
        thumbnail = image.copy()
        thumbnail.thumbnail((64, 64))
        pixels = torch.from_numpy(np.asarray(thumbnail).copy()).permute(2, 0, 1)[None]
        ab = rgb_to_lab(pixels)[:, 1:]
        return bool(ab.norm(dim=1).mean() < GRAYSCALE_CHROMA)


def training_stream(stream, square_size: int, seed: int, shuffle_buffer: int = 0):
    """Shuffle (seeded, re-shuffled by `set_epoch`) and decode a raw stream into uint8 squares.

    Images whose short side is under half the square are skipped as tiny.

    With `shuffle_buffer=0` only the order of shards is shuffled: for image folders every
    file is a shard, so that is a full shuffle, and a resumed run continues exactly.
    A buffer mixes examples within large shards (parquet), but `datasets` does not save
    the buffer's content, so a resume refills it and is then only approximately exact.
    """
    # buffer_size=1 shuffles only the shard order (each example passes straight through)
    shuffled = stream.shuffle(seed=seed, buffer_size=max(shuffle_buffer, 1))
    return shuffled.map(ExamplePreparer(square_size, min_side=square_size // 2), remove_columns=["image"])


def collate(examples: Sequence[dict]) -> dict:
    """Stack the usable squares -> {"pixels": (N, 3, S, S) uint8, "skipped": Counter of reasons}."""
    usable = [example["pixels"] for example in examples if not example["skip"]]
    skipped = Counter(example["skip"] for example in examples if example["skip"])
    if usable:
        pixels = torch.from_numpy(np.stack(usable)).permute(0, 3, 1, 2).contiguous()
    else:
        size = examples[0]["pixels"].shape[0]
        pixels = torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return {"pixels": pixels, "skipped": skipped}


def random_resized_crop(pixels: torch.Tensor, resolution: int, min_scale: float = 0.6) -> torch.Tensor:
    """Batched random square crop (side min_scale..1 of the input), resize and horizontal flip.

    Uses torch's global RNG on the batch's device, so seeded and resumed runs repeat.

    Args:
        pixels: (B, 3, S, S) uint8 squares from the loader, on the training device.
        resolution: output side.

    Returns:
        (B, 3, resolution, resolution) float32 RGB in [0, 1].
    """
    batch = pixels.shape[0]
    images = pixels.float() / 255.0
    scale = torch.empty(batch, device=pixels.device).uniform_(min_scale, 1.0)
    offset = (torch.rand(batch, 2, device=pixels.device) * 2 - 1) * (1 - scale[:, None])  # keeps the crop inside
    flip = torch.where(torch.rand(batch, device=pixels.device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=pixels.device)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = offset
    grid = F.affine_grid(theta, [batch, 3, resolution, resolution], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def load_validation_images(stream, resolution: int, count: int) -> tuple[torch.Tensor, Counter]:
    """The first `count` usable images of a raw stream, center squares -> (N, 3, R, R) uint8."""
    preparer = ExamplePreparer(resolution, min_side=resolution // 2)
    usable, skipped = [], Counter()
    for example in stream:
        prepared = preparer(example)
        if prepared["skip"]:
            skipped[prepared["skip"]] += 1
            continue
        usable.append(prepared)
        if len(usable) == count:
            break
    if not usable:
        raise ValueError("the validation data holds no usable image")
    return collate(usable)["pixels"], skipped
