"""Hostile input, round two (issue 21): each attack gets a one-line error naming the file, quickly,
within bounded memory, and leaves no file behind.

Cases where memory is at stake run in their own process (`run_child`), which reports its peak RSS
and the time from the start of the offending call to its end.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from colorgan.cli import main
from conftest import REPO, TINY_GENERATOR, assert_one_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_RSS_BYTES = 1.5e9
MAX_SECONDS = 2.0
CHILD_PRELUDE = """
import atexit, sys, time
def _report():
    # VmHWM is this process image's own peak; getrusage's ru_maxrss keeps that of the forking parent
    # (pytest) across exec, which would measure the parent instead
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print("MAXRSS", kib * 1024, file=sys.stderr)
atexit.register(_report)
def timed(call, *args, **kwargs):
    started = time.perf_counter()
    try:
        return call(*args, **kwargs)
    finally:
        print("ELAPSED", time.perf_counter() - started, file=sys.stderr)
"""


def run_child(code: str, cwd: Path, timeout: float = 300) -> tuple[int, str, float, float]:
    """Run `code` (with `timed`) in a fresh Python -> (exit status, its error lines, peak RSS bytes, timed seconds)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code)],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout,
    )
    lines = done.stderr.splitlines()
    rss = float(next(line.split()[1] for line in lines if line.startswith("MAXRSS")))
    elapsed = [float(line.split()[1]) for line in lines if line.startswith("ELAPSED")]
    errors = [line for line in lines if not line.startswith(("MAXRSS", "ELAPSED"))]
    return done.returncode, "\n".join(errors), rss, max(elapsed, default=0.0)


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*"))


@pytest.fixture(scope="module")
def colorizer(tiny_model_dir):
    from colorgan import Colorizer

    return Colorizer.from_pretrained(tiny_model_dir, device="cpu")


def gray_frames(count: int, size=(64, 48)) -> list[np.ndarray]:
    return [np.full((size[1], size[0], 3), 40 + (index * 7) % 180, np.uint8) for index in range(count)]


def write_clip(path: Path, frames: list[np.ndarray], time_base: Fraction, step: int, codec="libx264") -> Path:
    """A clip whose frames are `step` ticks of `time_base` apart."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=int(round(1 / (time_base * step))) or 1)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index * step, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def growing_frames_mov(path: Path, side: int = 10000) -> Path:
    """A small .mov whose header and first frames say 64x48, and whose later frames are side x side."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        for index, rgb in enumerate(gray_frames(5)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        encoded = io.BytesIO()
        Image.new("L", (side, side)).save(encoded, "PNG", compress_level=1)
        for index in range(5, 8):
            packet = av.Packet(encoded.getvalue())
            packet.stream, packet.time_base = stream, stream.time_base
            packet.pts = packet.dts = index * int(1 / (25 * stream.time_base))
            container.mux(packet)
    return path


# ----------------------------------------------------------------------------- 1. video memory
def test_video_whose_later_frames_outgrow_the_header_is_stopped_at_that_frame(tiny_model_dir, tmp_path):
    growing_frames_mov(tmp_path / "grow.mov")
    status, errors, rss, seconds = run_child(
        f"""
        from colorgan.cli import main
        from colorgan.webapp import colorize_clip
        from colorgan import Colorizer
        from colorgan.video import VideoError, colorize_video
        colorizer = Colorizer.from_pretrained({str(tiny_model_dir)!r}, device="cpu")
        for run in (lambda: colorize_clip(colorizer, "grow.mov", "app-out"),  # timed once the model is loaded
                    lambda: colorize_video(colorizer, "grow.mov", "lib.mp4", progress=False)):
            try:
                timed(run)
            except VideoError as error:
                print("APP", error, file=sys.stderr)
        sys.exit(main(["colorize-video", "grow.mov", "-o", "out.mp4", "--model", {str(tiny_model_dir)!r}, "--quiet"]))
        """,
        tmp_path,
    )
    assert status == 1, errors
    cli_error = next(line for line in errors.splitlines() if line.startswith("error:"))
    app_errors = [line for line in errors.splitlines() if line.startswith("APP")]
    assert len(app_errors) == 2, errors
    for message in (cli_error, *app_errors):
        assert "grow.mov" in message and "frame 5" in message, errors
    assert rss < MAX_RSS_BYTES and seconds < MAX_SECONDS, (rss, seconds)
    assert files_in(tmp_path) == ["app-out", "grow.mov"]  # the app's folder, with nothing in it


def test_frame_budget_refuses_a_frame_of_another_size_before_conversion():
    from colorgan.video import FrameBudget, VideoError, VideoLimits

    class Stream:
        width, height, time_base = 64, 48, Fraction(1, 25)

    class Frame:
        def __init__(self, width, height, pts):
            self.width, self.height, self.pts = width, height, pts

    budget = FrameBudget(VideoLimits(max_frames=3), "clip.mkv", Stream())
    budget.admit(Frame(64, 48, 0))
    with pytest.raises(VideoError, match=r"clip.mkv: frame 1 is 16000x16000 but the header says 64x48"):
        budget.admit(Frame(16000, 16000, 1))
    budget = FrameBudget(VideoLimits(max_pixel_frames=64 * 48 * 2), "clip.mkv", Stream())
    budget.admit(Frame(64, 48, 0))
    budget.admit(Frame(64, 48, 1))
    with pytest.raises(VideoError, match="pixels x frames"):
        budget.admit(Frame(64, 48, 2))


# ----------------------------------------------------------------------------- 2. app video limits
def test_app_refuses_a_one_second_clip_of_1000_frames_early(colorizer, tmp_path):
    from colorgan.video import VideoError
    from colorgan.webapp import colorize_clip

    clip = write_clip(tmp_path / "dense.mkv", gray_frames(1000), Fraction(1, 1000), 1)
    started = time.perf_counter()
    with pytest.raises(VideoError, match="frames per second") as caught:
        colorize_clip(colorizer, clip, tmp_path / "out")
    assert time.perf_counter() - started < 10  # ~60 tiny frames, not 1000
    assert_one_line(str(caught.value))
    assert "dense.mkv" in str(caught.value) and files_in(tmp_path / "out") == []


def test_app_refuses_a_clip_whose_duration_tag_understates_it(colorizer, tmp_path):
    from colorgan.video import VideoError, probe
    from colorgan.webapp import colorize_clip

    clip = write_clip(tmp_path / "long.mkv", gray_frames(150), Fraction(1, 1000), 40)  # 6 s at 25 fps
    data = clip.read_bytes()
    declared = re.search(rb"00:00:0\d\.\d+", data).group()
    clip.write_bytes(data.replace(declared, b"00:00:01." + b"0" * (len(declared) - 9)))  # the tag says 1 s
    assert probe(clip).duration == pytest.approx(1.0)
    with pytest.raises(VideoError, match=r"long.mkv: runs past 2 s") as caught:
        colorize_clip(colorizer, clip, tmp_path / "out", max_seconds=2)
    assert_one_line(str(caught.value))
    assert files_in(tmp_path / "out") == []


# ----------------------------------------------------------------------------- 3. NaN
def nan_tiff(path: Path) -> Path:
    values = np.full((48, 64), 0.5, np.float32)
    values[10, 10] = np.nan
    Image.fromarray(values, mode="F").save(path)
    return path


def test_nan_tiff_in_a_cli_batch_fails_alone(tiny_model_dir, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "c.png"):
        Image.new("L", (64, 48), 120).save(inputs / name)
    nan_tiff(inputs / "b.tif")
    assert main(["colorize", str(inputs), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]) == 1
    assert files_in(tmp_path / "out") == ["a_color.png", "c_color.png"]
    error = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("error:"))
    assert "b.tif" in error and "NaN" in error


def test_nan_tiff_is_skipped_by_eval_and_the_means_stay_finite(tmp_path):
    from colorgan.evaluation.photos import evaluate

    Image.new("RGB", (64, 48), (120, 60, 30)).save(tmp_path / "a.png")
    nan_tiff(tmp_path / "b.tif")
    report = evaluate(None, tmp_path, baseline="gray")
    assert [name for name, _ in report.skipped] == ["b.tif"] and "NaN" in report.skipped[0][1]
    assert all(np.isfinite(value) for value in report.means().values())


def test_nan_weights_are_refused_at_load(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from colorgan import Colorizer
    from colorgan.checkpoint import CheckpointError

    folder = tmp_path / "nan_model"
    folder.mkdir()
    (folder / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())
    tensors = load_file(tiny_model_dir / "model.safetensors")
    name = next(key for key, value in tensors.items() if value.is_floating_point())
    tensors[name][0] = float("nan")
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="NaN") as caught:
        Colorizer.from_pretrained(folder, device="cpu")
    assert_one_line(str(caught.value))
    assert "model.safetensors" in str(caught.value) and name in str(caught.value)


def test_nan_model_output_is_an_error_before_the_colour_maths(colorizer, monkeypatch):
    from colorgan.pipeline import ModelOutputError

    monkeypatch.setattr(colorizer.generator, "forward", lambda x: torch.full((x.shape[0], 2, *x.shape[-2:]), float("nan")))
    with pytest.raises(ModelOutputError, match="NaN") as caught:
        colorizer(Image.new("L", (64, 48), 100))
    assert_one_line(str(caught.value))


# ----------------------------------------------------------------------------- 4. ONNX
def onnx_bomb(path: Path) -> Path:
    """A few hundred bytes: ConstantOfShape of a 2.8 GB float tensor, added to a (B, 2, H, W) slice of the input."""
    import onnx
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 2, 19000, 19000])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"]),
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["two"]),
        helper.make_node("Add", ["two", "big"], ["ab"]),
    ]
    graph = helper.make_graph(
        nodes, "bomb",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 4, "H", "W"])],
        [helper.make_tensor_value_info("ab", TensorProto.FLOAT, ["B", 2, "H", "W"])],
        [shape, helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
         helper.make_tensor("ends", TensorProto.INT64, [1], [2]), helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def resize_bomb(path: Path) -> Path:
    """Allowed operators only, but a Resize by 1000x: refused from its inferred shapes."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["two"]),
        helper.make_node("Resize", ["two", "", "scales"], ["ab"], mode="nearest"),
    ]
    graph = helper.make_graph(
        nodes, "resize_bomb",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 4, "H", "W"])],
        [helper.make_tensor_value_info("ab", TensorProto.FLOAT, ["B", 2, "H2", "W2"])],
        [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 1000, 1000]),
         helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
         helper.make_tensor("ends", TensorProto.INT64, [1], [2]), helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def model_folder_with(tiny_model_dir: Path, folder: Path, files: dict[str, Path]) -> Path:
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((tiny_model_dir / name).read_bytes())
    for name, source in files.items():
        (folder / name).write_bytes(source.read_bytes())
    return folder


@pytest.mark.parametrize("make_bomb, words", [(onnx_bomb, "ConstantOfShape is not allowed"), (resize_bomb, "elements")])
def test_onnx_bombs_are_refused_before_running(tiny_model_dir, tmp_path, make_bomb, words):
    bomb = make_bomb(tmp_path / "bomb.onnx")
    assert bomb.stat().st_size < 1000
    folder = model_folder_with(tiny_model_dir, tmp_path / "model", {"model.onnx": bomb})
    status, errors, rss, seconds = run_child(
        f"""
        import onnx, onnxruntime  # imported first: the clock measures loading the graph, not the libraries
        from colorgan import Colorizer
        from colorgan.checkpoint import CheckpointError
        try:
            timed(Colorizer.from_pretrained, {str(folder)!r}, backend="onnx")
        except CheckpointError as error:
            sys.exit(f"error: {{error}}")
        """,
        tmp_path,
    )
    assert status == 1 and words in errors and "model.onnx" in errors, errors
    assert_one_line(errors)
    assert rss < MAX_RSS_BYTES and seconds < MAX_SECONDS, (rss, seconds)


@pytest.fixture(scope="module")
def other_models_onnx(tmp_path_factory) -> Path:
    """A valid colorgan graph of another model (other random weights)."""
    from colorgan import UNetGenerator
    from colorgan.onnx_export import export_onnx

    torch.manual_seed(1)
    return export_onnx(UNetGenerator(**TINY_GENERATOR).eval(), tmp_path_factory.mktemp("other") / "model.onnx")


def test_a_shipped_graph_of_another_model_is_refused(tiny_model_dir, tmp_path, other_models_onnx):
    from colorgan import Colorizer
    from colorgan.checkpoint import CheckpointError

    folder = model_folder_with(tiny_model_dir, tmp_path / "model", {"model.onnx": other_models_onnx})
    with pytest.raises(CheckpointError, match="does not match the model's weights") as caught:
        Colorizer.from_pretrained(folder, backend="onnx")
    assert_one_line(str(caught.value))


def test_the_app_skips_a_wrong_int8_graph_and_says_so(tiny_model_dir, tmp_path, other_models_onnx):
    from colorgan.webapp import load_fastest_colorizer

    folder = model_folder_with(tiny_model_dir, tmp_path / "model", {"model_int8.onnx": other_models_onnx})
    lines = []
    colorizer = load_fastest_colorizer(str(folder), device="cpu", log=lines.append)
    assert colorizer.backend != "onnx-int8"
    assert any("no onnx-int8 backend" in line and "does not match" in line for line in lines), lines


def test_a_replaced_cached_export_is_exported_again(tiny_model_dir, tmp_path, other_models_onnx, monkeypatch):
    from colorgan import Colorizer, onnx_runtime

    monkeypatch.setattr(onnx_runtime, "onnx_cache_root", lambda: tmp_path / "cache")
    first = Colorizer.from_pretrained(tiny_model_dir, backend="onnx")
    cached = first.onnx_generator.path
    cached.write_bytes(other_models_onnx.read_bytes())  # another valid graph under the cache's name
    second = Colorizer.from_pretrained(tiny_model_dir, backend="onnx")
    assert second.onnx_generator.path == cached and cached.read_bytes() != other_models_onnx.read_bytes()
    photo = Image.new("L", (64, 48), 90)
    torch_output = np.asarray(Colorizer.from_pretrained(tiny_model_dir, device="cpu")(photo), dtype=int)
    assert np.abs(np.asarray(second(photo), dtype=int) - torch_output).max() <= 2


# ----------------------------------------------------------------------------- 5. the app's editor
def test_editor_refuses_a_169_mp_upload_from_its_header(tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("L", (13000, 13000)).save(huge, compress_level=1)
    status, errors, rss, seconds = run_child(
        f"""
        import gradio as gr
        from gradio.data_classes import FileData
        from gradio.components.image_editor import EditorData
        from colorgan.app_editor import HeaderCheckedImageEditor
        editor = HeaderCheckedImageEditor()
        payload = EditorData(background=FileData(path={str(huge)!r}, orig_name="huge.png"), layers=[])
        try:
            timed(editor.preprocess, payload)
        except gr.Error as error:
            sys.exit(f"error: {{error.message}}")
        """,
        tmp_path,
    )
    assert status == 1 and "huge.png" in errors and "MP limit" in errors and str(tmp_path) not in errors, errors
    assert_one_line(errors)
    assert rss < MAX_RSS_BYTES and seconds < MAX_SECONDS, (rss, seconds)


def test_editor_hands_over_paths_that_the_app_colorizes(colorizer, tmp_path):
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    from colorgan.app_editor import HeaderCheckedImageEditor
    from colorgan.webapp import colorize_photo, split_editor_value

    Image.new("L", (64, 48), 100).save(tmp_path / "photo.png")
    layer = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    layer.paste((200, 30, 30, 255), (10, 10, 20, 20))
    layer.save(tmp_path / "layer.png")
    value = HeaderCheckedImageEditor().preprocess(
        EditorData(background=FileData(path=str(tmp_path / "photo.png")), layers=[FileData(path=str(tmp_path / "layer.png"))])
    )
    assert value["background"] == str(tmp_path / "photo.png") and value["composite"] is None
    photo, hints = split_editor_value(value)
    assert photo.size == (64, 48) and hints.getpixel((15, 15)) == (200, 30, 30, 255)
    assert colorize_photo(colorizer, photo, hints).size == (64, 48)


# ----------------------------------------------------------------------------- 6. JSON
def deep_list(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "config, words",
    [
        ('{"encoder_name": ' + deep_list(100_000) + "}", "nested deeper"),
        ('{"render_size": 1' + "0" * 100_000 + "}", "digits"),
    ],
    ids=["nested", "digits"],
)
def test_hostile_config_json_gets_one_line(tiny_model_dir, tmp_path, config, words):
    from colorgan import Colorizer
    from colorgan.checkpoint import CheckpointError

    folder = model_folder_with(tiny_model_dir, tmp_path / "model", {})
    (folder / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match=words) as caught:
        Colorizer.from_pretrained(folder)
    assert_one_line(str(caught.value))
    assert "config.json" in str(caught.value)


def test_hostile_safetensors_header_gets_one_line(tmp_path):
    from colorgan.checkpoint import CheckpointError, read_safetensors_header

    header = ('{"a": ' + deep_list(100_000) + "}").encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match="nested deeper") as caught:
        read_safetensors_header(str(path))
    assert_one_line(str(caught.value))
    assert "model.safetensors" in str(caught.value)


# ----------------------------------------------------------------------------- 7. nothing left behind
def test_sigterm_during_a_video_leaves_no_partial_file(tiny_model_dir, tmp_path):
    write_clip(tmp_path / "clip.mp4", gray_frames(3000, (320, 240)), Fraction(1, 25), 1)
    (tmp_path / "out").mkdir()
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "colorgan", "colorize-video", "clip.mp4", "-o", "out/colour.mp4",
               "--model", str(tiny_model_dir), "--quiet"]
    child = subprocess.Popen(command, cwd=tmp_path, env=environment, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("out/.*partial*")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
    assert list(tmp_path.glob("out/.*partial*")), "the writer never started"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == -signal.SIGTERM
    assert files_in(tmp_path) == ["clip.mp4", "out"]  # no partial file in out/


def test_output_folder_is_not_made_when_every_input_fails(tiny_model_dir, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    assert main(["colorize", str(tmp_path / "notes.png"), "-o", str(tmp_path / "new" / "folder"),
                 "--model", str(tiny_model_dir)]) == 1
    assert not (tmp_path / "new").exists()


# ----------------------------------------------------------------------------- 8. clear errors, before the work
def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("where, words", [("file", "is a file, not a folder"), ("/proc", "cannot write there")])
def test_unusable_output_folder_is_refused_before_loading(tmp_path, capsys, where, words):
    Image.new("L", (16, 16)).save(tmp_path / "a.png")
    (tmp_path / "file").write_text("x")
    output = str(tmp_path / "file") if where == "file" else "/proc/colorgan-out"
    assert main(["colorize", str(tmp_path / "a.png"), "-o", output, "--model", str(tmp_path / "no-model")]) == 2
    message = error_line(capsys)
    assert output in message and words in message


def test_video_destinations_are_checked_before_the_work(colorizer, tmp_path, capsys):
    from colorgan.imaging import OutputError
    from colorgan.video import colorize_video

    clip = write_clip(tmp_path / "clip.mp4", gray_frames(4), Fraction(1, 25), 1)
    (tmp_path / "x.mp4").mkdir()
    started = time.perf_counter()
    assert main(["colorize-video", str(clip), "-o", str(tmp_path / "x.mp4"), "--model", str(tmp_path / "none")]) == 2
    assert "is a folder" in error_line(capsys) and time.perf_counter() - started < MAX_SECONDS
    assert main(["colorize-video", str(clip), "-o", str(clip), "--overwrite", "--model", str(tmp_path / "none")]) == 2
    assert "is the input itself" in error_line(capsys)
    before = clip.read_bytes()
    with pytest.raises(OutputError, match="is the input itself"):
        colorize_video(colorizer, clip, clip, overwrite=True, progress=False)
    (tmp_path / "done.mp4").write_bytes(b"keep")
    with pytest.raises(OutputError, match="exists"):
        colorize_video(colorizer, clip, tmp_path / "done.mp4", progress=False)
    assert clip.read_bytes() == before and (tmp_path / "done.mp4").read_bytes() == b"keep"
    colorize_video(colorizer, clip, tmp_path / "done.mp4", overwrite=True, progress=False)
    assert (tmp_path / "done.mp4").stat().st_size > 4


# ----------------------------------------------------------------------------- 9. hints
@pytest.mark.parametrize(
    "point, words",
    [
        ((10, 10, (10, 10, "255")), "hint colour"),
        ((10, 10, "255"), "hint colour"),
        ((10**400, 10, (1, 2, 3)), "finite numbers"),
        (("10", 10, (1, 2, 3)), "finite numbers"),
        ((10, 10, (True, 0, 0)), "hint colour"),
    ],
)
def test_hint_points_are_read_strictly(colorizer, point, words):
    with pytest.raises(ValueError, match=words) as caught:
        colorizer(Image.new("L", (64, 48)), hints=[point])
    assert_one_line(str(caught.value))


def test_hint_points_are_capped(colorizer):
    from colorgan.limits import HINT_POINTS

    points = [(1, 1, (200, 0, 0))] * (int(HINT_POINTS.high) + 1)
    started = time.perf_counter()
    with pytest.raises(ValueError, match="more than the 10,000 allowed"):
        colorizer(Image.new("L", (64, 48)), hints=points)
    assert time.perf_counter() - started < MAX_SECONDS


# ----------------------------------------------------------------------------- 10. many hints on the command line
def test_30000_hint_flags_are_refused_at_once(tmp_path, capsys):
    argv = ["colorize", "a.png"] + [word for index in range(30_000) for word in ("--hint", f"{index % 60},1,#ff0000")]
    started = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - started < MAX_SECONDS
    assert "--hints-file" in error_line(capsys)


def test_hints_file_gives_points_and_names_a_bad_line(tiny_model_dir, tmp_path, capsys):
    Image.new("L", (64, 48), 100).save(tmp_path / "a.png")
    points = tmp_path / "points.csv"
    points.write_text("x,y,color\n" + "".join(f"{index % 64},{index % 48},#c8312f\n" for index in range(5000)))
    assert main(["colorize", str(tmp_path / "a.png"), "--hints-file", str(points), "--model", str(tiny_model_dir)]) == 0
    assert (tmp_path / "a_color.png").is_file()
    points.write_text("1,2,#c8312f\n3,4,red\n")
    assert main(["colorize", str(tmp_path / "a.png"), "--hints-file", str(points), "--overwrite",
                 "--model", str(tiny_model_dir)]) == 2
    assert f"{points} line 2" in error_line(capsys)
