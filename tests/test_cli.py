"""`colorgan colorize` end to end, in a subprocess, on a folder with one corrupt file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from colorgan.cli import main
from conftest import assert_one_line, val_photo_paths

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GOOD_COUNT = 3
CORRUPT_NAME = "broken.jpg"


def colorgan(*args, model: Path) -> subprocess.CompletedProcess:
    """Run `python -m colorgan colorize ARGS --model MODEL` offline; text output."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")  # 1 thread: the test machine is shared
    command = [sys.executable, "-m", "colorgan", "colorize", *map(str, args), "--model", str(model)]
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=300)


def error_lines(stderr: str) -> list[str]:
    # tqdm redraws with carriage returns, which splitlines() also splits on
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def expected_output(source: Path, out_dir: Path) -> Path:
    return out_dir / f"{source.stem}_color.png"


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """name -> (content, mtime in ns) of every entry, hidden ones included."""
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in folder.iterdir()}


@pytest.fixture(scope="module")
def first_run(photos_dir, tiny_model_dir, tmp_path_factory):
    """3 real photos and one corrupt file in a folder, colorized into another folder."""
    in_dir, out_dir = tmp_path_factory.mktemp("inputs"), tmp_path_factory.mktemp("run") / "colorized"
    good = [Path(shutil.copy(path, in_dir)) for path in val_photo_paths(photos_dir, GOOD_COUNT)]
    (in_dir / CORRUPT_NAME).write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG" * 20)
    result = colorgan(in_dir, "-o", out_dir, model=tiny_model_dir)
    return dict(result=result, in_dir=in_dir, out_dir=out_dir, good=good)


def test_corrupt_file_gets_one_line_error_and_others_are_done(first_run):
    result, in_dir, out_dir, good = (first_run[key] for key in ("result", "in_dir", "out_dir", "good"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert_one_line(errors[0])
    assert str(in_dir / CORRUPT_NAME) in errors[0]
    assert "3 of 4" in result.stderr
    expected = {expected_output(source, out_dir).name for source in good}
    assert {path.name for path in out_dir.iterdir()} == expected  # no temp files, nothing for the bad file
    for source in good:
        output = Image.open(expected_output(source, out_dir))
        assert output.format == "PNG" and output.mode == "RGB"
        assert output.size == ImageOps.exif_transpose(Image.open(source)).size
    assert sorted(path.name for path in in_dir.iterdir()) == sorted([CORRUPT_NAME, *(p.name for p in good)])


def test_rerun_without_overwrite_refuses_and_leaves_outputs_untouched(first_run, tiny_model_dir, tmp_path):
    out_dir = Path(shutil.copytree(first_run["out_dir"], tmp_path / "colorized", copy_function=shutil.copy2))
    before = snapshot(out_dir)
    result = colorgan(first_run["in_dir"], "-o", out_dir, model=tiny_model_dir)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == GOOD_COUNT + 1, result.stderr
    for source in first_run["good"]:
        assert any(str(expected_output(source, out_dir)) in line and "--overwrite" in line for line in errors)
    assert snapshot(out_dir) == before  # byte-identical, not even rewritten, no temp files


def test_rerun_with_overwrite_replaces_outputs(first_run, tiny_model_dir, tmp_path):
    out_dir = Path(shutil.copytree(first_run["out_dir"], tmp_path / "colorized"))
    good = first_run["good"]
    stale = expected_output(good[0], out_dir)
    stale.write_bytes(b"an old, broken result")
    unchanged = {source.name: expected_output(source, out_dir).read_bytes() for source in good[1:]}
    result = colorgan(*good, "-o", out_dir, "--overwrite", model=tiny_model_dir)
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == []
    replaced = Image.open(stale)
    assert replaced.size == ImageOps.exif_transpose(Image.open(good[0])).size
    assert stale.read_bytes() == expected_output(good[0], first_run["out_dir"]).read_bytes()
    for source in good[1:]:  # deterministic: rewritten with the same bytes
        assert expected_output(source, out_dir).read_bytes() == unchanged[source.name]
    assert {path.name for path in out_dir.iterdir()} == {expected_output(s, out_dir).name for s in good}


def test_missing_model_folder_exits_2_with_one_line(first_run, tmp_path, capsys):
    # in-process (the subprocess tests above cover how `python -m colorgan` passes the status on)
    missing = tmp_path / "no_such_model"
    out_dir = tmp_path / "colorized"
    status = main(["colorize", str(first_run["good"][0]), "-o", str(out_dir), "--model", str(missing)])
    stderr = capsys.readouterr().err
    assert status == 2
    assert_one_line(stderr)
    assert stderr.startswith("error:") and str(missing) in stderr
    assert not out_dir.exists() or not any(out_dir.iterdir())


# ----------------------------------------------------------------------------- hints
def two_region_file(folder: Path) -> Path:
    """A 240x160 gray photo: light left half, dark right half."""
    image = Image.new("L", (240, 160), 170)
    image.paste(80, (120, 0, 240, 160))
    path = folder / "regions.png"
    image.save(path)
    return path


def left_right_blue(path: Path) -> tuple[float, float]:
    """Mean b* (negative = blue) of the left and right halves, away from the edge."""
    import torch

    from colorgan.color import rgb_to_lab

    rgb = torch.from_numpy(__import__("numpy").asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)[None]
    b = rgb_to_lab(rgb)[0, 2]
    return b[:, :100].mean().item(), b[:, 140:].mean().item()


@pytest.mark.parametrize("kind", ["points", "layer"])
def test_hints_from_the_command_line_colour_their_region(tiny_model_dir, tmp_path, kind):
    source = two_region_file(tmp_path)
    plain_dir, hinted_dir = tmp_path / "plain", tmp_path / "hinted"
    assert main(["colorize", str(source), "-o", str(plain_dir), "--model", str(tiny_model_dir)]) == 0
    if kind == "points":
        hint_args = ["--hint", "30,80,#2050ff", "--hint", "60,20,#2050ff"]
    else:
        layer = Image.new("RGBA", (240, 160), (0, 0, 0, 0))
        layer.paste((32, 80, 255, 255), (40, 70, 70, 90))
        layer.save(tmp_path / "hints.png")
        hint_args = ["--hints", str(tmp_path / "hints.png")]
    assert main(["colorize", str(source), "-o", str(hinted_dir), *hint_args, "--model", str(tiny_model_dir)]) == 0
    plain_left, plain_right = left_right_blue(expected_output(source, plain_dir))
    left, right = left_right_blue(expected_output(source, hinted_dir))
    assert left < plain_left - 20, "the hinted (left) region turns blue"
    assert abs(right - plain_right) < 3, "the other region does not"


@pytest.mark.parametrize(
    "hint_args, message",
    [
        (["--hint", "30,80,blue"], "X,Y,#RRGGBB"),
        (["--hint", "30,80"], "X,Y,#RRGGBB"),
        (["--hint", "nan,80,#2050ff"], "finite"),
        (["--hint", "999,80,#2050ff"], "outside"),
        (["--hints", "missing.png"], "no such file"),
        (["--hints", "rgb.png"], "RGBA"),
        (["--hints", "small.png"], "hint layer is 10x10"),
        (["--hints", "small.png", "--hint", "1,1,#000000"], "not both"),
    ],
)
def test_bad_hints_are_refused_and_nothing_is_written(tiny_model_dir, tmp_path, capsys, hint_args, message):
    source = two_region_file(tmp_path)
    Image.new("RGB", (240, 160), "red").save(tmp_path / "rgb.png")
    Image.new("RGBA", (10, 10)).save(tmp_path / "small.png")
    out_dir = tmp_path / "out"
    hint_args = [str(tmp_path / arg) if arg.endswith(".png") else arg for arg in hint_args]
    try:
        status = main(["colorize", str(source), "-o", str(out_dir), *hint_args, "--model", str(tiny_model_dir)])
    except SystemExit as exit:  # argparse refuses malformed --hint values itself
        status = exit.code
    stderr = capsys.readouterr().err
    assert status != 0
    assert message in stderr, stderr
    assert_one_line([line for line in stderr.splitlines() if "error" in line][-1])
    assert not expected_output(source, out_dir).exists()
