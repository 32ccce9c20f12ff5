"""Short, equal-time training ablations for the starter model, scored on a validation folder.

    python scripts/ablate_starter.py --plan encoder --dataset PHOTOS --val ../shared/photos/val \
        --encoder-weights runs/encoders/mobilenetv2_100_imagenet.safetensors --steps 350 --out runs/ablations

Each variant trains `train_accelerate.py` for the same number of steps (same batch, so the same
images seen) on one thread: on a shared machine, equal steps stay comparable where equal wall time
would not. Then `colorgan eval` scores it on the validation photos
with 0 and 10 hint points, the 10 both propagated and through the network alone. The table goes
to `<out>/<plan>.md` and each run's scores to `<out>/<variant>/eval.json`; rerunning skips the
variants already scored.

Plans:
- `encoder`: random encoder against the imported ImageNet one, its padding, and the encoder
  learning-rate policy (full, 0.1x, frozen for the first 300 steps). L1 only.
- `hints`: how hints reach an ImageNet encoder's U-Net: through the stem only, or also summarised
  per cell at every coarse decoder block (`--decoder-hints`), and over 5x5 cells (`--hint-spread 2`). L1 only.
- `gan`: the GAN phase from one L1-trained generator (`--init-from`): lambda (the L1 weight against
  the GAN loss) and the crop size.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TRAIN = Path(__file__).resolve().parent.parent / "train_accelerate.py"


def plans(args: argparse.Namespace) -> dict[str, dict[str, list[str]]]:
    imported = ["--encoder", "mobilenetv2_100", "--encoder-weights", str(args.encoder_weights)]
    encoder = {
        "random encoder": ["--encoder", "mobilenetv2_100", "--encoder-pad-type", "same"],
        "ImageNet, pad same, lr 1x": [*imported, "--encoder-pad-type", "same"],
        "ImageNet, pad same, lr 0.1x": [*imported, "--encoder-pad-type", "same", "--encoder-lr-scale", "0.1"],
        "ImageNet, pad same, frozen 300 steps": [*imported, "--encoder-pad-type", "same", "--encoder-frozen-steps", "300"],
        "ImageNet, pad symmetric, lr 1x": [*imported, "--encoder-pad-type", ""],
    }
    for name in encoder:
        encoder[name] += ["--pretrain-steps", str(args.steps)]
    hints = {
        "ImageNet, hints through the stem": [*imported, "--encoder-pad-type", "same"],
        "ImageNet, decoder hints": [*imported, "--encoder-pad-type", "same", "--decoder-hints"],
        "ImageNet, decoder hints spread 2 cells": [
            *imported, "--encoder-pad-type", "same", "--decoder-hints", "--hint-spread", "2",
        ],
    }
    for name in hints:
        hints[name] += ["--pretrain-steps", str(args.steps)]
    gan = {}
    for crop in (128, 192):
        for lambda_l1 in (100, 30):
            gan[f"GAN, crop {crop}, lambda {lambda_l1}"] = [
                "--init-from", str(args.init_from), "--pretrain-steps", "0",
                "--resolution", str(crop), "--lambda-l1", str(lambda_l1),
            ]
    return {"encoder": encoder, "hints": hints, "gan": gan}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def run_variant(args: argparse.Namespace, name: str, extra: list[str]) -> dict:
    folder = args.out / slug(name)
    scores_file = folder / "eval.json"
    if scores_file.is_file():
        return json.loads(scores_file.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    train = [
        sys.executable, str(TRAIN), "--dataset", str(args.dataset), "--val-dataset", str(args.val.parent),
        "--val-split", args.val.name, "--val-count", "8", "--batch-size", "8", "--num-workers", "1",
        "--shuffle-buffer", "1000", "--gan-loss", "lsgan", "--max-steps", str(args.steps),
        "--checkpoint-every", "100000", "--val-every", "100000", "--seed", str(args.seed),
        "--output-dir", str(folder), *(["--resolution", "128"] if "--resolution" not in extra else []), *extra,
    ]
    subprocess.run(train, check=True, env=env, stdout=subprocess.DEVNULL)
    facts = json.loads((folder / "training_facts.json").read_text())
    scores = {"steps": facts["steps"], "images_seen": facts["images_seen"]}
    for label, hint_args in (("plain", ["--hints", "0", "10"]), ("network", ["--hints", "10", "--no-propagate"])):
        summary = folder / f"eval-{label}.json"
        subprocess.run(
            ["colorgan", "eval", "--data", str(args.val), "--model", str(folder), *hint_args,
             "--out", str(folder / f"eval-{label}.md"), "--summary-json", str(summary)],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )
        for run in json.loads(summary.read_text())["runs"]:
            key = f"{label}-{run['hints']}"
            scores[key] = {"psnr": run["means"]["psnr"], "colorfulness": run["means"]["colorfulness"],
                           "colorfulness_truth": run["means"]["colorfulness_truth"]}
    scores_file.write_text(json.dumps(scores, indent=2))
    return scores


def table(results: dict[str, dict], gray_psnr: float | None) -> str:
    lines = [
        "| variant | steps | images seen | PSNR (dB) | colourfulness (% of photos') | +10 hints, propagated (dB) "
        "| +10 hints, network only (dB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, scores in results.items():
        plain, hinted, network = scores["plain-0"], scores["plain-10"], scores["network-10"]
        lines.append(
            f"| {name} | {scores['steps']} | {scores['images_seen']} | {plain['psnr']:.2f} | "
            f"{100 * plain['colorfulness'] / plain['colorfulness_truth']:.0f} | "
            f"{hinted['psnr'] - plain['psnr']:+.2f} | {network['psnr'] - plain['psnr']:+.2f} |"
        )
    if gray_psnr is not None:
        lines.append(f"\nGray input (ab = 0): {gray_psnr:.2f} dB.")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", choices=["encoder", "hints", "gan"], required=True, help="which set of variants to run")
    parser.add_argument("--dataset", type=Path, required=True, help="training photos (a folder)")
    parser.add_argument("--val", type=Path, required=True, help="validation folder of colour photos, e.g. photos/val")
    parser.add_argument("--encoder-weights", type=Path, help="ImageNet encoder (safetensors), for --plan encoder and hints")
    parser.add_argument("--init-from", type=Path, help="L1-trained generator folder, for --plan gan")
    parser.add_argument("--steps", type=int, default=350, help="training steps of each variant (batch 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    parser.add_argument("--seed", type=int, default=0, help="training seed, the same for every variant")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and the table")
    args = parser.parse_args(argv)
    if args.plan in ("encoder", "hints") and not (args.encoder_weights and args.encoder_weights.is_file()):
        parser.error(f"--plan {args.plan} needs --encoder-weights FILE")
    if args.plan == "gan" and not (args.init_from and (args.init_from / "config.json").is_file()):
        parser.error("--plan gan needs --init-from a generator folder (config.json + model.safetensors)")
    if not args.val.is_dir():
        parser.error(f"--val {args.val}: no such folder")
    return args


def main(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, extra in plans(args)[args.plan].items():
        results[name] = run_variant(args, name, extra)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    gray = args.out / "gray.json"
    if not gray.is_file():
        subprocess.run(["colorgan", "eval", "--data", str(args.val), "--baseline", "gray", "--out",
                        str(args.out / "gray.md"), "--summary-json", str(gray)], check=True, stdout=subprocess.DEVNULL)
    gray_psnr = json.loads(gray.read_text())["runs"][0]["means"]["psnr"]
    (args.out / f"{args.plan}.md").write_text(table(results, gray_psnr))
    print(table(results, gray_psnr))


if __name__ == "__main__":
    main(parse_args())
