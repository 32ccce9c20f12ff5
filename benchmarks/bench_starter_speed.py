"""Is a new starter as fast as the old one in the app? Two models, paired rounds, one machine load.

    python benchmarks/bench_starter_speed.py NEW_MODEL [--old colorgan/pretrained/starter] [--runs 15]

Times, for each model, what the app does with a val photo at that model's own default render size
(its `render_size`, where the app's slider starts): `Colorizer` end to end on the photo with ONNX
Runtime int8 (what the app runs on a CPU when the model ships `model_int8.onnx`; timed when both do),
fp32 and torch; and the bare torch forward at that size. The models
run in turns within each round (`bench_inference.time_interleaved_ms`), and each ratio printed is the
median over rounds of that round's new / old, so drifting load on a shared machine cancels out.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from PIL import Image

from bench_inference import PHOTOS, time_interleaved_ms
from colorgan import Colorizer
from colorgan.checkpoint import STARTER_MODEL


def cases(folder: str, photo: Image.Image, int8: bool) -> dict[str, object]:
    """The timed calls of one model: end to end on ONNX Runtime and torch, and the forward alone."""
    onnx, eager = Colorizer.from_pretrained(folder, backend="onnx"), Colorizer.from_pretrained(folder, backend="torch")
    quantized = Colorizer.from_pretrained(folder, backend="onnx-int8") if int8 else None
    size = eager.default_render_size
    scale = size / max(photo.size)
    height, width = round(photo.height * scale), round(photo.width * scale)
    x = torch.zeros(1, 4, height, width)
    x[:, 0] = torch.rand(height, width) * 2 - 1

    def forward() -> None:
        with torch.inference_mode():
            eager.generator(x)

    calls = {"end to end, ONNX int8": lambda: quantized(photo)} if int8 else {}
    return {**calls, "end to end, ONNX fp32": lambda: onnx(photo), "end to end, torch": lambda: eager(photo),
            f"forward {width}x{height}": forward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("new", help="the new model folder")
    parser.add_argument("--old", default=str(STARTER_MODEL), help="the model to compare with (default: bundled starter)")
    parser.add_argument("--runs", type=int, default=15, help="timed rounds after one warm-up")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fair on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photo = Image.open(sorted(PHOTOS.glob("*.jpg"))[0]).convert("L")
    int8 = all((Path(folder) / "model_int8.onnx").is_file() for folder in (args.new, args.old))
    models = {"new": cases(args.new, photo, int8), "old": cases(args.old, photo, int8)}
    functions = {f"{model}: {case}": call for model, calls in models.items() for case, call in calls.items()}
    times = time_interleaved_ms(functions, args.runs)
    print(f"photo {photo.size[0]}x{photo.size[1]}, {args.runs} rounds, {args.threads} thread(s)")
    for (case, _), (old_case, _) in zip(models["new"].items(), models["old"].items()):
        new, old = times[f"new: {case}"]["wall"], times[f"old: {old_case}"]["wall"]
        ratio = statistics.median(n / o for n, o in zip(new, old))
        print(f"{case:28s} new {statistics.median(new):7.1f} ms  old {statistics.median(old):7.1f} ms"
              f"  ({old_case})  new/old {ratio:.2f}")


if __name__ == "__main__":
    main()
