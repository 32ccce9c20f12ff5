"""Scoring a model, or the gray baseline, on a folder of colour photos (`colorgan eval`).

Each photo is the ground truth. Its grayscale version (same L*, a* = b* = 0) is
colorized through `Colorizer.__call__`, the one inference path, optionally with N
hint points whose colours are read from the ground truth (Zhang et al. 2017's
PSNR-versus-hints protocol). The output is scored with `colorgan.metrics`; the
report is a markdown table (per image and mean) plus a grid PNG of
gray input | colorized | ground truth.

    report = evaluate(Colorizer.from_pretrained(), "your_photos/", hints=10)
    write_report(report, "eval/report.md", "eval/report_grid.png")
"""
from __future__ import annotations

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
from tqdm import tqdm

from ..color import as_float_rgb, lab_to_rgb, lightness, rgb_to_lab
from ..errors import one_line
from ..hints import Hint, sample_hints
from ..imaging import decode, list_images, open_image, to_pil
from ..limits import BASELINES, HINT_POINTS, RENDER_SIZE
from ..metrics import METRICS, ab_auc, colorfulness, psnr, small_object_changes, smooth_region_streaks, ssim
from ..pipeline import Colorizer, render_shape
THUMB_HEIGHT = 256  # grid thumbnails are this tall ...
THUMB_MAX_WIDTH = 2 * THUMB_HEIGHT  # ... unless that would make them wider than this
GRID_PAD = 4
GRID_LABEL_HEIGHT = 16
GRID_MAX_ROWS = 8
FAR_FROM_HINTS = 16  # px: pixels at least this far from every hint measure how far hints spread

HINT_CURVE_NOTES = (
    f"The ab error ≥ {FAR_FROM_HINTS} px from hints is its change against the same model without hints: the colour"
    " spreads, it is not a dot. Streaks: stripes of the hints' effect (ab with hints minus without) in the"
    " photos' smooth bands (32 px, where the photo's own L* profile is flat), as the high-pass energy of"
    " its column and row profiles in ab units; a stroke that colours a sky evenly scores ~0.2. Small-object"
    " leak: the effect's mean size at small objects (L* ≥ 15 from the mean of the 21 px around them) over"
    " that at the flat ground around them; 0 = they keep their colour, 100% = they change as the ground.\n"
)

# the per-image scores are those `colorgan.metrics.METRICS` describes, in its order
METRIC_NOTES = "\n".join(f"- **{metric.label}**: {metric.description}" for metric in METRICS.values()) + "\n"


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
    # with hints, of their effect (ab with hints minus ab without; `hint_effect_measures`): stripes in
    # the photo's smooth bands (ab), and the mean |change| at small objects and at the ground around them
    streaks: float | None = None
    small_object_change: float | None = None
    ground_change: float | None = None

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
    propagate: bool = True  # hints spread over their regions; False: the network's own response
    rows: list[ImageScores] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    examples: list[Example] = field(default_factory=list)
    seconds: float = 0.0

    def means(self) -> dict[str, float]:
        """Mean of each score over the images (NaN when there are none)."""
        return {
            key: float(np.mean([getattr(row, key) for row in self.rows])) if self.rows else float("nan")
            for key in METRICS
        }

    def far_ab_error_change(self) -> float | None:
        """Relative change of the mean ab error far from hints (-0.3 = 30% closer to the truth); None without hints."""
        pairs = [(r.far_ab_error, r.far_ab_error_no_hints) for r in self.rows if r.far_ab_error is not None]
        if not pairs:
            return None
        with_hints, without = np.mean([p[0] for p in pairs]), np.mean([p[1] for p in pairs])
        return float(with_hints / without - 1) if without > 0 else 0.0

    def streaks(self) -> float | None:
        """Mean stripe energy (ab) of the hints' effect in the photos' smooth bands; None without hints."""
        values = [row.streaks for row in self.rows if row.streaks is not None]
        return float(np.mean(values)) if values else None

    def small_object_leak(self) -> float | None:
        """Mean change of small objects over that of the ground around them (0 = kept, 1 = as the ground); None without hints."""
        pairs = [(r.small_object_change, r.ground_change) for r in self.rows if r.small_object_change is not None]
        ground = np.mean([pair[1] for pair in pairs]) if pairs else 0.0
        return float(np.mean([pair[0] for pair in pairs]) / ground) if ground > 0 else None

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
        streaks, leak = self.streaks(), self.small_object_leak()
        line += f", streaks {streaks:.2f} ab" if streaks is not None else ""
        line += f", small-object leak {leak:.0%}" if leak is not None else ""
        return line + (f", {len(self.skipped)} skipped" if self.skipped else "")

    def to_dict(self) -> dict:
        """The run's settings and mean scores, for `--summary-json`.

        Its "evaluation" entry has the fields of `hub_card.Evaluation`, ready for a model
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
            propagate=self.propagate,
            images=len(self.rows),
            far_ab_error_change=self.far_ab_error_change(),
            streaks=self.streaks(),
            small_object_leak=self.small_object_leak(),
            skipped=[name for name, _ in self.skipped],
            seconds=round(self.seconds, 2),
            means=self.means(),
            evaluation=evaluation,
        )


# ----------------------------------------------------------------------------- inputs
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


def _hint_generator(seed: int, name: str) -> torch.Generator:
    # seeded per file name: an image gets the same hints whatever else is in the folder or --limit
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()))


def _thumbnail(image: Image.Image) -> Image.Image:
    width, height = image.size
    scale = min(THUMB_HEIGHT / height, THUMB_MAX_WIDTH / width)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)


# ----------------------------------------------------------------------------- scoring
def _colorize_from_gray(
    path: Path, colorizer: Colorizer | None, *, hints: int, baseline: str | None, render_size: int, seed: int,
    propagate: bool = True,
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
    output = colorizer(gray_image, hints=points or None, render_size=render_size, propagate=propagate)
    return truth, gray_image, output, points


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


def hint_effect_measures(output: torch.Tensor, plain: torch.Tensor, truth: torch.Tensor) -> tuple[float | None, tuple[float, float] | None]:
    """Streaks and small-object changes of the hints' effect on one photo (`colorgan.metrics`).

    Args:
        output, plain: (1, 3, H, W) RGB in [0, 1] with the hints and without them.
        truth: (1, 3, H, W) RGB in [0, 1], for its L* (the same as the gray input's).

    Returns:
        `smooth_region_streaks` and `small_object_changes` of the effect (ab with minus ab without).
    """
    effect = (rgb_to_lab(output)[0, 1:] - rgb_to_lab(plain)[0, 1:]).cpu()  # (2, H, W)
    lightness_map = lightness(truth)[0, 0].cpu()  # (H, W)
    return smooth_region_streaks(effect, lightness_map), small_object_changes(effect, lightness_map)


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
    propagate: bool = True,
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
        propagate: spread the hints over their regions (the default); False scores what the network
            alone makes of them.

    Raises:
        ImageError: missing folder or no images.
    """
    outputs_without_hints = {} if outputs_without_hints is None else outputs_without_hints
    if baseline is not None and baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
    if colorizer is None and baseline is None:
        raise ValueError("evaluate needs a colorizer unless baseline='gray'")
    HINT_POINTS.check(hints)
    if render_size is None:
        render_size = colorizer.default_render_size if colorizer is not None else 512
    RENDER_SIZE.check(render_size)
    if baseline is not None:
        hints = 0  # the baseline has no model to hint
    paths = list_images(data_dir)[:limit]
    if label is None:
        label = f"{baseline} baseline" if baseline else Path(model_name or "model").name
        label += f" + {hints} hints" if hints else ""
        label += " (network only)" if hints and not propagate else ""
    report = EvalReport(label, model_name, str(data_dir), hints, baseline, render_size, seed, propagate)
    device = colorizer.device if colorizer is not None and baseline is None else torch.device("cpu")
    started = time.perf_counter()
    for path in tqdm(paths, desc=label, unit="img", disable=not progress, file=sys.stderr):
        try:
            truth, gray_image, output_image, points = _colorize_from_gray(
                path, colorizer, hints=hints, baseline=baseline, render_size=render_size, seed=seed,
                propagate=propagate,
            )
            output_rgb = decode(output_image).rgb
            output, truth = as_float_rgb(output_rgb).to(device), truth.to(device)
            scores = score(path.name, output, truth)
            if baseline is None and not points:
                outputs_without_hints[path.name] = output_rgb
            if points:  # what the hints did: against the same colorizer's output without them
                if path.name not in outputs_without_hints:
                    outputs_without_hints[path.name] = decode(colorizer(gray_image, render_size=render_size)).rgb
                plain = as_float_rgb(outputs_without_hints[path.name]).to(device)
                far = far_from_hints(*truth.shape[-2:], points)
                if bool(far.any()):
                    scores.far_ab_error, scores.far_ab_error_no_hints = mean_ab_errors([output, plain], truth, far)
                scores.streaks, changes = hint_effect_measures(output, plain, truth)
                scores.small_object_change, scores.ground_change = changes if changes is not None else (None, None)
            report.rows.append(scores)
        except (ValueError, OSError) as error:  # ImageError is a ValueError
            message = one_line(error)
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
        hints += "" if report.propagate else "; not propagated (the network's own response)"
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
        _table_row(["image", "size"] + [metric.column for metric in METRICS.values()]),
        _table_row(["---", "---"] + ["---:"] * len(METRICS)),
    ]
    for row in report.rows:
        cells = [metric.format.format(getattr(row, key)) for key, metric in METRICS.items()]
        lines.append(_table_row([row.name, f"{row.width}×{row.height}"] + cells))
    means = report.means()
    cells = [f"**{metric.format.format(means[key])}**" for key, metric in METRICS.items()]
    lines.append(_table_row([f"**mean of {len(report.rows)}**", ""] + cells))
    return lines


def _summary_table(reports: Sequence[EvalReport]) -> list[str]:
    lines = [
        _table_row(["run", "images"] + [metric.column for metric in METRICS.values()]),
        _table_row(["---", "---:"] + ["---:"] * len(METRICS)),
    ]
    for report in reports:
        means = report.means()
        cells = [metric.format.format(means[key]) for key, metric in METRICS.items()]
        lines.append(_table_row([report.label, str(len(report.rows))] + cells))
    return lines


def hint_curve(reports: Sequence[EvalReport]) -> list[str]:
    """Markdown table of PSNR versus the number of hints (Zhang et al. 2017's protocol), per model.

    Beside it, what the hints' effect looks like: its stripes in the photos' smooth bands (ab,
    `ImageScores.streaks`) and how much of it reaches small objects (`EvalReport.small_object_leak`).
    """
    lines = [
        _table_row(
            ["model", "hints", "PSNR (dB)", "Δ vs 0 hints", f"ab error ≥ {FAR_FROM_HINTS} px from hints",
             "streaks (ab) ↓", "small-object leak ↓"]
        ),
        _table_row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    runs = [report for report in reports if report.baseline is None]
    for report in runs:
        zero = next((r for r in runs if r.model == report.model and r.hints == 0), None)
        psnr_value = report.means()["psnr"]
        delta = f"{psnr_value - zero.means()['psnr']:+.2f}" if zero is not None and report.hints else "–"
        change, streaks, leak = report.far_ab_error_change(), report.streaks(), report.small_object_leak()
        lines.append(
            _table_row(
                [Path(report.model or "model").name, str(report.hints), f"{psnr_value:.2f}", delta,
                 f"{change:+.1%}" if change is not None else "–",
                 f"{streaks:.2f}" if streaks is not None else "–",
                 f"{leak:.0%}" if leak is not None else "–"]
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
        lines += ["## PSNR versus hints", ""] + hint_curve(reports) + ["", HINT_CURVE_NOTES]
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
