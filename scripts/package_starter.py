"""Bundle a trained run as the package's starter model: weights, config, card with eval results.

    python scripts/package_starter.py runs/starter-gan docs/eval/summary.json --run-label starter-gan

Copies the run's EMA generator (`config.json`, `model.safetensors`) into
`colorgan/pretrained/starter/`, adds the `colorgan eval` results of that run (and of its
10-hint run) to its `training_facts.json`, puts a small before/after grid beside it and
renders the model card from `hub_card/`, so the folder is laid out like a Hub repo.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from PIL import Image

from colorgan.hub import CardFacts, Evaluation, write_model_card
from colorgan.pipeline import STARTER_MODEL

REPO_ID = "colorgan/colorgan-starter"
GRID_NAME = "sample_grid.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="output folder of train_accelerate.py")
    parser.add_argument("summary_json", type=Path, help="colorgan eval --summary-json output")
    parser.add_argument("--run-label", required=True, help="label of the run in the summary (the folder name)")
    parser.add_argument("--grid", type=Path, default=Path("docs/eval/grid.jpg"), help="eval grid to shrink for the card")
    parser.add_argument("--hardware", help="describe the training hardware for the card")
    parser.add_argument("--continued-from", type=Path,
                        help="the run that run_dir fine-tuned (--init-from): its steps, images and time are added")
    args = parser.parse_args()

    STARTER_MODEL.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(args.run_dir / name, STARTER_MODEL / name)

    facts = CardFacts.load(args.run_dir)
    if args.hardware:
        facts.hardware = args.hardware
    if args.continued_from:  # the card describes the whole lineage, not only the last stage
        earlier = CardFacts.load(args.continued_from)
        facts.steps += earlier.steps
        facts.pretrain_steps += earlier.pretrain_steps
        facts.gan_steps += earlier.gan_steps
        facts.images_seen += earlier.images_seen
        facts.wall_time_seconds += earlier.wall_time_seconds
        facts.args = {**facts.args, "init_from": None, "continued_from": {
            "output_dir": earlier.args.get("output_dir"), "max_steps": earlier.args.get("max_steps"),
            "pretrain_steps": earlier.args.get("pretrain_steps"), "hint_prob": earlier.args.get("hint_prob"),
            "seed": earlier.args.get("seed")}}
    runs = json.loads(args.summary_json.read_text())["runs"]
    facts.evaluations = [
        Evaluation(**{**run["evaluation"], "dataset": "shared/photos/val", "split": "val"})
        for run in runs
        if run["label"] in (args.run_label, f"{args.run_label} + 10 hints")
    ]
    if not facts.evaluations:
        raise SystemExit(f"no run labelled {args.run_label!r} in {args.summary_json}")
    grid = Image.open(args.grid)
    grid.thumbnail((1600, 1600))
    grid.convert("RGB").save(STARTER_MODEL / GRID_NAME, quality=85)
    facts.sample_grid = GRID_NAME
    print(write_model_card(STARTER_MODEL, REPO_ID, facts))


if __name__ == "__main__":
    main()
