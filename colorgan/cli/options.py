"""What several commands share: their common options, argument types, loading the model, the error exit.

Only light modules are imported here (`colorgan.limits`, `colorgan.errors`): building the parser
must not load torch.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import one_line
from ..limits import BACKENDS, DEFAULT_MAX_PARAMETERS, HINT_POINTS, RENDER_SIZE, SATURATION, Range

if TYPE_CHECKING:
    from ..pipeline import Colorizer


class CommandFailed(Exception):
    """Ends a command: `colorgan` prints `error: <message>` on one line and exits with `status`.

    Args:
        error: what went wrong: an exception (its first line is shown) or a message.
        status: the exit status; 2 when nothing could start, 1 when the work itself failed.
    """

    def __init__(self, error: BaseException | str, status: int = 2):
        super().__init__(one_line(error))
        self.status = status


# ----------------------------------------------------------------------------- argument types
def in_range(kind: Callable[[str], float], allowed: Range) -> Callable[[str], float]:
    """An argparse `type` that parses with `kind` and refuses values outside `allowed`."""

    def parse(text: str) -> float:
        try:
            return allowed.check(kind(text))
        except ValueError as error:
            raise argparse.ArgumentTypeError(one_line(error)) from None

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value" messages
    return parse


def positive_int(text: str) -> int:
    """An argparse `type` for counts that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


hint_count = in_range(int, HINT_POINTS)


# ----------------------------------------------------------------------------- shared options
def add_model_options(parser: argparse.ArgumentParser, *, repeatable: bool = False) -> None:
    """--model, --device, --backend and --max-parameters: which model, and how it runs.

    Args:
        parser: the command's parser.
        repeatable: --model may be given several times (commands that compare models).
    """
    if repeatable:
        parser.add_argument(
            "--model",
            action="append",
            help="model folder or Hub repo id; repeat to compare models (default: the bundled starter model)",
        )
    else:
        parser.add_argument("--model", help="model folder or Hub repo id (default: the bundled starter model)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="what runs the generator (default torch; the onnx ones run on the cpu and need the onnx extra)",
    )
    parser.add_argument(
        "--max-parameters",
        type=int,
        default=DEFAULT_MAX_PARAMETERS,
        help=f"refuse a --model with more parameters than this (default {DEFAULT_MAX_PARAMETERS:,})",
    )


def add_render_options(parser: argparse.ArgumentParser, *, saturation: bool = True) -> None:
    """--render-size (and --saturation): how the model is run on each photo or frame.

    Args:
        parser: the command's parser.
        saturation: also add --saturation (scoring commands measure the model as it is).
    """
    parser.add_argument(
        "--render-size",
        type=in_range(int, RENDER_SIZE),
        help=f"long side the model runs at, {RENDER_SIZE.describe()} (default: the model's own);"
        " the output keeps the input's full size",
    )
    if saturation:
        parser.add_argument(
            "--saturation",
            type=in_range(float, SATURATION),
            default=1.0,
            help=f"chroma multiplier, {SATURATION.describe()} (default 1)",
        )


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


# ----------------------------------------------------------------------------- running
def load_colorizer(args: argparse.Namespace, model: str | None = None) -> Colorizer:
    """The Colorizer that the options of `add_model_options` describe.

    Args:
        args: the parsed arguments.
        model: load this model instead of `args.model` (commands that compare several).

    Raises:
        CommandFailed: the model cannot be loaded, or not on that device (status 2).
    """
    from ..pipeline import Colorizer
    from ..threads import set_threads

    set_threads()  # the process's thread policy, before an ONNX Runtime session copies torch's count
    try:
        return Colorizer.from_pretrained(
            args.model if model is None else model,
            device=args.device,
            backend=args.backend,
            max_parameters=args.max_parameters,
        )
    except (ValueError, OSError) as error:  # CheckpointError is a ValueError
        raise CommandFailed(error) from None
    except (RuntimeError, AssertionError) as error:  # torch's answer to a device that is not there
        raise CommandFailed(f"cannot run on device {args.device!r}: {one_line(error)}") from None
