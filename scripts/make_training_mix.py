"""Make a training mix: a folder of links to the photo set's photos, some sources repeated, some subsampled.

    python scripts/make_training_mix.py docs/photo_set_manifest.tsv --output /work/photo-build/mix2 \
        --folder train=../shared/photos/train --folder git-photos=/work/photo-build/git-photos \
        --repeat train=30 --repeat EliSchwartz/imagenet-sample-images=4 \
        --subset Mohanish-5744/Major_Ensemble_Gender=1500 --subset alexeygrigorev/clothing-dataset=300 --seed 0

`train_accelerate.py --dataset FOLDER` shuffles a folder's files, so a photo linked N times is seen N
times as often: that is how a mix leans towards the scenes of `shared/photos/train` without copying a
photo. A source (the manifest's `source` column, or `train` for a whole folder) that no option names
is left out unless `--rest` gives it a default repeat. `--hold-out FILE` leaves out the photos it
names (one file name per line), e.g. a set kept aside to tune settings on photos no model saw.
`--boost FILE=N` links each photo FILE names N more times, whatever its source's option says: e.g.
the photos `scripts/find_foliage_photos.py` lists, so a mix leans towards green vegetation. The
output holds one link per sample, named `<copy>__<file>`, and `training_data.tsv`: the manifest's rows of the photos used, each once, with a
`copies` column. That file is what a starter trained on the mix ships as its `training_data.tsv`.
The folder is written as `<output>.partial` and renamed into place, so a failed run leaves an
earlier mix as it was.
"""
from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
from pathlib import Path

MIX_MANIFEST = "training_data.tsv"


def parse_counts(pairs: list[str], option: str) -> dict[str, int]:
    """["KEY=N", ...] -> {KEY: N}; KEY is a manifest source or folder name, N a positive integer."""
    counts = {}
    for pair in pairs:
        key, _, value = pair.rpartition("=")
        if not key or not value.isdigit() or int(value) < 1:
            raise SystemExit(f"{option} {pair}: want NAME=N with N a positive integer")
        counts[key] = int(value)
    return counts


def read_name_list(path: Path, rows: list[dict], option: str) -> set[str]:
    """The file names `path` lists (one per line), each checked against the manifest's `file` column."""
    if not path.is_file():
        raise SystemExit(f"{option} {path}: no such file")
    names = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    unknown = sorted(names - {row["file"] for row in rows})
    if unknown:
        raise SystemExit(f"{option} {path}: {len(unknown)} names not in the manifest, e.g. {unknown[0]}")
    return names


def parse_folders(pairs: list[str]) -> dict[str, Path]:
    """["NAME=PATH", ...] -> {NAME: PATH}: where the photos of the manifest's `folder` NAME lie."""
    folders = {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        if not name or not path or not Path(path).is_dir():
            raise SystemExit(f"--folder {pair}: want NAME=PATH with PATH an existing folder")
        folders[name] = Path(path)
    return folders


def check_folders(rows: list[dict], folders: dict[str, Path]) -> None:
    """Refuses rows whose manifest `folder` has no --folder."""
    missing = sorted({row["folder"] for row in rows} - set(folders))
    if missing:
        raise SystemExit(f"no --folder for {', '.join(missing)}: say where its photos are, e.g. --folder {missing[0]}=PATH")


def photo_path(row: dict, folders: dict[str, Path]) -> Path:
    """Where a manifest row's photo lies; refuses one that is not there."""
    path = folders[row["folder"]] / row["file"]
    if not path.is_file():
        raise SystemExit(f"{path}: photo of the manifest not found (rebuild the photo set, or fix --folder)")
    return path


def read_manifest(path: Path) -> tuple[list[dict], list[str]]:
    """The photo set manifest's rows and column names; refuses a file without file, folder and source."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such manifest")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = list(reader)
        fieldnames = list(reader.fieldnames or [])
    if not {"file", "folder", "source"} <= set(fieldnames):
        raise SystemExit(f"{path}: want the columns file, folder and source (a photo set manifest)")
    return rows, fieldnames


def add_boosts(plan: list[tuple[dict, int]], rows: list[dict], boosts: dict[str, int]) -> list[tuple[dict, int]]:
    """`plan` with `boosts[file]` more copies of each named row (added to the plan if it was not in it)."""
    copies = {id(row): count for row, count in plan}
    for row in rows:
        if row["file"] in boosts:
            copies[id(row)] = copies.get(id(row), 0) + boosts[row["file"]]
    return [(row, copies[id(row)]) for row in rows if id(row) in copies]


def plan_mix(rows: list[dict], repeats: dict[str, int], subsets: dict[str, int], rest: int, seed: int) -> list[tuple[dict, int]]:
    """Which manifest rows go into the mix and how many copies of each.

    A row is matched by its `source`, else by its `folder`. A subset is drawn at random (seeded) from
    the rows of its source, in manifest order first, so the same seed gives the same photos.

    Returns:
        [(row, copies), ...] in manifest order, for the rows used.
    """
    by_key: dict[str, list[dict]] = {}
    for row in rows:
        key = row["source"] if row["source"] in repeats or row["source"] in subsets else row["folder"]
        by_key.setdefault(key, []).append(row)
    unknown = sorted((set(repeats) | set(subsets)) - set(by_key))
    if unknown:
        raise SystemExit(f"no photos of {', '.join(unknown)} in the manifest (sources: {', '.join(sorted(by_key))})")
    both = sorted(set(repeats) & set(subsets))
    if both:
        raise SystemExit(f"{', '.join(both)}: give a source --repeat or --subset, not both")
    chosen: dict[int, int] = {}
    rng = random.Random(seed)
    for key in sorted(by_key):
        members = by_key[key]
        if key in subsets:
            if subsets[key] > len(members):
                raise SystemExit(f"--subset {key}={subsets[key]}: the manifest has only {len(members)} of its photos")
            members = rng.sample(members, subsets[key])
        copies = repeats.get(key, 1 if key in subsets else rest)
        for row in members:
            if copies:
                chosen[id(row)] = copies
    return [(row, chosen[id(row)]) for row in rows if id(row) in chosen]


def write_mix(plan: list[tuple[dict, int]], folders: dict[str, Path], fieldnames: list[str], output: Path) -> int:
    """Links and `training_data.tsv` into `<output>.partial`, then renamed to `output`; returns the link count."""
    check_folders([row for row, _ in plan], folders)
    sources = [photo_path(row, folders).resolve() for row, _ in plan]  # every photo found before anything is written
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    links = 0
    for (row, copies), source in zip(plan, sources):
        for copy in range(copies):
            (partial / f"{copy:02d}__{row['file']}").symlink_to(source)
            links += 1
    with (partial / MIX_MANIFEST).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*fieldnames, "copies"], delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "copies": copies} for row, copies in plan)
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    return links


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="the photo set's manifest (docs/photo_set_manifest.tsv)")
    parser.add_argument("--output", type=Path, required=True, help="folder to write the links into (replaced)")
    parser.add_argument("--folder", action="append", default=[], metavar="NAME=PATH",
                        help="where the photos of the manifest's `folder` NAME lie; repeatable")
    parser.add_argument("--repeat", action="append", default=[], metavar="SOURCE=N",
                        help="link every photo of SOURCE (a manifest source, or a folder name) N times; repeatable")
    parser.add_argument("--subset", action="append", default=[], metavar="SOURCE=N",
                        help="link N photos of SOURCE drawn at random (seeded), once each; repeatable")
    parser.add_argument("--rest", type=int, default=0,
                        help="copies of each photo of a source no option names (0 leaves it out)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the subsets")
    parser.add_argument("--hold-out", type=Path, metavar="FILE",
                        help="leave out the photos this file names (the manifest's `file`, one per line)"
                             " before any subset is drawn")
    parser.add_argument("--boost", action="append", default=[], metavar="FILE=N",
                        help="link each photo FILE names (one per line) N more times, whatever its source's"
                             " option; held-out photos stay out; repeatable")
    args = parser.parse_args(argv)
    if args.rest < 0:
        parser.error("--rest cannot be negative")
    folders = parse_folders(args.folder)
    rows, fieldnames = read_manifest(args.manifest)
    boosts: dict[str, int] = {}
    for list_file, copies in parse_counts(args.boost, "--boost").items():
        for name in read_name_list(Path(list_file), rows, "--boost"):
            boosts[name] = boosts.get(name, 0) + copies
    if args.hold_out:
        held = read_name_list(args.hold_out, rows, "--hold-out")
        rows = [row for row in rows if row["file"] not in held]
    plan = plan_mix(rows, parse_counts(args.repeat, "--repeat"), parse_counts(args.subset, "--subset"), args.rest, args.seed)
    plan = add_boosts(plan, rows, boosts)
    if not plan:
        raise SystemExit("the mix would be empty: name sources with --repeat or --subset, or give --rest")
    links = write_mix(plan, folders, fieldnames, args.output)
    print(f"{args.output}: {links} links to {len(plan)} photos", file=sys.stderr)


if __name__ == "__main__":
    main()
