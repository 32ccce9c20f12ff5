"""`colorgan colorize-dataset` throughput: 2 processes of 1 thread each against 1 process, in one run.

    python benchmarks/bench_archive.py                       # 3 rounds, the val photos x 4, the starter model
    python benchmarks/bench_archive.py --rounds 5 --copies 2 --backend torch

Each round colorizes the same folder (the real photos of ../shared/photos/val, each copied
`--copies` times under other names) into a fresh DST, in turns. By default 4 copies in shards of 2
split evenly: each of 2 processes gets two copies of the same photos, so what is measured is the
scaling, not one process's longer share (a real job's thousands of shards split as evenly).

- `1 process`: `colorgan colorize-dataset` in one process of one thread (OMP_NUM_THREADS=1);
- `2 processes`: the same under `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2`,
  one thread each;
- `1 process, 2 threads` (unless --no-threads-baseline): one process with torch's and ONNX Runtime's
  threads at 2, the other way to use two cores.

The order alternates from round to round (a shared machine's load drifts between rounds, not within
one). The throughput is the job's own summary line (its rows over the time its processes spent
colorizing: start-up and model loading not counted); the wall-clock time with start-up is printed
too, and how many cores other work on the machine used meanwhile (/proc/stat's busy time less the
job's own): on a shared machine, the cores the job could not have. Printed: each round's figures and its
2-process / 1-process ratio, the median ratio, and the machine's /proc/loadavg before and after.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "photos" / "val"
# the job's summary line: rows, seconds, images/s in total, and each process's images/s
SUMMARY = re.compile(
    r"colorized (\d+) rows.* in ([\d.]+) s: ([\d.]+) images/s in total \(\d+ processes: ([\d., ]+) images/s each"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--photos", type=Path, default=PHOTOS, help="folder of photos to colorize (default: the val photos)"
    )
    parser.add_argument(
        "--copies", type=int, default=4,
        help="each photo this many times, for a longer job (default 4: in shards of 2, both processes get the same"
        " photos)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every configuration (default 3)")
    parser.add_argument("--model", help="model folder or Hub repo id (default: the bundled starter model)")
    parser.add_argument(
        "--backend", default="auto", help="--backend of colorize-dataset (default auto: onnx on the cpu)"
    )
    parser.add_argument("--shard-size", type=int, default=2, help="rows per shard (default 2)")
    parser.add_argument("--no-threads-baseline", action="store_true", help="skip the 1-process, 2-thread configuration")
    return parser.parse_args(argv)


def make_source(photos: Path, copies: int, folder: Path) -> int:
    """The photos, `copies` times each (hard links where possible), in `folder`; returns how many."""
    count = 0
    for copy in range(copies):
        for photo in sorted(photos.glob("*.jpg")):
            target = folder / f"{copy}-{photo.name}"
            try:
                os.link(photo, target)
            except OSError:
                shutil.copy(photo, target)
            count += 1
    return count


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def busy_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds used by this process's finished children (the launcher waits for its workers: included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_job(name: str, source: Path, destination: Path, args: argparse.Namespace) -> dict:
    """One colorize-dataset job in a fresh process (or processes); its throughput, wall time, and the
    cores other work on the machine used meanwhile (what the job could not have)."""
    job = ["-m", "colorgan", "colorize-dataset", str(source), str(destination), "--backend", args.backend,
           "--shard-size", str(args.shard_size), "--quiet", *(["--model", args.model] if args.model else [])]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    if name == "2 processes":
        launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
        command, env["ACCELERATE_USE_CPU"] = [sys.executable, *launcher, *job], "1"
    else:
        command = [sys.executable, *job]
        env["OMP_NUM_THREADS"] = "2" if name == "1 process, 2 threads" else "1"
    started, busy, own = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    others = (busy_cpu_seconds() - busy - (own_cpu_seconds() - own)) / wall
    found = SUMMARY.search(result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"{name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    shutil.rmtree(destination)
    return {"rows": int(found[1]), "seconds": float(found[2]), "rate": float(found[3]), "each": found[4], "wall": wall,
            "others": others}


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    names = ["1 process", "2 processes"] + ([] if args.no_threads_baseline else ["1 process, 2 threads"])
    print(f"cores: {os.cpu_count()}; loadavg before: {load_average()}", flush=True)
    ratios, rates = [], {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="colorgan-bench-archive-") as scratch:
        source = Path(scratch) / "photos"
        source.mkdir()
        count = make_source(args.photos, args.copies, source)
        print(f"{count} photos from {args.photos}, backend {args.backend}, shard size {args.shard_size}", flush=True)
        for round_index in range(args.rounds):
            order = names if round_index % 2 == 0 else names[::-1]
            measured = {name: run_job(name, source, Path(scratch) / "out", args) for name in order}
            for name in order:
                figures = measured[name]
                rates[name].append(figures["rate"])
                print(f"round {round_index + 1} {name:>22}: {figures['rate']:6.2f} images/s"
                      f" ({figures['rows']} rows in {figures['seconds']:.1f} s, per process {figures['each']};"
                      f" {figures['wall']:.1f} s with start-up; other work used {figures['others']:.2f} cores)",
                      flush=True)
            ratios.append(measured["2 processes"]["rate"] / measured["1 process"]["rate"])
            print(f"round {round_index + 1}: 2 processes / 1 process = {ratios[-1]:.2f}x; loadavg {load_average()}",
                  flush=True)
    print("ratios 2 processes / 1 process: " + ", ".join(f"{ratio:.2f}" for ratio in ratios)
          + f"; median {statistics.median(ratios):.2f}x")
    for name in names:
        print(f"median {name}: {statistics.median(rates[name]):.2f} images/s")
    print(f"loadavg after: {load_average()}")


if __name__ == "__main__":
    main()
