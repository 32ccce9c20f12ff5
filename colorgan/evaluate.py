"""`colorgan eval`: score a model, or the gray baseline, on a folder of colour photos.

Each photo is the ground truth. Its grayscale version (same L*, a* = b* = 0) is
colorized through `Colorizer.__call__`, the one inference path, optionally with N
hint points whose colours are read from the ground truth (Zhang et al. 2017's
PSNR-versus-hints protocol). The output is scored with `colorgan.metrics`; the
report is a markdown table (per image and mean) plus a grid PNG of
gray input | colorized | ground truth.

    colorgan eval --model runs/gan --data ../shared/photos/val --out eval/report.md
    colorgan eval --baseline gray --model runs/l1 --model runs/gan --hints 0 10 --data DIR
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .checkpoint import CheckpointError
from .color import as_float_rgb, lab_to_rgb, lightness, rgb_to_lab
from .hints import Hint
from .imaging import IMAGE_SUFFIXES, decode, open_image, to_pil
from .metrics import ab_auc, colorfulness, psnr, ssim
from .pipeline import BACKENDS, RENDER_SIZE_LIMITS, STARTER_MODEL, Colorizer, render_shape

MIN_RENDER_SIZE, MAX_RENDER_SIZE = RENDER_SIZE_LIMITS

BASELINES = ("gray",)
THUMB_HEIGHT = 256  # grid thumbnails are this tall ...
THUMB_MAX_WIDTH = 2 * THUMB_HEIGHT  # ... unless that would make them wider than this
GRID_PAD = 4
GRID_LABEL_HEIGHT = 16
GRID_MAX_ROWS = 8
FAR_FROM_HINTS = 16  # px: pixels at least this far from every hint measure how far hints spread

# (key, markdown column title, format) of the per-image scores, in table order
COLUMNS = (
    ("psnr", "PSNR (dB) ↑", "{:.2f}"),
    ("ssim", "SSIM ↑", "{:.4f}"),
    ("colorfulness", "colourfulness", "{:.1f}"),
    ("colorfulness_truth", "GT colourfulness", "{:.1f}"),
    ("colorfulness_difference", "out − GT", "{:+.1f}"),
    ("colorfulness_gap", "gap ↓", "{:.1f}"),
    ("ab_auc", "AuC ↑", "{:.4f}"),
)

METRIC_NOTES = """\
- **PSNR**: peak signal-to-noise ratio of the RGB output against the photo (data range 1), in dB; higher is closer.
- **SSIM**: structural similarity (Gaussian window 11, σ = 1.5), mean over pixels and RGB channels; 1 is identical.
- **colourfulness**: Hasler & Süsstrunk 2003 on the 0–255 scale (0 = gray; ~33 moderately, ~59 quite colourful).
- **out − GT**, **gap**: the output's colourfulness minus the photo's, and its absolute value; a washed-out
  (sepia, desaturated) model has a large negative difference.
- **AuC**: Zhang et al. 2016 — the fraction of pixels whose ab error is within t, integrated over t = 0…150 and
  normalised to 0–1; 1 means every pixel's colour is exact.
"""


class EvalError(ValueError):
    """An evaluation that cannot run (missing folder, no images); the message is one line."""


@dataclass
class ImageScores:
    """The scores of one colorized photo."""

    name: str
    width: int
    height: int
    psnr: float
    ssim: float
    colorfulness: float  # of the output
    colorfulness_truth: float  # of the ground-truth photo
    ab_auc: float
    # with hints: mean ab error (Lab units) at pixels >= FAR_FROM_HINTS px from every hint, with the
    # hints and without them (same pixels); None without hints
    far_ab_error: float | None = None
    far_ab_error_no_hints: float | None = None

    @property
    def colorfulness_difference(self) -> float:
        return self.colorfulness - self.colorfulness_truth

    @property
    def colorfulness_gap(self) -> float:
        return abs(self.colorfulness_difference)


@dataclass
class Example:
    """Thumbnails of one photo for the grid."""

    name: str
    gray: Image.Image
    output: Image.Image
    truth: Image.Image


@dataclass
class EvalReport:
    """One evaluation run: per-image scores, skipped files and a few thumbnails."""

    label: str
    model: str | None
    data_dir: str
    hints: int
    baseline: str | None
    render_size: int
    seed: int
    rows: list[ImageScores] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    examples: list[Example] = field(default_factory=list)
    seconds: float = 0.0

    def means(self) -> dict[str, float]:
        """Mean of each score over the images (NaN when there are none)."""
        return {
            key: float(np.mean([getattr(row, key) for row in self.rows])) if self.rows else float("nan")
            for key, _, _ in COLUMNS
        }

    def far_ab_error_change(self) -> float | None:
        """Relative change of the mean ab error far from hints (-0.3 = 30% closer to the truth); None without hints."""
        pairs = [(r.far_ab_error, r.far_ab_error_no_hints) for r in self.rows if r.far_ab_error is not None]
        if not pairs:
            return None
        with_hints, without = np.mean([p[0] for p in pairs]), np.mean([p[1] for p in pairs])
        return float(with_hints / without - 1) if without > 0 else 0.0

    def summary_line(self) -> str:
        means = self.means()
        line = (
            f"{self.label}: {len(self.rows)} images, PSNR {means['psnr']:.2f} dB, SSIM {means['ssim']:.4f},"
            f" colourfulness {means['colorfulness']:.1f} (GT {means['colorfulness_truth']:.1f},"
            f" gap {means['colorfulness_gap']:.1f}, out − GT {means['colorfulness_difference']:+.1f}),"
            f" AuC {means['ab_auc']:.4f}"
        )
        change = self.far_ab_error_change()
        if change is not None:
            line += f", ab error >= {FAR_FROM_HINTS} px from hints {change:+.1%}"
        return line + (f", {len(self.skipped)} skipped" if self.skipped else "")

    def to_dict(self) -> dict:
        """The run's settings and mean scores, for `--summary-json`.

        Its "evaluation" entry has the fields of `colorgan.hub.Evaluation`, ready for a model
        card's `training_facts.json` "evaluations" list.
        """
        evaluation = dict(dataset=self.data_dir, metrics=self.means(), num_images=len(self.rows), hints=self.hints)
        return dict(
            label=self.label,
            model=self.model,
            baseline=self.baseline,
            hints=self.hints,
            data=self.data_dir,
            render_size=self.render_size,
            seed=self.seed,
            images=len(self.rows),
            far_ab_error_change=self.far_ab_error_change(),
            skipped=[name for name, _ in self.skipped],
            seconds=round(self.seconds, 2),
            means=self.means(),
            evaluation=evaluation,
        )


# ----------------------------------------------------------------------------- inputs
def list_images(data_dir: str | os.PathLike) -> list[Path]:
    """The image files directly inside a folder, sorted by name.

    Raises:
        EvalError: the folder does not exist or holds no image files.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise EvalError(f"{folder}: no such folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise EvalError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    return paths


def grayscale_version(truth: torch.Tensor) -> torch.Tensor:
    """The photo a black-and-white camera would have taken: the photo's L*, with a* = b* = 0.

    Args:
        truth: (1, 3, H, W) RGB float in [0, 1].

    Returns:
        (1, 3, H, W) uint8 with R = G = B.
    """
    lightness_map = lightness(truth)  # (1, 1, H, W) L*
    gray = lab_to_rgb(torch.cat([lightness_map, torch.zeros_like(lightness_map).expand(-1, 2, -1, -1)], dim=1))
    # ab = 0 is neutral, so R, G and B agree to ~1e-4; average them to make it exactly gray
    gray = gray.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    return (gray * 255).round().to(torch.uint8)


def sample_hints(truth: torch.Tensor, count: int, generator: torch.Generator, radius: int = 1) -> list[Hint]:
    """`count` hint points at random pixels, each coloured like the ground truth around it.

    Args:
        truth: (1, 3, H, W) ground-truth RGB float in [0, 1].
        count: number of points.
        generator: the random source (seed it for repeatable hints).
        radius: the colour is the mean of the (2 radius + 1)^2 patch around the point (clipped to the image).

    Returns:
        `Hint(x, y, (r, g, b))` points at pixel centres, in the image's pixel coordinates.
    """
    height, width = truth.shape[-2:]
    columns = torch.randint(0, width, (count,), generator=generator).tolist()
    rows = torch.randint(0, height, (count,), generator=generator).tolist()
    points = []
    for column, row in zip(columns, rows):
        patch = truth[0, :, max(row - radius, 0) : row + radius + 1, max(column - radius, 0) : column + radius + 1]
        red, green, blue = (patch.float().mean(dim=(1, 2)) * 255).round().to(torch.uint8).tolist()
        points.append(Hint(column + 0.5, row + 0.5, (red, green, blue)))
    return points


def _hint_generator(seed: int, name: str) -> torch.Generator:
    # seeded per file name: an image gets the same hints whatever else is in the folder or --limit
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()))


def _thumbnail(image: Image.Image) -> Image.Image:
    width, height = image.size
    scale = min(THUMB_HEIGHT / height, THUMB_MAX_WIDTH / width)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)


# ----------------------------------------------------------------------------- scoring
def _colorize_from_gray(
    path: Path, colorizer: Colorizer | None, *, hints: int, baseline: str | None, render_size: int, seed: int
) -> tuple[torch.Tensor, Image.Image, Image.Image, list[Hint]]:
    """Read a photo, make its grayscale version and colorize that.

    Returns:
        The photo as (1, 3, H, W) float RGB in [0, 1], the gray input (PIL 'L'), the output (PIL RGB)
        and the hint points it was given.
    """
    truth = as_float_rgb(decode(open_image(path)).rgb)
    gray_image = Image.fromarray(grayscale_version(truth)[0, 0].numpy(), "L")
    if baseline == "gray":
        return truth, gray_image, gray_image.convert("RGB"), []
    points = []
    if hints:
        render_width, _ = render_shape(gray_image.width, gray_image.height, render_size)
        radius = max(1, round(gray_image.width / render_width))  # about the patch a hint covers at render size
        points = sample_hints(truth, hints, _hint_generator(seed, path.name), radius=radius)
    return truth, gray_image, colorizer(gray_image, hints=points or None, render_size=render_size), points


def far_from_hints(height: int, width: int, points: Sequence[Hint], distance: float = FAR_FROM_HINTS) -> torch.Tensor:
    """(H, W) bool: pixels whose centre is at least `distance` px from every hint point."""
    rows = torch.arange(height, dtype=torch.float32)[:, None] + 0.5
    columns = torch.arange(width, dtype=torch.float32)[None, :] + 0.5
    far = torch.ones(height, width, dtype=torch.bool)
    for point in points:
        far &= (rows - point.y) ** 2 + (columns - point.x) ** 2 >= distance**2
    return far


def mean_ab_errors(outputs: Sequence[torch.Tensor], truth: torch.Tensor, where: torch.Tensor) -> list[float]:
    """Mean Euclidean ab distance (Lab units) of each (1, 3, H, W) RGB output to the truth over the (H, W) mask."""
    if not bool(where.any()):
        return [float("nan")] * len(outputs)
    truth_ab, where = rgb_to_lab(truth)[:, 1:], where.to(truth.device)  # the truth converted once
    return [(rgb_to_lab(output)[:, 1:] - truth_ab).norm(dim=1)[0][where].mean().item() for output in outputs]


def score(name: str, output: torch.Tensor, truth: torch.Tensor) -> ImageScores:
    """All metrics of one output against its ground truth, both (1, 3, H, W) float RGB in [0, 1]."""
    output_lab, truth_lab = rgb_to_lab(output), rgb_to_lab(truth)
    return ImageScores(
        name=name,
        width=truth.shape[-1],
        height=truth.shape[-2],
        psnr=psnr(output, truth).item(),
        ssim=ssim(output, truth).item(),
        colorfulness=colorfulness(output).item(),
        colorfulness_truth=colorfulness(truth).item(),
        ab_auc=ab_auc(output_lab[:, 1:], truth_lab[:, 1:]).item(),
    )


def evaluate(
    colorizer: Colorizer | None,
    data_dir: str | os.PathLike,
    *,
    hints: int = 0,
    baseline: str | None = None,
    render_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    label: str | None = None,
    model_name: str | None = None,
    grid_rows: int = GRID_MAX_ROWS,
    progress: bool = False,
    outputs_without_hints: dict[str, torch.Tensor] | None = None,
) -> EvalReport:
    """Colorize every photo of a folder from its grayscale version and score the result.

    Args:
        colorizer: the model to score; may be None with `baseline="gray"`.
        data_dir: folder of colour photos (the ground truth).
        hints: number of hint points per image, sampled from the ground truth.
        baseline: "gray" scores the grayscale input itself (ab = 0) instead of a model.
        render_size: long side at which the generator runs (the output is full size).
        seed: seed of the hint positions (per image, so a subset gets the same hints).
        limit: score only the first `limit` images (sorted by name).
        label: the run's name in reports; by default from the model name, baseline and hints.
        model_name: the model's path or repo id, for the report header.
        grid_rows: keep thumbnails of this many images for the grid.
        progress: show a progress bar on stderr.
        outputs_without_hints: the same colorizer's outputs without hints (uint8 RGB, by file name) at
            this render size; a run without hints fills it and runs with hints read it, so the
            far-from-hints comparison does not colorize every photo again for each number of hints.

    Raises:
        EvalError: missing folder or no images.
    """
    outputs_without_hints = {} if outputs_without_hints is None else outputs_without_hints
    if baseline is not None and baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
    if colorizer is None and baseline is None:
        raise ValueError("evaluate needs a colorizer unless baseline='gray'")
    if hints < 0:
        raise ValueError(f"hints must be >= 0, got {hints}")
    if render_size is None:
        render_size = colorizer.default_render_size if colorizer is not None else 512
    if not MIN_RENDER_SIZE <= render_size <= MAX_RENDER_SIZE:
        raise ValueError(f"render_size must be between {MIN_RENDER_SIZE} and {MAX_RENDER_SIZE}, got {render_size}")
    if baseline is not None:
        hints = 0  # the baseline has no model to hint
    paths = list_images(data_dir)[:limit]
    if label is None:
        label = f"{baseline} baseline" if baseline else Path(model_name or "model").name
        label += f" + {hints} hints" if hints else ""
    report = EvalReport(label, model_name, str(data_dir), hints, baseline, render_size, seed)
    device = colorizer.device if colorizer is not None and baseline is None else torch.device("cpu")
    started = time.perf_counter()

    from tqdm import tqdm

    for path in tqdm(paths, desc=label, unit="img", disable=not progress, file=sys.stderr):
        try:
            truth, gray_image, output_image, points = _colorize_from_gray(
                path, colorizer, hints=hints, baseline=baseline, render_size=render_size, seed=seed
            )
            output_rgb = decode(output_image).rgb
            output, truth = as_float_rgb(output_rgb).to(device), truth.to(device)
            scores = score(path.name, output, truth)
            if baseline is None and not points:
                outputs_without_hints[path.name] = output_rgb
            far = far_from_hints(*truth.shape[-2:], points) if points else None
            if far is not None and bool(far.any()):
                if path.name not in outputs_without_hints:
                    outputs_without_hints[path.name] = decode(colorizer(gray_image, render_size=render_size)).rgb
                plain = as_float_rgb(outputs_without_hints[path.name]).to(device)
                scores.far_ab_error, scores.far_ab_error_no_hints = mean_ab_errors([output, plain], truth, far)
            report.rows.append(scores)
        except (ValueError, OSError) as error:  # ImageError is a ValueError
            message = _first_line(error)
            report.skipped.append((path.name, message))
            tqdm.write(f"skipped {path.name}: {message}", file=sys.stderr)
            continue
        if len(report.examples) < grid_rows:
            thumbnails = [_thumbnail(image.convert("RGB")) for image in (gray_image, output_image, to_pil((truth * 255).round().to(torch.uint8)))]
            report.examples.append(Example(path.name, *thumbnails))
    report.seconds = time.perf_counter() - started
    return report


# ----------------------------------------------------------------------------- reports
def _table_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _header(report: EvalReport) -> list[str]:
    if report.baseline:
        what = f"{report.baseline} baseline (the grayscale input itself, ab = 0; no model)"
    else:
        what = f"`{report.model}`" if report.model else "the bundled starter model"
    if report.hints:
        hints = f"{report.hints} points per image, colours from the ground truth (seed {report.seed})"
    else:
        hints = "none"
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    return [
        _table_row(["", ""]),
        _table_row(["---", "---"]),
        _table_row(["model", what]),
        _table_row(["data", f"`{report.data_dir}` ({len(report.rows)} images{skipped})"]),
        _table_row(["hints", hints]),
        _table_row(["render size", f"{report.render_size} px (long side); scored at full resolution"]),
        _table_row(["time", f"{report.seconds:.1f} s"]),
    ]


def _per_image_table(report: EvalReport) -> list[str]:
    lines = [
        _table_row(["image", "size"] + [title for _, title, _ in COLUMNS]),
        _table_row(["---", "---"] + ["---:"] * len(COLUMNS)),
    ]
    for row in report.rows:
        cells = [fmt.format(getattr(row, key)) for key, _, fmt in COLUMNS]
        lines.append(_table_row([row.name, f"{row.width}×{row.height}"] + cells))
    means = report.means()
    cells = [f"**{fmt.format(means[key])}**" for key, _, fmt in COLUMNS]
    lines.append(_table_row([f"**mean of {len(report.rows)}**", ""] + cells))
    return lines


def _summary_table(reports: Sequence[EvalReport]) -> list[str]:
    lines = [
        _table_row(["run", "images"] + [title for _, title, _ in COLUMNS]),
        _table_row(["---", "---:"] + ["---:"] * len(COLUMNS)),
    ]
    for report in reports:
        means = report.means()
        cells = [fmt.format(means[key]) for key, _, fmt in COLUMNS]
        lines.append(_table_row([report.label, str(len(report.rows))] + cells))
    return lines


def hint_curve(reports: Sequence[EvalReport]) -> list[str]:
    """Markdown table of PSNR versus the number of hints (Zhang et al. 2017's protocol), per model."""
    lines = [
        _table_row(["model", "hints", "PSNR (dB)", "Δ vs 0 hints", f"ab error ≥ {FAR_FROM_HINTS} px from hints"]),
        _table_row(["---", "---:", "---:", "---:", "---:"]),
    ]
    runs = [report for report in reports if report.baseline is None]
    for report in runs:
        zero = next((r for r in runs if r.model == report.model and r.hints == 0), None)
        psnr_value = report.means()["psnr"]
        delta = f"{psnr_value - zero.means()['psnr']:+.2f}" if zero is not None and report.hints else "–"
        change = report.far_ab_error_change()
        lines.append(
            _table_row(
                [Path(report.model or "model").name, str(report.hints), f"{psnr_value:.2f}", delta,
                 f"{change:+.1%}" if change is not None else "–"]
            )
        )
    return lines


def render_markdown(reports: EvalReport | Sequence[EvalReport], grid_link: str | None = None) -> str:
    """The markdown report: header and per-image table of each run (and a summary table for several runs)."""
    reports = [reports] if isinstance(reports, EvalReport) else list(reports)
    lines = ["# colorgan evaluation", ""]
    if len(reports) > 1:
        lines += ["## Summary (means)", ""] + _summary_table(reports) + [""]
    if len({report.hints for report in reports if report.baseline is None}) > 1:
        lines += ["## PSNR versus hints", ""] + hint_curve(reports) + [""]
    if grid_link:
        lines += [f"![gray input, colorized and ground truth]({grid_link})", ""]
    for report in reports:
        if len(reports) > 1:
            lines += [f"## {report.label}", ""]
        lines += _header(report) + [""] + _per_image_table(report) + [""]
        if report.skipped:
            lines += ["Skipped:", ""] + [f"- `{name}`: {reason}" for name, reason in report.skipped] + [""]
    lines += ["## Metrics" if len(reports) > 1 else "Metrics:", "", METRIC_NOTES]
    return "\n".join(lines)


def make_grid(reports: EvalReport | Sequence[EvalReport]) -> Image.Image:
    """Rows of gray input | each model run's output | ground truth, with small text labels.

    Every cell is `THUMB_HEIGHT` tall and as wide as the widest thumbnail; the image is
    `GRID_PAD + columns * (cell_width + GRID_PAD)` wide and
    `GRID_LABEL_HEIGHT + rows * (GRID_LABEL_HEIGHT + THUMB_HEIGHT + GRID_PAD)` tall.
    """
    reports = [reports] if isinstance(reports, EvalReport) else list(reports)
    model_runs = [report for report in reports if report.baseline is None]
    by_name = [{example.name: example for example in report.examples} for report in model_runs]
    examples = [e for e in reports[0].examples if all(e.name in names for names in by_name)]
    titles = ["gray input"] + [report.label for report in model_runs] + ["ground truth"]
    cell_width = max([e.gray.width for e in examples], default=THUMB_HEIGHT)
    width = GRID_PAD + len(titles) * (cell_width + GRID_PAD)
    height = GRID_LABEL_HEIGHT + len(examples) * (GRID_LABEL_HEIGHT + THUMB_HEIGHT + GRID_PAD)
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    for column, title in enumerate(titles):
        draw.text((GRID_PAD + column * (cell_width + GRID_PAD), 2), title, fill="black")
    for row, example in enumerate(examples):
        top = GRID_LABEL_HEIGHT + row * (GRID_LABEL_HEIGHT + THUMB_HEIGHT + GRID_PAD)
        draw.text((GRID_PAD, top + 2), example.name, fill="dimgray")
        cells = [example.gray] + [names[example.name].output for names in by_name] + [example.truth]
        for column, thumbnail in enumerate(cells):
            left = GRID_PAD + column * (cell_width + GRID_PAD) + (cell_width - thumbnail.width) // 2
            grid.paste(thumbnail, (left, top + GRID_LABEL_HEIGHT + (THUMB_HEIGHT - thumbnail.height) // 2))
    return grid


def write_report(
    report: EvalReport | Sequence[EvalReport], out_md: str | os.PathLike, grid_png: str | os.PathLike | None = None
) -> None:
    """Write the markdown report and, if `grid_png` is given, the grid it links to.

    Args:
        report: one run, or several runs over the same folder (summary table + one section each).
        out_md: the markdown file.
        grid_png: the grid image; linked from the markdown by a relative path.
    """
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    grid_link = None
    if grid_png is not None:
        grid_png = Path(grid_png)
        grid_png.parent.mkdir(parents=True, exist_ok=True)
        make_grid(report).save(grid_png)
        grid_link = Path(os.path.relpath(grid_png.resolve(), out_md.parent.resolve())).as_posix()
    out_md.write_text(render_markdown(report, grid_link), encoding="utf-8")


# ----------------------------------------------------------------------------- command line
def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def run_eval(args: argparse.Namespace) -> int:
    try:
        list_images(args.data)
    except EvalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    models = args.model or ([] if args.baseline else [None])  # no --model: the bundled starter model
    colorizers = []
    for model in models:
        try:
            colorizers.append(Colorizer.from_pretrained(model, device=args.device, backend=args.backend))
        except (CheckpointError, OSError, ValueError) as error:
            print(f"error: {_first_line(error)}", file=sys.stderr)
            return 2
        except (RuntimeError, AssertionError) as error:  # torch's answer to a device that is not there
            print(f"error: cannot run on device {args.device!r}: {_first_line(error)}", file=sys.stderr)
            return 2
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
            **run,
        )
        if not report.rows:
            print(f"error: {args.data}: none of the {len(report.skipped)} images could be read", file=sys.stderr)
            return 2
        print(report.summary_line())
        reports.append(report)
    if len(args.hints) > 1 and any(report.baseline is None for report in reports):
        print("\nPSNR versus hints:\n" + "\n".join(hint_curve(reports)))
    grid = args.grid or Path(args.out).with_name(Path(args.out).stem + "_grid.png")
    write_report(reports, args.out, grid)
    if args.summary_json:
        Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary_json).write_text(json.dumps({"runs": [r.to_dict() for r in reports]}, indent=2) + "\n")
    print(f"wrote {args.out} and {grid}", file=sys.stderr)
    return 0


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _render_size(text: str) -> int:
    value = int(text)
    if not MIN_RENDER_SIZE <= value <= MAX_RENDER_SIZE:
        raise argparse.ArgumentTypeError(f"must be between {MIN_RENDER_SIZE} and {MAX_RENDER_SIZE}, got {value}")
    return value


def add_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score a model (or the gray baseline) on a folder of colour photos; writes a markdown report and a grid",
        description="Colorize every photo of --data from its grayscale version and report PSNR, SSIM, "
        "colourfulness, the colourfulness gap to the photo and the ab AuC, per image and on average. "
        "Several --model, --hints values and --baseline gray give one run each, summarised in one report.",
    )
    parser.add_argument("--data", required=True, help="folder of colour photos (the ground truth)")
    parser.add_argument(
        "--model", action="append", help="model folder or Hub repo id; repeat to compare models (default: the starter)"
    )
    parser.add_argument(
        "--baseline", choices=BASELINES, help="also score the no-colour output (ab = 0); no model needed"
    )
    parser.add_argument(
        "--hints",
        type=_non_negative_int,
        nargs="+",
        default=[0],
        help="hint points per image, coloured from the ground truth; several values give one run each (default 0)",
    )
    parser.add_argument("--out", default="eval_report.md", help="markdown report (default eval_report.md)")
    parser.add_argument("--grid", help="grid PNG (default: <out>_grid.png beside the report)")
    parser.add_argument("--summary-json", help="also write each run's settings and mean scores as JSON here")
    parser.add_argument(
        "--render-size", type=_render_size, help="long side the model runs at (default: the model's own)"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="torch", help="what runs the generator (default torch; onnx ones on cpu)"
    )
    parser.add_argument("--limit", type=_positive_int, help="score only the first N images (sorted by name)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hint positions (default 0)")
    parser.set_defaults(handler=run_eval)
