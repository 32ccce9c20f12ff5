"""scripts/make_training_mix.py: repeats, seeded subsets, the mix's manifest, and its refusals."""
from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

from colorgan.data import open_stream

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_training_mix.py"
spec = importlib.util.spec_from_file_location("make_training_mix", SCRIPT)
make_training_mix = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = make_training_mix
spec.loader.exec_module(make_training_mix)

COLUMNS = ["file", "folder", "source", "licence_class", "phash"]


@pytest.fixture
def photo_set(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A manifest of 2 `train` photos and 10 + 4 git photos of two sources, with the files on disk."""
    train, git = tmp_path / "train", tmp_path / "git-photos"
    train.mkdir(), git.mkdir()
    rows = [{"file": f"t{i}.jpg", "folder": "train", "source": "debian-pkg", "licence_class": "permissive"} for i in range(2)]
    rows += [{"file": f"faces__{i}.jpg", "folder": "git-photos", "source": "owner/faces", "licence_class": "research-only"}
             for i in range(10)]
    rows += [{"file": f"objects__{i}.jpg", "folder": "git-photos", "source": "owner/objects", "licence_class": "permissive"}
             for i in range(4)]
    for index, row in enumerate(rows):
        row["phash"] = f"{index:016x}"
        (train if row["folder"] == "train" else git).joinpath(row["file"]).write_bytes(f"photo {index}".encode())
    manifest = tmp_path / "manifest.tsv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return manifest, train, git


def run(photo_set, output: Path, *options: str) -> None:
    manifest, train, git = photo_set
    make_training_mix.main([str(manifest), "--output", str(output), "--folder", f"train={train}",
                            "--folder", f"git-photos={git}", *options])


def read_mix(output: Path) -> list[dict]:
    with (output / make_training_mix.MIX_MANIFEST).open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_repeats_subsets_and_the_mix_manifest(photo_set, tmp_path: Path):
    output = tmp_path / "mix"
    run(photo_set, output, "--repeat", "train=3", "--subset", "owner/faces=4", "--repeat", "owner/objects=2", "--seed", "5")
    links = sorted(path.name for path in output.iterdir() if path.is_symlink())
    assert len(links) == 2 * 3 + 4 + 4 * 2
    assert {name for name in links if name.endswith("t0.jpg")} == {"00__t0.jpg", "01__t0.jpg", "02__t0.jpg"}
    for link in output.glob("*__*.jpg"):  # each link reaches its photo
        assert link.read_bytes().startswith(b"photo ")
    rows = read_mix(output)
    assert len(rows) == 2 + 4 + 4  # each photo once, with its copies
    assert {row["file"]: int(row["copies"]) for row in rows}["t1.jpg"] == 3
    assert sum(row["source"] == "owner/faces" for row in rows) == 4
    assert all(row["copies"] == "1" for row in rows if row["source"] == "owner/faces")
    assert rows[0].keys() == {*COLUMNS, "copies"}
    # the loader streams the links as one shard each and skips the manifest
    assert open_stream(str(output), "train").num_shards == len(links)


def test_a_seed_gives_the_same_subset_and_another_seed_another(photo_set, tmp_path: Path):
    picks = []
    for index, seed in enumerate(["1", "1", "2"]):
        run(photo_set, tmp_path / f"mix{index}", "--subset", "owner/faces=5", "--seed", seed)
        picks.append({row["file"] for row in read_mix(tmp_path / f"mix{index}")})
    assert picks[0] == picks[1] and picks[0] != picks[2]


def test_rest_gives_unnamed_sources_a_default(photo_set, tmp_path: Path):
    run(photo_set, tmp_path / "mix", "--repeat", "train=2", "--rest", "1")
    rows = read_mix(tmp_path / "mix")
    assert len(rows) == 16 and sum(int(row["copies"]) for row in rows) == 18


@pytest.mark.parametrize("options, message", [
    (["--repeat", "owner/nobody=2"], "no photos of owner/nobody"),
    (["--subset", "owner/objects=9"], "only 4 of its photos"),
    (["--repeat", "owner/faces=0"], "positive integer"),
    (["--repeat", "owner/faces=2", "--subset", "owner/faces=2"], "not both"),
    ([], "would be empty"),
])
def test_refusals_leave_an_earlier_mix_as_it_was(photo_set, tmp_path: Path, options, message):
    output = tmp_path / "mix"
    run(photo_set, output, "--repeat", "train=1")
    before = sorted(path.name for path in output.iterdir())
    with pytest.raises(SystemExit, match=message):
        run(photo_set, output, *options)
    assert sorted(path.name for path in output.iterdir()) == before


def test_a_missing_photo_is_named_and_nothing_is_replaced(photo_set, tmp_path: Path):
    manifest, train, _ = photo_set
    output = tmp_path / "mix"
    run(photo_set, output, "--repeat", "train=1")
    (train / "t1.jpg").unlink()
    with pytest.raises(SystemExit, match="t1.jpg: photo of the manifest not found"):
        run(photo_set, output, "--repeat", "train=2")
    assert len(read_mix(output)) == 2 and not output.with_name("mix.partial").exists()


def test_hold_out_leaves_named_photos_out_and_refuses_unknown_names(photo_set, tmp_path: Path):
    held = tmp_path / "held.txt"
    held.write_text("faces__0.jpg\nobjects__3.jpg\n\n")
    run(photo_set, tmp_path / "mix", "--rest", "1", "--hold-out", str(held))
    files = {row["file"] for row in read_mix(tmp_path / "mix")}
    assert len(files) == 14 and not files & {"faces__0.jpg", "objects__3.jpg"}
    assert not any(link.name.endswith(("faces__0.jpg", "objects__3.jpg")) for link in (tmp_path / "mix").iterdir())
    held.write_text("faces__0.jpg\nnot-a-photo.jpg\n")
    with pytest.raises(SystemExit, match="1 names not in the manifest, e.g. not-a-photo.jpg"):
        run(photo_set, tmp_path / "mix", "--rest", "1", "--hold-out", str(held))


def test_boost_adds_copies_of_listed_photos_even_from_unnamed_sources(photo_set, tmp_path: Path):
    boost = tmp_path / "boost.txt"
    boost.write_text("faces__1.jpg\nobjects__2.jpg\nt0.jpg\n")
    held = tmp_path / "held.txt"
    held.write_text("t0.jpg\n")
    run(photo_set, tmp_path / "mix", "--repeat", "owner/faces=2", "--boost", f"{boost}=3", "--hold-out", str(held))
    copies = {row["file"]: int(row["copies"]) for row in read_mix(tmp_path / "mix")}
    # faces: 2 each, faces__1 2 + 3; objects__2 only through the boost; t0 held out despite the boost
    assert copies == {**{f"faces__{i}.jpg": 2 for i in range(10)}, "faces__1.jpg": 5, "objects__2.jpg": 3}
    links = sorted(link.name for link in (tmp_path / "mix").iterdir() if link.name.endswith("objects__2.jpg"))
    assert links == ["00__objects__2.jpg", "01__objects__2.jpg", "02__objects__2.jpg"]
    boost.write_text("nobody.jpg\n")
    with pytest.raises(SystemExit, match="--boost .*1 names not in the manifest, e.g. nobody.jpg"):
        run(photo_set, tmp_path / "mix", "--repeat", "owner/faces=2", "--boost", f"{boost}=3")
    with pytest.raises(SystemExit, match="--boost .*: no such file"):
        run(photo_set, tmp_path / "mix", "--repeat", "owner/faces=2", "--boost", f"{tmp_path / 'none.txt'}=3")
