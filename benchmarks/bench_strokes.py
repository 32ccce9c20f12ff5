"""How painted strokes should reach the network: thinning policies on synthetic strokes over a photo set.

    python benchmarks/bench_strokes.py [--data ../shared/photos/val] [--render 224] [--limit N] [--threads 1]
    python benchmarks/bench_strokes.py --sheep --render 224 320 512      # issue 20's photo, each policy

Issue 20 thins a broad stroke to one 3x3 point per grid cell before the generator sees it
(`colorgan.hints.hints_as_trained`); the cell size was chosen on the sheep photo. This measures the
choice on every photo of a folder. Strokes come from the ground truth: the photo is cut into SLIC
segments (skimage, at 160 px), the `--segments` largest get one brush stroke each, of the segment's
median true colour, along the segment's medial line (skeleton of the segment shrunk by the brush's
radius, then the brush; so the stroke stays inside its segment), `--brush` of the photo's long side
wide. The gray version of the photo (`grayscale_version`) is colorized with no hints and with the
strokes under each policy (hints propagated, as the CLI and app do), and per photo:

- **PSNR gain**: PSNR with strokes minus PSNR without (dB).
- **leak**: the mean ab change (hinted minus plain) at pixels at least 8 px outside every stroked
  segment, over the mean ab change inside the stroked segments.
- **outside error**: change of the mean ab error against the truth at those outside pixels
  (negative: the strokes helped there too; the plain output is often far off, and the true colours of
  three large segments often fit the rest of the photo, so the raw leak above 1 is not all harm).
- **harm**: the mean over the outside pixels of the ab error's increase where it increased (a leak
  that made the photo wrong), in ab units.

Policies: the stroke fed densely (no thinning) and thinned with each cell size of `--cells`, plus
`render/28` (a cell tied to the render size). Reported as means over the photos (and the median leak).
"""
from __future__ import annotations

import argparse
import functools
import statistics
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize
from skimage.segmentation import slic

import colorgan.pipeline as pipeline
from colorgan import Colorizer
from colorgan.color import as_float_rgb, rgb_to_lab
from colorgan.evaluation.photos import grayscale_version, mean_ab_errors
from colorgan.hints import hints_as_trained
from colorgan.imaging import decode, open_image
from colorgan.metrics import leak_ratio, psnr

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos" / "val"
SHEEP = PHOTOS / "tuxpaint-data__sheep.jpg"
SHEEP_STROKES = PHOTOS.parents[1] / "fixtures" / "sheep_strokes.png"
OUTSIDE_MARGIN = 8  # px beyond every stroked segment before a pixel counts as outside


def stroke_layer(truth: torch.Tensor, segments: int, brush: float) -> tuple[Image.Image, np.ndarray]:
    """An RGBA layer of strokes along the medial lines of the photo's largest SLIC segments, and the
    (H, W) bool mask of those segments. Deterministic (SLIC is; no random source)."""
    rgb = (truth[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    height, width = rgb.shape[:2]
    scale = 160 / max(height, width)
    small = np.asarray(Image.fromarray(rgb).resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX))
    labels_small = slic(small, n_segments=24, compactness=10, start_label=0, channel_axis=-1)
    labels = np.asarray(Image.fromarray(labels_small.astype(np.int32)).resize((width, height), Image.Resampling.NEAREST))
    radius = max(1, round(brush * max(height, width) / 2))
    layer = np.zeros((height, width, 4), np.uint8)
    stroked = np.zeros((height, width), bool)
    for label in np.argsort(np.bincount(labels.ravel()))[::-1][:segments]:
        segment = labels == label
        inner = ndimage.binary_erosion(segment, iterations=radius)
        if not inner.any():
            continue
        line = skeletonize(inner)
        stroke = (ndimage.distance_transform_edt(~line) <= radius) & segment
        layer[stroke, :3] = np.median(rgb[segment], axis=0).round().astype(np.uint8)
        layer[stroke, 3] = 255
        stroked |= segment
    return Image.fromarray(layer, "RGBA"), stroked


def policies(cells: list[int], render: int) -> dict[str, object]:
    """Name -> the function the pipeline feeds the network's input through."""
    named = {"dense (no thinning)": functools.partial(hints_as_trained, max_share=float("inf"))}
    for cell in cells:
        named[f"cells {cell} px"] = functools.partial(hints_as_trained, spacing=cell)
    proportional = max(2, round(render / 28))
    named[f"render/28 ({proportional} px)"] = functools.partial(hints_as_trained, spacing=proportional)
    return named


def ab_change(output: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
    return (rgb_to_lab(output)[0, 1:] - rgb_to_lab(plain)[0, 1:]).norm(dim=0)


def harm(output: torch.Tensor, plain: torch.Tensor, truth: torch.Tensor, where: torch.Tensor) -> float:
    """Mean over `where` of how much the ab error against the truth grew (0 where it shrank)."""
    if not bool(where.any()):
        return float("nan")
    errors = [(rgb_to_lab(image)[0, 1:] - rgb_to_lab(truth)[0, 1:]).norm(dim=0) for image in (output, plain)]
    return (errors[0] - errors[1]).clamp_min(0)[where].mean().item()


def to_tensor(image: Image.Image) -> torch.Tensor:
    return as_float_rgb(torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)[None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PHOTOS)
    parser.add_argument("--model", help="model folder or Hub repo id (default: the bundled starter)")
    parser.add_argument("--render", type=int, nargs="+", default=[224], help="render sizes (several: --sheep only)")
    parser.add_argument("--sheep", action="store_true", help="issue 20's sheep leak (rows 170-270) for each policy instead")
    parser.add_argument("--cells", type=int, nargs="+", default=[6, 8, 10, 12, 16])
    parser.add_argument("--segments", type=int, default=3, help="stroked segments per photo")
    parser.add_argument("--brush", type=float, default=0.03, help="stroke width as a share of the long side")
    parser.add_argument("--no-dense", action="store_true", help="leave the dense policy out")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-photo", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    colorizer = Colorizer.from_pretrained(args.model, device="cpu")
    if args.sheep:
        sheep(colorizer, args)
        return
    args.render = args.render[0]
    named = policies(args.cells, args.render)
    if args.no_dense:
        del named["dense (no thinning)"]
    photos = sorted(args.data.glob("*.jpg"))[: args.limit]
    results = {name: {"gain": [], "leak": [], "outside": [], "harm": []} for name in named}
    shares = []
    original = pipeline.hints_as_trained
    try:
        for path in photos:
            truth = as_float_rgb(decode(open_image(path)).rgb)
            gray = Image.fromarray(grayscale_version(truth)[0, 0].numpy(), "L")
            layer, stroked = stroke_layer(truth, args.segments, args.brush)
            shares.append(float((np.asarray(layer)[..., 3] > 0).mean()))
            outside = torch.from_numpy(ndimage.distance_transform_edt(~stroked) >= OUTSIDE_MARGIN)
            inside = torch.from_numpy(stroked)
            pipeline.hints_as_trained = original
            plain = to_tensor(colorizer(gray, render_size=args.render))
            plain_psnr, (plain_outside_error,) = psnr(plain, truth).item(), mean_ab_errors([plain], truth, outside)
            row = []
            for name, policy in named.items():
                pipeline.hints_as_trained = policy
                output = to_tensor(colorizer(gray, hints=layer, render_size=args.render))
                change = ab_change(output, plain)
                gain = psnr(output, truth).item() - plain_psnr
                leak = (change[outside].mean() / change[inside].mean().clamp_min(1e-6)).item() if outside.any() else float("nan")
                (outside_error,) = mean_ab_errors([output], truth, outside)
                for key, value in (("gain", gain), ("leak", leak), ("outside", outside_error - plain_outside_error),
                                   ("harm", harm(output, plain, truth, outside))):
                    results[name][key].append(value)
                row.append(f"{gain:+.2f}/{leak:.2f}")
            if args.per_photo:
                print(f"{path.name[:40]:<40} share {shares[-1]:.3f} " + " ".join(row), flush=True)
    finally:
        pipeline.hints_as_trained = original
    finite = lambda values: [v for v in values if v == v]  # noqa: E731
    print(
        f"{len(photos)} photos, render {args.render}, {args.segments} strokes of {args.brush:.0%} of the long side"
        f" (mean {statistics.mean(shares):.1%} of the photo painted)"
    )
    print("| policy | PSNR gain (dB) | leak, mean | leak, median | outside ab error change | harm (ab) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, values in results.items():
        leaks = finite(values["leak"])
        print(
            f"| {name} | {statistics.mean(values['gain']):+.3f} | {statistics.mean(leaks):.3f} | {statistics.median(leaks):.3f}"
            f" | {statistics.mean(finite(values['outside'])):+.3f} | {statistics.mean(finite(values['harm'])):.3f} |"
        )


def sheep(colorizer: Colorizer, args: argparse.Namespace) -> None:
    """Issue 20's measure on its photo and strokes: `leak_ratio` over rows 170-270 (bar: <= 0.35)."""
    photo = Image.open(SHEEP)
    gray, strokes = photo.convert("L"), Image.open(SHEEP_STROKES)
    lightness = rgb_to_lab(to_tensor(photo))[0, 0]
    original = pipeline.hints_as_trained
    print("sheep leak, rows 170-270")
    try:
        for render in args.render:
            plain = rgb_to_lab(to_tensor(colorizer(gray, render_size=render)))[0, 1:]
            cells = []
            for name, policy in policies(args.cells, render).items():
                pipeline.hints_as_trained = policy
                effect = rgb_to_lab(to_tensor(colorizer(gray, hints=strokes, render_size=render)))[0, 1:] - plain
                cells.append(f"{name} {leak_ratio(effect, lightness, slice(170, 271)):.2f}")
            print(f"render {render}: " + ", ".join(cells), flush=True)
    finally:
        pipeline.hints_as_trained = original


if __name__ == "__main__":
    main()
