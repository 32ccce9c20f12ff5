"""Inference speed and memory on CPU: the generator's forward per backend, and `Colorizer` end to end.

    python benchmarks/bench_inference.py [--model PATH_OR_REPO] [--runs 11] [--render-size 512] [--threads 1]

Prints, in one run (so that the ratios compare figures taken under the same machine load):
  - the generator's forward at 512x512 with torch, ONNX Runtime fp32 and ONNX Runtime int8, and how
    far the ONNX outputs are from torch's (max |ab| difference in model space);
  - `Colorizer` end to end (PIL in, PIL out) on a 512x512 photo, and from the bytes of a 12 MP JPEG
    to the output image (in a fresh process, for its peak RSS);
  - the plain calls users make on a 12 MP photo, `colorizer(x, render_size=512)` with x a JPEG path,
    a decoded PIL RGB image and a PIL L image, in the same rounds as the bytes and the forward;
  - the ratios of issue 10 beside their targets, the peak RSS, and the thread settings.

Every ratio is paired: the functions it compares run in turns, one run of each per round, and the
ratio printed is the median over rounds of each round's own ratio (the 12 MP child times a torch
forward in its own rounds). On this shared machine the same forward swings by a third within a
minute; runs of one round share the load, runs minutes apart do not.

The int8 graph is the model's own `model_int8.onnx` when it ships one, else a static int8 export
calibrated here on 16 photos of shared/photos/train (skipped without them). Each line also gives
the median process CPU time. On a machine shared with other work, wall times with several threads
balloon (OpenMP threads spin-wait for a descheduled sibling); there, compare ratios, and run with
`--threads 1` or OMP_WAIT_POLICY=PASSIVE.

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
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from colorgan import CheckpointError, Colorizer, UNetGenerator
from colorgan.checkpoint import STARTER_MODEL

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos" / "val"
TRAIN_PHOTOS = PHOTOS.parent / "train"
# issue 10's targets, as ratios to the torch forward at 512x512 measured in the same run
TARGET_RATIOS = {
    "end to end 512x512 / torch forward": 1.25,
    "end to end 12 MP / torch forward": 3.0,
    "ONNX fp32 forward / torch forward": 0.75,
    "ONNX int8 forward / torch forward": 0.5,
}
# issue 22's: the ways users call it on a 12 MP photo, each against the same rounds' forward
PLAIN_CALLS = ("JPEG path", "PIL RGB image", "PIL L image")
TARGET_RATIOS.update({f"12 MP {call} / torch forward": 2.5 for call in PLAIN_CALLS})
TARGET_RSS_MIB = 1.2 * 1024
TARGET_ONNX_DIFFERENCE = 1e-3


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
def time_interleaved_ms(functions: dict[str, object], runs: int, warmup: int = 1) -> dict[str, dict[str, list[float]]]:
    """Wall-clock and process CPU milliseconds of each run of each function, after `warmup` untimed rounds.

    The functions run in turn in each round: on a shared machine the load drifts over a minute, and
    taking each round's runs back to back puts every function under the same load, so their ratios
    hold even when the absolute times do not.
    """
    for _ in range(warmup):
        for function in functions.values():
            function()
    times = {name: dict(wall=[], cpu=[]) for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            function()
            times[name]["wall"].append((time.perf_counter() - start) * 1000)
            times[name]["cpu"].append((time.process_time() - start_cpu) * 1000)
    return times


def time_ms(function, runs: int, warmup: int = 1) -> dict[str, list[float]]:
    """`time_interleaved_ms` of one function."""
    return time_interleaved_ms({"only": function}, runs, warmup)["only"]


def summary(times: dict[str, list[float]]) -> str:
    wall = times["wall"]
    return (
        f"median {statistics.median(wall):8.1f} ms   min {min(wall):8.1f}   max {max(wall):8.1f}"
        f"   (cpu median {statistics.median(times['cpu']):8.1f} ms, {len(wall)} runs)"
    )


def verdict(value: float, target: float) -> str:
    return "meets target" if value <= target else "MISSES target"


def peak_rss_mib() -> float:
    """This process's peak resident memory, MiB.

    On Linux from /proc/self/status (VmHWM): getrusage's ru_maxrss survives exec, so a child started
    by a big parent would report at least the parent's RSS at the fork.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def load_colorizer(model: str | None, backend: str = "torch") -> tuple[Colorizer, str]:
    if model:
        return Colorizer.from_pretrained(model, device="cpu", backend=backend), model
    if STARTER_MODEL.is_dir():
        return Colorizer.from_pretrained(None, device="cpu", backend=backend), f"bundled starter ({STARTER_MODEL})"
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


def forward_function(model: nn.Module, input_channels: int, channels_last: bool):
    """A function running `model` on a 512x512 input in inference mode (as `Colorizer` runs it)."""
    model = model.eval()
    x = torch.randn(1, input_channels, 512, 512)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.inference_mode():
            model(x)

    return forward


# ----------------------------------------------------------------------------- ONNX Runtime
def onnx_generators(args: argparse.Namespace, colorizer: Colorizer) -> dict[str, object]:
    """{"onnx": fp32, "onnx-int8": int8} `OnnxGenerator`s, each when it can be had; notes why not otherwise."""
    from colorgan.onnx_export import calibration_inputs, export_int8
    from colorgan.onnx_runtime import OnnxGenerator

    source = args.model or (str(STARTER_MODEL) if STARTER_MODEL.is_dir() else None)
    found: dict[str, object] = {}
    try:
        if source is None:
            raise CheckpointError("no saved model to export")
        found["onnx"] = Colorizer.from_pretrained(source, backend="onnx").onnx_generator
        found["onnx-int8"] = Colorizer.from_pretrained(source, backend="onnx-int8").onnx_generator
        found["int8 source"] = "the model's own model_int8.onnx"
    except CheckpointError as error:
        if "onnx" not in found:
            found["onnx note"] = str(error)
            return found
        photos = sorted(TRAIN_PHOTOS.glob("*.jpg"))[:16]
        if not photos:
            found["int8 note"] = f"the model ships no int8 graph and {TRAIN_PHOTOS} has no photos to calibrate one"
            return found
        scratch = Path(tempfile.mkdtemp(prefix="colorgan-bench-"))
        int8 = export_int8(colorizer.generator, scratch / "model_int8.onnx", calibration_inputs(colorizer, photos))
        found["onnx-int8"] = OnnxGenerator(int8)
        found["int8 source"] = f"static int8 calibrated here on {len(photos)} photos of {TRAIN_PHOTOS}"
    return found


def onnx_difference(generator: nn.Module, onnx_generator) -> float:
    """Max |ab| difference (model space) between torch and ONNX on a 512x512 input and an odd-sized one."""
    worst = 0.0
    for shape in [(1, 4, 512, 512), (1, 4, 301, 457)]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = generator(x.contiguous(memory_format=torch.channels_last))
        worst = max(worst, (onnx_generator(x) - expected).abs().max().item())
    return worst


# ----------------------------------------------------------------------------- the 12 MP child
def run_12mp_child(args: argparse.Namespace) -> None:
    """In a fresh process: time bytes -> PIL image on a 12 MP JPEG, and the plain calls; print JSON.

    The peak RSS is read after three untimed runs from the bytes, before the torch forward at 512x512
    and the plain calls (a JPEG path, a PIL RGB and a PIL L image) that the timed rounds take in turns
    with them (so that their ratios compare runs under the same load).
    """
    colorizer, _ = load_colorizer(args.model, args.backend)
    data = jpeg_12mp(args.jpeg_mode)
    for _ in range(3):  # warm-up, and a check that the size is kept
        output = colorizer(data, render_size=args.render_size)
        assert output.size == (4000, 3000), output.size
        del output
    peak = peak_rss_mib()
    with tempfile.TemporaryDirectory(prefix="colorgan-bench-") as folder:
        path = Path(folder) / "photo_12mp.jpg"
        path.write_bytes(jpeg_12mp("RGB"))  # a camera's or a scanner's colour JPEG
        rgb = Image.open(path).convert("RGB")
        gray = rgb.convert("L")
        plain_inputs = dict(zip(PLAIN_CALLS, (str(path), rgb, gray)))
        functions = {
            "12 MP": lambda: colorizer(data, render_size=args.render_size),
            "torch": forward_function(colorizer.generator, 4, channels_last=True),
        }
        for call, image in plain_inputs.items():
            functions[call] = lambda image=image: colorizer(image, render_size=args.render_size)
        times = time_interleaved_ms(functions, args.runs)
    plain = {call: times[call] for call in PLAIN_CALLS}
    result = dict(times=times["12 MP"], torch=times["torch"], plain=plain, peak_rss_mib=peak, jpeg_bytes=len(data))
    print(json.dumps(result))


def run_12mp_in_subprocess(args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child-12mp", "--runs", str(args.runs), "--jpeg-mode", args.jpeg_mode]
    command += ["--backend", args.backend]
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
def paired_ratio(times: dict[str, list[float]], reference: dict[str, list[float]]) -> float:
    """Median over rounds of each round's ratio: runs of one round ran under the same load."""
    return statistics.median(a / b for a, b in zip(times["wall"], reference["wall"]))


def ratio_line(name: str, value: float) -> str:
    target = TARGET_RATIOS[name]
    return f"  {name:<44} {value:5.2f}x   target <= {target:.2f}x: {verdict(value, target)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or Hub repo id (default: bundled starter, else random init)")
    parser.add_argument("--runs", type=int, default=11, help="timed runs per case, after one warm-up (default 11)")
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
        help=f"torch and ONNX Runtime CPU threads (default {torch.get_num_threads()}, one per core)",
    )
    parser.add_argument("--render-size", type=int, help="long side the model runs at (default: the model's own)")
    parser.add_argument(
        "--backend", choices=["torch", "onnx"], default="torch", help="generator backend of the end-to-end runs"
    )
    parser.add_argument("--skip-onnx", action="store_true", help="do not time the ONNX Runtime forwards")
    parser.add_argument("--skip-reference", action="store_true", help="do not time the pix2pix unet_256 reference")
    parser.add_argument("--child-12mp", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    torch.set_num_threads(args.threads)
    if args.child_12mp:
        run_12mp_child(args)
        return

    colorizer, model_name = load_colorizer(args.model, args.backend)
    image, photo_name = photo_512()
    print(
        f"colorgan inference benchmark: torch {torch.__version__}, {os.cpu_count()} CPUs,"
        f" {platform.processor() or platform.machine()}"
    )
    print(
        f"threads: torch {torch.get_num_threads()} intra-op, ONNX Runtime {args.threads} intra-op;"
        f" OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')},"
        f" OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    print(f"model: {model_name}; end-to-end backend: {colorizer.backend}")
    print(f"photo: {photo_name}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()

    print(f"generator forward only at 512x512 (no colour maths, no I/O; the backends in turn, {args.runs} rounds):")
    generator = colorizer.generator
    encoder = getattr(generator.encoder, "pretrained_cfg", {}).get("architecture", "encoder")
    forwards = {"torch": forward_function(generator, 4, channels_last=True)}
    labels = {"torch": f"torch, U-Net on {encoder}", "onnx": "ONNX Runtime fp32", "onnx-int8": "ONNX Runtime int8"}
    found: dict[str, object] = {}
    if not args.skip_onnx:
        import onnxruntime

        found = onnx_generators(args, colorizer)
        x = torch.randn(1, 4, 512, 512)
        for backend in ("onnx", "onnx-int8"):
            if backend in found:
                forwards[backend] = lambda onnx_generator=found[backend]: onnx_generator(x)
    # the 512x512 end to end goes in the same rounds: its ratio to the forward is one of the targets
    forwards["end to end"] = lambda: colorizer(image, render_size=args.render_size)
    forward = time_interleaved_ms(forwards, args.runs)
    end_to_end = forward.pop("end to end")
    for backend, times in forward.items():
        print(f"  {labels[backend]:<31} {summary(times)}")
    if not args.skip_onnx:
        for backend in ("onnx", "onnx-int8"):
            if backend not in found:
                note = found.get("int8 note" if backend == "onnx-int8" else "onnx note", found.get("onnx note"))
                print(f"  {backend}: not timed ({note})")
        print(f"  (ONNX Runtime {onnxruntime.__version__}; int8: {found.get('int8 source', 'none')})")
        if "onnx" in found:
            difference = onnx_difference(generator, found["onnx"])
            print(
                f"  ONNX fp32 vs torch: max |ab| difference {difference:.2e} (model space), target <= "
                f"{TARGET_ONNX_DIFFERENCE:.0e}: {verdict(difference, TARGET_ONNX_DIFFERENCE)}"
            )

    print()
    render = args.render_size or colorizer.default_render_size
    print(f"512x512 Colorizer.__call__ (PIL 'L' in, RGB out), model run at {render} px long side")
    print(f"  {summary(end_to_end)}")
    big = run_12mp_in_subprocess(args)
    print(
        f"4000x3000 (12 MP) end to end, {big['jpeg_bytes'] / 1e6:.1f} MB {args.jpeg_mode} JPEG bytes -> PIL image"
        f" (fresh process), model run at {render} px long side"
    )
    print(f"  {summary(big['times'])}")
    print(
        f"  peak RSS {big['peak_rss_mib']:8.0f} MiB   target <= {TARGET_RSS_MIB:.0f} MiB:"
        f" {verdict(big['peak_rss_mib'], TARGET_RSS_MIB)}"
    )

    print(f"  (torch forward at 512x512 in the same rounds: {summary(big['torch'])})")
    print(f"4000x3000 (12 MP), the plain calls, colorizer(x, render_size={render}), in the same rounds:")
    for call, times in big["plain"].items():
        print(f"  {call:<14} {summary(times)}")

    print()
    print("ratios (each the median over rounds of that round's ratio to its own torch forward):")
    print(ratio_line("end to end 512x512 / torch forward", paired_ratio(end_to_end, forward["torch"])))
    print(ratio_line("end to end 12 MP / torch forward", paired_ratio(big["times"], big["torch"])))
    for call, times in big["plain"].items():
        print(ratio_line(f"12 MP {call} / torch forward", paired_ratio(times, big["torch"])))
    onnx_ratios = {"onnx": "ONNX fp32 forward / torch forward", "onnx-int8": "ONNX int8 forward / torch forward"}
    for backend, name in onnx_ratios.items():
        if backend in forward:
            print(ratio_line(name, paired_ratio(forward[backend], forward["torch"])))

    if not args.skip_reference:
        print()
        print("reference, pix2pix generator forward only at 512x512:")
        torch.manual_seed(0)
        pix2pix = time_ms(forward_function(pix2pix_unet_256(), 1, channels_last=False), args.runs)
        print(f"  pix2pix unet_256 (54 M params) {summary(pix2pix)}")
    print(
        f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        " (2 cores shared with other work inflate every figure)"
    )


if __name__ == "__main__":
    main()
