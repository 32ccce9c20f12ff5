"""Video: flicker and PSNR of per-frame vs temporally consistent colorization, and throughput at 480p.

    python benchmarks/bench_video.py                 # 12 val photos x (pan, zoom), 32 frames at 320x240
    python benchmarks/bench_video.py --limit 43 --clip some_colour_film.mp4

1. Quality, on synthetic camera moves over the real photos of ../shared/photos/val (and any colour
   clips given with --clip): each clip is colorized from its L*, frame by frame and with the flow-
   based colour memory; printed are the motion-compensated flicker (mean |Δab| between consecutive
   frames, `colorgan.evaluation.video.flicker`) and the PSNR against the clip's true colours.
2. Throughput: `colorize_video` end to end (decode, colorize, encode, audio copy) on a 854x480 pan
   with a sound track, in frames per second, temporal and per-frame, measured in the same run.
3. Threads (--threads-sweep): `colorgan colorize-video` at its default settings against each
   OMP_NUM_THREADS from 1 to the cores this process has, and the Python API's `colorize_video` at
   its defaults, each in a fresh process, in turns, on the same 480p clip; the frames/s each reports
   (start-up not counted), and the medians over rounds of the default's ratio to the round's best
   setting and of the API's to the CLI (a shared machine's load drifts between rounds, not within one).

Uses the bundled starter model at its own render size unless --model/--render-size say otherwise.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from colorgan import Colorizer
from colorgan.imaging import open_image
from colorgan.temporal import TemporalSettings
from colorgan.threads import available_cores, default_threads, set_threads
from colorgan.video import BATCH_SIZE, colorize_video
from colorgan.evaluation.video import clips_from, encode_clip, evaluate_clip, read_frames, summary_table, synthetic_clip

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "photos" / "val"


def quality(colorizer: Colorizer, args: argparse.Namespace) -> None:
    sources = [str(args.photos)] + list(args.clip)
    scores = []
    for name, frames in clips_from(
        sources, frames=args.frames, size=(320, 240), limit=args.limit, max_frames=args.max_frames, max_side=480
    ):
        scores.append(evaluate_clip(colorizer, name, frames, render_size=args.render_size))
        print(f"  {name}: flicker {scores[-1].flicker_per_frame:.2f} -> {scores[-1].flicker_temporal:.2f}", flush=True)
    synthetic = [s for s in scores if s.name.endswith((" pan", " zoom"))]
    print(summary_table(scores))
    for label, group in (("synthetic pans and zooms", synthetic), ("all clips", scores)):
        if not group:
            continue
        flicker_pf = np.mean([s.flicker_per_frame for s in group])
        flicker_t = np.mean([s.flicker_temporal for s in group])
        psnr_pf = np.mean([s.psnr_per_frame for s in group])
        psnr_t = np.mean([s.psnr_temporal for s in group])
        print(
            f"{label} ({len(group)} clips): flicker {flicker_pf:.2f} per-frame -> {flicker_t:.2f} temporal"
            f" (ratio {flicker_t / flicker_pf:.2f}); PSNR {psnr_pf:.2f} -> {psnr_t:.2f} dB ({psnr_t - psnr_pf:+.2f})"
        )


def throughput(colorizer: Colorizer, args: argparse.Namespace) -> None:
    photo = open_image(sorted(args.photos.glob("*.jpg"))[0])
    with tempfile.TemporaryDirectory(prefix="colorgan-bench-video-") as folder:
        source = Path(folder) / "pan480p.mp4"
        encode_clip(synthetic_clip(photo, "pan", (854, 480), args.fps_frames), source, 24, audio_hz=440.0)
        frames = [Image.fromarray(frame) for frame in read_frames(source)]

        def video(settings):
            colorize_video(colorizer, source, Path(folder) / "out.mp4", temporal=settings,
                           render_size=args.render_size, progress=False)

        def photos():  # the reference: the same frames as photos, no video decoding or encoding
            for start in range(0, len(frames), BATCH_SIZE):
                colorizer.colorize_batch(frames[start : start + BATCH_SIZE], render_size=args.render_size)

        runs = {
            "video, temporal (decode + colorize + encode + audio copy)": lambda: video(TemporalSettings()),
            "video, per-frame (decode + colorize + encode + audio copy)": lambda: video(None),
            "the same frames as photos (Colorizer.colorize_batch, no codec)": photos,
        }
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeat):  # interleaved, best of N: the CPU is shared and noisy
            for label, run in runs.items():
                started = time.perf_counter()
                run()
                best[label] = min(best[label], time.perf_counter() - started)
        rates = {label: len(frames) / seconds for label, seconds in best.items()}
        for label, rate in rates.items():
            print(f"854x480, {len(frames)} frames, {label}: {rate:.2f} frames/s (best of {args.repeat})")
        temporal, per_frame, reference = rates.values()
        print(f"temporal video / photo path: {temporal / reference:.2f}x;"
              f" temporal / per-frame video: {temporal / per_frame:.2f}x")


API_RUN = """
import sys
from colorgan import Colorizer, colorize_video
result = colorize_video(Colorizer.from_pretrained(device="cpu"), sys.argv[1], sys.argv[2], progress=False)
print(f"{result.frames_per_second:.3f} frames/s")
"""


def frames_per_second(command: list[str], env: dict[str, str]) -> float:
    """Run one colorization in a fresh process; the frames/s it reports (start-up not counted)."""
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(re.findall(r"([0-9.]+) frames/s", result.stdout + result.stderr)[-1])


def thread_sweep(args: argparse.Namespace) -> None:
    photo = open_image(sorted(args.photos.glob("*.jpg"))[0])
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    with tempfile.TemporaryDirectory(prefix="colorgan-bench-threads-") as folder:
        source, output = Path(folder) / "pan480p.mp4", str(Path(folder) / "out.mp4")
        encode_clip(synthetic_clip(photo, "pan", (854, 480), args.fps_frames), source, 24, audio_hz=440.0)
        cli = [sys.executable, "-m", "colorgan", "colorize-video", str(source), "-o", output, "--overwrite", "--quiet"]
        runs = {"CLI, default threads": (cli, env)}
        for threads in range(1, available_cores() + 1):
            runs[f"CLI, OMP_NUM_THREADS={threads}"] = (cli, dict(env, OMP_NUM_THREADS=str(threads)))
        runs["Python API, default threads"] = ([sys.executable, "-c", API_RUN, str(source), output], env)
        rates: dict[str, list[float]] = {label: [] for label in runs}
        for round_ in range(args.repeat):  # in turns: the load of a shared machine drifts
            order = list(runs) if round_ % 2 == 0 else list(runs)[::-1]  # no setting always follows another
            for label in order:
                rates[label].append(frames_per_second(*runs[label]))
    # each round's runs shared the machine's load: ratios are taken within a round, then the median
    settings = [label for label in rates if "OMP_NUM_THREADS" in label]
    default, api = rates["CLI, default threads"], rates["Python API, default threads"]
    to_best = statistics.median(
        rate / max(rates[setting][round_] for setting in settings) for round_, rate in enumerate(default)
    )
    api_to_cli = statistics.median(api_rate / cli_rate for api_rate, cli_rate in zip(api, default))
    print(f"854x480, {args.fps_frames} frames, {available_cores()} cores (default torch threads for video:"
          f" {default_threads(video=True)}), {args.repeat} rounds:")
    for label, values in rates.items():
        rounds = " ".join(f"{value:.2f}" for value in values)
        print(f"  {label:<32} median {statistics.median(values):6.2f} frames/s   (rounds: {rounds})")
    print(f"default / best OMP_NUM_THREADS of the same round: {to_best:.2f}x (median over rounds; target >= 0.9)")
    print(f"Python API / CLI, both default, same round: {api_to_cli:.2f}x (median over rounds; target 0.9-1.1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or Hub repo id (default: the bundled starter model)")
    parser.add_argument("--render-size", type=int, help="long side the model runs at (default: the model's own)")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of colour photos for synthetic clips")
    parser.add_argument("--limit", type=int, default=12, help="photos used (each gives a pan and a zoom)")
    parser.add_argument("--frames", type=int, default=32, help="frames per synthetic clip")
    parser.add_argument("--clip", action="append", default=[], help="a real colour video to score too (repeatable)")
    parser.add_argument("--max-frames", type=int, default=120, help="frames read from each --clip")
    parser.add_argument("--fps-frames", type=int, default=48, help="frames of the 480p throughput clip")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs, best kept (default 3)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--threads-sweep", action="store_true", help="only compare thread settings (fresh processes)")
    args = parser.parse_args()
    if args.threads_sweep:
        thread_sweep(args)
        return
    set_threads()
    colorizer = Colorizer.from_pretrained(args.model, device="cpu")
    print(f"torch threads: {torch.get_num_threads()}, cpu cores: {os.cpu_count()}, render size:"
          f" {args.render_size or colorizer.default_render_size}")
    if not args.skip_throughput:
        throughput(colorizer, args)
    if not args.skip_quality:
        quality(colorizer, args)


if __name__ == "__main__":
    main()
