"""scripts/package_starter.py: a run of several stages packaged as the starter, into a stand-in folder."""
from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from conftest import TINY_GENERATOR
from PIL import Image

from colorgan import UNetGenerator
from colorgan.checkpoint import FACTS_NAME

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "package_starter.py"
spec = importlib.util.spec_from_file_location("package_starter", SCRIPT)
package_starter = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = package_starter
spec.loader.exec_module(package_starter)


def stage(folder: Path, steps: int, images: int, seconds: float, gan_steps: int = 0, **args) -> Path:
    """A finished run's folder: a tiny generator and its training facts."""
    folder.mkdir(parents=True)
    UNetGenerator(**TINY_GENERATOR).save_pretrained(folder)
    facts = {"args": {"output_dir": str(folder), "batch_size": 8, "resolution": 128, "max_steps": steps,
                      "pretrain_steps": steps - gan_steps, "dataset": "mix", **args},
             "steps": steps, "pretrain_steps": steps - gan_steps, "gan_steps": gan_steps,
             "images_seen": images, "wall_time_seconds": seconds, "num_processes": 1}
    (folder / FACTS_NAME).write_text(json.dumps(facts))
    return folder


@pytest.fixture
def lineage(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    """Three stages (parent -> L1 sibling -> GAN phase), an eval summary, a grid and a training_data.tsv."""
    paths = {
        "parent": stage(tmp_path / "parent", 3000, 24_000, 2_400.0, seed=0, encoder_lr_scale=0.1),
        "sibling": stage(tmp_path / "sibling", 1600, 12_800, 1_300.0, seed=53, init_from=str(tmp_path / "parent")),
        "gan": stage(tmp_path / "gan", 450, 3_600, 900.0, gan_steps=450, seed=72, init_from=str(tmp_path / "sibling")),
        "starter": tmp_path / "starter",
    }
    runs = [{"label": label, "evaluation": {"dataset": "val", "metrics": {"psnr": psnr, "colorfulness": 40.0},
                                            "num_images": 43, "hints": hints}}
            for label, psnr, hints in [("gan", 22.5, 0), ("gan + 10 hints", 25.5, 10), ("peer", 22.2, 0)]]
    paths["summary"] = tmp_path / "summary.json"
    paths["summary"].write_text(json.dumps({"runs": runs}))
    paths["grid"] = tmp_path / "grid.jpg"
    Image.new("RGB", (64, 32), (90, 120, 60)).save(paths["grid"])
    paths["training_data"] = tmp_path / "training_data.tsv"
    with paths["training_data"].open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "origin", "source", "licence_class", "phash"])
        writer.writerow(["a.jpg", "debian", "gcompris-qt-data", "permissive", "0" * 16])
        writer.writerow(["b.jpg", "git", "owner/faces", "research-only", "1" * 16])
        writer.writerow(["c.jpg", "git", "owner/faces", "research-only", "2" * 16])
    monkeypatch.setattr(package_starter, "STARTER_MODEL", paths["starter"])  # never the bundled model
    return paths


def package(monkeypatch, paths: dict[str, Path], *options: str) -> None:
    monkeypatch.setattr(sys, "argv", ["package_starter.py", str(paths["gan"]), str(paths["summary"]), "--run-label", "gan",
                                      "--grid", str(paths["grid"]), "--training-data", str(paths["training_data"]), *options])
    package_starter.main()


def test_every_stage_of_the_lineage_is_counted(lineage, monkeypatch):
    package(monkeypatch, lineage, "--continued-from", str(lineage["sibling"]), "--continued-from", str(lineage["parent"]),
            "--compare", "peer=pix2pix peer")
    facts = json.loads((lineage["starter"] / FACTS_NAME).read_text())
    assert facts["steps"] == 3000 + 1600 + 450 and facts["gan_steps"] == 450 and facts["pretrain_steps"] == 4600
    assert facts["images_seen"] == 24_000 + 12_800 + 3_600
    assert facts["wall_time_seconds"] == pytest.approx(4_600.0)
    assert facts["args"]["init_from"] is None
    assert [stage["seed"] for stage in facts["args"]["continued_from"]] == [0, 53]  # oldest first
    assert facts["args"]["continued_from"][0]["encoder_lr_scale"] == 0.1
    assert facts["training_data"] == [{"source": "owner/faces", "licence": "research-only", "photos": 2},
                                      {"source": "Debian packages", "licence": "permissive", "photos": 1}]
    assert [(e["hints"], e.get("compared_with")) for e in facts["evaluations"]] == [(0, None), (10, None), (0, "pix2pix peer")]
    for name in ("config.json", "model.safetensors", "training_data.tsv", "sample_grid.jpg", "README.md"):
        assert (lineage["starter"] / name).is_file(), name
    card = (lineage["starter"] / "README.md").read_text()
    assert "4,600 L1 warm-up + 450 adversarial" in card  # the lineage's steps, not the last stage's 450


def test_one_stage_back_still_works(lineage, monkeypatch):
    package(monkeypatch, lineage, "--continued-from", str(lineage["sibling"]))
    facts = json.loads((lineage["starter"] / FACTS_NAME).read_text())
    assert facts["steps"] == 1600 + 450 and len(facts["args"]["continued_from"]) == 1


def test_a_stage_without_facts_is_refused_before_anything_is_written(lineage, monkeypatch, tmp_path: Path):
    empty = tmp_path / "unfinished"
    empty.mkdir()
    with pytest.raises(SystemExit, match="unfinished: its training_facts.json has no steps"):
        package(monkeypatch, lineage, "--continued-from", str(empty))
    assert not (lineage["starter"] / "README.md").exists()


def test_one_training_table_per_stage_ships_their_union(lineage, monkeypatch, tmp_path: Path):
    def table(name: str, rows: list[tuple[str, str, int]]) -> str:
        path = tmp_path / name
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["file", "origin", "source", "licence_class", "phash", "copies"])
            writer.writerows([file, "git", source, "research-only", "0" * 16, copies] for file, source, copies in rows)
        return str(path)

    parent = table("parent.tsv", [("a.jpg", "owner/faces", 1), ("b.jpg", "owner/faces", 1), ("c.jpg", "owner/trees", 1)])
    sibling = table("sibling.tsv", [("a.jpg", "owner/faces", 30)])
    gan = table("gan.tsv", [("a.jpg", "owner/faces", 30), ("c.jpg", "owner/trees", 4)])
    monkeypatch.setattr(sys, "argv", ["package_starter.py", str(lineage["gan"]), str(lineage["summary"]), "--run-label",
                                      "gan", "--grid", str(lineage["grid"]), "--continued-from", str(lineage["sibling"]),
                                      "--continued-from", str(lineage["parent"]), "--training-data", gan,
                                      "--training-data", sibling, "--training-data", parent])
    package_starter.main()
    with (lineage["starter"] / "training_data.tsv").open(newline="") as handle:
        shipped = list(csv.DictReader(handle, delimiter="\t"))
    assert [(row["file"], row["copies_by_stage"]) for row in shipped] == [("a.jpg", "1,30,30"), ("b.jpg", "1,0,0"),
                                                                          ("c.jpg", "1,0,4")]
    assert "copies" not in shipped[0] and shipped[0]["licence_class"] == "research-only"
    facts = json.loads((lineage["starter"] / FACTS_NAME).read_text())
    assert facts["training_data"] == [{"source": "owner/faces", "licence": "research-only", "photos": 2},
                                      {"source": "owner/trees", "licence": "research-only", "photos": 1}]
    monkeypatch.setattr(sys, "argv", [*sys.argv[:-2]])  # three stages, two tables
    with pytest.raises(SystemExit):
        package_starter.main()


def test_the_card_takes_encoder_and_gan_settings_from_the_stages_that_had_them(lineage, monkeypatch, tmp_path: Path):
    """An L1 nudge after the GAN stage: its own defaults (λ 100, vanilla, no encoder flags) must not describe the model."""
    gan_args = json.loads((lineage["gan"] / FACTS_NAME).read_text())
    gan_args["args"].update(lambda_l1=50.0, gan_loss="lsgan", learning_rate=2e-4)
    (lineage["gan"] / FACTS_NAME).write_text(json.dumps(gan_args))
    parent = json.loads((lineage["parent"] / FACTS_NAME).read_text())
    parent["args"]["encoder_weights"] = "runs/encoders/mobilenetv2_100_imagenet.safetensors"
    (lineage["parent"] / FACTS_NAME).write_text(json.dumps(parent))
    nudge = stage(tmp_path / "nudge", 900, 7_200, 870.0, seed=94, init_from=str(lineage["gan"]), lambda_l1=100.0,
                  gan_loss="vanilla", encoder="regnetx_002", learning_rate=5e-5)
    lineage["gan"], stages = nudge, [lineage["gan"], lineage["sibling"], lineage["parent"]]
    package(monkeypatch, lineage, *[option for folder in stages for option in ("--continued-from", str(folder))])
    card = (lineage["starter"] / "README.md").read_text()
    assert "| Stages | 4, each fine-tuning the one before" in card
    assert "| λ (L1 weight) | 50.0 |" in card and "| GAN loss | lsgan |" in card
    assert "learning rate 0.0002, 5e-05," in card
    assert "| Encoder | `resnet18`, from ImageNet weights |" in card  # the weights' config, not the nudge's --encoder
