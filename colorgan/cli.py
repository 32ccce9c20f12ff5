"""The `colorgan` command line: `colorgan colorize IN... [-o OUTDIR] [--model ...]`."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from .checkpoint import CheckpointError
from .evaluate import add_eval_parser
from .hub import add_push_parser
from .imaging import IMAGE_SUFFIXES, ImageError
from .onnx_backend import add_export_onnx_parser


def expand_inputs(paths: list[str]) -> Iterator[Path]:
    """Files as given; folders expand to the images directly inside them, sorted."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            yield path


def save_atomically(image: Image.Image, destination: Path) -> None:
    """Write a PNG next to its destination, then rename: a crash never leaves half a file."""
    descriptor, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            image.save(handle, format="PNG")
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def output_path(source: Path, output_dir: str | None) -> Path:
    folder = Path(output_dir) if output_dir else source.parent
    return folder / f"{source.stem}_color.png"


def run_colorize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .pipeline import Colorizer

    sources = list(expand_inputs(args.inputs))
    if not sources:
        print("error: no input images found", file=sys.stderr)
        return 2
    if args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    try:
        colorizer = Colorizer.from_pretrained(args.model, device=args.device)
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
            result = colorizer(source, saturation=args.saturation, render_size=args.render_size)
            save_atomically(result, destination)
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
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(handler=run_colorize)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colorgan", description="Colorize black-and-white photos with a GAN.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_colorize_parser(subparsers)
    add_eval_parser(subparsers)
    add_push_parser(subparsers)
    add_export_onnx_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
