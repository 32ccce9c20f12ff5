"""`colorgan eval` (photos against their ground truth) and `colorgan eval-video` (flicker)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..limits import BASELINES
from .options import CommandFailed, add_model_options, add_render_options, hint_count, load_colorizer, positive_int

SYNTHETIC_CLIP_MIN_SIDE = 16  # px: smaller synthetic clips leave the optical flow nothing to follow


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score a model (or the gray baseline) on a folder of colour photos; writes a markdown report and a grid",
        description="Colorize every photo of --data from its grayscale version and report PSNR, SSIM, "
        "colourfulness, the colourfulness gap to the photo and the ab AuC, per image and on average. "
        "Several --model, --hints values and --baseline gray give one run each, summarised in one report.",
    )
    parser.add_argument("--data", required=True, help="folder of colour photos (the ground truth)")
    add_model_options(parser, repeatable=True)
    parser.add_argument(
        "--baseline", choices=BASELINES, help="also score the no-colour output (ab = 0); no model needed"
    )
    parser.add_argument(
        "--hints",
        type=hint_count,
        nargs="+",
        default=[0],
        help="hint points per image, coloured from the ground truth; several values give one run each (default 0)",
    )
    parser.add_argument("--out", default="eval_report.md", help="markdown report (default eval_report.md)")
    parser.add_argument("--grid", help="grid PNG (default: <out>_grid.png beside the report)")
    parser.add_argument("--summary-json", help="also write each run's settings and mean scores as JSON here")
    add_render_options(parser, saturation=False)
    parser.add_argument("--limit", type=positive_int, help="score only the first N images (sorted by name)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hint positions (default 0)")
    parser.add_argument(
        "--no-propagate",
        dest="propagate",
        action="store_false",
        help="score what the network alone makes of the hints, without spreading them over their regions",
    )
    parser.set_defaults(run=run_eval)

    parser = subparsers.add_parser(
        "eval-video",
        help="measure flicker and PSNR of colorized video, per-frame vs temporally consistent",
        description="Colorize colour clips from their L* frame by frame and with temporal consistency; print the "
        "motion-compensated flicker (mean |Δab| between consecutive frames) and the PSNR against the clip for both. "
        "A folder of colour photos gives synthetic pans and zooms over each photo.",
    )
    parser.add_argument("inputs", nargs="+", help="colour video files, or folders of colour photos")
    add_model_options(parser)
    add_render_options(parser, saturation=False)
    parser.add_argument(
        "--memory",
        type=float,
        help="weight of the colour carried from frame to frame, in [0, 1) (default: colorgan.temporal's)",
    )
    parser.add_argument("--frames", type=positive_int, default=32, help="frames per synthetic clip (default 32)")
    parser.add_argument("--size", type=clip_size, default=(320, 240), help="synthetic clip size (default 320x240)")
    parser.add_argument("--limit", type=positive_int, help="photos used per folder (default: all)")
    parser.add_argument("--max-frames", type=int, default=240, help="frames read from each video (default 240)")
    parser.add_argument("--max-side", type=int, default=480, help="videos are shrunk to this long side (default 480)")
    parser.add_argument("--summary-json", help="also write the scores as JSON here")
    parser.set_defaults(run=run_eval_video)


def clip_size(text: str) -> tuple[int, int]:
    """An argparse `type` for `WIDTHxHEIGHT`."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if min(width, height) < SYNTHETIC_CLIP_MIN_SIDE:
        side = SYNTHETIC_CLIP_MIN_SIDE
        raise argparse.ArgumentTypeError(f"frames must be at least {side}x{side}, got {text}")
    return width, height


def write_json(path: str, data: object) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


# ----------------------------------------------------------------------------- photos
def run_eval(args: argparse.Namespace) -> int:
    from ..checkpoint import STARTER_MODEL
    from ..evaluation.photos import evaluate, hint_curve, write_report
    from ..imaging import list_images

    try:
        list_images(args.data)  # checked before any model is loaded
    except ValueError as error:  # ImageError
        raise CommandFailed(error) from None
    models = args.model or ([] if args.baseline else [None])  # no --model: the bundled starter model
    colorizers = [load_colorizer(args, model) for model in models]
    runs = [dict(colorizer=None, baseline=args.baseline, model_name=None, hints=0)] if args.baseline else []
    runs += [
        # no --model: the bundled starter model, named by its folder
        dict(colorizer=colorizer, baseline=None, model_name=str(model or STARTER_MODEL), hints=hints)
        for model, colorizer in zip(models, colorizers)
        for hints in args.hints
    ]
    reports = []
    without_hints: dict[int, dict] = {}  # per colorizer: its outputs without hints, shared by its runs
    for run in runs:
        report = evaluate(
            outputs_without_hints=without_hints.setdefault(id(run["colorizer"]), {}),
            data_dir=args.data,
            render_size=args.render_size,
            seed=args.seed,
            limit=args.limit,
            progress=sys.stderr.isatty(),
            propagate=args.propagate,
            **run,
        )
        if not report.rows:
            raise CommandFailed(f"{args.data}: none of the {len(report.skipped)} images could be read")
        print(report.summary_line())
        reports.append(report)
    if len(args.hints) > 1 and any(report.baseline is None for report in reports):
        print("\nPSNR versus hints:\n" + "\n".join(hint_curve(reports)))
    grid = args.grid or Path(args.out).with_name(Path(args.out).stem + "_grid.png")
    write_report(reports, args.out, grid)
    if args.summary_json:
        write_json(args.summary_json, {"runs": [report.to_dict() for report in reports]})
    print(f"wrote {args.out} and {grid}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- video
def run_eval_video(args: argparse.Namespace) -> int:
    colorizer = load_colorizer(args)
    from ..evaluation.video import clips_from, evaluate_clip, summary_table
    from ..temporal import TemporalSettings

    try:
        settings = TemporalSettings() if args.memory is None else TemporalSettings(memory=args.memory)
        scores = []
        clips = clips_from(
            args.inputs, frames=args.frames, size=args.size, limit=args.limit, max_frames=args.max_frames,
            max_side=args.max_side,
        )
        for name, frames in clips:
            result = evaluate_clip(colorizer, name, frames, render_size=args.render_size, settings=settings)
            print(
                f"{name}: flicker {result.flicker_per_frame:.2f} -> {result.flicker_temporal:.2f},"
                f" PSNR {result.psnr_per_frame:.2f} -> {result.psnr_temporal:.2f} dB",
                file=sys.stderr,
            )
            scores.append(result)
    except ValueError as error:  # VideoError and ImageError are ValueErrors
        raise CommandFailed(error) from None
    if not scores:
        raise CommandFailed("no clips found (give video files or folders of colour photos)")
    print(summary_table(scores))
    if args.summary_json:
        write_json(args.summary_json, [asdict(score) for score in scores])
    return 0
