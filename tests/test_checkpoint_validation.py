"""Untrusted checkpoints: refused from config.json and the safetensors header, before anything is allocated.

Every bad checkpoint below is loaded, from a folder and from a (fake) Hub repo, as a generator
(`Colorizer.from_pretrained`, the app's and the CLI's path) and as a discriminator
(`load_discriminator`, `--init-from`'s path). The loads all run in ONE fresh subprocess (`METER`),
which records for each: the exception, the wall time, the rise of peak RSS over the RSS just before
it (the kernel's peak is reset through /proc/self/clear_refs before every load, so an earlier load
cannot hide a later one), and any torch.load / pickle call.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from colorgan import CheckpointError, Colorizer, PatchDiscriminator, UNetGenerator
from colorgan.checkpoint import MAX_CONFIG_BYTES, MAX_HEADER_BYTES, StrictHubMixin
from colorgan.checkpoint import DISCRIMINATOR_FOLDER
from colorgan.hub import load_discriminator
from conftest import REPO, assert_one_line

MAX_SECONDS = 2.0
MAX_RSS_RISE_MB = 200
# small models keep the Hub cases' downloads small (1.3 MB and 0.7 MB): the refusals are what is timed
SMALL_GENERATOR = dict(encoder_name="mobilenetv3_small_050", decoder_channels=[16, 8, 8, 8, 8])
SMALL_DISCRIMINATOR = dict(base_channels=8, num_layers=3)

# ----------------------------------------------------------------------------- the bad checkpoints
Edit = Callable[[Path], None]  # damages a model folder (config.json + model.safetensors) in place


def edit_config(**changes) -> Edit:
    def edit(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **changes}))

    return edit


def edit_state(change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> Edit:
    def edit(folder: Path) -> None:
        weights = folder / "model.safetensors"
        save_file(change(load_file(weights)), weights)

    return edit


def read_raw(weights: Path) -> tuple[dict, bytes]:
    """(header, tensor data) of a safetensors file."""
    raw = weights.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


def write_raw(weights: Path, header: dict, data: bytes, header_bytes: int | None = None) -> None:
    """A safetensors file; `header_bytes` pads the header with spaces (as the format allows)."""
    text = json.dumps(header).encode()
    text += b" " * ((header_bytes or len(text)) - len(text))
    weights.write_bytes(len(text).to_bytes(8, "little") + text + data)


def claim_a_huge_tensor(folder: Path) -> None:
    """The last tensor becomes (60000, 60000, 3, 3) fp32 in the header: 130 GB the file does not hold."""
    weights = folder / "model.safetensors"
    header, data = read_raw(weights)
    name = max((key for key in header if key != "__metadata__"), key=lambda key: header[key]["data_offsets"][1])
    begin = header[name]["data_offsets"][0]
    shape = [60000, 60000, 3, 3]
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [begin, begin + 4 * 60000 * 60000 * 9]}
    write_raw(weights, header, data)


def truncate_data(folder: Path) -> None:
    weights = folder / "model.safetensors"
    header, data = read_raw(weights)
    write_raw(weights, header, data[: len(data) // 2])


def oversize_header(folder: Path) -> None:
    weights = folder / "model.safetensors"
    header, data = read_raw(weights)
    write_raw(weights, header, data, header_bytes=MAX_HEADER_BYTES + 8)


def oversize_config(folder: Path) -> None:
    config = (folder / "config.json").read_text()
    (folder / "config.json").write_text(config + " " * MAX_CONFIG_BYTES)


def narrow_first_conv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    name = next(key for key, value in state.items() if value.ndim == 4)
    return {**state, name: state[name][: state[name].shape[0] // 2].clone()}


def floats_to_int32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.to(torch.int32) if value.is_floating_point() else value for key, value in state.items()}


# name -> (edit of a generator, edit of a discriminator, what the one-line error says); None: does not apply
BAD_CHECKPOINTS: dict[str, tuple[Edit | None, Edit | None, str]] = {
    "huge_channels": (
        edit_config(decoder_channels=[60000, 60000, 60000, 32, 16]),
        edit_config(base_channels=60000),
        r"config\.json asks for (decoder|base)_channels=.*, which .*must be in \[1, ",
    ),
    "path_as_encoder": (edit_config(encoder_name="../../etc/passwd"), None, r"encoder_name='\.\./\.\./etc/passwd'"),
    "hub_id_as_encoder": (edit_config(encoder_name="hf-hub:timm/resnet18.a1_in1k"), None, r"not an allowed name"),
    "wrong_type": (edit_config(render_size="512"), edit_config(num_layers=True), r"which must be int"),
    "parameters_over_the_cap": (
        edit_config(decoder_channels=[4096] * 5),  # ~0.9 billion parameters
        edit_config(base_channels=512, num_layers=6),  # ~1 billion parameters
        r"parameters, over the cap of 400,000,000; pass max_parameters=\d+ to load it anyway",
    ),
    "unbuildable_config": (
        edit_config(encoder_name="vit_small_patch16_224"),  # stride 16: needs 4 decoder blocks, not 5
        None,
        r"does not describe a UNetGenerator \(.*decoder_channels needs 4 entries",
    ),
    "header_claims_more_bytes": (claim_a_huge_tensor, claim_a_huge_tensor, r"claims bytes up to \d+ but the file"),
    "truncated_data": (truncate_data, truncate_data, r"claims bytes up to \d+ but the file holds only"),
    "oversized_header": (oversize_header, oversize_header, rf"header of {MAX_HEADER_BYTES + 8} bytes is over the"),
    "oversized_config": (oversize_config, oversize_config, rf"config\.json of \d+ bytes is over the {MAX_CONFIG_BYTES}"),
    "config_not_an_object": (
        lambda folder: (folder / "config.json").write_text("[1, 2]"),
        lambda folder: (folder / "config.json").write_text("[1, 2]"),
        r"config\.json is not a JSON object",
    ),
    "int_dtype": (edit_state(floats_to_int32), edit_state(floats_to_int32), r"dtype mismatches, integer vs float"),
    "bool_dtype": (
        edit_state(lambda state: {**state, "extra": torch.zeros(3, dtype=torch.bool)}),
        edit_state(lambda state: {**state, "extra": torch.zeros(3, dtype=torch.bool)}),
        r"has dtype 'BOOL', not one colorgan loads",
    ),
    "mismatched_shapes": (edit_state(narrow_first_conv), edit_state(narrow_first_conv), r"1 shape mismatches \(e\.g\."),
    "missing_keys": (
        edit_state(lambda state: dict(list(state.items())[3:])),
        edit_state(lambda state: dict(list(state.items())[3:])),
        r"3 missing keys \(e\.g\. [\w.]+, [\w.]+, [\w.]+\)",
    ),
    "unexpected_keys": (
        edit_state(lambda state: {**state, "extra.weight": torch.zeros(3)}),
        edit_state(lambda state: {**state, "extra.weight": torch.zeros(3)}),
        r"1 unexpected keys \(e\.g\. extra\.weight\)",
    ),
}
# loads that pass arguments: the cap is the caller's to raise, and a raised cap still checks everything
WITH_ARGUMENTS = {
    # the same ~1 billion parameters, allowed: the weights (of the small model) then do not match
    "over_the_cap_allowed": ("parameters_over_the_cap", {"max_parameters": 2_000_000_000}, r"shape mismatches"),
    # a good checkpoint over a lowered cap
    "under_a_lowered_cap": (None, {"max_parameters": 1000}, r"parameters, over the cap of 1,000;"),
}
ROLES = ("generator", "discriminator")
SOURCES = ("folder", "hub")


def refusal_cases() -> list[tuple[str, str, str, str]]:
    """(role, source, case, expected message) of every load that must be refused."""
    cases = []
    for role in ROLES:
        for source in SOURCES:
            for name, (*edits, expected) in BAD_CHECKPOINTS.items():
                if edits[ROLES.index(role)] is not None:
                    cases.append((role, source, name, expected))
            for name, (_, _, expected) in WITH_ARGUMENTS.items():
                cases.append((role, source, name, expected))
    return cases


REFUSALS = refusal_cases()


def case_id(role: str, source: str, name: str) -> str:
    return f"{role}-{source}-{name}"


# ----------------------------------------------------------------------------- the meter (a subprocess)
METER = textwrap.dedent(
    """
    import json, pickle, resource, sys, time
    import torch
    from colorgan import Colorizer
    from colorgan.hub import load_discriminator

    unpickled = []

    def forbidden(name):
        def refuse(*args, **kwargs):
            unpickled.append(name)
            raise AssertionError(f"{name} was called")
        return refuse

    torch.load, torch.serialization.load = forbidden("torch.load"), forbidden("torch.serialization.load")
    pickle.load, pickle.loads = forbidden("pickle.load"), forbidden("pickle.loads")

    def status_kib(field):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            return True
        except OSError:
            return False

    def load(case):
        if case["role"] == "control":  # proves the meter sees a 320 MB allocation
            return float(torch.ones(80_000_000).sum())
        kwargs = dict(case["kwargs"], **({"cache_dir": case["cache_dir"]} if case["cache_dir"] else {}))
        if case["role"] == "generator":
            return Colorizer.from_pretrained(case["target"], device="cpu", **kwargs)
        return load_discriminator(case["target"], **kwargs)

    results = {}
    for case in json.load(sys.stdin):
        exact = reset_peak()
        before = status_kib("VmRSS")
        start = time.perf_counter()
        try:
            load(case)
            error, message = None, ""
        except Exception as exception:
            error, message = type(exception).__name__, str(exception)
        seconds = time.perf_counter() - start
        # without the reset, the lifetime peak bounds this load's peak from above (never hides a rise)
        peak = status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        results[case["id"]] = dict(
            error=error, message=message, seconds=seconds, rise_mb=(peak - before) / 1024, unpickled=unpickled[:]
        )
        unpickled.clear()
    json.dump(results, sys.stdout)
    """
)


@pytest.fixture(scope="module")
def good_folders(tmp_path_factory) -> dict[str, Path]:
    """A saved small generator, and a model folder whose discriminator/ holds a saved small PatchGAN."""
    root = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    UNetGenerator(**SMALL_GENERATOR).save_pretrained(root / "generator")
    PatchDiscriminator(**SMALL_DISCRIMINATOR).save_pretrained(root / "discriminator_model" / DISCRIMINATOR_FOLDER)
    return {"generator": root / "generator", "discriminator": root / "discriminator_model"}


def model_files(folder: Path, role: str) -> Path:
    """Where config.json and model.safetensors lie: the folder itself, or its discriminator/."""
    return folder / DISCRIMINATOR_FOLDER if role == "discriminator" else folder


def upload(fake_hub, folder: Path) -> str:
    repo_id = f"tester/untrusted-{uuid.uuid4().hex[:8]}"
    files = {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    fake_hub.add_commit(repo_id, files)
    return repo_id


@pytest.fixture(scope="module")
def refusals(good_folders, fake_hub, tmp_path_factory) -> dict[str, dict]:
    """What METER measured for every load: {case id: {error, message, seconds, rise_mb, unpickled}}."""
    root = tmp_path_factory.mktemp("untrusted")
    cache_dir = str(root / "hf-cache")
    cases, repos = [], []
    # warm-up loads first (imports, timm's registry): then each refusal is measured alone
    for role, good in good_folders.items():
        cases.append(dict(id=f"{role}-good", role=role, target=str(good), kwargs={}, cache_dir=None))
    cases.append(dict(id="control", role="control", target="", kwargs={}, cache_dir=None))
    for role, source, name, _ in REFUSALS:
        folder = root / case_id(role, source, name)
        shutil.copytree(good_folders[role], folder)
        edit_name, kwargs = (name, {}) if name in BAD_CHECKPOINTS else WITH_ARGUMENTS[name][:2]
        if edit_name is not None:
            BAD_CHECKPOINTS[edit_name][ROLES.index(role)](model_files(folder, role))
        target = str(folder)
        if source == "hub":
            target = upload(fake_hub, folder)
            repos.append(target)
        cases.append(
            dict(
                id=case_id(role, source, name),
                role=role,
                target=target,
                kwargs=kwargs,
                cache_dir=cache_dir if source == "hub" else None,
            )
        )
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    try:
        run = subprocess.run(
            [sys.executable, "-c", METER],
            input=json.dumps(cases),
            capture_output=True,
            text=True,
            env=environment,  # HF_ENDPOINT and HF_HOME: the fake Hub, as in this process
            timeout=300,
        )
    finally:
        for repo_id in repos:
            fake_hub.repos.pop(repo_id, None)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.mark.parametrize(
    "role, source, name, expected",
    REFUSALS,
    ids=[case_id(role, source, name) for role, source, name, _ in REFUSALS],
)
def test_bad_checkpoint_is_refused_fast_in_little_memory_and_unpickled(refusals, role, source, name, expected):
    result = refusals[case_id(role, source, name)]
    assert result["error"] == "CheckpointError", result
    assert_one_line(result["message"])
    assert re.search(expected, result["message"]), result["message"]
    assert result["seconds"] < MAX_SECONDS, result
    assert result["rise_mb"] < MAX_RSS_RISE_MB, result
    assert result["unpickled"] == []


def test_the_meter_sees_allocations_and_good_checkpoints_load(refusals):
    assert refusals["control"]["error"] is None and refusals["control"]["rise_mb"] > 250, refusals["control"]
    for role in ROLES:
        assert refusals[f"{role}-good"]["error"] is None, refusals[f"{role}-good"]


# ----------------------------------------------------------------------------- good checkpoints, in-process
def assert_identical_state(loaded: torch.nn.Module, saved: Path) -> None:
    expected, actual = load_file(saved / "model.safetensors"), loaded.state_dict()
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype and torch.equal(actual[name].cpu(), value), name


@pytest.mark.parametrize("source", SOURCES)
def test_good_checkpoints_still_load_bit_identically(good_folders, fake_hub, source, tmp_path):
    generator_target = str(good_folders["generator"])
    discriminator_target = str(good_folders["discriminator"])
    if source == "hub":
        generator_target = upload(fake_hub, good_folders["generator"])
        discriminator_target = upload(fake_hub, good_folders["discriminator"])
    hub_kwargs = {"cache_dir": tmp_path / "cache"} if source == "hub" else {}
    colorizer = Colorizer.from_pretrained(generator_target, device="cpu", **hub_kwargs)
    assert_identical_state(colorizer.generator, good_folders["generator"])
    generator = UNetGenerator.from_pretrained(generator_target, **hub_kwargs)
    assert_identical_state(generator, good_folders["generator"])
    discriminator = load_discriminator(discriminator_target, **hub_kwargs)
    assert_identical_state(discriminator, model_files(good_folders["discriminator"], "discriminator"))
    # a cap of exactly the model's parameter count lets it through
    count = sum(parameter.numel() for parameter in generator.parameters())
    assert_identical_state(
        UNetGenerator.from_pretrained(generator_target, max_parameters=count, **hub_kwargs), good_folders["generator"]
    )
    with pytest.raises(CheckpointError, match=f"pass max_parameters={count} to load it anyway"):
        UNetGenerator.from_pretrained(generator_target, max_parameters=count - 1, **hub_kwargs)


def test_every_constructor_argument_has_a_config_limit():
    with pytest.raises(TypeError, match="config_limits has no entry for unchecked"):

        class Unchecked(torch.nn.Module, StrictHubMixin):
            def __init__(self, unchecked: int = 1):
                super().__init__()


def test_init_from_refuses_a_bad_generator_and_replaces_a_bad_discriminator(good_folders, tmp_path, capsys):
    pytest.importorskip("accelerate", reason="training's --init-from needs the train extra (accelerate)")
    from train_accelerate import build_models

    args = argparse.Namespace(init_from=None, disc_channels=8, disc_layers=2, disc_norm="batch", max_parameters=1000)
    folder = shutil.copytree(good_folders["discriminator"], tmp_path / "run")
    shutil.copytree(good_folders["generator"], folder, dirs_exist_ok=True)
    args.init_from = str(folder)
    with pytest.raises(CheckpointError, match="over the cap of 1,000"):
        build_models(args)
    args.max_parameters = 10**9
    BAD_CHECKPOINTS["huge_channels"][1](folder / DISCRIMINATOR_FOLDER)
    generator, discriminator = build_models(args)
    assert_identical_state(generator, good_folders["generator"])
    assert discriminator.layers[0].out_channels == 8  # a fresh one, from --disc-channels
    assert "base_channels=60000" in capsys.readouterr().out
