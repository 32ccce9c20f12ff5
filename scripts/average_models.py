"""Average the weights of generators fine-tuned from one parent: a "model soup" (Wortsman et al., 2022).

    python scripts/average_models.py runs/soup runs/plain-l1 runs/chroma-l1 --weights 1 1

Two fine-tunes of the same parent sit in one basin of the loss, so the average of their weights is
a model too, and on this project's photos it beats both ingredients' linear trade-off between PSNR
and colourfulness (docs/starter_training.md has the figures). Models from different random
initialisations do not average: use siblings of one run.

Each ingredient loads as `Colorizer.from_pretrained` loads it (safetensors only, strictly, checked),
and all must share one `config.json`. Floating-point tensors (weights and BatchNorm statistics) are
averaged with the given weights, normalised to sum to 1; integer buffers (`num_batches_tracked`) are
the first ingredient's. The result's `training_facts.json` names the ingredients and adds up their
own steps, images and wall time; a parent they share is added with `package_starter.py --continued-from`.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from colorgan.checkpoint import CheckpointError, check_config_file
from colorgan.models import generator_class_for
from hub_card import CardFacts

ADDED_FACTS = ("steps", "pretrain_steps", "gan_steps", "images_seen", "wall_time_seconds")


def average_state_dicts(state_dicts: list[dict[str, torch.Tensor]], shares: list[float]) -> dict[str, torch.Tensor]:
    """The weighted mean of floating-point tensors (in fp32, cast back), other tensors from the first.

    Args:
        state_dicts: the ingredients' state dicts, with the same keys and shapes.
        shares: one non-negative weight per state dict, summing to 1.
    """
    averaged = {}
    for key, first in state_dicts[0].items():
        if first.is_floating_point():
            mean = sum(share * state[key].float() for share, state in zip(shares, state_dicts))
            averaged[key] = mean.to(first.dtype)
        else:
            averaged[key] = first.clone()
    return averaged


def combined_facts(ingredients: list[Path], shares: list[float]) -> CardFacts:
    """The first ingredient's facts, with the ingredients' own compute added up and each one named."""
    facts = [CardFacts.load(path) for path in ingredients]
    result = CardFacts.load(ingredients[0])
    for name in ADDED_FACTS:
        values = [getattr(item, name) for item in facts]
        setattr(result, name, None if None in values else sum(values))
    result.evaluations, result.val_metrics, result.sample_grid = [], {}, None  # they measured the ingredients
    result.args = {**result.args, "averaged_from": [
        {"model": str(path), "share": round(share, 4), "steps": item.steps, "seed": item.args.get("seed"),
         "l1_chroma_weight": item.args.get("l1_chroma_weight"), "init_from": item.args.get("init_from")}
        for path, share, item in zip(ingredients, shares, facts)]}
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, help="folder for the averaged model (config, weights, facts)")
    parser.add_argument("models", type=Path, nargs="+", help="model folders (config.json + model.safetensors)")
    parser.add_argument("--weights", type=float, nargs="+",
                        help="one weight per model, normalised to sum to 1 (default: equal weights)")
    args = parser.parse_args(argv)
    if len(args.models) < 2:
        parser.error("give at least two models to average")
    if args.weights is None:
        args.weights = [1.0] * len(args.models)
    if len(args.weights) != len(args.models):
        parser.error(f"--weights has {len(args.weights)} values for {len(args.models)} models")
    if any(not math.isfinite(w) or w < 0 for w in args.weights) or sum(args.weights) <= 0:
        parser.error("--weights must be finite, non-negative and not all zero")
    if args.output_dir.resolve() in {path.resolve() for path in args.models}:
        parser.error("the output folder must not be one of the models (it would be overwritten)")
    return args


def main(args: argparse.Namespace) -> Path:
    configs = [check_config_file(str(path)) for path in args.models]
    for path, config in zip(args.models[1:], configs[1:]):
        if config != configs[0]:
            differing = sorted(key for key in set(config) | set(configs[0]) if config.get(key) != configs[0].get(key))
            raise CheckpointError(f"{path} is not the same architecture as {args.models[0]}: "
                                  f"config.json differs in {', '.join(differing)}")
    generator_class = generator_class_for(configs[0])
    models = [generator_class.from_pretrained(str(path)) for path in args.models]
    shares = [weight / sum(args.weights) for weight in args.weights]
    averaged = models[0]
    averaged.load_state_dict(average_state_dicts([model.state_dict() for model in models], shares))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    averaged.save_pretrained(args.output_dir)
    combined_facts(args.models, shares).save(args.output_dir)
    return args.output_dir


if __name__ == "__main__":
    try:
        print(main(parse_args()))
    except CheckpointError as error:
        sys.exit(f"error: {error}")
