"""Reading images safely, finding them in folders, and turning any PIL mode into an RGB tensor plus optional alpha."""
from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .limits import MAX_PIXELS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


class ImageError(ValueError):
    """An input that is not a usable image; the message is one line naming the problem."""


def image_files(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """The image files (by suffix) in a folder, sorted; none when there are none.

    Args:
        folder: the folder to look in.
        recursive: also look in its subfolders, at any depth.
    """
    candidates = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(path for path in candidates if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside a folder, sorted by name; there must be some.

    Raises:
        ImageError: the folder does not exist or holds no image files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: no such folder")
    paths = image_files(folder)
    if not paths:
        raise ImageError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    return paths


def open_image(
    source: str | os.PathLike | bytes | Image.Image,
    *,
    max_pixels: int = MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Open and fully decode an image, applying its EXIF orientation (a PIL image that needs none is returned as is).

    Args:
        source: a path, the encoded bytes, or an already opened PIL image.
        max_pixels: refuse images with more pixels than this.
        draft_size: let JPEG decoding downscale (by 1/2, 1/4, 1/8) to no less than this size;
            much faster when the caller will shrink the image anyway.

    Raises:
        ImageError: missing file, not an image, truncated or corrupt data, or too many pixels.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "image"
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, bytes):
            if not source:
                raise ImageError("empty file: no image data")
            image = Image.open(io.BytesIO(source))
        else:
            if not Path(source).is_file():
                raise ImageError(f"{name}: no such file")
            if Path(source).stat().st_size == 0:
                raise ImageError(f"{name}: empty file, no image data")
            image = Image.open(source)
        if image.width * image.height > max_pixels:
            raise ImageError(
                f"{name}: {image.width}x{image.height} is {image.width * image.height / 1e6:.0f} MP,"
                f" more than the {max_pixels / 1e6:.0f} MP limit"
            )
        if image.width == 0 or image.height == 0:
            raise ImageError(f"{name}: image has no pixels")
        image.seek(0)  # first frame of a GIF or multi-page TIFF
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", draft_size)
        image.load()
        if image.getexif().get(ExifTags.Base.Orientation, 1) in (None, 1):
            return image  # exif_transpose would return a full copy (48 MB for a 12 MP RGB image) for nothing
        return ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too many pixels to decode safely") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{name}: corrupt or truncated image ({error})") from None


@dataclass
class DecodedImage:
    """An image as colorgan works on it.

    rgb: (1, 3, H, W) uint8, or float32 in [0, 1] for 16-bit and float sources. For 8-bit gray
        sources it is one (H, W) plane expanded to three channels (channel stride 0): read-only.
    alpha: (H, W) alpha as a PIL 'L' band, or None.
    """

    rgb: torch.Tensor
    alpha: Image.Image | None

    @property
    def size(self) -> tuple[int, int]:  # (width, height) like PIL
        return self.rgb.shape[-1], self.rgb.shape[-2]


def _high_bit_depth_gray(image: Image.Image) -> np.ndarray:
    """'I;16*', 'I' and 'F' images -> float32 array in [0, 1]."""
    array = np.asarray(image).astype(np.float32)
    if image.mode == "F":
        return np.clip(array, 0.0, 1.0) if array.max(initial=0) <= 1.0 else np.clip(array / 255.0, 0.0, 1.0)
    return np.clip(array / 65535.0, 0.0, 1.0)


def decode(image: Image.Image) -> DecodedImage:
    """Any PIL mode -> RGB tensor (+ alpha). Palette transparency and LA/RGBA alpha are kept."""
    alpha = None
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        alpha = image.getchannel("A")
    if image.mode.startswith("I") or image.mode == "F":
        gray = torch.from_numpy(_high_bit_depth_gray(image))
        return DecodedImage(gray.expand(1, 3, *gray.shape).contiguous(), alpha)
    if image.mode in ("L", "LA"):  # 8-bit gray: one plane seen as three channels (stride 0), never copied to RGB
        gray = torch.from_numpy(np.asarray(image.getchannel("L")).copy())
        return DecodedImage(gray.expand(1, 3, *gray.shape), alpha)
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))  # handles P, CMYK, YCbCr, 1, LAB, HSV
    return DecodedImage(torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0), alpha)


def to_pil(rgb: torch.Tensor, alpha: Image.Image | None = None) -> Image.Image:
    """(1, 3, H, W) uint8 -> PIL RGB, or RGBA when an alpha band is given."""
    planes = rgb[0].cpu().contiguous().numpy()  # (3, H, W)
    height, width = planes.shape[1:]
    # merging planes is PIL's own interleave into its 4-byte pixels: faster than transposing first
    bands = [Image.frombuffer("L", (width, height), plane, "raw", "L", 0, 1) for plane in planes]
    image = Image.merge("RGB", bands)
    if alpha is not None:
        image.putalpha(alpha)
    return image


@contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path beside `destination`, renamed onto it only if the block succeeds.

    Whatever writes there (a PNG, a video, an ONNX graph) never leaves half a file under the
    final name; the temporary keeps the destination's suffix, so writers that go by it still work.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.stem}.", suffix=f".partial{destination.suffix}"
    )
    os.close(descriptor)
    try:
        yield Path(temporary)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        os.replace(temporary, destination)
    finally:
        Path(temporary).unlink(missing_ok=True)
