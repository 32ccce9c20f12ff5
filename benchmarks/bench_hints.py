"""Cost of hint propagation against the generator's own forward pass, at the same render size.

    python benchmarks/bench_hints.py [--model PATH_OR_REPO] [--sizes 224 512] [--runs 9] [--threads 1]
    python benchmarks/bench_hints.py --exact   # colour blends against an exact scipy.sparse solve
    git show 0ca7902:colorgan/propagation.py > /tmp/before.py
    python benchmarks/bench_hints.py --against /tmp/before.py   # also that version's guided path, same rounds

For each render size, in one run, interleaved so that machine noise hits both alike: the median
time of the generator's forward on a (1, 4, s, s) input, and of `propagate_hints` on a real photo's
L* at that size with 10 hint points (and with a painted stroke), and with a painted stroke guided by
the photo's L* at 2.5 times the render size (as `Colorizer` passes a photo's full resolution, capped
at `guide_max_side`: 2.5x is a 560 px photo at render 224). The issue's target is propagation <= 30%
of the forward; a larger photo's guide costs more, in proportion to its pixels (up to 1024 px). Also prints the Colorizer's end-to-end time with and without 10 hints on a val photo, which
includes the hint rasterisation.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from colorgan import Colorizer
from colorgan.color import lightness
from colorgan.imaging import decode, open_image
import dataclasses

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl

import colorgan.propagation as P
from colorgan.propagation import DEFAULT_SETTINGS, propagate_hints

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos" / "val"
TARGET_RATIO = 0.30


def real_lightness(size: int) -> torch.Tensor:
    """(1, 1, s, s) L* of a val photo (or a synthetic gradient with edges if the set is absent)."""
    photos = sorted(PHOTOS.glob("*.jpg"))
    if photos:
        rgb = decode(open_image(photos[0])).rgb
    else:
        rgb = (torch.rand(1, 3, 64, 64) * 255).to(torch.uint8)
    return F.interpolate(lightness(rgb), size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def hint_maps(size: int, stroke: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 2, s, s) hint ab and (1, 1, s, s) mask: 10 scattered 3x3 points, or one painted stroke."""
    generator = torch.Generator().manual_seed(size)
    hint_ab, mask = torch.zeros(1, 2, size, size), torch.zeros(1, 1, size, size)
    if stroke:
        mask[..., size // 2 - 2 : size // 2 + 2, size // 4 : size // 2] = 1.0
    else:
        for row, column in torch.randint(1, size - 1, (10, 2), generator=generator).tolist():
            mask[..., row - 1 : row + 2, column - 1 : column + 2] = 1.0
    hint_ab[:] = torch.tensor([20.0, -40.0])[:, None, None]
    return hint_ab * mask, mask


def exact_colour(seeds_ab, seeds, along_rows, along_columns):
    """colour = N/D, (Lc + I) N = S h, (Lc + I) D = S; conductance a/(1-a)^2 of each neighbour weight a."""
    _, _, h, w = seeds.shape
    idx = np.arange(h * w).reshape(h, w)
    a_r = along_rows[0, 0, :, 1:].double().numpy(); a_c = along_columns[0, 0, 1:, :].double().numpy()
    c_r = a_r / (1 - a_r) ** 2; c_c = a_c / (1 - a_c) ** 2
    i = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()]); j = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    c = np.concatenate([c_r.ravel(), c_c.ravel()])
    W_ = sp.coo_matrix((np.r_[c, c], (np.r_[i, j], np.r_[j, i])), shape=(h * w, h * w)).tocsr()
    A = (sp.diags(np.asarray(W_.sum(1)).ravel() + 1.0) - W_).tocsc()
    s = seeds[0, 0].double().numpy().ravel()
    rhs = np.stack([s * seeds_ab[0, k].double().numpy().ravel() for k in range(seeds_ab.shape[1])] + [s], 1)
    sol = spl.splu(A).solve(rhs)
    return torch.from_numpy((sol[:, :-1] / np.maximum(sol[:, -1:], 1e-300)).T.reshape(-1, h, w)).float()[None], torch.from_numpy(sol[:, -1].reshape(h, w))

def small_scene(seed=0, h=48, w=72):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(h)[:, None].float(); x = torch.arange(w)[None].float()
    L = torch.where(y < h * 0.55, 80 - 10 * y / h, 42.0) + F.avg_pool2d(torch.randn(1, 1, h + 4, w + 4, generator=g), 5, 1)[0, 0] * 25
    L = torch.where((x - w * 0.7).abs() < 6, L - 30 * ((y > h * 0.3) & (y < h * 0.8)).float(), L)  # a dark post
    L = L[None, None]
    hab = torch.zeros(1, 2, h, w); m = torch.zeros(1, 1, h, w)
    m[..., 5:7, 8:40] = 1; hab[..., 5:7, 8:40] = torch.tensor([-3., -35.])[:, None, None]
    m[..., h - 6:h - 4, 10:60] = 1; hab[..., h - 6:h - 4, 10:60] = torch.tensor([-35., 35.])[:, None, None]
    m[..., 14:17, w - 8:w - 5] = 1; hab[..., 14:17, w - 8:w - 5] = torch.tensor([40., 20.])[:, None, None]  # a red point in the sky
    return L, hab, m

CANDIDATES = {
    "rows-columns x2 (before)": [1, 1],
    "DT 1 iteration": [1],
    "DT 3 iterations (paper schedule, now)": P.schedule_exponents(3),
    "DT 5 iterations": P.schedule_exponents(5),
}


def candidate(kind, L, hab, m, s):
    directions = [(P._directions(log_weights, dim), dim) for log_weights, dim in zip(P.edge_log_weights(L, s), (-1, -2))]
    sums = torch.cat([hab * m, m], 1)
    for e in CANDIDATES[kind]:
        for log_directions, dim in directions:
            sums = P._both_ways(log_directions * e, sums, sums.shape[1], dim)
    return sums[:, :2] / sums[:, 2:].clamp_min(1e-30)


def exact_comparison(scenes: int = 4) -> None:
    """RMS ab distance of each candidate's colour blend from the exact sparse solve, on small scenes."""
    settings = dataclasses.replace(DEFAULT_SETTINGS, edge_smoothing=1)
    print("colour blend vs the exact sparse solve (RMS ab, 48x72 scenes, 3 hints of which 2 share the sky):")
    for kind in CANDIDATES:
        errors = []
        for seed in range(scenes):
            L, hab, m = small_scene(seed)
            reference, _ = exact_colour(hab, m, *P.edge_weights(L, settings))
            errors.append(float((candidate(kind, L, hab, m, settings) - reference).norm(dim=1).pow(2).mean().sqrt()))
        print(f"  {kind:<40} " + " ".join(f"{e:6.2f}" for e in errors) + f"   mean {statistics.mean(errors):.2f}")


def load_propagation(path: str):
    """A propagation module from a file (an earlier version of colorgan/propagation.py), inside the
    colorgan package so that its relative imports resolve."""
    spec = importlib.util.spec_from_file_location("colorgan._propagation_against", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def median_ms(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or Hub repo id (default: the bundled starter)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512], help="render sizes to time")
    parser.add_argument("--runs", type=int, default=9, help="timed runs per case (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on shared CPUs)")
    parser.add_argument("--exact", action="store_true", help="only compare the colour blends with an exact sparse solve")
    parser.add_argument("--against", metavar="FILE", help="another version of colorgan/propagation.py: its guided path too")
    args = parser.parse_args()
    if args.exact:
        exact_comparison()
        return
    torch.set_num_threads(args.threads)
    colorizer = Colorizer.from_pretrained(args.model, device="cpu")
    generator = colorizer.generator
    print(f"threads {torch.get_num_threads()}, model {args.model or 'bundled starter'}, {args.runs} runs each")
    against = load_propagation(args.against).propagate_hints if args.against else None
    print(
        f"{'size':>5} {'forward ms':>11} {'10 points ms':>13} {'ratio':>6} {'stroke ms':>10} {'ratio':>6}"
        f" {'guided ms':>10} {'ratio':>6}" + (f" {'against ms':>11} {'ratio':>6}" if against else "")
        + f"  target <= {TARGET_RATIO:.2f}"
    )
    with torch.inference_mode():
        for size in args.sizes:
            inputs = torch.randn(1, 4, size, size).contiguous(memory_format=torch.channels_last)
            l_star = real_lightness(size)
            ab = torch.randn(1, 2, size, size) * 20
            points, stroke = hint_maps(size, stroke=False), hint_maps(size, stroke=True)
            guide = real_lightness(min(5 * size // 2, DEFAULT_SETTINGS.guide_max_side))
            generator(inputs), propagate_hints(ab, l_star, *points), propagate_hints(ab, l_star, *stroke, guide=guide)
            forward, with_points, with_stroke, guided, guided_against = [], [], [], [], []
            for _ in range(args.runs):  # interleaved, so load changes hit every case alike
                forward.append(median_ms(lambda: generator(inputs), 1))
                with_points.append(median_ms(lambda: propagate_hints(ab, l_star, *points), 1))
                with_stroke.append(median_ms(lambda: propagate_hints(ab, l_star, *stroke), 1))
                guided.append(median_ms(lambda: propagate_hints(ab, l_star, *stroke, guide=guide), 1))
                if against:
                    guided_against.append(median_ms(lambda: against(ab, l_star, *stroke, guide=guide), 1))
            f, p, s, g = (statistics.median(times) for times in (forward, with_points, with_stroke, guided))
            line = f"{size:>5} {f:>11.1f} {p:>13.1f} {p / f:>6.2f} {s:>10.1f} {s / f:>6.2f} {g:>10.1f} {g / f:>6.2f}"
            if against:
                a = statistics.median(guided_against)
                line += f" {a:>11.1f} {a / f:>6.2f}"
            print(line)
        photos = sorted(PHOTOS.glob("*.jpg"))
        if photos:
            photo = Image.open(photos[0]).convert("L")
            points = [(photo.width * (i + 0.5) / 10, photo.height * ((i * 7) % 10 + 0.5) / 10, (90, 140, 220)) for i in range(10)]
            colorizer(photo)
            plain = median_ms(lambda: colorizer(photo), args.runs)
            hinted = median_ms(lambda: colorizer(photo, hints=points), args.runs)
            print(
                f"Colorizer end to end, {photo.width}x{photo.height} at render {colorizer.default_render_size}:"
                f" {plain:.1f} ms without hints, {hinted:.1f} ms with 10 points ({hinted / plain:.2f}x)"
            )


if __name__ == "__main__":
    main()
