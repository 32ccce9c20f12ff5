"""Reading images safely, finding them in folders, and turning any PIL mode into an RGB tensor plus optional alpha."""
from __future__ import annotations

import io
import os
import signal
import tempfile
import threading
import warnings
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


class OutputError(ValueError):
    """A destination that cannot be written; the message is one line naming it."""


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


def _open_header(source: str | os.PathLike | bytes | Image.Image, max_pixels: int, name: str) -> Image.Image:
    """`Image.open` (which reads the header only) and the size check, before any pixel is decoded."""
    with warnings.catch_warnings():  # Pillow's bomb warning on stderr: the check below answers it in one line
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _checked_header(source, max_pixels, name)


def too_many_pixels(name: str, width: int, height: int, max_pixels: int) -> str:
    """The one-line refusal of an image over the pixel limit (the library's and the browser's check)."""
    return f"{name}: {width}x{height} is {width * height / 1e6:.0f} MP, more than the {max_pixels / 1e6:.0f} MP limit"


def _checked_header(source: str | os.PathLike | bytes | Image.Image, max_pixels: int, name: str) -> Image.Image:
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
        raise ImageError(too_many_pixels(name, image.width, image.height, max_pixels))
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{name}: image has no pixels")
    return image


def _image_errors(name: str):
    """The one-line `ImageError` for what Pillow raises on a file it cannot read."""

    @contextmanager
    def translated() -> Iterator[None]:
        try:
            yield
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from None
        except Image.DecompressionBombError:
            raise ImageError(f"{name}: too many pixels to decode safely") from None
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageError(f"{name}: corrupt or truncated image ({error})") from None

    return translated()


def check_image_header(source: str | os.PathLike | bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Read only an image's header and refuse it as `open_image` would; nothing is decoded.

    For front ends whose upload widgets would otherwise decode the whole image first.

    Returns:
        (width, height).

    Raises:
        ImageError: as `open_image`, one line.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "image"
    with _image_errors(name):
        image = _open_header(source, max_pixels, name)
        image.close()
        return image.size


def open_image(
    source: str | os.PathLike | bytes | Image.Image,
    *,
    max_pixels: int = MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Open and fully decode an image, applying its EXIF orientation (a PIL image that needs none is returned as is).

    The size is checked from the header, before any pixel is decoded.

    Args:
        source: a path, the encoded bytes, or an already opened PIL image.
        max_pixels: refuse images with more pixels than this.
        draft_size: let JPEG decoding downscale (by 1/2, 1/4, 1/8) to no less than this size;
            much faster when the caller will shrink the image anyway.

    Raises:
        ImageError: missing file, not an image, truncated or corrupt data, too many pixels, or
            NaN / infinite float pixels.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "image"
    with _image_errors(name):
        image = _open_header(source, max_pixels, name)
        image.seek(0)  # first frame of a GIF or multi-page TIFF
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", draft_size)
        image.load()
        _check_finite(image, name)
        if image.getexif().get(ExifTags.Base.Orientation, 1) in (None, 1):
            return image  # exif_transpose would return a full copy (48 MB for a 12 MP RGB image) for nothing
        return ImageOps.exif_transpose(image)


def _check_finite(image: Image.Image, name: str) -> None:
    # A float TIFF may hold NaN or infinities; colour maths would carry them to the sRGB table's
    # index and fail there (IndexError), or turn a score into nan. Only mode 'F' can hold them.
    if image.mode == "F" and not np.isfinite(np.asarray(image)).all():
        raise ImageError(f"{name}: has NaN or infinite pixel values")


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


# ----------------------------------------------------------------------------- writing outputs
def check_output_folder(folder: str | os.PathLike) -> Path:
    """Refuse, before any work, a folder that cannot be made or written to; it is not created.

    Args:
        folder: where outputs will go (it need not exist yet).

    Raises:
        OutputError: it, or the nearest existing folder above it, is a file or not writable; one line.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{folder}: {'is' if existing == folder else f'{existing} is'} a file, not a folder")
    try:  # the one reliable test (access() says yes to root under /proc): a nameless file, gone at once
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        raise OutputError(f"{folder}: cannot write there ({error.strerror or error})") from None
    return folder


def check_destination(
    destination: str | os.PathLike, *, overwrite: bool = False, source: str | os.PathLike | None = None
) -> Path:
    """Refuse, before any work, a destination file that cannot or must not be written.

    Args:
        destination: the file to write.
        overwrite: an existing file may be replaced.
        source: the input it is made from: never replaced, even with `overwrite`.

    Raises:
        OutputError: a folder, an existing file without `overwrite`, the input itself, or an
            unwritable place; one line naming it.
    """
    destination = Path(destination)
    if destination.is_dir():
        raise OutputError(f"{destination}: is a folder; name the file to write")
    if destination.exists():
        if source is not None and Path(source).exists() and os.path.samefile(source, destination):
            raise OutputError(f"{destination} is the input itself; write the result elsewhere")
        if not overwrite:
            raise OutputError(f"{destination} exists (use --overwrite, or overwrite=True, to replace it)")
    check_output_folder(destination.parent)
    return destination


# Partial files and the folders made for them, removed if the process is ended by a signal.
_PARTIALS: set[Path] = set()
_PARTIALS_LOCK = threading.Lock()
CLEANUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _remove_partials_and_die(signum: int, frame) -> None:
    with _PARTIALS_LOCK:
        for path in sorted(_PARTIALS, key=lambda item: len(item.parts), reverse=True):  # files, then folders
            try:
                path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
            except OSError:
                pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # end as the signal would have, exit status included


def remove_partial_files_on_signals(force: bool = False) -> None:
    """On SIGTERM or SIGHUP, remove the partial files (and folders made for them) of `atomic_path` first.

    `atomic_path` calls it itself from the main thread; a server whose writers run in worker
    threads (the web app) calls it at start-up. Handlers a program set itself are kept.

    Args:
        force: install even over a handler other than the default.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    for signum in CLEANUP_SIGNALS:
        if force or signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _remove_partials_and_die)


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those above it that do not exist yet, outermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


@contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path beside `destination`, renamed onto it only if the block succeeds.

    Whatever writes there (a PNG, a video, an ONNX graph) never leaves half a file under the
    final name; the temporary keeps the destination's suffix, so writers that go by it still work.
    If the block fails, or SIGTERM / SIGHUP ends the process, the temporary is removed, and so are
    the folders made for it.
    """
    destination = Path(destination)
    remove_partial_files_on_signals()
    made = _missing_folders(destination.parent)
    with _PARTIALS_LOCK:
        _PARTIALS.update(made)
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.stem}.", suffix=f".partial{destination.suffix}"
    )
    os.close(descriptor)
    with _PARTIALS_LOCK:
        _PARTIALS.add(Path(temporary))
    done = False
    try:
        yield Path(temporary)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        os.replace(temporary, destination)
        done = True
    finally:
        Path(temporary).unlink(missing_ok=True)
        with _PARTIALS_LOCK:
            _PARTIALS.difference_update([Path(temporary), *made])
        if not done:
            for folder in reversed(made):
                try:
                    folder.rmdir()  # only if empty: another writer may have put its result there
                except OSError:
                    break
