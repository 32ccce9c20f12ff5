"""Training throughput: images/s of a full GAN step (G and D forward + backward) and of the data pipeline.

    python benchmarks/bench_train.py                      # CPU, 128 and 256 px
    python benchmarks/bench_train.py --mixed-precision bf16 --batch-size 64   # on a GPU

It runs the real `training_step` of train_accelerate.py on synthetic uint8 squares (so the
data pipeline is measured separately), and the real decoding stream on the photo set,
then prints how many DataLoader workers keep up with the model. On CUDA it also counts
the FLOPs of one step and prints the model FLOPs utilisation (MFU).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from colorgan.data import open_stream, training_stream

REPO = Path(__file__).resolve().parents[1]
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense tensor-core peaks


def load_training_script():
    spec = importlib.util.spec_from_file_location("train_accelerate", REPO / "train_accelerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_flops(train, accelerator, args, models, pixels) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        train.training_step(accelerator, args, "gan", pixels, *models)
    return counter.get_total_flops()


def bench_model(train, accelerator, resolution: int, batch_size: int, steps: int, mixed_precision: str) -> dict:
    args = train.parse_args(["--dataset", "unused", "--output-dir", "unused", "--resolution", str(resolution),
                             "--batch-size", str(batch_size), "--mixed-precision", mixed_precision]
                            + (["--channels-last"] if accelerator.device.type == "cuda" else []))
    models = train.prepare_models(accelerator, args)
    pixels = torch.randint(0, 256, (batch_size, 3, args.loader_size, args.loader_size), dtype=torch.uint8,
                           device=accelerator.device)
    result = {}
    for phase in ("pretrain", "gan"):
        for _ in range(2):  # warm-up: allocator, cuDNN autotuning
            train.training_step(accelerator, args, phase, pixels, *models)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            train.training_step(accelerator, args, phase, pixels, *models)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        result[phase] = steps * batch_size / (time.perf_counter() - start)
    if accelerator.device.type == "cuda":
        flops = step_flops(train, accelerator, args, models, pixels)
        peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in torch.cuda.get_device_name()), None)
        result["tflops_per_step"] = flops / 1e12
        result["mfu"] = flops * result["gan"] / batch_size / peak if peak else float("nan")
    return result


def bench_data(photos: Path, square_size: int, count: int) -> float:
    """Images/s of one worker: read, decode, skip checks, resize and center square."""
    stream = training_stream(open_stream(str(photos)), square_size, seed=0)
    iterator = iter(stream)
    next(iterator)
    start = time.perf_counter()
    for _ in range(count):
        next(iterator)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256], help="crop sides to measure")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no", help="autocast precision")
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "photos" / "train",
                        help="folder of photos for the data-pipeline measurement")
    parser.add_argument("--data-images", type=int, default=60, help="images decoded for the data measurement")
    args = parser.parse_args()

    train = load_training_script()
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    device = torch.cuda.get_device_name() if accelerator.device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device}, batch {args.batch_size}, precision {args.mixed_precision}, torch {torch.__version__}")
    for resolution in args.resolutions:
        model = bench_model(train, accelerator, resolution, args.batch_size, args.steps, args.mixed_precision)
        line = (f"{resolution:>4} px: GAN step {model['gan']:8.1f} img/s | L1-only step {model['pretrain']:8.1f} img/s")
        if "mfu" in model:
            line += f" | {model['tflops_per_step']:.2f} TFLOP/step, MFU {model['mfu'] * 100:.1f}%"
        print(line, flush=True)
        if args.photos.is_dir():
            square = round(resolution * 1.25)
            per_worker = bench_data(args.photos, square, args.data_images)
            workers = math.ceil(model["gan"] / per_worker)
            print(f"      data: {per_worker:8.1f} img/s per worker ({square} px squares) -> "
                  f"{workers} worker(s) keep up with the GAN step", flush=True)


if __name__ == "__main__":
    main()
