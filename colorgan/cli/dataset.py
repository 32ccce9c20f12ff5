"""`colorgan colorize-dataset`: a whole collection into parquet shards, in one process or under `accelerate launch`.

The job itself is `colorgan.archive`'s; this module gives it processes (accelerate's `PartialState`),
a progress bar, the summary and the push to the Hub.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .options import (
    CommandFailed,
    add_hub_write_options,
    add_model_options,
    add_propagate_option,
    add_render_options,
    hub_errors_as_command_failures,
    load_colorizer,
    positive_int,
    resolve_backend,
)

GPU_BATCH_SIZE = 8  # rows per forward pass on a GPU; on the cpu a batch gains nothing and holds more memory
TOTAL_RATE_SECONDS = 2.0  # how often the main process counts every process's finished shards


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "colorize-dataset",
        help="colorize a whole dataset (Hub, parquet or image folder) into parquet shards; resumable,"
        " runs under accelerate launch",
        description="Colorize every image of SRC into parquet shards in DST: one row per image with its id, the"
        " colorized PNG (full resolution, the input's own lightness) and the settings used; an image that cannot"
        " be colorized becomes a row with its error. Run it again with the same options to finish a job that was"
        " stopped: finished shards are kept. Under `accelerate launch` each process colorizes its own shards.",
    )
    parser.add_argument(
        "source", metavar="SRC", help="a Hub dataset id, a folder of images (at any depth), or parquet files"
        " (a folder of them, a file, or a glob)"
    )
    parser.add_argument("destination", metavar="DST", help="the folder for the shards (data/*.parquet) and job.json")
    parser.add_argument(
        "--split", default="train", help="the split of a Hub or parquet dataset to read (default train)"
    )
    parser.add_argument(
        "--image-column", help="the column holding images (default: the first of type Image, else 'image')"
    )
    parser.add_argument("--id-column", help="the column holding each row's id (default: 'id' if there is one)")
    parser.add_argument(
        "--hints-column",
        help="a column of hint points per row: a list of [x, y, [r, g, b]] or {x, y, color} (color may be"
        " '#RRGGBB'), or that list as JSON",
    )
    add_model_options(parser, auto_backend=True)
    add_render_options(parser)
    add_propagate_option(parser)
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help=f"images colorized together (default {GPU_BATCH_SIZE} on a GPU, 1 on the cpu)",
    )
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=100,
        help="rows per output shard, the unit a restart redoes (default 100)",
    )
    parser.add_argument("--limit", type=positive_int, help="colorize only the first N rows, to try it")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the options, the source and DST, say what would be done, write nothing",
    )
    parser.add_argument("--push-to", metavar="USER/NAME", help="then upload DST to this Hub dataset repo")
    add_hub_write_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_colorize_dataset)


# ----------------------------------------------------------------------------- the run
def run_colorize_dataset(args: argparse.Namespace) -> int:
    try:
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        from .. import archive
    except ImportError as error:
        raise CommandFailed(f"colorize-dataset needs accelerate and datasets: pip install 'colorgan[train]' ({error})")
    import torch

    check_destination_outside_source(args.source, args.destination)
    # PartialState reads the launcher's environment; accelerate's own cpu flag is read by Accelerator only
    cpu = args.device == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    try:
        return run_job(archive, args, state)
    finally:
        # a process group left to the interpreter's exit can abort it there ("terminate called without an
        # active exception", seen once in ~30 two-process runs): the launcher then fails a finished job
        state.destroy_process_group()


def run_job(archive, args: argparse.Namespace, state) -> int:
    """Check, plan and run the job in this process (one of `state.num_processes`); the main one reports and pushes."""
    import torch
    from accelerate.utils import gather_object

    args.device = args.device or str(state.device)
    device_type = torch.device(args.device).type
    args.backend = resolve_backend(args.backend, device_type)
    settings = job_settings(args, device_type)
    with hub_errors_as_command_failures():  # no such dataset, column or folder; the Hub unreachable
        source = archive.open_source(
            args.source, split=args.split, image_column=args.image_column, id_column=args.id_column,
            hints_column=args.hints_column, shard_size=args.shard_size, limit=args.limit, token=args.token,
        )
    try:  # every process checks before any writes, so a refusal ends them all alike, in one line
        archive.check_job(args.destination, settings)
        if not args.dry_run:
            with state.main_process_first():
                if state.is_main_process:
                    archive.start_job(args.destination, settings)
    except (archive.JobError, OSError) as error:
        raise CommandFailed(error) from None
    todo = archive.unfinished_shards(args.destination, settings.split, source.num_shards)
    if args.dry_run:
        if state.is_main_process:
            print(describe_plan(args, settings, source, todo, state.num_processes))
        return 0
    state.wait_for_everyone()  # all have listed the unfinished shards before any process writes one
    threads = cpu_threads(state.num_processes) if device_type == "cpu" else None
    with state.main_process_first():  # the first process fills the ONNX export cache the others read
        colorizer = load_colorizer(args, threads=threads)
    state.wait_for_everyone()  # all start colorizing together: the job's rate is its rows over the slowest's time
    batch_size = args.batch_size or (1 if device_type == "cpu" else GPU_BATCH_SIZE)
    with state.split_between_processes(todo) as mine:
        report = run_shards(archive, colorizer, source, args, settings, mine, batch_size, state)
    reports = gather_object([report])
    if not state.is_main_process:
        return 0
    print(summary(reports), file=sys.stderr)
    if args.push_to:
        with hub_errors_as_command_failures():
            commit = archive.push_job(args.destination, args.push_to, private=args.private, token=args.token)
        print(f"pushed {args.destination} to the dataset repo {args.push_to}", file=sys.stderr)
        print(commit)
    return 0


def check_destination_outside_source(source: str, destination: str) -> None:
    """DST inside a SRC folder would be read as source on a restart (its shards are parquet files)."""
    if Path(source).is_dir() and Path(destination).resolve().is_relative_to(Path(source).resolve()):
        raise CommandFailed(f"{destination} is inside the source folder {source}: write the shards elsewhere")


def job_settings(args: argparse.Namespace, device_type: str):
    """The `archive.JobSettings` the options describe."""
    from ..archive import JobError, JobSettings

    try:
        return JobSettings(
            source=args.source, split=args.split, image_column=args.image_column, id_column=args.id_column,
            hints_column=args.hints_column, limit=args.limit, shard_size=args.shard_size, model=args.model,
            backend=args.backend, device=device_type, render_size=args.render_size, saturation=args.saturation,
            propagate=args.propagate,
        )
    except JobError as error:
        raise CommandFailed(error) from None


def cpu_threads(processes_here: int) -> int:
    """Each process's torch threads on the cpu: OMP_NUM_THREADS, else this machine's cores shared out."""
    from ..threads import default_threads

    local = int(os.environ.get("LOCAL_WORLD_SIZE", processes_here))  # processes on this machine, set by the launcher
    return default_threads(workers=local)


def run_shards(archive, colorizer, source, args, settings, work, batch_size, state):
    """This process's part of the job, with its progress bar; returns its `archive.JobReport`."""
    from tqdm import tqdm

    bar = tqdm(
        desc=f"process {state.process_index}", unit="img", position=state.local_process_index,
        disable=args.quiet, file=sys.stderr, dynamic_ncols=True,
    )
    total_rate = TotalRate(archive, args.destination) if state.is_main_process and state.num_processes > 1 else None

    def advance(rows: int) -> None:
        bar.update(rows)
        if total_rate is not None and (rate := total_rate()):  # None between counts, 0 before any shard is done
            bar.set_postfix_str(f"all processes {rate:.2f} img/s", refresh=False)

    try:
        return archive.colorize_shards(
            colorizer, source, args.destination, settings, work, batch_size=batch_size, on_rows=advance
        )
    finally:
        bar.close()


class TotalRate:
    """Images/s of every process together: rows in the shards written since the start, over the time since.

    Counted from the shard files themselves (a shard's footer holds its row count), at most every
    `TOTAL_RATE_SECONDS`: the processes tell each other nothing while they work.
    """

    def __init__(self, archive, destination: str):
        self.archive, self.destination = archive, destination
        self.rows: dict[str, int] = archive.count_rows(destination)
        self.before = sum(self.rows.values())
        self.started = self.checked = time.perf_counter()

    def __call__(self) -> float | None:
        now = time.perf_counter()
        if now - self.checked < TOTAL_RATE_SECONDS:
            return None
        self.checked = now
        self.rows = self.archive.count_rows(self.destination, known=self.rows)
        return (sum(self.rows.values()) - self.before) / (now - self.started)


def summary(reports: list) -> str:
    """One line for the whole job: rows, errors, and images/s in total and per process."""
    rows, errors = sum(report.rows for report in reports), sum(report.errors for report in reports)
    seconds = max(report.seconds for report in reports)
    rate = rows / seconds if seconds > 0 else 0.0
    per_process = ", ".join(f"{report.images_per_second:.2f}" for report in reports)
    failed = f", {errors} could not be colorized (error rows)" if errors else ""
    return (
        f"colorized {rows} rows{failed} in {seconds:.1f} s: {rate:.2f} images/s in total"
        f" ({len(reports)} processes: {per_process} images/s each)"
    )


def describe_plan(args: argparse.Namespace, settings, source, todo: list, processes: int) -> str:
    """What a run with these options would do, for --dry-run."""
    started = sum(1 for _, first_chunk in todo if first_chunk)
    return (
        f"dry run: {args.source} has {source.num_shards} source shards; {source.num_shards - len(todo)} are finished"
        f" in {args.destination}, {len(todo)} to colorize ({started} of them part-done) by {processes} process(es)"
        f" with {settings.backend} on {settings.device}; settings {settings.row_settings()}; nothing was written"
    )
