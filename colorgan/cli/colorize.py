"""`colorgan colorize` (photos) and `colorgan colorize-video`."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import one_line
from ..limits import HINT_POINTS, MAX_HINT_FLAGS, MAX_HINTS_FILE_BYTES
from .options import (
    CommandFailed,
    add_model_options,
    add_overwrite_option,
    add_propagate_option,
    add_render_options,
    load_colorizer,
)

if TYPE_CHECKING:
    from PIL import Image


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("colorize", help="colorize photos; writes <name>_color.png files")
    parser.add_argument("inputs", nargs="+", help="image files, or folders whose images are all colorized")
    parser.add_argument("-o", "--output-dir", help="folder for the results (default: beside each input)")
    add_model_options(parser)
    add_render_options(parser)
    add_hint_options(parser)
    parser.add_argument(
        "--hint",
        action="append",
        type=parse_hint_point,
        metavar="X,Y,#RRGGBB",
        help=f"a colour hint at pixel (X, Y) of the input, e.g. 120,40,#5b8fd1; repeat for more (up to {MAX_HINT_FLAGS})",
    )
    parser.add_argument(
        "--hints-file",
        metavar="POINTS.csv",
        help=f"hint points from a file, one X,Y,#RRGGBB per line (an x,y,color header line may come first);"
        f" up to {HINT_POINTS.high:,} points",
    )
    add_propagate_option(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run_colorize)

    parser = subparsers.add_parser(
        "colorize-video", help="colorize a video without flicker; keeps its size, frames, frame rate and audio"
    )
    parser.add_argument("input", help="the video file (any container and codec FFmpeg reads)")
    parser.add_argument("-o", "--output", help="output .mp4/.m4v/.mov/.mkv (default: <name>_color.mp4 beside it)")
    add_model_options(parser)
    add_render_options(parser)
    add_hint_options(parser)
    parser.add_argument("--hint-frame", type=int, default=0, help="the frame the hints are painted on (default 0)")
    parser.add_argument("--per-frame", action="store_true", help="no temporal consistency (flickers; for comparison)")
    add_overwrite_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_colorize_video)


def add_hint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hints",
        metavar="LAYER.png",
        help="colour hints painted on a transparent RGBA image of the input's size; each stroke colours its region",
    )


# ----------------------------------------------------------------------------- photos
def input_images(paths: list[str]) -> list[Path]:
    """Files as given; folders expand to the images directly inside them, sorted."""
    from ..imaging import image_files

    return [found for path in map(Path, paths) for found in (image_files(path) if path.is_dir() else [path])]


def output_path(source: Path, output_dir: str | None) -> Path:
    """`<name>_color.png` in `output_dir`, else beside the input."""
    folder = Path(output_dir) if output_dir else source.parent
    return folder / f"{source.stem}_color.png"


def read_hints_file(path: str) -> list[tuple[float, float, tuple[int, int, int]]]:
    """`--hints-file`: hint points, one `X,Y,#RRGGBB` per line, as `--hint` takes them.

    Raises:
        CommandFailed: unreadable, over `MAX_HINTS_FILE_BYTES` or `HINT_POINTS`, or a bad line;
            one line naming the file (and the line).
    """
    try:
        size = Path(path).stat().st_size
        if size > MAX_HINTS_FILE_BYTES:
            raise CommandFailed(f"{path}: {size} bytes, over the {MAX_HINTS_FILE_BYTES}-byte limit for a hints file")
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CommandFailed(f"{path}: cannot read it ({one_line(error)})") from None
    points = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or (number == 1 and line.replace(" ", "").lower() == "x,y,color"):
            continue
        if len(points) == HINT_POINTS.high:
            raise CommandFailed(f"{path}: more than {HINT_POINTS.high:,} hint points, the limit")
        try:
            points.append(parse_hint_point(line.strip()))
        except argparse.ArgumentTypeError as error:
            raise CommandFailed(f"{path} line {number}: {error}") from None
    return points


def parse_hint_point(text: str) -> tuple[float, float, tuple[int, int, int]]:
    """`X,Y,#RRGGBB` (pixel coordinates of the input image) -> a hint point `(x, y, (r, g, b))`."""
    from ..hints import parse_hex_color

    try:
        x, y, color = text.split(",")
        x, y = float(x), float(y)
        rgb = parse_hex_color(color)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y,#RRGGBB (e.g. 120,40,#5b8fd1)") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"{text!r}: X and Y must be finite numbers")
    return x, y, rgb


def read_hint_layer(path: str | None) -> Image.Image | None:
    """`--hints`: a painted RGBA layer from a file, or None without one.

    Raises:
        CommandFailed: unreadable, or without transparency; one line naming the file.
    """
    if path is None:
        return None
    from ..hints import with_alpha
    from ..imaging import open_image

    try:
        return with_alpha(open_image(path))
    except ValueError as error:  # ImageError is one too
        raise CommandFailed(error if path in str(error) else f"{path}: {one_line(error)}") from None


def check_output(check) -> None:
    """Run a destination check of `colorgan.imaging`; its refusal ends the command before any work."""
    try:
        check()
    except ValueError as error:  # OutputError
        raise CommandFailed(error) from None


def run_colorize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..imaging import atomic_path, check_destination, check_output_folder

    sources = input_images(args.inputs)
    if not sources:
        raise CommandFailed("no input images found")
    if args.hints and (args.hint or args.hints_file):
        raise CommandFailed("give either --hints (a painted layer) or --hint / --hints-file points, not both")
    points = (args.hint or []) + (read_hints_file(args.hints_file) if args.hints_file else [])
    hints = read_hint_layer(args.hints) if args.hints else points or None
    if args.output_dir:  # checked now, made only when the first result is written (atomic_path)
        check_output(lambda: check_output_folder(args.output_dir))
    colorizer = load_colorizer(args)
    failures, written = 0, set()
    progress = tqdm(sources, unit="img", disable=len(sources) < 2, file=sys.stderr)
    for source in progress:
        destination = output_path(source, args.output_dir)
        try:
            if destination in written:
                raise FileExistsError(f"{destination} is also the result of another input")
            check_destination(destination, overwrite=args.overwrite, source=source)
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
        except (FileExistsError, OSError, ValueError) as error:  # ImageError is a ValueError
            failures += 1
            message = one_line(error)
            tqdm.write(f"error: {message if str(source) in message else f'{source}: {message}'}", file=sys.stderr)
    done = len(sources) - failures
    print(f"colorized {done} of {len(sources)} images" + (f", {failures} failed" if failures else ""), file=sys.stderr)
    return 1 if failures else 0


# ----------------------------------------------------------------------------- video
def video_output_path(source: Path, output: str | None) -> Path:
    """`-o` as given, else `<name>_color.mp4` beside the input."""
    return Path(output) if output else source.with_name(f"{source.stem}_color.mp4")


def run_colorize_video(args: argparse.Namespace) -> int:
    from ..imaging import check_destination

    source = Path(args.input)
    destination = video_output_path(source, args.output)
    check_output(lambda: check_destination(destination, overwrite=args.overwrite, source=source))
    hints = read_hint_layer(args.hints)
    colorizer = load_colorizer(args)
    from ..temporal import TemporalSettings
    from ..video import colorize_video

    try:
        result = colorize_video(
            colorizer,
            source,
            destination,
            hints=hints,
            hint_frame=args.hint_frame,
            saturation=args.saturation,
            render_size=args.render_size,
            temporal=None if args.per_frame else TemporalSettings(),
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as error:  # VideoError is a ValueError
        raise CommandFailed(error, status=1) from None
    print(
        f"wrote {destination}: {result.frames} frames at {float(result.fps):.3f} fps, {result.cuts} shot cuts,"
        f" {result.frames_per_second:.1f} frames/s",
        file=sys.stderr,
    )
    return 0
