"""train_accelerate.py end to end on real photos: overfit, 2-process CPU run, kill-and-resume, bad data."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from colorgan import Colorizer, UNetGenerator
from colorgan.color import rgb_to_model_space
from colorgan.data import collate, load_validation_images, open_stream
from colorgan.hints import generator_input

# every test here runs train_accelerate.py, which needs the train extra; the app extra's tests go on without it
pytest.importorskip("accelerate", reason="training needs the train extra (accelerate)")
pytest.importorskip("datasets", reason="training needs the train extra (datasets)")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "train_accelerate.py")
# Small but real: the default encoder with narrow decoder blocks, 64 px crops.
FAST = ["--resolution", "64", "--decoder-channels", "64", "32", "32", "16", "8", "--val-every", "1000"]


def make_photo_folder(folder: Path, photos: list[Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        image = Image.open(photo).convert("RGB")
        image.thumbnail((160, 160))
        image.save(folder / photo.name, quality=95)
    return folder


@pytest.fixture(scope="module")
def eight_photos(photos_dir, tmp_path_factory) -> Path:
    photos = sorted((photos_dir / "train").glob("*.jpg"))[20:28]
    return make_photo_folder(tmp_path_factory.mktemp("eight"), photos)


def train(output_dir: Path, *args: str, launcher: list[str] | None = None, env: dict | None = None,
          check: bool = True) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable]) + [SCRIPT, "--output-dir", str(output_dir), *FAST, *args]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def seen_lines(output_dir: Path, process: int = 0) -> list[str]:
    return (output_dir / "seen" / f"process-{process}.txt").read_text().splitlines()


def center_l1(model: UNetGenerator, pixels: torch.Tensor) -> float:
    l_norm, ab_norm = rgb_to_model_space(pixels)
    with torch.no_grad():
        return (model.eval()(generator_input(l_norm)) - ab_norm).abs().mean().item()


def test_overfit_halves_l1_and_writes_a_loadable_model(photos_dir, tmp_path):
    data = make_photo_folder(tmp_path / "data", sorted((photos_dir / "train").glob("*.jpg"))[10:15])
    output = tmp_path / "run"
    train(output, "--dataset", str(data), "--val-count", "1", "--batch-size", "4", "--max-steps", "60",
          "--pretrain-steps", "60", "--hint-prob", "0", "--learning-rate", "1e-3", "--ema-decay", "0",
          "--num-workers", "0", "--checkpoint-every", "30")
    train_pixels, _ = load_validation_images(open_stream(str(data)).skip(1), 64, count=4)
    torch.manual_seed(0)
    untrained = UNetGenerator("regnetx_002", decoder_channels=[64, 32, 32, 16, 8])
    trained = UNetGenerator.from_pretrained(str(output))
    before, after = center_l1(untrained, train_pixels.float() / 255), center_l1(trained, train_pixels.float() / 255)
    assert after <= before / 2, (before, after)
    for name in ("model.safetensors", "config.json", "training_facts.json", "discriminator/model.safetensors"):
        assert (output / name).is_file(), name
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-30", "checkpoint-60"]
    assert list((output / "samples").glob("step-*.png"))
    facts = json.loads((output / "training_facts.json").read_text())
    assert facts["steps"] == 60 and facts["pretrain_steps"] == 60 and facts["images_seen"] >= 60 * 4
    colorized = Colorizer.from_pretrained(output)(photos_dir / "val" / "python3-scipy__face.jpg")
    assert colorized.size == Image.open(photos_dir / "val" / "python3-scipy__face.jpg").size


@pytest.mark.slow
def test_two_cpu_processes_see_disjoint_images_and_end_identical(eight_photos, tmp_path):
    output = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    train(output, "--dataset", str(eight_photos), "--val-count", "1", "--batch-size", "2", "--max-steps", "4",
          "--pretrain-steps", "2", "--num-workers", "1", "--checkpoint-every", "4", "--record-seen-images",
          launcher=launcher, env={"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"})
    seen = [{crc for line in seen_lines(output, rank) for crc in line.split()[1:]} for rank in (0, 1)]
    assert seen[0] and seen[1], "both processes trained"
    assert not seen[0] & seen[1], "processes must read disjoint images"
    weights = [float((output / "seen" / f"process-{rank}.weights").read_text()) for rank in (0, 1)]
    assert weights[0] == pytest.approx(weights[1], rel=1e-9)


@pytest.mark.slow
def test_killed_run_resumes_exactly(eight_photos, tmp_path):
    args = ["--dataset", str(eight_photos), "--val-count", "1", "--batch-size", "2", "--max-steps", "12",
            "--pretrain-steps", "4", "--checkpoint-every", "4", "--num-workers", "2", "--record-seen-images"]
    train(tmp_path / "whole", *args)

    interrupted = tmp_path / "interrupted"
    command = [sys.executable, SCRIPT, "--output-dir", str(interrupted), *FAST, *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (interrupted / "checkpoint-4").is_dir() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run must be killed mid-way, not finish"
    resumed_from = max(int(p.name.split("-")[1]) for p in interrupted.glob("checkpoint-*"))
    before_kill = [line for line in seen_lines(interrupted) if int(line.split()[0]) < resumed_from]
    (interrupted / "seen" / "process-0.txt").write_text("\n".join(before_kill) + "\n")
    train(interrupted, *args, "--resume", "latest")

    assert seen_lines(interrupted) == seen_lines(tmp_path / "whole"), "no batch skipped or repeated"
    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert whole.keys() == resumed.keys()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6, msg=key)


def test_corrupt_tiny_and_grayscale_images_are_skipped_and_counted(photos_dir, tmp_path):
    data = make_photo_folder(tmp_path / "data", sorted((photos_dir / "train").glob("*.jpg"))[30:34])
    (data / "random.jpg").write_bytes(os.urandom(5000))
    good_bytes = (data / sorted(os.listdir(data))[0]).read_bytes()
    (data / "truncated.jpg").write_bytes(good_bytes[: len(good_bytes) // 3])
    for index, photo in enumerate(sorted((photos_dir / "train").glob("*.jpg"))[40:42]):
        Image.open(photo).convert("L").convert("RGB").resize((160, 120)).save(data / f"gray{index}.jpg")
    Image.new("RGB", (12, 12), (200, 30, 30)).save(data / "tiny.png")
    output = tmp_path / "run"
    result = train(output, "--dataset", str(data), "--val-count", "1", "--batch-size", "3", "--max-steps", "6",
                   "--pretrain-steps", "3", "--num-workers", "0", "--checkpoint-every", "6")
    skipped = json.loads((output / "training_facts.json").read_text())["skipped"]
    assert skipped["undecodable"] >= 2 and skipped["grayscale"] >= 2 and skipped["tiny"] >= 1, skipped
    assert "skipped images: undecodable" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def training_script():
    """train_accelerate.py imported as a module (it is a script at the repo root, not in the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_accelerate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-steps", "5", "--pretrain-steps", "10"], "--pretrain-steps cannot exceed --max-steps"),
        (["--resume", "latest", "--init-from", "x"], "use one of them"),
        (["--hint-prob", "1.5"], "--hint-prob"),
        (["--resume", "/no/such/checkpoint"], "no such checkpoint"),
        (["--resolution", "128", "--loader-size", "64"], "--loader-size cannot be smaller"),
        (["--gan-loss", "wasserstein"], "invalid choice"),
        (["--max-minutes", "0"], "--max-minutes must be positive"),
        (["--generator", "pix2pix-unet", "--hint-prob", "0.5"], "trains from scratch without hints"),
        (["--generator", "pix2pix-unet", "--hint-prob", "0", "--init-from", "x"], "drop --init-from"),
        (["--generator", "pix2pix-unet", "--hint-prob", "0", "--decoder-hints"], "--decoder-hints"),
        (["--init-from", "x", "--decoder-hints"], "an architecture"),
        (["--hint-spread", "2"], "--decoder-hints"),
        (["--decoder-hints", "--hint-spread", "9"], "between 0 and 8"),
        (["--l1-chroma-weight", "-1"], "--l1-chroma-weight must be between 0 and 100"),
        (["--l1-chroma-weight", "nan"], "--l1-chroma-weight must be between 0 and 100"),
    ],
)
def test_bad_flag_combinations_fail_before_any_work(training_script, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        training_script.parse_args(["--dataset", "/nonexistent", "--output-dir", str(tmp_path), *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing written before the arguments are checked"


def test_every_flag_is_documented(training_script):
    actions = [action for action in training_script.build_parser()._actions if action.option_strings]
    assert len(actions) > 35
    assert [action.dest for action in actions if not action.help] == []


def test_parquet_folder_streams_like_an_image_folder(eight_photos, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    photos = sorted(eight_photos.iterdir())
    table = pa.table({"picture": [{"bytes": p.read_bytes(), "path": p.name} for p in photos], "label": list(range(len(photos)))})
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=2)
    from_parquet = open_stream(str(tmp_path), image_column="picture")
    assert from_parquet.n_shards == 4  # one per row group
    from_folder = open_stream(str(eight_photos))
    pixels_parquet, _ = load_validation_images(from_parquet, 64, count=8)
    pixels_folder, _ = load_validation_images(from_folder, 64, count=8)
    assert torch.equal(pixels_parquet, pixels_folder)


def test_collate_drops_and_counts_skipped_examples():
    import numpy as np

    square = np.zeros((8, 8, 3), np.uint8)
    batch = collate([{"pixels": square, "skip": ""}, {"pixels": square, "skip": "grayscale"},
                     {"pixels": square, "skip": "grayscale"}, {"pixels": square, "skip": "tiny"}])
    assert batch["pixels"].shape == (1, 3, 8, 8)
    assert batch["skipped"] == {"grayscale": 2, "tiny": 1}


def test_cosine_schedule_decays_to_one_percent_and_time_budget_counts_as_progress(training_script):
    args = training_script.parse_args(["--dataset", "d", "--output-dir", "o", "--max-steps", "100", "--pretrain-steps", "0",
                                       "--lr-schedule", "cosine", "--learning-rate", "1e-3", "--max-minutes", "10"])
    progress = training_script.training_progress
    assert progress(args, 50, 0.0) == 0.5  # by steps
    assert progress(args, 10, 450.0) == 0.75  # 7.5 of 10 minutes: time ends the run sooner
    assert progress(args, 10, 9999.0) == 1.0
    rates = [training_script.scheduled_learning_rate(args, p / 10) for p in range(11)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    constant = training_script.parse_args(["--dataset", "d", "--output-dir", "o"])
    assert training_script.scheduled_learning_rate(constant, 0.9) == constant.learning_rate


def test_time_budget_ends_a_pix2pix_reference_run_with_a_loadable_model(eight_photos, tmp_path):
    """The seeds' recipe (pix2pix unet_256, GAN from step 0, no hints) with --max-minutes stopping it."""
    output = tmp_path / "peer"
    train(output, "--dataset", str(eight_photos), "--val-count", "1", "--batch-size", "1", "--max-steps", "100000",
          "--max-minutes", "0.25", "--pretrain-steps", "0", "--generator", "pix2pix-unet", "--hint-prob", "0",
          "--ema-decay", "0", "--disc-norm", "spectral", "--lr-schedule", "cosine", "--num-workers", "0",
          "--checkpoint-every", "100000")
    facts = json.loads((output / "training_facts.json").read_text())
    assert 0 < facts["steps"] < 100000 and facts["gan_steps"] == facts["steps"]
    assert 15 <= facts["wall_time_seconds"] < 120
    assert [p.name for p in output.glob("checkpoint-*")] == [f"checkpoint-{facts['steps']}"]  # saved on stopping
    assert json.loads((output / "discriminator" / "config.json").read_text())["norm"] == "spectral"
    colorizer = Colorizer.from_pretrained(output, device="cpu")
    assert type(colorizer.generator).__name__ == "Pix2PixUNet"
    photo = next(eight_photos.glob("*.jpg"))
    assert colorizer(photo).size == Image.open(photo).size
