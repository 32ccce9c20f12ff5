"""`colorgan push` (a model folder to the Hub) and `colorgan export-onnx`."""
from __future__ import annotations

import argparse
import sys

from .options import CommandFailed, add_hub_write_options, hub_errors_as_command_failures, positive_int


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload a model folder (weights, config, card, sample grid, discriminator) to a Hub repo",
        description="Upload a model folder to a Hugging Face Hub model repo, creating it if needed;"
        " pushing again updates it. Only model.safetensors, config.json, README.md, training_facts.json,"
        " the sample grid and discriminator/ are uploaded; the card is rendered from training_facts.json"
        " unless the folder has a README.md of its own.",
    )
    parser.add_argument("model_dir", help="model folder, as written by train_accelerate.py or save_pretrained")
    parser.add_argument("repo_id", help="Hub repo id: user/name or org/name")
    add_hub_write_options(parser)
    parser.add_argument("--message", default="Upload colorgan model", help="commit message")
    parser.add_argument("--revision", help="branch to push to, created if missing (default: main)")
    parser.add_argument(
        "--onnx", action="store_true", help="also export and upload model.onnx, for ONNX Runtime (backend='onnx')"
    )
    add_quantize_options(parser, what="with --onnx, also export and upload int8 model_int8.onnx")
    parser.set_defaults(run=run_push)

    parser = subparsers.add_parser(
        "export-onnx",
        help="export a model's generator to ONNX (dynamic batch, height and width), optionally int8",
        description="Export the generator of a model folder or Hub repo to one .onnx file for ONNX Runtime,"
        " with dynamic batch, height and width. With --quantize it is static int8 (QDQ),"
        " its activation ranges calibrated on photos of --calibration.",
    )
    parser.add_argument("model", help="model folder or Hub repo id")
    parser.add_argument("output", help="the .onnx file to write")
    add_quantize_options(parser, what="write int8 (needs --calibration)")
    parser.set_defaults(run=run_export_onnx)


def add_quantize_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--quantize, --calibration and --calibration-count: making an int8 graph."""
    parser.add_argument("--quantize", action="store_true", help=what)
    parser.add_argument("--calibration", help="folder of photos to calibrate the int8 activations on")
    parser.add_argument(
        "--calibration-count",
        type=positive_int,
        help="how many of its photos to use, sorted by name (default: colorgan.onnx_export.CALIBRATION_IMAGES)",
    )


def quantize_arguments(args: argparse.Namespace) -> dict:
    """The options of `add_quantize_options` as the library's keyword arguments."""
    return dict(quantize=args.quantize, calibration=args.calibration, calibration_count=args.calibration_count)


def run_push(args: argparse.Namespace) -> int:
    from ..hub import push_to_hub

    with hub_errors_as_command_failures():
        commit = push_to_hub(
            args.model_dir,
            args.repo_id,
            private=args.private,
            token=args.token,
            commit_message=args.message,
            revision=args.revision,
            onnx=args.onnx,
            **quantize_arguments(args),
        )
    print(f"pushed {args.model_dir} to {args.repo_id}", file=sys.stderr)
    print(commit)
    return 0


def run_export_onnx(args: argparse.Namespace) -> int:
    from ..hub import export_model_files
    from ..onnx_export import ONNX_OPSET

    try:
        path = export_model_files(args.model, args.output, **quantize_arguments(args))
    except (ValueError, OSError) as error:  # CheckpointError is a ValueError
        raise CommandFailed(error) from None
    kind = "int8" if args.quantize else "fp32"
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB, {kind}, opset {ONNX_OPSET})", file=sys.stderr)
    return 0
