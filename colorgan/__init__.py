"""colorgan: colorize black-and-white photos with a conditional GAN (pix2pix in CIELAB)."""
from .checkpoint import CheckpointError
from .hints import Hint
from .imaging import ImageError
from .models import PatchDiscriminator, Pix2PixUNet, UNetGenerator
from .pipeline import Colorizer

__version__ = "0.1.0"
__all__ = ["CheckpointError", "Colorizer", "Hint", "ImageError", "PatchDiscriminator", "Pix2PixUNet", "UNetGenerator"]
