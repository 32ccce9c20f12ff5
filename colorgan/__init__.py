"""colorgan: colorize black-and-white photos with a conditional GAN (pix2pix in CIELAB).

    from colorgan import Colorizer
    Colorizer.from_pretrained()("photo.jpg").save("photo_color.png")

The names below are imported on first use, not with the package: `colorgan --help` (which
imports `colorgan.cli`, and so this file) must not pay for torch and timm.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CheckpointError": "checkpoint",
    "Colorizer": "pipeline",
    "Hint": "hints",
    "ImageError": "imaging",
    "PatchDiscriminator": "models",
    "Pix2PixUNet": "models",
    "UNetGenerator": "models",
    "VideoError": "video",
    "colorize_video": "video",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and editors; at run time `__getattr__` imports on demand
    from .checkpoint import CheckpointError
    from .hints import Hint
    from .imaging import ImageError
    from .models import PatchDiscriminator, Pix2PixUNet, UNetGenerator
    from .pipeline import Colorizer
    from .video import VideoError, colorize_video


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'colorgan' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
