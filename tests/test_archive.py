"""`colorgan colorize-dataset` end to end: a 2-process CPU run under `accelerate launch`, killed and restarted,
pushed to the fake Hub; a Hub dataset with hints as the source; --limit, --dry-run and changed settings.

The model is the tiny random-weights generator of conftest.py: what is checked is the job (every row
once, at its own size, resumable to the same bytes), not the colours.
"""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from colorgan import archive
from colorgan.cli import main
from conftest import REPO, assert_one_line, skimage_lightness
from hub_server import WRITE_TOKEN

pytest.importorskip("accelerate", reason="colorize-dataset needs accelerate and datasets (the train extra)")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

PHOTOS = 40
BROKEN = "broken.jpg"
SHARD_SIZE = 2  # 21 shards for 41 files: a kill lands between shards with room to spare
PUSHED_REPO = "archivist/colorized-scans"


# ----------------------------------------------------------------------------- helpers
def make_photo_folder(folder: Path) -> dict[str, tuple[int, int]]:
    """PHOTOS gray, RGB and RGBA images of different sizes (some in a subfolder) and one undecodable file.

    Returns:
        id (path inside the folder) -> (width, height), for the images.
    """
    rng = np.random.default_rng(23)
    sizes = {}
    for index in range(PHOTOS):
        width, height = 36 + (index * 7) % 61, 30 + (index * 5) % 43
        gradient = np.add.outer(np.linspace(20, 200, height), np.linspace(0, 50, width))
        pixels = gradient + rng.integers(0, 25, (height, width))
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "L")
        image = [image, image.convert("RGB"), image.convert("RGBA")][index % 3]
        name = f"{'old/' if index % 8 == 0 else ''}scan{index:02d}.{'jpg' if image.mode == 'RGB' else 'png'}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / name)
        sizes[name] = image.size
    (folder / BROKEN).write_bytes(b"\xff\xd8\xff\xe0 not a JPEG at all" * 20)
    return sizes


def free_port() -> int:
    # accelerate's default port (29500) may be taken by another launch on this machine
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_command(*args) -> list[str]:
    """`accelerate launch` of `colorgan colorize-dataset ARGS` on 2 cpu processes."""
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
    ]
    return [*launcher, "-m", "colorgan", "colorize-dataset", *map(str, args)]


LAUNCH_ENV = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def job_args(source: Path, destination: Path, model: Path, *extra) -> list:
    return [source, destination, "--model", model, "--backend", "torch", "--shard-size", SHARD_SIZE, "--quiet", *extra]


def read_rows(destination: Path) -> list[dict]:
    """Every row of a job's shards, in shard order."""
    files = sorted((destination / archive.DATA_FOLDER).glob("*.parquet"))
    return [row for path in files for row in pq.read_table(path).to_pylist()]


def decoded(row: dict) -> Image.Image:
    return Image.open(io.BytesIO(row["image"]["bytes"]))


def job_files(destination: Path) -> dict[str, bytes]:
    """The job's files (job.json and its shards), hidden ones included, by path inside it."""
    files = (path for path in destination.rglob("*") if path.is_file())
    return {path.relative_to(destination).as_posix(): path.read_bytes() for path in files}


# ----------------------------------------------------------------------------- the 2-process run
@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, int]]]:
    folder = tmp_path_factory.mktemp("scans")
    return folder, make_photo_folder(folder)


@pytest.fixture(scope="module")
def whole_run(photo_folder, tiny_model_dir, tmp_path_factory):
    """The folder colorized by 2 processes in one go, then pushed to a private dataset repo of the fake Hub."""
    source, _ = photo_folder
    destination = tmp_path_factory.mktemp("whole") / "colorized"
    args = job_args(source, destination, tiny_model_dir, "--push-to", PUSHED_REPO, "--private", "--token", WRITE_TOKEN)
    result = subprocess.run(launch_command(*args), env=LAUNCH_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return destination, result


@pytest.mark.slow
def test_two_processes_colorize_every_image_once_at_its_own_size(whole_run, photo_folder):
    destination, result = whole_run
    source, sizes = photo_folder
    rows = read_rows(destination)
    assert sorted(row["id"] for row in rows) == sorted([*sizes, BROKEN]), "every file exactly once"
    assert "2 processes" in result.stderr
    for row in rows:
        if row["id"] == BROKEN:
            continue
        image = decoded(row)
        assert row["error"] is None and image.format == "PNG"
        assert image.size == sizes[row["id"]] == (row["width"], row["height"])
        assert image.mode == ("RGBA" if Image.open(source / row["id"]).mode == "RGBA" else "RGB")
        assert json.loads(row["settings"])["backend"] == "torch"
    sample = next(row for row in rows if row["id"].endswith(".png"))  # lossless input: its L* is kept
    assert np.abs(skimage_lightness(decoded(sample)) - skimage_lightness(Image.open(source / sample["id"]))).max() < 1.0


@pytest.mark.slow
def test_an_undecodable_file_is_an_error_row(whole_run):
    destination, result = whole_run
    (broken,) = [row for row in read_rows(destination) if row["error"] is not None]
    assert broken["id"] == BROKEN and broken["image"] is None
    assert_one_line(broken["error"])
    assert "corrupt or truncated image" in broken["error"]
    assert "1 could not be colorized" in result.stderr


@pytest.mark.slow
def test_push_to_uploads_the_shards_to_a_private_dataset_repo(whole_run, fake_hub):
    destination, result = whole_run
    pushed = fake_hub.files(PUSHED_REPO, repo_type="dataset")
    local = job_files(destination)
    assert {name: pushed[name] for name in local} == local
    assert fake_hub.repos[f"datasets/{PUSHED_REPO}"].private
    assert result.stdout.strip().endswith(fake_hub.head(PUSHED_REPO, repo_type="dataset"))
    import datasets

    loaded = datasets.load_dataset(PUSHED_REPO, split="train", streaming=True, token=WRITE_TOKEN)
    assert sorted(row["id"] for row in loaded) == sorted(row["id"] for row in read_rows(destination))


@pytest.mark.slow
def test_a_killed_run_restarted_gives_the_same_bytes(whole_run, photo_folder, tiny_model_dir, tmp_path):
    source, _ = photo_folder
    destination = tmp_path / "colorized"
    command = launch_command(*job_args(source, destination, tiny_model_dir))
    shards = destination / archive.DATA_FOLDER
    process = subprocess.Popen(command, env=LAUNCH_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 240
    while len(list(shards.glob("[!.]*.parquet"))) < 4 and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers, as a crash or a scheduler would
    process.wait()
    finished = {path.name: path.stat().st_mtime_ns for path in shards.glob("[!.]*.parquet")}
    all_shards = len(list((whole_run[0] / archive.DATA_FOLDER).glob("*.parquet")))
    assert 4 <= len(finished) < all_shards, "the run must be killed mid-way"

    result = subprocess.run(command, env=LAUNCH_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_files(destination) == job_files(whole_run[0]), "same files, byte for byte, no partial file left"
    assert all(shards.joinpath(name).stat().st_mtime_ns == mtime for name, mtime in finished.items()), (
        "finished shards are kept, not redone"
    )


# ----------------------------------------------------------------------------- in one process
def gray_png(width: int, height: int, value: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), value).save(buffer, format="PNG")
    return buffer.getvalue()


def parquet_bytes(rows: list[dict], row_group_size: int) -> bytes:
    """A parquet file of rows with a `photo` Image column, as `datasets` writes one."""
    import datasets

    features = datasets.Features(
        {"photo": datasets.Image(), "name": datasets.Value("string"), "hints": datasets.Value("string")}
    )
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=features.arrow_schema), buffer, row_group_size=row_group_size)
    return buffer.getvalue()


def colorize_dataset(*args) -> int:
    return main(["colorize-dataset", *map(str, args)])


def test_a_hub_dataset_with_a_hints_column_in_batches(fake_hub, tiny_model_dir, tmp_path):
    red = [{"x": 10, "y": 8, "color": "#d21e1e"}]
    rows = [  # in row groups of 2: "plain" shares a batch with "outside", whose hint fails it
        {"photo": {"bytes": gray_png(32, 24), "path": None}, "name": "plain", "hints": None},
        {"photo": {"bytes": gray_png(32, 24), "path": None}, "name": "outside", "hints": "[[99, 8, [210, 30, 30]]]"},
        {"photo": {"bytes": gray_png(32, 24), "path": None}, "name": "hinted", "hints": json.dumps(red)},
        {"photo": {"bytes": b"not an image", "path": None}, "name": "garbage", "hints": None},
    ]
    data = {"data/train-00000-of-00001.parquet": parquet_bytes(rows, 2)}
    fake_hub.add_commit("museum/scans", data, repo_type="dataset")
    destination = tmp_path / "out"
    status = colorize_dataset("museum/scans", destination, "--model", tiny_model_dir, "--backend", "torch",
                              "--id-column", "name", "--hints-column", "hints", "--batch-size", 4, "--quiet")
    assert status == 0
    out = {row["id"]: row for row in read_rows(destination)}
    assert list(out) == ["plain", "outside", "hinted", "garbage"], "the source's ids, in its order"
    assert out["plain"]["error"] is None, "a failed batch is redone row by row: one bad row fails only itself"
    red_pixel = decoded(out["hinted"]).convert("RGB").getpixel((10, 8))
    assert red_pixel[0] > red_pixel[1] + 30, f"the hint's red is at its point: {red_pixel}"
    assert decoded(out["plain"]).tobytes() != decoded(out["hinted"]).tobytes()
    assert "outside" in out["outside"]["error"] and out["garbage"]["error"]
    assert_one_line(out["outside"]["error"])


def test_limit_dry_run_and_changed_settings(photo_folder, tiny_model_dir, tmp_path, capsys):
    source, _ = photo_folder
    destination = tmp_path / "out"
    args = job_args(source, destination, tiny_model_dir, "--limit", 5)
    assert colorize_dataset(*args, "--dry-run") == 0
    assert "dry run" in capsys.readouterr().out and not destination.exists(), "a dry run writes nothing"

    assert colorize_dataset(*args) == 0
    assert len(read_rows(destination)) == 5
    job = (destination / archive.JOB_FILE).read_bytes()

    capsys.readouterr()
    assert colorize_dataset(*args, "--saturation", "1.5") == 2
    error = capsys.readouterr().err.strip()
    assert_one_line(error)
    assert "saturation 1.0 -> 1.5" in error
    assert (destination / archive.JOB_FILE).read_bytes() == job


def test_a_restart_redoes_only_the_unfinished_chunk_of_a_large_shard(tiny_model_dir, tmp_path):
    rows = [{"photo": {"bytes": gray_png(20 + row, 16, 40 + 9 * row), "path": None}, "name": f"r{row}", "hints": None}
            for row in range(10)]
    source = tmp_path / "table.parquet"
    source.write_bytes(parquet_bytes(rows, row_group_size=10))  # one source shard, cut into chunks of 3 rows
    destination = tmp_path / "out"
    args = [source, destination, "--model", tiny_model_dir, "--backend", "torch", "--shard-size", 3, "--quiet"]
    assert colorize_dataset(*args) == 0
    whole = job_files(destination)
    shards = sorted(name for name in whole if name.startswith("data/"))
    assert shards == [f"data/train-00000-0000{chunk}.parquet" for chunk in range(4)]
    kept = destination / "data" / "train-00000-00001.parquet"
    kept_mtime = kept.stat().st_mtime_ns
    for chunk in (2, 3):  # as if killed while writing chunk 2
        (destination / "data" / f"train-00000-0000{chunk}.parquet").unlink()
    assert archive.unfinished_shards(destination, "train", 1) == [(0, 2)]
    assert colorize_dataset(*args) == 0
    assert job_files(destination) == whole and kept.stat().st_mtime_ns == kept_mtime


def test_destination_inside_the_source_folder_is_refused(photo_folder, tiny_model_dir, capsys):
    source, _ = photo_folder
    assert colorize_dataset(source, source / "colorized", "--model", tiny_model_dir) == 2
    assert "inside the source folder" in capsys.readouterr().err
    assert not (source / "colorized").exists()


def test_a_missing_hub_dataset_ends_in_one_line(tiny_model_dir, tmp_path, capsys):
    assert colorize_dataset("nobody/no-such-scans", tmp_path / "out", "--model", tiny_model_dir, "--quiet") == 2
    error = capsys.readouterr().err.strip()
    assert_one_line(error)
    assert "nobody/no-such-scans" in error and not (tmp_path / "out").exists()
