"""The `colorgan` command line: `colorgan colorize IN... [-o OUTDIR] [--model ...]`."""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from .checkpoint import DEFAULT_MAX_PARAMETERS, CheckpointError
from .evaluate import add_eval_parser
from .hub import add_push_parser
from .hints import Hint, with_alpha
from .imaging import IMAGE_SUFFIXES, ImageError, atomic_path, open_image
from .onnx_backend import add_export_onnx_parser
from .video_eval import add_eval_video_parser


def expand_inputs(paths: list[str]) -> Iterator[Path]:
    """Files as given; folders expand to the images directly inside them, sorted."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            yield path


def output_path(source: Path, output_dir: str | None) -> Path:
    folder = Path(output_dir) if output_dir else source.parent
    return folder / f"{source.stem}_color.png"


def parse_hint_point(text: str) -> Hint:
    """`X,Y,#RRGGBB` (pixel coordinates of the input image) -> a `Hint`."""
    try:
        x, y, color = text.split(",")
        x, y = float(x), float(y)
        color = color.strip().removeprefix("#")
        if len(color) != 6:
            raise ValueError
        rgb = tuple(int(color[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y,#RRGGBB (e.g. 120,40,#5b8fd1)") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"{text!r}: X and Y must be finite numbers")
    return Hint(x, y, rgb)


def read_hint_layer(path: str) -> Image.Image:
    """`--hints`: a painted RGBA layer from a file.

    Raises:
        ValueError: unreadable, or without transparency; one line naming the file.
    """
    try:
        return with_alpha(open_image(path))
    except ValueError as error:  # ImageError is one too
        raise ValueError(str(error) if path in str(error) else f"{path}: {error}") from None


def run_colorize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .pipeline import Colorizer

    sources = list(expand_inputs(args.inputs))
    if not sources:
        print("error: no input images found", file=sys.stderr)
        return 2
    if args.hints and args.hint:
        print("error: give either --hints (a painted layer) or --hint points, not both", file=sys.stderr)
        return 2
    hints = args.hint or None
    if args.hints:
        try:
            hints = read_hint_layer(args.hints)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    try:
        colorizer = Colorizer.from_pretrained(args.model, device=args.device, max_parameters=args.max_parameters)
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failures, written = 0, set()
    progress = tqdm(sources, unit="img", disable=len(sources) < 2, file=sys.stderr)
    for source in progress:
        destination = output_path(source, args.output_dir)
        try:
            if destination in written or (destination.exists() and not args.overwrite):
                raise FileExistsError(f"{destination} exists (use --overwrite to replace it)")
            result = colorizer(
                source,
                hints=hints,
                saturation=args.saturation,
                render_size=args.render_size,
                propagate=args.propagate,
            )
            with atomic_path(destination) as temporary:  # a crash never leaves half a PNG
                result.save(temporary, format="PNG")
            written.add(destination)
        except (ImageError, FileExistsError, OSError, ValueError) as error:
            failures += 1
            message = str(error) if str(source) in str(error) else f"{source}: {error}"
            tqdm.write(f"error: {message}", file=sys.stderr)
    done = len(sources) - failures
    print(f"colorized {done} of {len(sources)} images" + (f", {failures} failed" if failures else ""), file=sys.stderr)
    return 1 if failures else 0


def add_colorize_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("colorize", help="colorize photos; writes <name>_color.png files")
    parser.add_argument("inputs", nargs="+", help="image files, or folders whose images are all colorized")
    parser.add_argument("-o", "--output-dir", help="folder for the results (default: beside each input)")
    parser.add_argument("--model", help="model folder or Hub repo id (default: the bundled starter model)")
    parser.add_argument("--saturation", type=float, default=1.0, help="chroma multiplier, 0..4 (default 1)")
    parser.add_argument(
        "--render-size", type=int, help="long side the model runs at (default: the model's own); output keeps full size"
    )
    parser.add_argument(
        "--hints",
        metavar="LAYER.png",
        help="colour hints painted on a transparent RGBA image of the input's size; each stroke colours its region",
    )
    parser.add_argument(
        "--hint",
        action="append",
        type=parse_hint_point,
        metavar="X,Y,#RRGGBB",
        help="a colour hint at pixel (X, Y) of the input, e.g. 120,40,#5b8fd1; repeat for more",
    )
    parser.add_argument(
        "--no-propagate",
        dest="propagate",
        action="store_false",
        help="leave hints to the network alone instead of spreading each over its region",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument(
        "--max-parameters",
        type=int,
        default=DEFAULT_MAX_PARAMETERS,
        help=f"refuse a --model with more parameters than this (default {DEFAULT_MAX_PARAMETERS:,})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(handler=run_colorize)


def video_output_path(source: Path, output: str | None) -> Path:
    """`-o` as given, else `<name>_color.mp4` beside the input."""
    return Path(output) if output else source.with_name(f"{source.stem}_color.mp4")


def run_colorize_video(args: argparse.Namespace) -> int:
    from .pipeline import Colorizer
    from .video import VideoError

    source = Path(args.input)
    destination = video_output_path(source, args.output)
    if destination.exists() and not args.overwrite:
        print(f"error: {destination} exists (use --overwrite to replace it)", file=sys.stderr)
        return 2
    hints = None
    if args.hints:
        try:
            hints = read_hint_layer(args.hints)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        colorizer = Colorizer.from_pretrained(args.model, device=args.device)
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        result = colorizer.colorize_video(
            source,
            destination,
            hints=hints,
            hint_frame=args.hint_frame,
            saturation=args.saturation,
            render_size=args.render_size,
            temporal=not args.per_frame,
            progress=not args.quiet,
        )
    except (VideoError, ValueError, OSError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(
        f"wrote {destination}: {result.frames} frames at {float(result.fps):.3f} fps, {result.cuts} shot cuts,"
        f" {result.frames_per_second:.1f} frames/s",
        file=sys.stderr,
    )
    return 0


def add_colorize_video_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "colorize-video", help="colorize a video without flicker; keeps its size, frames, frame rate and audio"
    )
    parser.add_argument("input", help="the video file (any container and codec FFmpeg reads)")
    parser.add_argument("-o", "--output", help="output .mp4/.m4v/.mov/.mkv (default: <name>_color.mp4 beside it)")
    parser.add_argument("--model", help="model folder or Hub repo id (default: the bundled starter model)")
    parser.add_argument("--saturation", type=float, default=1.0, help="chroma multiplier, 0..4 (default 1)")
    parser.add_argument("--render-size", type=int, help="long side the model runs at (default: the model's own)")
    parser.add_argument("--hints", help="RGBA PNG of the frame's size, painted where colour is wanted")
    parser.add_argument("--hint-frame", type=int, default=0, help="the frame the hints are painted on (default 0)")
    parser.add_argument("--per-frame", action="store_true", help="no temporal consistency (flickers; for comparison)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_colorize_video)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colorgan", description="Colorize black-and-white photos with a GAN.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_colorize_parser(subparsers)
    add_colorize_video_parser(subparsers)
    add_eval_parser(subparsers)
    add_eval_video_parser(subparsers)
    add_push_parser(subparsers)
    add_export_onnx_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
