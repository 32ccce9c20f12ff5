"""The CPU engine of the full-resolution work around the network: row slices, thread pools, upsampling.

A photo's full-resolution steps (its L*, and recombining that L* with the generator's low-resolution
ab into 8-bit sRGB) run over slices of rows small enough to stay in the CPU's caches, handed out one
at a time to one thread per torch thread. `Colorizer` (pipeline.py) calls the two entry points,
`full_resolution_lightness` and `recombine`; the rest is how they are made fast.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
import torch.nn.functional as F

from .color import Srgb8Encoder, fit_srgb8_into_gamut, lightness

# full-resolution colour maths runs in slices of rows: small enough that a slice's float planes stay
# in the CPU's caches between the ~20 passes over them, large enough that per-call overhead stays small
CHUNK_PIXELS = 1 << 16
T = TypeVar("T")


# Under OpenMP, torch.set_num_threads is per thread: a worker thread can run single-threaded ops
# without changing what the caller's thread (or any other) uses.
_THREAD_LOCAL_TORCH_THREADS = "parallel backend: OpenMP" in torch.__config__.parallel_info()


def row_slices(height: int, width: int, pixels: int | None = None) -> Iterator[slice]:
    """The slices of rows, of about `pixels` pixels each (None: CHUNK_PIXELS), that cover an image of this size."""
    rows = max(1, (pixels or CHUNK_PIXELS) // width)
    for top in range(0, height, rows):
        yield slice(top, min(top + rows, height))


def in_row_slices(
    height: int, width: int, device: torch.device, work: Callable[[Iterable[slice]], T], pixels: int | None = None
) -> list[T]:
    """Run `work` over the row slices of an image: on the cpu, on one thread per torch thread.

    The slices' ops are small (~20 passes over 64 K pixels each); with torch's own intra-op threads
    every pass ends in a barrier, and on a loaded machine a thread waiting at one for a descheduled
    sibling spins for its whole time slice (measured: 28x the CPU time of one thread). So each thread
    runs single-threaded ops on whole slices, and they meet only once, at the end. The calling thread
    is one of them, and each takes the next slice when done with one: a helper that starts late (its
    core still held by the OpenMP worker that spins after the forward, for ~5 ms) then does less
    instead of holding everything up.
    """
    chunks = list(row_slices(height, width, pixels))
    workers = 1
    if device.type == "cpu" and _THREAD_LOCAL_TORCH_THREADS:
        workers = min(torch.get_num_threads(), len(chunks))
    if workers <= 1:
        return [work(chunks)]

    caller_threads = torch.get_num_threads()
    slices = _SharedSlices(chunks)

    def single_threaded() -> T:
        torch.set_num_threads(1)  # OpenMP's count for this thread only
        try:
            with torch.inference_mode():
                return work(slices)
        finally:
            torch.set_num_threads(caller_threads)  # it also set MKL's process-wide count: put that back

    helpers = [_row_pool(workers - 1).submit(single_threaded) for _ in range(workers - 1)]
    try:
        own = single_threaded()
    finally:
        results = [helper.result() for helper in helpers]  # also when the caller's share failed
    return [own, *results]


class _SharedSlices:
    """The row slices of one image, handed out one at a time to whichever thread asks next."""

    def __init__(self, chunks: list[slice]):
        self._chunks = iter(chunks)
        self._lock = threading.Lock()

    def __iter__(self) -> "_SharedSlices":
        return self

    def __next__(self) -> slice:
        with self._lock:
            return next(self._chunks)


_ROW_POOLS: dict[int, ThreadPoolExecutor] = {}
_ROW_POOLS_LOCK = threading.Lock()


def _row_pool(workers: int) -> ThreadPoolExecutor:
    # kept for the process: fresh threads per photo would each get a malloc arena that keeps what it freed
    with _ROW_POOLS_LOCK:
        if workers not in _ROW_POOLS:
            _ROW_POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="colorgan-rows")
        return _ROW_POOLS[workers]


def bilinear_taps(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Source indices i0, i1 and weight of i1 per output position, as F.interpolate's bilinear (align_corners=False)."""
    scale = in_size / out_size
    source = ((torch.arange(out_size, device=device, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_(min=0)
    first = source.long().clamp_(max=in_size - 1)
    return first, (first + 1).clamp_(max=in_size - 1), source - first


class RowUpsampler:
    """Bilinear upsampling of a small (C, h, w) map to (C, H, W), one slice of output rows at a time.

    Equals `F.interpolate(mode="bilinear", align_corners=False)` (within float rounding), but the
    full-resolution result never exists at once: columns are interpolated once, at (C, h, W), and
    each slice of rows is blended from two of those rows, in buffers reused from slice to slice.
    """

    def __init__(self, small: torch.Tensor, height: int, width: int):
        # the columns at (C, h, W), by torch's 1-D linear kernel over the C * h rows: the same weights as
        # bilinear's along the width, at ~2.5x the speed of its 2-D kernel asked for the same height
        self.columns = small
        if small.shape[-1] != width:
            channels, rows, _ = small.shape
            rows_of_all = small.reshape(1, channels * rows, small.shape[-1])
            self.columns = F.interpolate(rows_of_all, size=width, mode="linear", align_corners=False).view(channels, rows, width)
        self.top, self.bottom, self.weight = bilinear_taps(small.shape[-2], height, small.device)

    def new_buffer(self, max_rows: int) -> torch.Tensor:
        """Scratch space for `rows` (one per thread)."""
        return self.columns.new_empty(2, self.columns.shape[0] * max_rows * self.columns.shape[-1])

    def rows(self, rows: slice, buffer: torch.Tensor) -> torch.Tensor:
        # -> (C, rows, W), in `buffer`
        channels, _, width = self.columns.shape
        size = channels * (rows.stop - rows.start) * width
        top, bottom = (half[:size].view(channels, -1, width) for half in buffer)
        torch.index_select(self.columns, 1, self.top[rows], out=top)
        torch.index_select(self.columns, 1, self.bottom[rows], out=bottom)
        return top.lerp_(bottom, self.weight[rows, None])


def full_resolution_lightness(rgb: torch.Tensor, device: torch.device) -> torch.Tensor:
    """An image's L* at full resolution, computed slice by slice.

    Args:
        rgb: (1, 3, H, W) uint8, or float in [0, 1], on the cpu (`imaging.DecodedImage.rgb`).
        device: where the result lives.

    Returns:
        (1, 1, H, W) L* float32 on `device`.
    """
    height, width = rgb.shape[-2:]
    l_full = torch.empty(1, 1, height, width, device=device)

    def fill(share: Iterable[slice]) -> None:
        for rows in share:
            l_full[..., rows, :] = lightness(rgb[..., rows, :].to(device))

    in_row_slices(height, width, device, fill)
    return l_full

def recombine(l_full: torch.Tensor, ab_small: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Full-resolution L* and low-resolution ab -> the 8-bit sRGB image, slice by slice.

    The ab is upsampled bilinearly one slice of rows at a time; pixels whose colour lies outside
    sRGB are fitted into the gamut at their own L*.

    Args:
        l_full: (1, 1, H, W) L* on `device`.
        ab_small: (1, 2, h, w) ab in Lab units, at render size.
        device: where the colour maths runs.

    Returns:
        (1, 3, H, W) uint8 RGB on the cpu.
    """
    height, width = l_full.shape[-2:]
    max_rows = next(row_slices(height, width)).stop
    upsampler = RowUpsampler(ab_small[0].float(), height, width)
    rgb = torch.empty(3, height * width, dtype=torch.uint8)

    def encode(share: Iterable[slice]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        # every slice of `share` into `rgb`; -> (indices, L, ab) of the pixels outside the gamut
        buffer, encoder = upsampler.new_buffer(max_rows), Srgb8Encoder(max_rows * width, device)
        on_cpu = device.type == "cpu"  # encode straight into `rgb`, else via a device buffer
        on_device = None if on_cpu else torch.empty_like(rgb[:, : max_rows * width], device=device)
        outside_pixels = []
        for rows in share:
            start, stop = rows.start * width, rows.stop * width
            ab = upsampler.rows(rows, buffer).view(2, -1)  # (2, n)
            lightness_values = l_full[0, 0, rows].reshape(-1)  # (n,)
            planes = rgb[:, start:stop] if on_cpu else on_device[:, : stop - start]
            outside = encoder(lightness_values, ab, planes)
            if not on_cpu:
                rgb[:, start:stop] = planes.cpu()
            if len(outside):
                outside_pixels.append((outside + start, lightness_values[outside], ab[:, outside]))
        return outside_pixels

    outside_pixels = [item for share in in_row_slices(height, width, device, encode) for item in share]
    if outside_pixels:  # few pixels: fitted all at once, since a fitting call costs ~1 ms
        index, lightness_values, ab = zip(*outside_pixels)
        fitted = fit_srgb8_into_gamut(torch.cat(lightness_values), torch.cat(ab, dim=1))  # (3, m)
        rgb[:, torch.cat(index).cpu()] = fitted.cpu()
    return rgb.view(1, 3, height, width)
