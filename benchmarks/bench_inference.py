"""Inference speed and memory of `Colorizer` on CPU: a 512x512 photo and a 12 MP photo end to end.

    python benchmarks/bench_inference.py [--model PATH_OR_REPO] [--runs 7]

Prints median / min / max over the runs (after one warm-up) beside the targets of issue 2:
512x512 in <= 150 ms median; 4000x3000 (12 MP) from JPEG bytes to the output PIL image in
<= 1.5 s with peak RSS <= 2 GiB. The 12 MP case runs in a fresh subprocess so its peak RSS is
that of a process doing only this work (torch, the model and one photo), not of this one.
Optionally, for reference, times the pix2pix unet_256 generator of the original recipe at 512x512.

Each line also gives the median process CPU time. On a machine shared with other work, wall
times with several threads balloon (OpenMP threads spin-wait for a descheduled sibling: 10x
slower measured on 2 shared cores); there, run with `--threads 1` or OMP_WAIT_POLICY=PASSIVE.

Without --model it uses the bundled starter checkpoint if the install has one, else a randomly
initialised default `UNetGenerator()`; random weights predict wilder colours than a trained model,
so more pixels go through the gamut search and the figures are, if anything, pessimistic.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from colorgan import Colorizer, UNetGenerator
from colorgan.pipeline import STARTER_MODEL

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos" / "val"
TARGET_512_MS = 150.0
TARGET_12MP_MS = 1500.0
TARGET_RSS_MIB = 2048.0


# ----------------------------------------------------------------------------- inputs
def source_photo() -> tuple[Image.Image, str]:
    """A real photo from shared/photos/val, or a synthetic one with edges and texture if absent."""
    photos = sorted(PHOTOS.glob("*.jpg"))
    if photos:
        return Image.open(photos[0]).convert("RGB"), photos[0].name
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 384), torch.linspace(0, 1, 683), indexing="ij")
    base = torch.stack([xx, yy, (xx * 7).sin() * 0.5 + 0.5]) * 200 + torch.rand(3, 384, 683) * 55
    return Image.fromarray(base.clamp(0, 255).byte().permute(1, 2, 0).numpy(), "RGB"), "synthetic"


def photo_512() -> tuple[Image.Image, str]:
    """A 512x512 black-and-white photo (centre crop of the source, resized)."""
    photo, name = source_photo()
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    square = photo.crop((left, top, left + side, top + side)).resize((512, 512), Image.Resampling.LANCZOS)
    return square.convert("L"), name


def jpeg_12mp(mode: str) -> bytes:
    """A 4000x3000 photo encoded as a quality-90 JPEG (as a scanner or camera would write it)."""
    photo, _ = source_photo()
    big = photo.resize((4000, 3000), Image.Resampling.BICUBIC).convert(mode)
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- timing
def time_ms(function, runs: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall-clock and process CPU milliseconds of each run, after `warmup` untimed runs."""
    for _ in range(warmup):
        function()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return dict(wall=wall, cpu=cpu)


def summary(times: dict[str, list[float]]) -> str:
    wall = times["wall"]
    return (
        f"median {statistics.median(wall):8.1f} ms   min {min(wall):8.1f}   max {max(wall):8.1f}"
        f"   (cpu median {statistics.median(times['cpu']):8.1f} ms, {len(wall)} runs)"
    )


def verdict(value: float, target: float) -> str:
    return "meets target" if value <= target else "MISSES target"


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def load_colorizer(model: str | None) -> tuple[Colorizer, str]:
    if model:
        return Colorizer.from_pretrained(model, device="cpu"), model
    if STARTER_MODEL.is_dir():
        return Colorizer.from_pretrained(None, device="cpu"), f"bundled starter ({STARTER_MODEL})"
    torch.manual_seed(0)
    return Colorizer(UNetGenerator(), device="cpu"), "randomly initialised default UNetGenerator() (no starter bundled)"


# ----------------------------------------------------------------------------- pix2pix reference
class UnetSkipBlock(nn.Module):
    """One level of pix2pix's UnetSkipConnectionBlock (BatchNorm, as in the original recipe)."""

    def __init__(
        self,
        outer: int,
        inner: int,
        submodule: nn.Module | None = None,
        *,
        in_channels=None,
        outermost=False,
        innermost=False,
        dropout=False,
    ):
        super().__init__()
        in_channels = outer if in_channels is None else in_channels
        down = nn.Conv2d(in_channels, inner, kernel_size=4, stride=2, padding=1, bias=False)
        up_in = inner if innermost else inner * 2
        up = nn.ConvTranspose2d(up_in, outer, kernel_size=4, stride=2, padding=1, bias=outermost)
        if outermost:
            layers = [down, submodule, nn.ReLU(True), up, nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, nn.BatchNorm2d(outer)]
        else:
            layers = [
                nn.LeakyReLU(0.2, True),
                down,
                nn.BatchNorm2d(inner),
                submodule,
                nn.ReLU(True),
                up,
                nn.BatchNorm2d(outer),
            ] + ([nn.Dropout(0.5)] if dropout else [])
        self.outermost = outermost
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], dim=1)


def pix2pix_unet_256(input_nc: int = 1, output_nc: int = 2, ngf: int = 64) -> nn.Module:
    """pix2pix `--netG unet_256`: 8 downsamplings, 54 M parameters; L in, ab out for colorization."""
    block = UnetSkipBlock(ngf * 8, ngf * 8, innermost=True)
    for _ in range(3):
        block = UnetSkipBlock(ngf * 8, ngf * 8, block, dropout=True)
    block = UnetSkipBlock(ngf * 4, ngf * 8, block)
    block = UnetSkipBlock(ngf * 2, ngf * 4, block)
    block = UnetSkipBlock(ngf, ngf * 2, block)
    return UnetSkipBlock(output_nc, ngf, block, in_channels=input_nc, outermost=True)


def forward_only_ms(model: nn.Module, input_channels: int, runs: int, channels_last: bool) -> list[float]:
    model = model.eval()
    x = torch.randn(1, input_channels, 512, 512)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return time_ms(lambda: model(x), runs)


# ----------------------------------------------------------------------------- the 12 MP child
def run_12mp_child(args: argparse.Namespace) -> None:
    """In a fresh process: time bytes -> PIL image on a 12 MP JPEG; print JSON with the peak RSS."""
    colorizer, _ = load_colorizer(args.model)
    data = jpeg_12mp(args.jpeg_mode)
    output = colorizer(data, render_size=args.render_size)  # warm-up, and a check that the size is kept
    assert output.size == (4000, 3000), output.size
    times = time_ms(lambda: colorizer(data, render_size=args.render_size), args.runs, warmup=0)
    print(json.dumps(dict(times=times, peak_rss_mib=peak_rss_mib(), jpeg_bytes=len(data))))


def run_12mp_in_subprocess(args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child-12mp", "--runs", str(args.runs), "--jpeg-mode", args.jpeg_mode]
    if args.render_size:
        command += ["--render-size", str(args.render_size)]
    command += ["--threads", str(args.threads)]
    if args.model:
        command += ["--model", args.model]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the 12 MP subprocess failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or Hub repo id (default: bundled starter, else random init)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per case, after one warm-up (default 7)")
    parser.add_argument(
        "--jpeg-mode",
        choices=["L", "RGB"],
        default="L",
        help="colour mode of the 12 MP JPEG: a grayscale scan (L, default) or an RGB file",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help=f"torch CPU threads (default {torch.get_num_threads()}, one per core)",
    )
    parser.add_argument("--render-size", type=int, help="long side the model runs at (default: the model's own)")
    parser.add_argument("--skip-reference", action="store_true", help="do not time the pix2pix unet_256 reference")
    parser.add_argument("--child-12mp", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    torch.set_num_threads(args.threads)
    if args.child_12mp:
        run_12mp_child(args)
        return

    colorizer, model_name = load_colorizer(args.model)
    image, photo_name = photo_512()
    print(
        f"colorgan inference benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads,"
        f" {os.cpu_count()} CPUs, {platform.processor() or platform.machine()},"
        f" OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    print(f"model: {model_name}")
    print(f"photo: {photo_name}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()

    times = time_ms(lambda: colorizer(image, render_size=args.render_size), args.runs)
    median = statistics.median(times["wall"])
    render = args.render_size or colorizer.default_render_size
    print(f"512x512 Colorizer.__call__ (PIL 'L' in, RGB out), model run at {render} px long side")
    print(f"  {summary(times)}   target <= {TARGET_512_MS:.0f} ms median: {verdict(median, TARGET_512_MS)}")

    big = run_12mp_in_subprocess(args)
    median = statistics.median(big["times"]["wall"])
    print(
        f"4000x3000 (12 MP) end to end, {big['jpeg_bytes'] / 1e6:.1f} MB {args.jpeg_mode} JPEG bytes -> PIL image"
        " (fresh process)"
    )
    print(f"  {summary(big['times'])}   target <= {TARGET_12MP_MS:.0f} ms median: {verdict(median, TARGET_12MP_MS)}")
    print(
        f"  peak RSS {big['peak_rss_mib']:8.0f} MiB   target <= {TARGET_RSS_MIB:.0f} MiB:"
        f" {verdict(big['peak_rss_mib'], TARGET_RSS_MIB)}"
    )

    if not args.skip_reference:
        print()
        print("reference, generator forward only at 512x512 (no colour maths, no I/O):")
        generator = colorizer.generator
        encoder = getattr(generator.encoder, "pretrained_cfg", {}).get("architecture", "encoder")
        ours = forward_only_ms(generator, 4, args.runs, channels_last=True)
        print(f"  colorgan U-Net on {encoder:<13} {summary(ours)}")
        torch.manual_seed(0)
        pix2pix = forward_only_ms(pix2pix_unet_256(), 1, args.runs, channels_last=False)
        print(f"  pix2pix unet_256 (54 M params) {summary(pix2pix)}")
    print(
        f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        " (2 cores shared with other work inflate every figure)"
    )


if __name__ == "__main__":
    main()
