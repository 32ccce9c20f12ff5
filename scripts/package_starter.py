"""Bundle a trained run as the package's starter model: weights, config, card with eval results.

    python scripts/package_starter.py runs/starter-gan docs/eval/summary.json --run-label starter-gan
    python scripts/package_starter.py --card-only docs/eval/hints.json --run-label starter

Copies the run's EMA generator (`config.json`, `model.safetensors`) into
`colorgan/pretrained/starter/`, adds the `colorgan eval` results of that run (and of its
runs with hints) to its `training_facts.json`, puts a small before/after grid beside it and
renders the model card from `hub_card/`, so the folder is laid out like a Hub repo.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
from collections import Counter
from pathlib import Path

from PIL import Image

from colorgan.checkpoint import FACTS_NAME, STARTER_MODEL
from hub_card import CardFacts, Evaluation, write_model_card

REPO_ID = "colorgan/colorgan-starter"
GRID_NAME = "sample_grid.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="output folder of train_accelerate.py (not with --card-only)")
    parser.add_argument("summary_json", type=Path, help="colorgan eval --summary-json output")
    parser.add_argument("--run-label", required=True, help="label of the run in the summary (the folder name)")
    parser.add_argument("--grid", type=Path, default=Path("docs/eval/grid.jpg"), help="eval grid to shrink for the card")
    parser.add_argument("--hardware", help="describe the training hardware for the card")
    parser.add_argument("--dataset-name", help="name the training data for the card (instead of the run's local path)")
    parser.add_argument("--continued-from", type=Path, action="append", default=[],
                        help="a run that run_dir grew from (--init-from): its steps, images and time are added;"
                             " repeat it once per earlier stage, the one run_dir fine-tuned first, then its parent")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=NAME",
                        help="also list the summary's run LABEL in the card's table as NAME (e.g. a reference"
                             " recipe trained for the same time); repeatable")
    parser.add_argument("--compare-summary", type=Path,
                        help="colorgan eval --summary-json holding the --compare runs (default: summary_json)")
    parser.add_argument("--training-data", type=Path, action="append", default=[],
                        help="training_data.tsv (source, licence_class per photo): counted by source and licence"
                             " class in the card, and copied beside the model; repeat it once per stage, in the"
                             " order of the stages (run_dir's, then each --continued-from's), to ship their union")
    parser.add_argument("--card-only", action="store_true",
                        help="keep the bundled weights and facts; only replace its evaluations (e.g. a new hint curve)")
    args = parser.parse_args()
    if (args.run_dir is None) != args.card_only:
        parser.error("give a run_dir, or --card-only to re-render the bundled model's card")

    facts = CardFacts.load(STARTER_MODEL if args.card_only else args.run_dir)
    if args.hardware:
        facts.hardware = args.hardware
    if args.dataset_name:
        facts.args = {**facts.args, "dataset": args.dataset_name}
    if len(args.training_data) > 1 and len(args.training_data) != 1 + len(args.continued_from):
        parser.error("give --training-data once, or once per stage: run_dir's, then each --continued-from's")
    if args.continued_from:  # the card describes the whole lineage, not only the last stage
        facts = merge_lineage(facts, [load_stage(stage) for stage in args.continued_from])
    STARTER_MODEL.mkdir(parents=True, exist_ok=True)  # checks done: from here on the starter's folder is written
    if not args.card_only:
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(args.run_dir / name, STARTER_MODEL / name)
    if len(args.training_data) == 1:
        facts.training_data = count_training_data(args.training_data[0])
        if args.training_data[0].resolve() != (STARTER_MODEL / "training_data.tsv").resolve():
            shutil.copyfile(args.training_data[0], STARTER_MODEL / "training_data.tsv")
    elif args.training_data:
        write_union(args.training_data, STARTER_MODEL / "training_data.tsv")
        facts.training_data = count_training_data(STARTER_MODEL / "training_data.tsv")
    runs = json.loads(args.summary_json.read_text())["runs"]
    facts.evaluations = [  # the run without hints and with each number of hints: the PSNR-versus-hints curve
        Evaluation(**{**run["evaluation"], "dataset": "shared/photos/val", "split": "val"})
        for run in runs
        if run["label"] == args.run_label or run["label"].startswith(f"{args.run_label} + ")
    ]
    if not facts.evaluations:
        raise SystemExit(f"no run labelled {args.run_label!r} in {args.summary_json}")
    compared_runs = json.loads(args.compare_summary.read_text())["runs"] if args.compare_summary else runs
    for comparison in args.compare:
        label, _, name = comparison.partition("=")
        matches = [run for run in compared_runs if run["label"] == label]
        if not matches or not name:
            raise SystemExit(f"--compare {comparison}: want LABEL=NAME, LABEL a run of the summary")
        evaluation = {**matches[0]["evaluation"], "dataset": "shared/photos/val", "split": "val"}
        facts.evaluations.append(Evaluation(**evaluation, compared_with=name))
    if not args.card_only:
        grid = Image.open(args.grid)
        grid.thumbnail((1600, 1600))
        grid.convert("RGB").save(STARTER_MODEL / GRID_NAME, quality=85)
        facts.sample_grid = GRID_NAME
    print(write_model_card(STARTER_MODEL, REPO_ID, facts))


LINEAGE_ARGS = ("output_dir", "init_from", "max_steps", "pretrain_steps", "lambda_l1", "gan_loss", "l1_chroma_weight",
                "learning_rate", "encoder_lr_scale", "encoder_weights", "encoder_pretrained", "hint_prob", "resolution",
                "dataset", "seed")  # what the card keeps of each stage


def load_stage(folder: Path) -> CardFacts:
    """An earlier stage's facts; a folder without a finished run's counts is refused by name."""
    stage = CardFacts.load(folder)
    if None in (stage.steps, stage.pretrain_steps, stage.gan_steps, stage.images_seen, stage.wall_time_seconds):
        raise SystemExit(f"--continued-from {folder}: its {FACTS_NAME} has no steps, images seen or wall time:"
                         " give the output folder of a finished run")
    return stage


def merge_lineage(facts: CardFacts, earlier: list[CardFacts]) -> CardFacts:
    """The last stage's facts with its earlier stages' steps, images and time added.

    Args:
        facts: the last stage (the run being packaged).
        earlier: its earlier stages, newest first: the run it fine-tuned, then that run's parent, ...

    Returns:
        The facts of the whole lineage: summed counts, `init_from` cleared (no published parent) and
        `continued_from` listing each earlier stage's main arguments, oldest first.
    """
    for stage in earlier:
        facts.steps += stage.steps
        facts.pretrain_steps += stage.pretrain_steps
        facts.gan_steps += stage.gan_steps
        facts.images_seen += stage.images_seen
        facts.wall_time_seconds += stage.wall_time_seconds
    stages = [{key: stage.args.get(key) for key in LINEAGE_ARGS} for stage in reversed(earlier)]
    facts.args = {**facts.args, "init_from": None, "continued_from": stages}
    return facts


def write_union(tables: list[Path], destination: Path) -> None:
    """One row per photo used by any stage, `copies` replaced by `copies_by_stage` (oldest stage first).

    Args:
        tables: each stage's training_data.tsv (a `make_training_mix.py` manifest), newest stage first.
        destination: where the union goes, rows in the order first met from the oldest stage on.
    """
    rows: dict[str, dict] = {}
    copies: dict[str, list[str]] = {}
    fieldnames: list[str] = []
    for index, table in enumerate(reversed(tables)):
        with table.open(newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            if "file" not in (reader.fieldnames or []):
                raise SystemExit(f"--training-data {table}: no `file` column (want a make_training_mix.py manifest)")
            fieldnames = fieldnames or [name for name in reader.fieldnames if name != "copies"]
            for row in reader:
                rows.setdefault(row["file"], {name: row.get(name, "") for name in fieldnames})
                copies.setdefault(row["file"], ["0"] * len(tables))[index] = row.get("copies") or "1"
    with destination.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*fieldnames, "copies_by_stage"], delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "copies_by_stage": ",".join(copies[name])} for name, row in rows.items())


def count_training_data(tsv: Path) -> list[dict]:
    """Photos per (source, licence class), largest first; a Debian package's photos count under `debian`."""
    counts = Counter()
    with tsv.open(newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            source = row.get("source") if row.get("origin") != "debian" else "Debian packages"
            counts[(source or row.get("origin") or "?", row.get("licence_class") or "?")] += 1
    return [{"source": source, "licence": licence, "photos": photos}
            for (source, licence), photos in counts.most_common()]


if __name__ == "__main__":
    main()
