"""Hub publishing end to end: push_to_hub, from_pretrained, the model card, offline use, pickle refusal.

Every Hub call goes over HTTP to the fake Hub of tests/hub_server.py, which conftest.py starts and
points HF_ENDPOINT at before huggingface_hub is imported; the real client code runs unchanged.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_server import WRITE_TOKEN
from huggingface_hub import ModelCard, SpaceCard, constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.repocard_data import model_index_to_eval_results
from PIL import Image
from safetensors.torch import load_file

from colorgan import CheckpointError, Colorizer, PatchDiscriminator, UNetGenerator
from colorgan.cli import main as cli_main
from colorgan.checkpoint import FACTS_NAME
from colorgan.hub import load_discriminator, push_to_hub
from hub_card import GENERATED_CARD_MARKER, MIXIN_CARD_SIGNATURE, CardFacts, Evaluation, render_model_card, write_model_card

REPO = Path(__file__).resolve().parents[1]
# what train_accelerate.py writes (args ... val_metrics), plus a held-out evaluation and a sample grid
FACTS = CardFacts(
    args={
        "dataset": "coco",
        "split": "train",
        "val_split": None,
        "val_count": 16,
        "resolution": 256,
        "batch_size": 16,
        "gradient_accumulation_steps": 2,
        "max_steps": 20000,
        "pretrain_steps": 4000,
        "gan_loss": "vanilla",
        "lambda_l1": 100.0,
        "learning_rate": 2e-4,
        "adam_beta1": 0.5,
        "adam_beta2": 0.999,
        "encoder": "resnet18",
        "mixed_precision": "bf16",
        "ema_decay": 0.999,
        "hint_prob": 0.5,
        "seed": 0,
        "init_from": "colorgan/colorgan-starter",
    },
    steps=20000,
    pretrain_steps=4000,
    gan_steps=16000,
    images_seen=1280000,
    skipped={"undecodable": 3, "tiny": 0, "grayscale": 112},
    wall_time_seconds=5025,
    num_processes=2,
    hardware="NVIDIA H100 80GB HBM3",
    val_metrics={"val/psnr": 22.5, "val/ssim": 0.9, "val/colorfulness": 25.0, "val/colorfulness_truth": 31.0},
    evaluations=[
        Evaluation(
            dataset="shared/photos/val",
            split="val",
            num_images=64,
            metrics={"psnr": 23.91, "ssim": 0.9123, "colorfulness": 27.4, "colorfulness_gap": 6.2},
        ),
        Evaluation(dataset="shared/photos/val", split="val", num_images=64, hints=10, metrics={"psnr": 26.35}),
        Evaluation(  # another model's score: in the card's table, never in its model-index metadata
            dataset="shared/photos/val", split="val", num_images=64, metrics={"psnr": 20.5},
            compared_with="pix2pix recipe, same time",
        ),
    ],
    sample_grid="sample_grid.png",
)
UPLOADED = {
    ".gitattributes",  # the fake Hub's initial commit, as on the real Hub
    "README.md",
    "config.json",
    "model.safetensors",
    FACTS_NAME,
    "sample_grid.png",
    "discriminator/config.json",
    "discriminator/model.safetensors",
}


@pytest.fixture
def repo_id(fake_hub):
    """A fresh repo id; the repo is dropped from the fake Hub afterwards to keep its memory small."""
    name = f"tester/model-{uuid.uuid4().hex[:8]}"
    yield name
    fake_hub.repos.pop(name, None)


@pytest.fixture
def model_folder(tmp_path, tiny_model_dir) -> Path:
    """A trained-model folder as train_accelerate.py leaves it, with stray files that must not be uploaded."""
    folder = tmp_path / "run"
    shutil.copytree(tiny_model_dir, folder)  # config.json, model.safetensors, the mixin's placeholder README.md
    torch.manual_seed(1)
    PatchDiscriminator(base_channels=8, num_layers=2).save_pretrained(folder / "discriminator")
    Image.new("RGB", (48, 16), (200, 120, 40)).save(folder / "sample_grid.png")
    FACTS.save(folder)
    (folder / "optimizer.pt").write_bytes(b"not for the Hub")
    (folder / "checkpoints" / "step_100").mkdir(parents=True)
    (folder / "checkpoints" / "step_100" / "model.safetensors").write_bytes(b"not for the Hub")
    (folder / "notes.txt").write_text("private notes")
    return folder


@pytest.fixture
def photo(tmp_path) -> Path:
    """A 160x120 colour photo with structure (gradients and a disc), saved as JPEG."""
    y, x = np.mgrid[0:120, 0:160]
    rgb = np.stack([x * 1.5, y * 2.0, 255 - x], axis=-1)
    rgb[(x - 80) ** 2 + (y - 60) ** 2 < 900] = (30, 160, 60)
    path = tmp_path / "photo.jpg"
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(path, quality=95)
    return path


def generator_state(colorizer: Colorizer) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in colorizer.generator.state_dict().items()}


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    different = [key for key in expected if not torch.equal(actual[key], expected[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[0]}"


def assert_one_line(message: str) -> None:
    text = str(message).strip()
    assert text and "\n" not in text, f"not one line: {text!r}"


# ---------------------------------------------------------------- end to end over HTTP


def test_push_then_from_pretrained_gives_identical_weights_and_colours(
    fake_hub, repo_id, model_folder, photo, tmp_path
):
    commit = push_to_hub(model_folder, repo_id, token=WRITE_TOKEN)

    hub_files = fake_hub.files(repo_id)
    assert set(hub_files) == UPLOADED  # no optimizer, checkpoints or notes
    assert hub_files["model.safetensors"] == (model_folder / "model.safetensors").read_bytes()
    assert commit.oid == fake_hub.head(repo_id) and commit.endswith(commit.oid)
    card = hub_files["README.md"].decode()
    assert GENERATED_CARD_MARKER in card and MIXIN_CARD_SIGNATURE not in card  # placeholder card replaced
    assert f'Colorizer.from_pretrained("{repo_id}")' in card

    cache = tmp_path / "cache"
    remote = Colorizer.from_pretrained(repo_id, device="cpu", cache_dir=cache)
    local = Colorizer.from_pretrained(model_folder, device="cpu")
    assert_same_tensors(generator_state(remote), load_file(model_folder / "model.safetensors"))
    assert np.array_equal(np.asarray(remote(photo)), np.asarray(local(photo)))

    # the model classes load from the Hub too, and the discriminator came along for fine-tuning
    generator = UNetGenerator.from_pretrained(repo_id, cache_dir=cache)
    assert_same_tensors(generator.state_dict(), load_file(model_folder / "model.safetensors"))
    discriminator = load_discriminator(repo_id, cache_dir=cache)
    assert_same_tensors(discriminator.state_dict(), load_file(model_folder / "discriminator" / "model.safetensors"))


def test_second_push_updates_the_repo_and_the_first_commit_stays_loadable(fake_hub, repo_id, model_folder, tmp_path):
    cache = tmp_path / "cache"
    first = push_to_hub(model_folder, repo_id, token=WRITE_TOKEN)
    old_weights = load_file(model_folder / "model.safetensors")
    assert_same_tensors(generator_state(Colorizer.from_pretrained(repo_id, device="cpu", cache_dir=cache)), old_weights)

    generator = UNetGenerator.from_pretrained(model_folder)
    with torch.no_grad():
        generator.head.bias += 1.0
    generator.save_pretrained(model_folder)
    second = push_to_hub(model_folder, repo_id, token=WRITE_TOKEN, commit_message="better weights")

    assert second.oid != first.oid and fake_hub.head(repo_id) == second.oid
    assert fake_hub.repos[repo_id].commits[second.oid].message == "better weights"
    new_weights = load_file(model_folder / "model.safetensors")
    # same cache, no force_download: the client asks the Hub for main's new commit
    assert_same_tensors(generator_state(Colorizer.from_pretrained(repo_id, device="cpu", cache_dir=cache)), new_weights)
    pinned = Colorizer.from_pretrained(repo_id, device="cpu", cache_dir=cache, revision=first.oid)
    assert_same_tensors(generator_state(pinned), old_weights)

    # an unchanged folder makes no new commit: the card renders identically
    assert push_to_hub(model_folder, repo_id, token=WRITE_TOKEN).oid == second.oid


def test_push_to_a_branch_leaves_main_alone(fake_hub, repo_id, model_folder, tmp_path):
    commit = push_to_hub(model_folder, repo_id, token=WRITE_TOKEN, revision="experiment")
    assert fake_hub.head(repo_id, "experiment") == commit.oid
    assert set(fake_hub.files(repo_id, "main")) == {".gitattributes"}
    colorizer = Colorizer.from_pretrained(repo_id, device="cpu", cache_dir=tmp_path / "cache", revision="experiment")
    assert_same_tensors(generator_state(colorizer), load_file(model_folder / "model.safetensors"))


def test_private_repo_needs_the_token_and_pushing_needs_one(fake_hub, repo_id, model_folder, tmp_path):
    with pytest.raises(HfHubHTTPError) as refused:
        push_to_hub(model_folder, repo_id)  # no token
    assert refused.value.response.status_code == 401 and repo_id not in fake_hub.repos

    push_to_hub(model_folder, repo_id, private=True, token=WRITE_TOKEN)
    assert fake_hub.repos[repo_id].private
    with pytest.raises(CheckpointError) as hidden:
        Colorizer.from_pretrained(repo_id, device="cpu", cache_dir=tmp_path / "cache")
    assert_one_line(hidden.value)
    assert "no such model repo" in str(hidden.value) and "token" in str(hidden.value)
    colorizer = Colorizer.from_pretrained(repo_id, device="cpu", cache_dir=tmp_path / "cache", token=WRITE_TOKEN)
    assert_same_tensors(generator_state(colorizer), load_file(model_folder / "model.safetensors"))


def test_a_readme_of_your_own_is_uploaded_untouched(fake_hub, repo_id, model_folder):
    own_card = "---\nlicense: mit\nlibrary_name: colorgan\n---\n# My colorizer\n\nHand-written.\n"
    (model_folder / "README.md").write_text(own_card)
    push_to_hub(model_folder, repo_id, token=WRITE_TOKEN)
    assert fake_hub.files(repo_id)["README.md"].decode() == own_card
    assert (model_folder / "README.md").read_text() == own_card


def test_invalid_folders_are_refused_before_anything_is_sent(fake_hub, repo_id, model_folder, tmp_path):
    requests_before = len(fake_hub.requests)

    (model_folder / "config.json").rename(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="has no config.json"):
        push_to_hub(model_folder, repo_id, token=WRITE_TOKEN)

    config = json.loads((tmp_path / "config.json").read_text())
    config["decoder_channels"] = [64, 16, 16, 8, 8]  # the weights were saved with 32 in the first block
    (model_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match") as mismatch:
        push_to_hub(model_folder, repo_id, token=WRITE_TOKEN)
    assert_one_line(mismatch.value)

    (tmp_path / "config.json").replace(model_folder / "config.json")
    (model_folder / "sample_grid.png").unlink()  # training_facts.json still names it
    with pytest.raises(ValueError, match="sample_grid.png"):
        push_to_hub(model_folder, repo_id, token=WRITE_TOKEN)

    with pytest.raises(CheckpointError, match="no such model folder"):
        push_to_hub(tmp_path / "missing", repo_id, token=WRITE_TOKEN)
    assert len(fake_hub.requests) == requests_before


# ---------------------------------------------------------------- the model card


def test_card_metadata_and_model_index_parse_with_huggingface_hub(model_folder):
    content = render_model_card(CardFacts.load(model_folder), "tester/colorizer", model_dir=model_folder)
    card = ModelCard(content)
    metadata = card.data.to_dict()
    assert metadata["library_name"] == "colorgan"
    assert metadata["license"] == "mit"
    assert metadata["pipeline_tag"] == "image-to-image"
    assert {"colorization", "pix2pix", "gan"} <= set(metadata["tags"])
    assert metadata["datasets"] == ["detection-datasets/coco"]
    assert metadata["base_model"] == "colorgan/colorgan-starter"

    results = model_index_to_eval_results(metadata["model-index"])[1]
    assert results == card.data.eval_results
    measured = {
        (r.dataset_name, r.dataset_split, r.metric_type, (r.metric_args or {}).get("hints", 0)): r.metric_value
        for r in results
    }
    assert measured == {
        ("shared/photos/val", "val", "psnr", 0): 23.91,
        ("shared/photos/val", "val", "ssim", 0): 0.9123,
        ("shared/photos/val", "val", "colorfulness", 0): 27.4,
        ("shared/photos/val", "val", "colorfulness_gap", 0): 6.2,
        ("shared/photos/val", "val", "psnr", 10): 26.35,
        ("coco", "held-out", "psnr", 0): 22.5,  # the training run's own validation
        ("coco", "held-out", "ssim", 0): 0.9,
        ("coco", "held-out", "colorfulness", 0): 25.0,
        ("coco", "held-out", "colorfulness_truth", 0): 31.0,
    }
    assert {(r.task_type, r.dataset_type) for r in results} == {
        ("image-to-image", "shared-photos-val"),
        ("image-to-image", "detection-datasets/coco"),
    }


def test_card_text_has_results_snippets_training_details_and_citation(model_folder):
    content = render_model_card(CardFacts.load(model_folder), "tester/colorizer", model_dir=model_folder)
    for expected in [
        "| Model | Measured on | Split | Images | Hints | PSNR (dB) | SSIM | Colourfulness | Original colourfulness |",
        "| this model | `shared/photos/val` | val | 64 | 0 | 23.91 | 0.9123 | 27.4 | – | 6.2 |",
        "| this model | `shared/photos/val` | val | 64 | 10 | 26.35 | – | – | – | – |",
        "| pix2pix recipe, same time | `shared/photos/val` | val | 64 | 0 | 20.50 | – | – | – | – |",
        "| this model | `detection-datasets/coco` † | held-out | 16 | 0 | 22.50 | 0.9000 | 25.0 | 31.0 | – |",
        'Colorizer.from_pretrained("tester/colorizer")',
        "colorgan colorize old_photos/ -o colorized/ --model tester/colorizer",
        "![Before and after: grayscale input, colorization, original photo](sample_grid.png)",
        "| Data | `coco` (split `train`) |",
        "| Images skipped | 3 undecodable, 0 tiny, 112 grayscale |",
        "| Resolution | 256×256 random crops |",
        "| Steps per phase | 4,000 L1 warm-up + 16,000 adversarial (GAN + λ·L1) |",
        "| Batch | 16 per device × 2 processes × 2 accumulation steps = 64 per step |",
        "| λ (L1 weight) | 100.0 |",
        "| Optimizer | Adam, learning rate 0.0002, betas (0.5, 0.999) |",
        "| Encoder | `resnet18` |",
        "| Precision | bf16 |",
        "| Hardware | NVIDIA H100 80GB HBM3 |",
        "| Wall time | 1 h 24 min |",
        "| Images seen | 1,280,000 |",
        "training data\n  (`detection-datasets/coco`)",
        "fine-tune of [colorgan/colorgan-starter](https://huggingface.co/colorgan/colorgan-starter)",
        "## Limitations and bias",
        "**Skin tones.**",
        "**False colours on ambiguous objects.**",
        "@inproceedings{isola2017image,",
        "Image-to-Image Translation with Conditional Adversarial Networks",
        'load_discriminator("tester/colorizer")',
    ]:
        assert expected in content, expected


def test_card_renders_from_no_facts_at_all(tiny_model_dir):
    content = render_model_card({}, "tester/bare")
    card = ModelCard(content)
    assert card.data.library_name == "colorgan" and card.data.eval_results is None
    assert 'Colorizer.from_pretrained("tester/bare")' in content
    assert "No evaluation results were recorded" in content
    with_folder = render_model_card(None, "tester/bare", model_dir=tiny_model_dir)
    assert "`resnet18`" in with_folder  # the encoder comes from config.json


def test_card_snippet_runs_against_a_local_model(model_folder, tmp_path, monkeypatch):
    content = write_model_card(model_folder, "tester/colorizer").read_text()
    snippet = re.search(r"```python\n(.*?)```", content, re.DOTALL).group(1)
    assert '"tester/colorizer"' in snippet
    snippet = snippet.replace('"tester/colorizer"', repr(str(model_folder)))
    monkeypatch.chdir(tmp_path)
    y, x = np.mgrid[0:120, 0:160]
    Image.fromarray(np.stack([x, y, x + y], -1).astype(np.uint8)).save("old_photo.jpg")
    exec(compile(snippet, "model-card-snippet", "exec"), {})
    with Image.open("old_photo_color.png") as result:
        assert result.size == (160, 120) and result.mode == "RGB"


def test_training_facts_round_trip_and_refuse_unknown_keys(tmp_path):
    FACTS.save(tmp_path)
    assert CardFacts.load(tmp_path) == FACTS
    assert CardFacts.load(tmp_path / "elsewhere") == CardFacts()
    with pytest.raises(ValueError, match="lamda_l1"):
        CardFacts.from_dict({"lamda_l1": 100})


def test_card_defaults_to_the_latest_training_sample_grid(tiny_model_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "samples").mkdir()
    for step in (500, 1000):  # as train_accelerate.py names them
        Image.new("RGB", (8, 8)).save(folder / "samples" / f"step-{step:07d}.png")
    content = render_model_card(CardFacts(args={"dataset": str(tmp_path)}), "tester/local", model_dir=folder)
    assert "(samples/step-0001000.png)" in content and "step-0000500" not in content
    assert "datasets" not in ModelCard(content).data.to_dict()  # a local folder is not a Hub dataset


# ---------------------------------------------------------------- offline


def test_prefilled_cache_loads_offline_and_a_missing_repo_fails_in_one_line(
    fake_hub, repo_id, model_folder, photo, tmp_path
):
    cache = tmp_path / "cache"
    push_to_hub(model_folder, repo_id, token=WRITE_TOKEN)
    Colorizer.from_pretrained(repo_id, device="cpu", cache_dir=cache)  # fills the cache over HTTP
    requests_before = len(fake_hub.requests)

    script = textwrap.dedent(
        f"""
        import sys
        from safetensors.torch import save_file
        from colorgan import Colorizer
        from colorgan.cli import main

        colorizer = Colorizer.from_pretrained({repo_id!r}, device="cpu")
        state = {{k: v.detach().contiguous() for k, v in colorizer.generator.state_dict().items()}}
        save_file(state, {str(tmp_path / "offline.safetensors")!r})
        sys.exit(main(["colorize", {str(photo)!r}, "--model", "tester/never-pushed", "--device", "cpu"]))
        """
    )
    # HF_HUB_OFFLINE is read when huggingface_hub is imported, hence a fresh process
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 2, result.stderr
    assert_same_tensors(load_file(tmp_path / "offline.safetensors"), load_file(model_folder / "model.safetensors"))
    assert result.stderr.strip() == (
        "error: tester/never-pushed: not in the local Hugging Face cache and the Hub cannot be reached (offline?)"
    )
    assert len(fake_hub.requests) == requests_before  # offline means no request at all


def test_partly_cached_repo_offline_is_reported_as_not_cached(fake_hub, repo_id, model_folder, tmp_path):
    cache = tmp_path / "cache"
    push_to_hub(model_folder, repo_id, token=WRITE_TOKEN)
    hf_hub_download(repo_id, "config.json", cache_dir=cache)  # the weights never made it into the cache
    with pytest.raises(CheckpointError) as error:
        Colorizer.from_pretrained(repo_id, device="cpu", cache_dir=cache, local_files_only=True)
    assert_one_line(error.value)
    assert "not in the local Hugging Face cache" in str(error.value)


# ---------------------------------------------------------------- pickle weights are refused unread


@pytest.fixture
def pickle_only_folder(tmp_path, tiny_model_dir) -> Path:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder)
    torch.save(load_file(tiny_model_dir / "model.safetensors"), folder / "pytorch_model.bin")
    return folder


@pytest.fixture
def forbid_unpickling(monkeypatch):
    def unpickling(*args, **kwargs):
        pytest.fail("pickle weights were unpickled")

    for module, name in [(torch, "load"), (pickle, "load"), (pickle, "loads")]:
        monkeypatch.setattr(module, name, unpickling)


def test_local_pickle_only_folder_is_refused_unread(fake_hub, repo_id, pickle_only_folder, forbid_unpickling):
    for load in (Colorizer.from_pretrained, UNetGenerator.from_pretrained, lambda f: push_to_hub(f, repo_id)):
        with pytest.raises(CheckpointError, match="holds only pickle weights") as error:
            load(pickle_only_folder)
        assert_one_line(error.value)
    assert repo_id not in fake_hub.repos


def test_hub_repo_with_only_pickle_weights_is_refused_unread(
    fake_hub, repo_id, pickle_only_folder, forbid_unpickling, tmp_path
):
    fake_hub.add_commit(
        repo_id, {name: (pickle_only_folder / name).read_bytes() for name in ("config.json", "pytorch_model.bin")}
    )
    with pytest.raises(CheckpointError) as error:
        Colorizer.from_pretrained(repo_id, device="cpu", cache_dir=tmp_path / "cache")
    assert_one_line(error.value)
    assert str(error.value) == (
        f"{repo_id} holds only pickle weights; colorgan loads model.safetensors only and never unpickles"
    )
    assert not any(path.endswith("pytorch_model.bin") for _, path in fake_hub.requests)  # not even downloaded


# ---------------------------------------------------------------- the command line


def test_colorgan_push_command_publishes_a_folder(fake_hub, repo_id, model_folder, tmp_path):
    command = [sys.executable, "-m", "colorgan", "push", str(model_folder), repo_id]
    result = subprocess.run(
        [*command, "--token", WRITE_TOKEN, "--message", "from the CLI"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    head = fake_hub.head(repo_id)
    assert result.stdout.strip() == f"{fake_hub.url}/{repo_id}/commit/{head}"
    assert fake_hub.repos[repo_id].commits[head].message == "from the CLI"
    assert set(fake_hub.files(repo_id)) == UPLOADED


def test_colorgan_push_command_fails_in_one_line(fake_hub, repo_id, model_folder, tmp_path, capsys, monkeypatch):
    assert cli_main(["push", str(tmp_path / "missing"), repo_id]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'}: no such model folder"
    assert cli_main(["push", str(model_folder), repo_id]) == 2  # no token: the Hub refuses
    error = capsys.readouterr().err
    assert_one_line(error)
    assert error.startswith("error: ") and "401" in error
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert cli_main(["push", str(model_folder), repo_id, "--token", WRITE_TOKEN]) == 2
    error = capsys.readouterr().err
    assert_one_line(error)
    assert error.startswith("error: could not reach the Hub (")


# ---------------------------------------------------------------- the Space


def test_readme_starts_with_a_valid_space_header():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n")
    space = SpaceCard(readme).data
    assert space.sdk == "gradio" and (REPO / space.app_file).is_file()
    assert space.sdk_version.split(".")[0] == version("gradio").split(".")[0]
    assert str(space.python_version) == "3.11" and space.license == "mit"
    assert space.models and all(re.fullmatch(r"[\w.-]+/[\w.-]+", model) for model in space.models)
    metadata = space.to_dict()
    assert metadata["title"] and metadata["emoji"]
    colours = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert metadata["colorFrom"] in colours and metadata["colorTo"] in colours
    assert 0 < len(metadata["short_description"]) <= 60
    assert "\n# colorgan\n" in readme and "\n## Publishing to the Hub\n" in readme
