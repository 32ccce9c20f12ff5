"""The ONNX export and the ONNX Runtime backend: dynamic sizes, equality with torch, caching, bad files, push.

One export of the tiny model is shared by the session (the exporter takes ~10 s); tests that only
need "an export happened" copy it instead of exporting again. No test touches the network: Hub
calls go to the fake Hub of tests/hub_server.py.
"""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import onnx
import pytest
import onnxruntime as ort
import torch
from hub_server import WRITE_TOKEN
from PIL import Image
from timm.layers import Conv2dSame

import colorgan.hub
import colorgan.onnx_export as onnx_export
import colorgan.onnx_runtime as onnx_runtime
from colorgan import CheckpointError, Colorizer, UNetGenerator
from colorgan.checkpoint import ONNX_INT8_NAME, ONNX_NAME, STARTER_MODEL
from colorgan.cli import main as cli_main
from colorgan.hub import push_to_hub
from colorgan.onnx_export import ONNX_OPSET, calibration_inputs, export_form, export_int8, export_onnx
from colorgan.onnx_runtime import OnnxGenerator, load_onnx_generator
from conftest import TINY_GENERATOR, assert_one_line, val_photo_paths

pytestmark = pytest.mark.usefixtures("one_torch_thread", "fresh_onnx_cache")

ODD_SIZES = [(1, 1), (7, 5), (33, 17), (123, 301), (250, 97)]  # (width, height)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny generator exported once for the session."""
    generator = UNetGenerator.from_pretrained(tiny_model_dir)
    return export_onnx(generator, tmp_path_factory.mktemp("export") / ONNX_NAME)


@pytest.fixture
def fresh_onnx_cache(monkeypatch, tmp_path) -> Path:
    """Each test its own export cache (the session's HF_HOME is shared by all tests)."""
    root = tmp_path / "onnx-cache"
    monkeypatch.setattr(onnx_runtime, "onnx_cache_root", lambda: root)
    return root


@pytest.fixture
def model_folder(tmp_path, tiny_model_dir, tiny_onnx) -> Path:
    """A copy of the tiny model folder with its `model.onnx` beside the safetensors."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    shutil.copy(tiny_onnx, folder / ONNX_NAME)
    return folder


@pytest.fixture
def copy_instead_of_exporting(monkeypatch, tiny_onnx) -> list[Path]:
    """Make `export_onnx` copy the session's export (of the same weights); returns the paths it wrote."""
    written = []

    def fake_export(generator, destination, **kwargs):
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_onnx, destination)
        written.append(destination)
        return destination

    # the two places that export: loading with backend="onnx", and `colorgan push --onnx` (colorgan.hub)
    monkeypatch.setattr(onnx_runtime, "export_onnx", fake_export)
    monkeypatch.setattr(colorgan.hub, "export_onnx", fake_export)
    return written


def textured_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A gray photo with edges and noise, so colours vary across it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    gray = 128 + 90 * np.sin(x / 7.0) * np.cos(y / 5.0) + rng.normal(0, 20, (height, width))
    return Image.fromarray(gray.clip(0, 255).astype(np.uint8), "L")


def max_level_difference(first: Image.Image, second: Image.Image) -> int:
    return int(np.abs(np.asarray(first, dtype=int) - np.asarray(second, dtype=int)).max())


# ----------------------------------------------------------------------------- the graph
def test_export_has_dynamic_batch_height_width_and_the_chosen_opset(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(model)
    opsets = {entry.domain: entry.version for entry in model.opset_import}
    assert opsets[""] == ONNX_OPSET
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1] == 4
    assert all(dims[axis].dim_param and not dims[axis].dim_value for axis in (0, 2, 3)), dims


@pytest.mark.parametrize("shape", [(1, 64, 64), (2, 17, 33), (1, 1, 1), (3, 45, 31), (1, 96, 200)])
def test_onnx_matches_torch_in_model_space(tiny_model_dir, tiny_onnx, shape):
    batch, height, width = shape
    generator = UNetGenerator.from_pretrained(tiny_model_dir).eval()
    x = torch.randn(batch, 4, height, width, generator=torch.Generator().manual_seed(height * width))
    with torch.inference_mode():
        expected = generator(x)
    actual = OnnxGenerator(tiny_onnx)(x)
    assert actual.shape == expected.shape == (batch, 2, height, width)
    assert torch.isfinite(actual).all()
    assert (actual - expected).abs().max().item() <= 1e-3


def with_trained_batch_norm_statistics(generator: UNetGenerator, seed: int) -> UNetGenerator:
    """The generator with random BatchNorm affine parameters and running statistics, in eval mode.

    A freshly built model's BatchNorm is the identity in eval mode, so folding it into the
    convolutions would be tested on nothing.
    """
    random = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                shape = module.running_mean.shape
                module.running_mean.copy_(torch.randn(shape, generator=random) * 0.3)
                module.running_var.copy_(torch.rand(shape, generator=random) * 2 + 0.2)
                module.weight.copy_(torch.rand(shape, generator=random) + 0.5)
                module.bias.copy_(torch.randn(shape, generator=random) * 0.2)
    return generator.eval()


@pytest.mark.parametrize(
    "config",
    [
        dict(encoder_name="resnet18", decoder_channels=[32, 16, 16, 8, 8]),  # channels that fit no NCHWc block
        dict(encoder_name="regnetx_002", decoder_channels=[64, 32, 32, 16, 16], dropout_blocks=3),
        dict(encoder_name="mobilenetv3_small_050", decoder_channels=[24, 16, 16, 8, 8], dropout=0.0),
        # TensorFlow's padding, as the imported ImageNet encoder needs: made static for the export
        dict(encoder_name="mobilenetv2_050", decoder_channels=[24, 16, 16, 8, 8], encoder_pad_type="same"),
        # the hint summary joins each coarse level's skip
        dict(encoder_name="regnetx_002", decoder_channels=[24, 16, 16, 8, 8], decoder_hints=True),
        dict(encoder_name="regnetx_002", decoder_channels=[24, 16, 16, 8, 8], decoder_hints=True, hint_spread=2),
    ],
    ids=["resnet18", "regnetx_002", "mobilenetv3", "mobilenetv2-same", "decoder-hints", "hint-spread"],
)
@pytest.mark.parametrize("shape", [(1, 64, 64), (2, 37, 101), (1, 1, 1)])
@pytest.mark.parametrize("fp32_levels", [None, 1, 2], ids=["fp32-graph", "int8-base-1", "int8-base-2"])
def test_export_form_computes_what_the_generator_does(config, shape, fp32_levels):
    torch.manual_seed(0)
    generator = with_trained_batch_norm_statistics(UNetGenerator(**config), seed=len(config["encoder_name"]))
    rewritten = export_form(generator, fp32_levels)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in rewritten.decoder.modules())  # folded
    assert isinstance(generator.decoder[0].convs[0][1], torch.nn.BatchNorm2d)  # the original is left as it was
    assert not any(isinstance(m, Conv2dSame) for m in rewritten.modules())  # its padding depends on the size
    x = torch.randn(shape[0], 4, *shape[1:], generator=torch.Generator().manual_seed(1))
    x[:, 3] = (x[:, 3] > 1).float()  # hints as the generator gets them: a 0/1 mask, ab only under it
    x[:, 1:3] *= x[:, 3:]
    with torch.inference_mode():
        expected, actual = generator(x), rewritten(x)
    assert actual.shape == expected.shape == (shape[0], 2, *shape[1:])
    assert torch.isfinite(actual).all()
    assert (actual - expected).abs().max().item() <= 1e-5


def test_a_same_padded_encoder_exports_with_dynamic_sizes_and_matches_torch(tmp_path):
    """Exporting timm's size-dependent "same" padding as it is did not finish in 10 minutes.

    With decoder hints spread over neighbouring cells, so their summary runs in ONNX Runtime too.
    """
    torch.manual_seed(0)
    generator = UNetGenerator(
        "mobilenetv2_050", decoder_channels=[16, 8, 8, 8, 8], encoder_pad_type="same", decoder_hints=True,
        hint_spread=1,
    ).eval()
    session = ort.InferenceSession(str(export_onnx(generator, tmp_path / ONNX_NAME)))
    for shape in [(1, 4, 64, 64), (2, 4, 37, 101)]:
        x = torch.randn(*shape)
        x[:, 3] = (x[:, 3] > 1).float()  # a 0/1 mask on ~16 % of the pixels
        x[:, 1:3] *= x[:, 3:]
        with torch.no_grad():
            expected = generator(x).numpy()
        actual = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert actual.shape == expected.shape and np.abs(actual - expected).max() <= 1e-5


def test_exported_decoder_has_no_concat_and_upsamples_by_a_constant_scale(tiny_onnx):
    graph = onnx.load(str(tiny_onnx)).graph
    constants = {init.name for init in graph.initializer} | {
        output for node in graph.node if node.op_type == "Constant" for output in node.output
    }
    produced_by = {output: node.op_type for node in graph.node for output in node.output}
    resizes = [node for node in graph.node if node.op_type == "Resize"]
    assert len(resizes) == len(TINY_GENERATOR["decoder_channels"])  # one per decoder level
    for node in resizes:  # inputs: X, roi, scales[, sizes]; a computed size keeps ONNX Runtime's NCHWc kernel out
        assert node.input[2] in constants and (len(node.input) < 4 or not node.input[3]), node
    feature_concats = [
        node for node in graph.node if node.op_type == "Concat" and any(produced_by.get(i) == "Resize" for i in node.input)
    ]
    assert not feature_concats
    sums = [node for node in graph.node if node.op_type == "Sum"]
    assert sums and all(produced_by[i] == "Conv" for node in sums for i in node.input)
    # both inputs of each Sum carry one symbolic shape, so ONNX Runtime can fuse the Sum into a convolution
    shapes = {info.name: info.type.tensor_type.shape for info in graph.value_info}
    for node in sums:
        first, second = (shapes[name] for name in node.input)
        assert first == second, node.name
    assert not [node for node in graph.node if node.op_type == "Add" and all(produced_by.get(i) == "Conv" for i in node.input)]


# ----------------------------------------------------------------------------- the Colorizer backend
@pytest.mark.parametrize("size", ODD_SIZES)
def test_onnx_and_torch_colorizers_give_the_same_image(model_folder, size):
    torch_colorizer = Colorizer.from_pretrained(model_folder, device="cpu")
    onnx_colorizer = Colorizer.from_pretrained(model_folder, backend="onnx")
    assert (torch_colorizer.backend, onnx_colorizer.backend) == ("torch", "onnx")
    assert onnx_colorizer.onnx_generator.path == model_folder / ONNX_NAME  # the shipped graph, no export
    photo = textured_photo(*size, seed=size[0])
    expected, actual = torch_colorizer(photo, render_size=64), onnx_colorizer(photo, render_size=64)
    assert actual.size == expected.size == size and actual.mode == "RGB"
    assert max_level_difference(actual, expected) <= 1


def test_batches_of_several_images_run_through_onnx(model_folder):
    colorizer = Colorizer.from_pretrained(model_folder, backend="onnx")
    photos = [textured_photo(64, 48, seed) for seed in range(3)]  # one shape: one batched run of 3
    batch = colorizer.colorize_batch(photos, render_size=64)
    singles = [colorizer(photo, render_size=64) for photo in photos]
    assert all(max_level_difference(a, b) <= 1 for a, b in zip(batch, singles))


def test_starter_model_onnx_equals_torch_on_a_real_photo(photos_dir):
    (path,) = val_photo_paths(photos_dir, 1)
    photo = Image.open(path).convert("L").crop((3, 5, 3 + 301, 5 + 187))  # odd sizes, not multiples of 32
    torch_colorizer = Colorizer.from_pretrained(None, device="cpu")
    onnx_colorizer = Colorizer.from_pretrained(None, backend="onnx")
    # the graph shipped beside the starter's weights (so a Space needs no export at start-up) is theirs
    assert onnx_colorizer.onnx_generator.path == STARTER_MODEL / ONNX_NAME
    assert max_level_difference(onnx_colorizer(photo), torch_colorizer(photo)) <= 1


def test_starter_model_int8_graph_stays_close_to_torch(photos_dir):
    (path,) = val_photo_paths(photos_dir, 1)
    photo = Image.open(path).convert("L")
    int8 = Colorizer.from_pretrained(None, backend="onnx-int8")
    assert int8.backend == "onnx-int8" and int8.onnx_generator.path == STARTER_MODEL / ONNX_INT8_NAME
    expected = np.asarray(Colorizer.from_pretrained(None, device="cpu")(photo), dtype=float)
    actual = np.asarray(int8(photo), dtype=float)
    # PSNR of int8 against fp32 output: the quantization noise, far below the model's own error (~21 dB)
    assert 10 * np.log10(255**2 / np.mean((actual - expected) ** 2)) > 35


SPIN_PROBE = """
import time, torch
from colorgan.onnx_runtime import OnnxGenerator
generator = OnnxGenerator({path!r}, threads=2)
x = torch.rand(1, 4, 64, 64)
for _ in range(3):
    generator(x)
start = time.process_time()
time.sleep(0.2)  # what the pipeline's colour maths would have the cores for
print((time.process_time() - start) * 1000)
"""


def test_onnx_runtime_threads_stop_spinning_when_a_run_ends(tiny_onnx):
    # Left spinning (ONNX Runtime's default) its workers burned ~60% of a core for a while after each run,
    # on the cores torch's colour maths needed next. Measured in a fresh process: only its own threads count.
    import subprocess
    import sys

    probe = subprocess.run(
        [sys.executable, "-c", SPIN_PROBE.format(path=str(tiny_onnx))], capture_output=True, text=True, check=True
    )
    idle_cpu_ms = float(probe.stdout.split()[-1])
    assert idle_cpu_ms < 15, f"{idle_cpu_ms:.0f} ms of CPU during 200 ms of idling after a run"


# ----------------------------------------------------------------------------- where the graph comes from
def test_cache_root_is_under_hf_home(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.undo()  # the real onnx_cache_root, not the fixture's
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf-home"))
    assert onnx_runtime.onnx_cache_root() == tmp_path / "hf-home" / "colorgan" / "onnx"


def test_first_use_exports_into_the_cache_once_and_never_into_the_model_folder(
    tmp_path, tiny_model_dir, copy_instead_of_exporting, fresh_onnx_cache
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    before = sorted(p.name for p in folder.iterdir())
    first = Colorizer.from_pretrained(folder, backend="onnx")
    path = first.onnx_generator.path
    assert fresh_onnx_cache in path.parents and path.name == ONNX_NAME
    # keyed by the graph's layout too: an export an earlier colorgan cached in another layout is not reused
    assert path.parent.name.endswith(f"-opset{ONNX_OPSET}-form{onnx_export.EXPORT_FORM}")
    assert sorted(p.name for p in folder.iterdir()) == before
    assert copy_instead_of_exporting == [path]
    second = Colorizer.from_pretrained(folder, backend="onnx")
    assert second.onnx_generator.path == path and len(copy_instead_of_exporting) == 1  # cached: no new export
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".") or "partial" in p.name]  # none half-written


def test_a_damaged_cached_export_is_exported_again(tmp_path, tiny_model_dir, copy_instead_of_exporting):
    generator = UNetGenerator.from_pretrained(tiny_model_dir)
    path = load_onnx_generator(str(tiny_model_dir), generator).path
    path.write_bytes(path.read_bytes()[:1000])  # truncated, as by a full disk
    reloaded = load_onnx_generator(str(tiny_model_dir), generator)
    assert reloaded.path == path and len(copy_instead_of_exporting) == 2
    assert reloaded(torch.zeros(1, 4, 8, 8)).shape == (1, 2, 8, 8)


@pytest.mark.parametrize(
    "content",
    [b"", b"not an onnx file at all", b"\x08\x07" + bytes(range(256)) * 4],
    ids=["empty", "text", "garbage"],
)
def test_a_corrupt_shipped_onnx_is_refused_in_one_line(model_folder, content):
    (model_folder / ONNX_NAME).write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        Colorizer.from_pretrained(model_folder, backend="onnx")
    assert_one_line(str(error.value))
    assert ONNX_NAME in str(error.value) and "not a loadable ONNX model" in str(error.value)


def test_a_truncated_shipped_onnx_is_refused_in_one_line(model_folder, tiny_onnx):
    (model_folder / ONNX_NAME).write_bytes(tiny_onnx.read_bytes()[: tiny_onnx.stat().st_size // 2])
    with pytest.raises(CheckpointError) as error:
        Colorizer.from_pretrained(model_folder, backend="onnx")
    assert_one_line(str(error.value))


def test_an_onnx_graph_that_is_not_a_generator_is_refused(model_folder):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", ONNX_OPSET)], ir_version=8)
    onnx.save(model, model_folder / ONNX_NAME)
    with pytest.raises(CheckpointError, match="not a colorgan generator") as error:
        Colorizer.from_pretrained(model_folder, backend="onnx")
    assert_one_line(str(error.value))


def test_int8_backend_without_a_quantized_graph_says_how_to_make_one(model_folder):
    with pytest.raises(CheckpointError, match="export-onnx") as error:
        Colorizer.from_pretrained(model_folder, backend="onnx-int8")
    assert_one_line(str(error.value))


@pytest.mark.parametrize("backend", ["tensorrt", "ONNX", ""])
def test_unknown_backend_is_refused(model_folder, backend):
    with pytest.raises(ValueError, match="unknown backend"):
        Colorizer.from_pretrained(model_folder, backend=backend)


# ----------------------------------------------------------------------------- command line and Hub
def test_export_onnx_command_and_its_errors(tiny_model_dir, tmp_path, capsys, copy_instead_of_exporting):
    out = tmp_path / "out" / "generator.onnx"
    assert cli_main(["export-onnx", str(tiny_model_dir), str(out)]) == 0
    assert out.is_file() and OnnxGenerator(out)(torch.zeros(1, 4, 5, 9)).shape == (1, 2, 5, 9)
    assert cli_main(["export-onnx", str(tmp_path / "missing"), str(tmp_path / "x.onnx")]) == 2
    assert cli_main(["export-onnx", str(tiny_model_dir), str(tmp_path / "q.onnx"), "--quantize"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "no such model folder" in errors[0] and "calibration" in errors[1]
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "q.onnx").exists()


def test_quantized_export_loads_as_the_int8_backend(model_folder, photos_dir, copy_instead_of_exporting):
    assert cli_main(
        [
            "export-onnx",
            str(model_folder),
            str(model_folder / ONNX_INT8_NAME),
            "--quantize",
            "--calibration",
            str(photos_dir / "train"),
            "--calibration-count",
            "2",
        ]
    ) == 0
    colorizer = Colorizer.from_pretrained(model_folder, backend="onnx-int8")
    assert colorizer.backend == "onnx-int8" and colorizer.onnx_generator.quantized
    output = colorizer(textured_photo(90, 60), render_size=64)
    assert output.size == (90, 60) and np.asarray(output).std() > 0


@pytest.fixture
def repo_id(fake_hub):
    name = f"tester/onnx-{uuid.uuid4().hex[:8]}"
    yield name
    fake_hub.repos.pop(name, None)


def test_push_onnx_uploads_the_graph_and_the_hub_copy_is_used(
    fake_hub, repo_id, tiny_model_dir, tmp_path, copy_instead_of_exporting
):
    folder = tmp_path / "run"
    shutil.copytree(tiny_model_dir, folder)
    assert cli_main(["push", str(folder), repo_id, "--token", WRITE_TOKEN, "--onnx"]) == 0
    assert fake_hub.files(repo_id)[ONNX_NAME] == (folder / ONNX_NAME).read_bytes()
    remote = Colorizer.from_pretrained(repo_id, backend="onnx", cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache") in remote.onnx_generator.path.parents  # downloaded next to the safetensors
    assert len(copy_instead_of_exporting) == 1  # the push's export only: loading did not export again
    local = Colorizer.from_pretrained(folder, device="cpu")
    photo = textured_photo(70, 50)
    assert max_level_difference(remote(photo, render_size=64), local(photo, render_size=64)) <= 1


def test_push_quantize_without_onnx_is_refused_before_uploading(fake_hub, repo_id, tiny_model_dir, capsys):
    assert cli_main(["push", str(tiny_model_dir), repo_id, "--token", WRITE_TOKEN, "--quantize"]) == 2
    assert repo_id not in fake_hub.repos
    assert "quantize needs onnx" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the app's choice
def test_app_loads_the_fastest_backend_and_logs_it(model_folder):
    from colorgan.webapp import load_fastest_colorizer

    lines = []
    colorizer = load_fastest_colorizer(str(model_folder), device="cpu", log=lines.append)
    assert colorizer.backend == "onnx"  # no model_int8.onnx here: fp32 ONNX beats torch
    assert any("no onnx-int8 backend" in line for line in lines)
    assert lines[-1].startswith("colorgan: model") and "generator backend onnx on cpu" in lines[-1]


def test_app_falls_back_to_torch_when_onnx_cannot_load(model_folder):
    from colorgan.webapp import load_fastest_colorizer

    (model_folder / ONNX_NAME).write_bytes(b"damaged")
    lines = []
    colorizer = load_fastest_colorizer(str(model_folder), device="cpu", log=lines.append)
    assert colorizer.backend == "torch" and "generator backend torch" in lines[-1]
    assert any("not a loadable ONNX model" in line for line in lines)


@pytest.mark.parametrize(
    "first, second, tied",
    [
        (["batch", 16, "h", "w"], ["batch", 16, "2*h", "2*w"], True),  # one size, two names for it
        (["batch", 16, 1, 1], ["batch", 16, "h", "w"], False),  # a broadcast: not one shape
        (["batch", 8, "h", "w"], ["batch", 16, "h", "w"], False),
        (["batch", 16, "h"], ["batch", 16, "h", "w"], False),
    ],
)
def test_sum_inputs_get_one_shape_only_where_they_can_be_one(first, second, tied):
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node("Conv", ["x", "w2"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    value_info = [helper.make_tensor_value_info("a", 1, first), helper.make_tensor_value_info("b", 1, second)]
    model = helper.make_model(helper.make_graph(nodes, "g", [], [], value_info=value_info))
    assert onnx_export._sum_conv_pairs(model) == 1 and model.graph.node[2].op_type == "Sum"
    shapes = {info.name: info.type.tensor_type.shape for info in model.graph.value_info}
    assert (shapes["a"] == shapes["b"]) is tied


def test_int8_graph_enters_the_blocked_layout_before_its_first_fp32_level(tiny_model_dir, photos_dir, tmp_path):
    generator = UNetGenerator.from_pretrained(tiny_model_dir).eval()
    colorizer = Colorizer(generator, device="cpu")
    photos = val_photo_paths(photos_dir, 2)
    path = export_int8(generator, tmp_path / ONNX_INT8_NAME, calibration_inputs(colorizer, photos), fp32_levels=1)
    graph = onnx.load(str(path)).graph
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}

    def is_identity(array) -> bool:
        return array.ndim == 4 and array.shape[2:] == (1, 1) and np.array_equal(array[:, :, 0, 0], np.eye(len(array)))

    # the identity is a float initializer read by a plain Conv (no DequantizeLinear): it stays fp32
    entries = [node for node in graph.node if node.op_type == "Conv" and is_identity(weights.get(node.input[1], np.zeros(0)))]
    assert len(entries) == 1
    finest = f"generator.decoder.{len(TINY_GENERATOR['decoder_channels']) - 1}"
    scopes = next(p.value for p in entries[0].metadata_props if p.key == "pkg.torch.onnx.name_scopes")
    assert f"'{finest}'" in scopes
    assert OnnxGenerator(path).quantized
    x = torch.randn(1, 4, 45, 67, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert OnnxGenerator(path)(x).shape == generator(x).shape == (1, 2, 45, 67)
