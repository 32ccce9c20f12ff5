"""scripts/average_models.py: weight averages of sibling generators, their facts and their refusals."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from conftest import TINY_GENERATOR

from colorgan import Colorizer, UNetGenerator
from colorgan.checkpoint import CheckpointError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "average_models.py"
spec = importlib.util.spec_from_file_location("average_models", SCRIPT)
average_models = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = average_models
spec.loader.exec_module(average_models)


def saved_sibling(folder: Path, seed: int, steps: int, **config) -> Path:
    """A tiny generator with its own random weights and BatchNorm statistics, and training facts."""
    torch.manual_seed(seed)
    model = UNetGenerator(**{**TINY_GENERATOR, **config})
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # make the statistics differ too: they are averaged
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.num_batches_tracked.fill_(seed + 1)
    model.save_pretrained(folder)
    facts = {"args": {"seed": seed, "l1_chroma_weight": float(seed), "batch_size": 8}, "steps": steps,
             "pretrain_steps": steps, "gan_steps": 0, "images_seen": 8 * steps, "wall_time_seconds": 60.0 * seed,
             "val_metrics": {"val/psnr": 23.0}}
    (folder / "training_facts.json").write_text(json.dumps(facts))
    return folder


def test_weighted_average_of_weights_and_statistics(tmp_path):
    first = saved_sibling(tmp_path / "first", seed=1, steps=100)
    second = saved_sibling(tmp_path / "second", seed=2, steps=300)
    out = average_models.main(average_models.parse_args(
        [str(tmp_path / "soup"), str(first), str(second), "--weights", "1", "3"]))

    states = [UNetGenerator.from_pretrained(str(path)).state_dict() for path in (first, second)]
    soup = UNetGenerator.from_pretrained(str(out)).state_dict()
    assert soup.keys() == states[0].keys()
    checked = 0
    for key, value in soup.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.25 * states[0][key] + 0.75 * states[1][key])
            checked += not torch.equal(states[0][key], states[1][key])
        else:  # num_batches_tracked: an integer count, not averaged
            assert torch.equal(value, states[0][key]), key
    assert checked > 10, "the ingredients differ, so the test would see a wrong average"

    facts = json.loads((out / "training_facts.json").read_text())
    assert facts["steps"] == 400 and facts["images_seen"] == 3200 and facts["wall_time_seconds"] == 180.0
    assert facts["val_metrics"] == {}, "the ingredients' validation does not describe the average"
    assert [item["share"] for item in facts["args"]["averaged_from"]] == [0.25, 0.75]
    assert [item["l1_chroma_weight"] for item in facts["args"]["averaged_from"]] == [1.0, 2.0]

    colorizer = Colorizer.from_pretrained(out, device="cpu")  # the average is a model the pipeline runs
    result = colorizer(Image.new("L", (40, 30), 128))
    assert result.size == (40, 30)


def test_equal_weights_by_default(tmp_path):
    first = saved_sibling(tmp_path / "a", seed=1, steps=10)
    second = saved_sibling(tmp_path / "b", seed=2, steps=10)
    out = average_models.main(average_models.parse_args([str(tmp_path / "soup"), str(first), str(second)]))
    states = [UNetGenerator.from_pretrained(str(path)).state_dict() for path in (first, second, out)]
    key = next(k for k, v in states[0].items() if v.is_floating_point() and not torch.equal(v, states[1][k]))
    torch.testing.assert_close(states[2][key], (states[0][key] + states[1][key]) / 2)


def test_refuses_models_of_different_architectures(tmp_path):
    first = saved_sibling(tmp_path / "a", seed=1, steps=10)
    other = saved_sibling(tmp_path / "b", seed=2, steps=10, decoder_hints=True)
    with pytest.raises(CheckpointError, match="not the same architecture.*decoder_hints"):
        average_models.main(average_models.parse_args([str(tmp_path / "soup"), str(first), str(other)]))
    assert not (tmp_path / "soup").exists(), "nothing is written for a refused average"


@pytest.mark.parametrize("argv, message", [
    (["out", "a"], "at least two models"),
    (["out", "a", "b", "--weights", "1"], "has 1 values for 2 models"),
    (["out", "a", "b", "--weights", "1", "-1"], "non-negative"),
    (["out", "a", "b", "--weights", "0", "0"], "not all zero"),
    (["out", "a", "b", "--weights", "1", "nan"], "finite"),
    (["a", "a", "b"], "must not be one of the models"),
])
def test_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        average_models.parse_args(argv)
    assert message in capsys.readouterr().err


def test_unsafe_or_missing_model_is_a_one_line_error(tmp_path):
    first = saved_sibling(tmp_path / "a", seed=1, steps=10)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((first / "config.json").read_text())
    (broken / "pytorch_model.bin").write_bytes(b"pickle")  # never unpickled
    with pytest.raises(CheckpointError):
        average_models.main(average_models.parse_args([str(tmp_path / "soup"), str(first), str(broken)]))
