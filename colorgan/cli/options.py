"""What several commands share: their common options, argument types, loading the model, the error exit.

Only light modules are imported here (`colorgan.limits`, `colorgan.errors`): building the parser
must not load torch.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
def add_model_options(parser: argparse.ArgumentParser, *, repeatable: bool = False, auto_backend: bool = False) -> None:
    """--model, --device, --backend and --max-parameters: which model, and how it runs.

    Args:
        parser: the command's parser.
        repeatable: --model may be given several times (commands that compare models).
        auto_backend: --backend also takes, and defaults to, `auto`: onnx on the cpu, torch on a GPU
            (the command resolves it with `resolve_backend`).
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
        choices=("auto", *BACKENDS) if auto_backend else BACKENDS,
        default="auto" if auto_backend else "torch",
        help=(
            "what runs the generator (default auto: onnx on the cpu when ONNX Runtime is installed, else torch)"
            if auto_backend
            else "what runs the generator (default torch; the onnx ones run on the cpu and need the onnx extra)"
        ),
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


def add_propagate_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-propagate",
        dest="propagate",
        action="store_false",
        help="leave hints to the network alone instead of spreading each over its region",
    )


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def add_hub_write_options(parser: argparse.ArgumentParser) -> None:
    """--private and --token: how a command creates and writes a Hub repo."""
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--token", help="Hub token with write access (default: the logged-in one or HF_TOKEN)")


# ----------------------------------------------------------------------------- running
@contextmanager
def hub_errors_as_command_failures() -> Iterator[None]:
    """End the command with one line when the Hub, or the library asking it, fails (status 2).

    Catches what a Hub call raises: the Hub's refusals (`HfHubHTTPError`), the library's own
    `ValueError` / `OSError` (a `CheckpointError`, datasets' `DatasetNotFoundError`), and connection
    errors, which are the HTTP library's own: httpx's under huggingface_hub 1.x, httpx2's under 2.x.
    """
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except (ValueError, OSError, HfHubHTTPError) as error:  # CheckpointError is a ValueError
        raise CommandFailed(error) from None
    except Exception as error:
        if not type(error).__module__.startswith("httpx"):
            raise
        raise CommandFailed(f"could not reach the Hub ({type(error).__name__}: {error})") from None


def resolve_backend(backend: str, device_type: str) -> str:
    """`--backend auto` (of `add_model_options(auto_backend=True)`) made concrete for a device.

    Args:
        backend: the option's value; anything but `auto` is returned as it is.
        device_type: where the model will run ("cpu", "cuda", ...).
    """
    if backend != "auto":
        return backend
    import importlib.util

    return "onnx" if device_type == "cpu" and importlib.util.find_spec("onnxruntime") is not None else "torch"

def load_colorizer(args: argparse.Namespace, model: str | None = None, *, threads: int | None = None) -> Colorizer:
    """The Colorizer that the options of `add_model_options` describe.

    Args:
        args: the parsed arguments.
        model: load this model instead of `args.model` (commands that compare several).
        threads: torch's (and ONNX Runtime's) threads; by default the policy's (`colorgan.threads`).

    Raises:
        CommandFailed: the model cannot be loaded, or not on that device (status 2).
    """
    from ..pipeline import Colorizer
    from ..threads import set_threads

    set_threads(threads)  # the process's thread policy, before an ONNX Runtime session copies torch's count
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
