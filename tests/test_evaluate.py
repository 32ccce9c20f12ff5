"""`colorgan eval` end to end on a few real photos (downscaled) with a tiny random model."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import assert_one_line, val_photo_paths
from PIL import Image
from skimage.color import lab2rgb, rgb2lab
from skimage.metrics import peak_signal_noise_ratio

import colorgan.pipeline
from colorgan import Colorizer
from colorgan.cli import main
from colorgan.evaluation.photos import GRID_LABEL_HEIGHT, GRID_PAD, THUMB_HEIGHT, evaluate, write_report
from colorgan.hints import sample_hints
from colorgan.imaging import ImageError
from hub_card import Evaluation

PHOTO_COUNT = 4
SHORT_SIDE = 96  # the photos are downscaled to keep the tests fast
RENDER_SIZE = 64


@pytest.fixture(scope="module")
def small_photos(photos_dir, tmp_path_factory):
    """A folder of 4 real photos with a short side of 96 px (PNG, so nothing is lost in re-encoding)."""
    folder = tmp_path_factory.mktemp("small_photos")
    for path in val_photo_paths(photos_dir, PHOTO_COUNT):
        image = Image.open(path).convert("RGB")
        scale = SHORT_SIDE / min(image.size)
        image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS).save(
            folder / f"{path.stem}.png"
        )
    return folder


@pytest.fixture(scope="module")
def tiny_colorizer(tiny_model_dir):
    return Colorizer.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture
def hint_spy(monkeypatch):
    """Records the hint points the Colorizer turns into generator input, one list per image."""
    calls = []
    original = colorgan.pipeline.points_to_hints

    def spy(points, image_size, render_size, *args, **kwargs):
        calls.append([tuple(point) for point in points])
        return original(points, image_size, render_size, *args, **kwargs)

    monkeypatch.setattr(colorgan.pipeline, "points_to_hints", spy)
    return calls


def test_report_has_a_row_per_image_a_totals_row_and_a_grid(tiny_colorizer, small_photos, tmp_path):
    report = evaluate(tiny_colorizer, small_photos, render_size=RENDER_SIZE, model_name="tiny-model")
    names = sorted(p.name for p in small_photos.iterdir())
    assert [row.name for row in report.rows] == names and not report.skipped
    for row in report.rows:
        assert 5 < row.psnr < 60 and -1 <= row.ssim <= 1 and 0 <= row.ab_auc <= 1
        assert row.colorfulness_gap == pytest.approx(abs(row.colorfulness - row.colorfulness_truth))
    means = report.means()
    assert means["psnr"] == pytest.approx(np.mean([row.psnr for row in report.rows]))

    write_report(report, tmp_path / "report.md", tmp_path / "grid.png")
    markdown = (tmp_path / "report.md").read_text()
    for expected in ("tiny-model", str(small_photos), f"{PHOTO_COUNT} images", "hints", f"{RENDER_SIZE} px"):
        assert expected in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ") and ".png" in line]
    assert len(table) == PHOTO_COUNT
    totals = [line for line in markdown.splitlines() if line.startswith(f"| **mean of {PHOTO_COUNT}**")]
    assert len(totals) == 1 and f"**{means['psnr']:.2f}**" in totals[0]
    assert "](grid.png)" in markdown

    grid = Image.open(tmp_path / "grid.png")
    photos = [Image.open(small_photos / name).convert("RGB") for name in names]
    thumbnail_widths = [round(photo.width * THUMB_HEIGHT / photo.height) for photo in photos]
    widest = max(thumbnail_widths)
    columns = 3  # gray input | colorized | ground truth
    assert grid.size == (
        GRID_PAD + columns * (widest + GRID_PAD),
        GRID_LABEL_HEIGHT + PHOTO_COUNT * (GRID_LABEL_HEIGHT + THUMB_HEIGHT + GRID_PAD),
    )
    # first row: the gray input is gray, the ground truth is the photo itself
    top = 2 * GRID_LABEL_HEIGHT
    lefts = [GRID_PAD + column * (widest + GRID_PAD) for column in range(3)]
    cells = [grid.crop((left, top, left + widest, top + THUMB_HEIGHT)) for left in lefts]
    gray_cell = np.asarray(cells[0], dtype=np.int16)
    assert np.abs(gray_cell - gray_cell[..., :1]).max() <= 1
    expected = np.asarray(photos[0].resize((thumbnail_widths[0], THUMB_HEIGHT)), dtype=np.float32)
    left = (widest - expected.shape[1]) // 2
    truth_cell = np.asarray(cells[2], dtype=np.float32)[:, left : left + expected.shape[1]]
    assert np.abs(truth_cell - expected).mean() < 3


def test_gray_baseline_scores_the_grayscale_photo(small_photos):
    report = evaluate(None, small_photos, baseline="gray")
    assert report.label == "gray baseline" and len(report.rows) == PHOTO_COUNT
    for row in report.rows:
        truth = np.asarray(Image.open(small_photos / row.name).convert("RGB"))
        # independent reference: skimage's L* of the photo with a* = b* = 0, as 8-bit gray
        lab = rgb2lab(truth)
        lab[..., 1:] = 0
        gray = np.round(lab2rgb(lab).mean(axis=2, keepdims=True).repeat(3, axis=2) * 255).astype(np.uint8)
        assert row.colorfulness == pytest.approx(0.0, abs=1e-4)
        assert row.colorfulness_gap == pytest.approx(row.colorfulness_truth, rel=1e-6)
        assert row.psnr == pytest.approx(peak_signal_noise_ratio(truth, gray, data_range=255), abs=0.02)
        assert 0.5 < row.ab_auc < 1.0


def test_hints_are_seeded_sampled_from_the_truth_and_reach_the_colorizer(tiny_colorizer, small_photos, hint_spy):
    without = evaluate(tiny_colorizer, small_photos, render_size=RENDER_SIZE, limit=2)
    assert hint_spy == []  # no hints: the Colorizer gets none
    first = evaluate(tiny_colorizer, small_photos, hints=5, render_size=RENDER_SIZE, seed=0)
    seen_first = list(hint_spy)
    assert len(seen_first) == PHOTO_COUNT and all(len(points) == 5 for points in seen_first)
    assert first.hints == 5 and "+ 5 hints" in first.label
    # the same seed gives the same hints, also to an image evaluated in a subset of the folder
    hint_spy.clear()
    again = evaluate(tiny_colorizer, small_photos, hints=5, render_size=RENDER_SIZE, seed=0, limit=2)
    assert hint_spy == seen_first[:2] and [r.psnr for r in again.rows] == [r.psnr for r in first.rows[:2]]
    hint_spy.clear()
    evaluate(tiny_colorizer, small_photos, hints=5, render_size=RENDER_SIZE, seed=1, limit=2)
    assert hint_spy != seen_first[:2]
    # the hints change the model's output
    assert [r.ab_auc for r in first.rows[:2]] != [r.ab_auc for r in without.rows]


def test_hint_colours_are_the_ground_truth_around_the_point(small_photos):
    path = sorted(small_photos.iterdir())[0]
    truth = np.asarray(Image.open(path).convert("RGB"))
    tensor = torch.from_numpy(truth.copy()).permute(2, 0, 1)[None].float() / 255
    points = sample_hints(tensor, 20, torch.Generator().manual_seed(0), radius=1)
    assert len(points) == 20 and len({(p.x, p.y) for p in points}) > 15
    for point in points:
        column, row = int(point.x), int(point.y)
        assert 0 <= column < truth.shape[1] and 0 <= row < truth.shape[0]
        patch = truth[max(row - 1, 0) : row + 2, max(column - 1, 0) : column + 2].reshape(-1, 3)
        np.testing.assert_allclose(point.color, patch.mean(axis=0), atol=0.51)


def test_corrupt_image_is_reported_and_skipped(small_photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(small_photos.iterdir())[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    report = evaluate(None, folder, baseline="gray")
    assert len(report.rows) == 2
    assert [name for name, _ in report.skipped] == ["broken.jpg"]
    assert_one_line(report.skipped[0][1])
    write_report(report, tmp_path / "report.md")
    assert "broken.jpg" in (tmp_path / "report.md").read_text()


def test_missing_folder_and_empty_folder_raise(tmp_path):
    with pytest.raises(ImageError, match="no such folder"):
        evaluate(None, tmp_path / "nowhere", baseline="gray")
    (tmp_path / "notes.txt").write_text("not a photo")
    with pytest.raises(ImageError, match="no images"):
        evaluate(None, tmp_path, baseline="gray")


def test_several_runs_share_one_report_and_grid(tiny_colorizer, small_photos, tmp_path):
    runs = [
        evaluate(None, small_photos, baseline="gray", limit=2),
        evaluate(tiny_colorizer, small_photos, render_size=RENDER_SIZE, model_name="runs/gan", limit=2),
        evaluate(tiny_colorizer, small_photos, hints=10, render_size=RENDER_SIZE, model_name="runs/gan", limit=2),
    ]
    write_report(runs, tmp_path / "report.md", tmp_path / "grid.png")
    markdown = (tmp_path / "report.md").read_text()
    summary = markdown.split("## Summary (means)")[1].split("\n\n")[1].splitlines()
    assert [line.split(" | ")[0] for line in summary[2:]] == ["| gray baseline", "| gan", "| gan + 10 hints"]
    grid = Image.open(tmp_path / "grid.png")
    # gray input | gan | gan + 10 hints | ground truth: the baseline adds no column
    assert grid.height == GRID_LABEL_HEIGHT + 2 * (GRID_LABEL_HEIGHT + THUMB_HEIGHT + GRID_PAD)
    cell = (grid.width - GRID_PAD) / 4 - GRID_PAD
    assert cell == int(cell) and THUMB_HEIGHT <= cell <= 2 * THUMB_HEIGHT


# ----------------------------------------------------------------------------- command line
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "colorgan", "eval", *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_cli_writes_report_grid_and_summary_json(tiny_model_dir, small_photos, tmp_path):
    result = run_cli(
        "--model", tiny_model_dir, "--baseline", "gray", "--data", small_photos, "--limit", "2",
        "--render-size", RENDER_SIZE, "--device", "cpu", "--out", tmp_path / "eval" / "report.md",
        "--summary-json", tmp_path / "summary.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("gray baseline: 2 images, PSNR")
    assert lines[1].startswith(f"{tiny_model_dir.name}: 2 images")
    assert (tmp_path / "eval" / "report.md").is_file() and (tmp_path / "eval" / "report_grid.png").is_file()
    runs = json.loads((tmp_path / "summary.json").read_text())["runs"]
    assert [run["baseline"] for run in runs] == ["gray", None]
    for run in runs:
        assert run["images"] == 2 and set(run["means"]) >= {"psnr", "ssim", "ab_auc", "colorfulness_gap"}
    assert runs[0]["means"]["colorfulness"] == pytest.approx(0.0, abs=1e-4)
    evaluation = Evaluation(**runs[1]["evaluation"])  # ready for a model card's training facts
    assert evaluation.num_images == 2 and evaluation.metrics == runs[1]["means"] and evaluation.hints == 0


def test_cli_unloadable_model_is_a_one_line_error_with_exit_status_2(tiny_model_dir, small_photos, tmp_path):
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    result = run_cli("--model", broken, "--data", small_photos)
    assert result.returncode == 2
    assert_one_line(result.stderr)
    assert result.stderr.startswith("error: ") and "safetensors" in result.stderr


def test_cli_in_process_exit_codes(small_photos, tmp_path, capsys):
    assert main(["eval", "--baseline", "gray", "--data", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert_one_line(error)
    assert error.startswith("error: ") and "no such folder" in error
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--baseline", "gray", "--data", str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err
    (tmp_path / "all_broken").mkdir()
    (tmp_path / "all_broken" / "a.png").write_bytes(b"nope")
    assert main(["eval", "--baseline", "gray", "--data", str(tmp_path / "all_broken")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.png").write_bytes(b"nope")
    (tmp_path / "mixed" / "b.png").write_bytes((small_photos / sorted(os.listdir(small_photos))[0]).read_bytes())
    out = tmp_path / "mixed_report.md"
    assert main(["eval", "--baseline", "gray", "--data", str(tmp_path / "mixed"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "skipped a.png" in captured.err and "1 images, PSNR" in captured.out and "1 skipped" in captured.out
    assert out.is_file()


def test_far_from_hints_marks_pixels_16_px_away():
    from colorgan.evaluation.photos import far_from_hints
    from colorgan.hints import Hint

    far = far_from_hints(40, 60, [Hint(10.5, 20.5, (0, 0, 0))])
    assert not far[20, 10] and not far[20, 25] and far[20, 26] and far[3, 10] and not far[5, 10]
    assert far_from_hints(40, 60, []).all()


def test_cli_prints_the_psnr_versus_hints_curve(tiny_model_dir, small_photos, tmp_path, capsys):
    out = tmp_path / "report.md"
    args = ["eval", "--model", str(tiny_model_dir), "--data", str(small_photos), "--hints", "0", "1", "5"]
    assert main(args + ["--out", str(out), "--summary-json", str(tmp_path / "s.json")]) == 0
    printed = capsys.readouterr().out
    curve = printed[printed.index("PSNR versus hints") :].splitlines()
    rows = [line for line in curve if line.startswith("| ") and line.split("|")[2].strip().isdigit()]
    assert [row.split("|")[2].strip() for row in rows] == ["0", "1", "5"]
    zero, *hinted = rows
    assert zero.split("|")[4].strip() == "–"
    for row in hinted:  # ground-truth hints, spread over their regions, help even an untrained model
        delta, far_change = float(row.split("|")[4]), float(row.split("|")[5].strip().rstrip("%"))
        assert delta > 0 and far_change < 0, row
    assert zero.split("|")[6].strip() == "–" and zero.split("|")[7].strip() == "–"
    for row in hinted:  # the hints' effect: small-object leak (%) measured; these 96 px photos have no
        # smooth 32 px band (a flat L* profile) to measure stripes in, which the table says with a dash
        streaks, leak = row.split("|")[6].strip(), float(row.split("|")[7].strip().rstrip("%"))
        assert streaks == "–" and leak > 0, row
    assert "## PSNR versus hints" in out.read_text() and "Small-object leak" in out.read_text()
    runs = json.loads((tmp_path / "s.json").read_text())["runs"]
    assert runs[0]["far_ab_error_change"] is None and runs[2]["far_ab_error_change"] < 0
    assert runs[0]["streaks"] is None and runs[0]["small_object_leak"] is None
    assert runs[2]["small_object_leak"] > 0 and runs[2]["streaks"] is None


def test_hint_effect_measures_see_stripes_and_leaks_of_a_propagation():
    from colorgan.color import lab_to_rgb
    from colorgan.evaluation.photos import hint_effect_measures

    # a photo of a smooth sky over a field with bright 3 px posts; outputs as RGB from Lab
    lightness = torch.full((1, 1, 96, 160), 40.0)
    lightness[..., :48, :] = 80.0
    posts = (torch.arange(160) % 24 < 3)[None, :] & (torch.arange(96) >= 56)[:, None]
    lightness[0, 0][posts] = 85.0
    neutral = torch.zeros(1, 2, 96, 160)

    def as_rgb(ab: torch.Tensor) -> torch.Tensor:
        return lab_to_rgb(torch.cat([lightness, ab], dim=1)).clamp(0, 1)

    truth, plain = as_rgb(neutral), as_rgb(neutral)
    clean = neutral.clone()
    clean[:, 1, :48] = -20.0  # blue sky
    clean[:, 0, 48:] = -20.0  # green field ...
    clean[:, :, posts] = 0.0  # ... whose posts keep their colour
    streaked = clean.clone()
    streaked[:, 1, :48, ::8] -= 6.0  # columns through the sky
    leaked = clean.clone()
    leaked[:, 0, posts] = -20.0  # the posts turn green
    clean_streaks, (objects, ground) = hint_effect_measures(as_rgb(clean), plain, truth)
    assert clean_streaks < 0.2
    assert hint_effect_measures(as_rgb(streaked), plain, truth)[0] > clean_streaks + 0.5
    objects_leaked, ground_leaked = hint_effect_measures(as_rgb(leaked), plain, truth)[1]
    # the horizon's first rows count as objects in both (they change as the sky and field do)
    assert objects_leaked / ground_leaked > objects / ground + 0.3
