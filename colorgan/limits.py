"""Every limit colorgan enforces, and the choices a user has, in one place.

The library checks its inputs against these, the command line builds its options and help from
them, and the web app states its narrower ranges as choices made within them. This module imports
nothing heavy (no torch), so `colorgan --help` can read it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """The closed interval a setting may take, and the name its error messages give it.

    Args:
        name: what messages call the setting ("render_size", "saturation").
        low: smallest allowed value, inclusive.
        high: largest allowed value, inclusive; None for no upper bound.
    """

    name: str
    low: float
    high: float | None = None

    def __contains__(self, value: float) -> bool:
        return self.low <= value and (self.high is None or value <= self.high)

    def describe(self) -> str:
        """e.g. "16..4096", or ">= 0" without an upper bound."""
        return f">= {self.low}" if self.high is None else f"{self.low}..{self.high}"

    def check(self, value: float) -> float:
        """Return `value` when it lies in the range.

        Raises:
            ValueError: outside the range, one line naming the setting.
        """
        if value not in self:
            if self.high is None:
                raise ValueError(f"{self.name} must be >= {self.low}, got {value}")
            raise ValueError(f"{self.name} must be between {self.low} and {self.high}, got {value}")
        return value

    def clamp(self, value: float) -> float:
        """The nearest value inside the range."""
        value = max(self.low, value)
        return value if self.high is None else min(self.high, value)

    def within(self, low: float, high: float, name: str | None = None) -> Range:
        """A narrower range for a front end's own choice; it must lie inside this one.

        Raises:
            ValueError: the narrower range reaches outside this one (a programming error).
        """
        if low not in self or high not in self:
            raise ValueError(f"{low}..{high} is not within {self.name}'s {self.describe()}")
        return Range(name or self.name, low, high)


# ----------------------------------------------------------------------------- colorizing
# Long sides the generator may run at: below 16 px an encoder has nothing to see; 4096 px is a
# ~16 GB forward for the default model, past any CPU and most GPUs.
RENDER_SIZE = Range("render_size", 16, 4096)
SATURATION = Range("saturation", 0.0, 4.0)  # a chroma multiplier: 0 is gray, 4 already clips most colours
# Hint points per image (evaluation samples them from the ground truth). 10,000 is far more than a
# person places by hand; 1 M points took 14.5 s and 1.2 GB before this cap.
HINT_POINTS = Range("hint points", 0, 10_000)
MAX_HINTS_FILE_BYTES = 1 << 20  # a `--hints-file` of 10,000 "x,y,#rrggbb" lines is ~250 KB
# argparse's time grows with the square of the number of options (30,000 took 20 s); more points than
# this go in a `--hints-file`.
MAX_HINT_FLAGS = 100
# The largest image colorgan opens: 100 MP is a 12000x8000 scan; above that, decoding alone would
# take gigabytes. PIL's own bomb check warns at 89 MP and refuses at 179 MP.
MAX_PIXELS = 100_000_000
BACKENDS = ("torch", "onnx", "onnx-int8")  # what runs the generator (see colorgan.onnx_runtime)
BASELINES = ("gray",)  # what `colorgan eval` can score instead of a model

# Video, enforced on every decoded frame, not only on the header (a header can say 64x48 and 1 s of a
# clip whose later frames are 16000x16000, or which holds 3600 frames). The library's own ceiling is
# 8K UHD per frame; each frame must also keep the size its header declares.
MAX_VIDEO_FRAME_PIXELS = 7680 * 4320
MAX_VIDEO_FPS = 240  # frames per second of stream time (high-speed camera clips); more is a timestamp trick

# ----------------------------------------------------------------------------- untrusted checkpoints
# Caps on what a checkpoint may make colorgan read or allocate; config values have their own table,
# `CONFIG_LIMITS` in models.py.
# A colorgan config.json is ~200 bytes; 1 MiB leaves room for any future field and still bounds
# what json.load may parse.
MAX_CONFIG_BYTES = 1 << 20
# The safetensors header takes ~120 bytes per tensor: a few thousand tensors (the largest timm
# encoders) need well under 1 MiB; 16 MiB bounds the JSON parse (safetensors itself allows 100 MB).
MAX_HEADER_BYTES = 16 << 20
# 400 M parameters (1.6 GB in fp32, twice that while loading) is ~100x the starter model and more
# than a ConvNeXt-L encoder with a wide decoder; pass `max_parameters` to load a larger model.
DEFAULT_MAX_PARAMETERS = 400_000_000
MAX_JSON_DEPTH = 32  # nesting of config.json or a safetensors header: colorgan's own need 3 levels
MAX_JSON_INTEGER_DIGITS = 20  # a u64 tensor offset has at most 20 digits; longer numbers are refused unparsed
# ONNX graphs (shipped, cached or exported) are checked before ONNX Runtime loads them:
MAX_ONNX_BYTES = 2 << 30  # protobuf's own ceiling for one file; weights must be inline
MAX_ONNX_TENSOR_ELEMENTS = 64 << 20  # any one initializer or inferred tensor at the probe size (256 MB fp32)
ONNX_PROBE_SIZE = 64  # the probe input is (1, 4, 64, 64): shapes are inferred and one forward compared there
ONNX_PROBE_TOLERANCE = 0.02  # largest |ab / 110| difference from torch (fp32 graphs agree to ~1e-5)
ONNX_INT8_PROBE_TOLERANCE = 0.1  # ... int8 graphs, on average over the probe (int8 measured ~0.01)

# ----------------------------------------------------------------------------- the web app's choices
# A 2-vCPU Space serves two requests at once, so the app takes less than the library allows.
APP_RENDER_SIZE = RENDER_SIZE.within(128, 1024, "render resolution")  # beyond 1024 a 2-vCPU Space is too slow
APP_SATURATION = SATURATION.within(0.0, 2.0)  # past 2 the slider only clips colours
# 25 MP covers a 6000x4000 (24 MP) scan; the colour maths runs in ~1 MP slices, so one such
# request adds about 0.7 GB at its peak, which two concurrent workers on a small Space can afford.
APP_MAX_PIXELS = 25_000_000
APP_MAX_FILE_SIZE = "50mb"  # a 24 MP JPEG or 8-bit PNG fits; larger uploads are refused before any work
# Video on a 2-vCPU Space: 480p colorizes at 7-12 frames/s on one core (benchmarks/bench_video.py), so
# the longest clip, 30 s at 30 fps, takes 75-120 s and holds one of the two workers meanwhile.
APP_MAX_VIDEO_SECONDS = 30
APP_MAX_VIDEO_SIDES = (854, 480)  # long side, short side: 480p, 16:9 or narrower, either orientation
APP_MAX_VIDEO_FPS = 60  # frames per second of stream time; a 1 s clip of 1000 frames is refused at frame ~61
# The decoded frames, counted as they come: at most 30 s at 30 fps (900 frames) of 480p pixels, whatever
# the header says (an MKV whose DURATION says 10 s may hold 3600 frames).
APP_MAX_VIDEO_FRAMES = APP_MAX_VIDEO_SECONDS * 30
APP_MAX_VIDEO_PIXEL_FRAMES = APP_MAX_VIDEO_FRAMES * APP_MAX_VIDEO_SIDES[0] * APP_MAX_VIDEO_SIDES[1]
