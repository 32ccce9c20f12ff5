"""The `colorgan` command line.

    colorgan colorize IN... [-o OUTDIR] [--model ...]
    colorgan colorize-video IN [-o OUT.mp4]
    colorgan colorize-dataset SRC DST [--push-to user/name]   (also under `accelerate launch -m colorgan`)
    colorgan eval --data PHOTOS [--model ...] [--hints 0 10]
    colorgan eval-video PHOTOS_OR_VIDEOS...
    colorgan push MODEL_DIR user/repo
    colorgan export-onnx MODEL OUT.onnx [--quantize --calibration PHOTOS]

Each module of this package is one group of commands, with an `add_commands(subparsers)` that
declares them; options several commands share are declared once, in `options.py`. A command
imports the library (torch, timm, av...) only when it runs, so `colorgan --help` and each
command's `--help` answer at once. To add a command, add a module with `add_commands` and list
it in COMMAND_GROUPS.
"""
from __future__ import annotations

import argparse
import sys

from ..limits import MAX_HINT_FLAGS
from . import colorize, dataset, evaluate, publish
from .options import CommandFailed

COMMAND_GROUPS = (colorize, dataset, evaluate, publish)  # in the order `colorgan --help` lists them


def build_parser() -> argparse.ArgumentParser:
    """The `colorgan` parser with every command of COMMAND_GROUPS."""
    parser = argparse.ArgumentParser(prog="colorgan", description="Colorize black-and-white photos with a GAN.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (0 done, 1 some work failed, 2 nothing could start).

    Args:
        argv: the arguments after `colorgan`; by default the process's own.
    """
    argv = sys.argv[1:] if argv is None else argv
    hint_flags = sum(1 for word in argv if word == "--hint" or word.startswith("--hint="))
    if hint_flags > MAX_HINT_FLAGS:  # refused before argparse, whose time grows with their square
        print(
            f"error: {hint_flags} --hint options, more than {MAX_HINT_FLAGS}; put the points in a file,"
            " one X,Y,#RRGGBB per line, and pass --hints-file FILE",
            file=sys.stderr,
        )
        return 2
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CommandFailed as failure:  # the one place a command's error reaches the user
        print(f"error: {failure}", file=sys.stderr)
        return failure.status


if __name__ == "__main__":
    sys.exit(main())
