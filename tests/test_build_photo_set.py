"""The photo-set builder: its pure functions, and whole builds from tiny git repositories made in a
temporary folder. No network, no apt, synthetic images only."""
import importlib.util
import io
import struct
import sys
import zlib
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_photo_set.py"
spec = importlib.util.spec_from_file_location("build_photo_set", SCRIPT)
build_photo_set = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = build_photo_set  # dataclasses look their module up there
spec.loader.exec_module(build_photo_set)


def photo_like(seed: int, size=(480, 320)) -> Image.Image:
    """A smooth random colour field plus noise: textured and colourful like a photo, no flat areas."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 9, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC), dtype=np.float64)
    noisy = smooth + rng.normal(0, 6, smooth.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def reencode(image: Image.Image, scale: float, fmt: str, **save_args) -> Image.Image:
    resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    resized.save(buffer, format=fmt, **save_args)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@pytest.mark.parametrize("scale,fmt,save_args", [(0.5, "JPEG", {"quality": 50}), (1.7, "PNG", {}), (0.8, "WEBP", {"quality": 40})])
def test_phash_finds_resized_reencoded_copy(scale, fmt, save_args):
    original = photo_like(0)
    copy = reencode(original, scale, fmt, **save_args)
    fit = build_photo_set.fit_to_set
    distance = build_photo_set.hamming(build_photo_set.phash(fit(original)), build_photo_set.phash(fit(copy)))
    assert distance <= build_photo_set.PHASH_MAX_DISTANCE
    others = {build_photo_set.phash(fit(photo_like(seed))): f"other{seed}" for seed in range(1, 6)}
    assert build_photo_set.nearest(build_photo_set.phash(fit(copy)), others)[0] > build_photo_set.PHASH_MAX_DISTANCE


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_phash_tolerates_crop_brighten_and_heavy_jpeg(seed):
    # trimmed 2-3 %, 15 % brighter, 0.4x at JPEG q30: measured 4 to 8 bits away, not 0
    original = photo_like(seed)
    edited = ImageEnhance.Brightness(original.crop((8, 5, original.width - 8, original.height - 5))).enhance(1.15)
    copy = reencode(edited, 0.4, "JPEG", quality=30)
    fit = build_photo_set.fit_to_set
    distance = build_photo_set.hamming(build_photo_set.phash(fit(original)), build_photo_set.phash(fit(copy)))
    assert 0 < distance <= build_photo_set.PHASH_MAX_DISTANCE


def test_phash_is_64_bits_and_hamming_counts_bits():
    value = build_photo_set.phash(photo_like(3))
    assert 0 <= value < 2**64
    assert value.bit_count() == 32  # thresholded at the median of its 64 coefficients
    assert build_photo_set.hamming(0b1011, 0b0001) == 2
    assert build_photo_set.nearest(value, {}) == (65, "")


@pytest.mark.parametrize("size,expected", [((1000, 500), (768, 384)), ((200, 150), (512, 384)), ((300, 1200), (384, 768)), ((384, 384), (384, 384))])
def test_fit_to_set_geometry(size, expected):
    assert build_photo_set.fit_to_set(Image.new("RGB", size, "red")).size == expected


def test_photo_passes_filters():
    features = build_photo_set.photo_features(photo_like(4))
    assert build_photo_set.rejection_reason(features) is None, features


def _flat_illustration() -> Image.Image:
    image = Image.new("RGB", (400, 300), (40, 120, 220))
    image.paste((250, 200, 30), (50, 50, 200, 150))
    image.paste((200, 30, 60), (220, 120, 380, 280))
    return image


def _transparent_cutout() -> Image.Image:
    image = photo_like(5).convert("RGBA")
    alpha = np.zeros((image.height, image.width), np.uint8)
    alpha[80:240, 120:360] = 255  # a photographed object cut out of its background
    image.putalpha(Image.fromarray(alpha))
    return image


def _few_colour_noise() -> Image.Image:
    # textured (no flat areas) but made of four colours only: posterised art, not a photo
    rng = np.random.default_rng(6)
    palette = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [220, 220, 40]], np.uint8)
    return Image.fromarray(palette[rng.integers(0, 4, (300, 400))])


@pytest.mark.parametrize("make,reason", [
    (lambda: photo_like(7).convert("L").convert("RGB"), "grayscale"),
    (lambda: Image.new("RGB", (400, 300), (150, 90, 60)), "few-colours"),
    (_few_colour_noise, "few-colours"),
    (_transparent_cutout, "transparent"),
])
def test_non_photos_are_rejected(make, reason):
    features = build_photo_set.photo_features(make())
    assert build_photo_set.rejection_reason(features) == reason, features
    assert np.isfinite([features.chroma, features.flat, features.transparent]).all()


def test_flat_filter():
    # many colours (a noisy photo strip) but three quarters of it a perfectly flat fill
    image = _flat_illustration()
    image.paste(photo_like(8, size=(400, 70)), (0, 230))
    features = build_photo_set.photo_features(image)
    assert features.flat > build_photo_set.MAX_FLAT
    assert build_photo_set.rejection_reason(features) in ("flat", "few-colours")
    features.colours = build_photo_set.MIN_COLOURS
    assert build_photo_set.rejection_reason(features) == "flat"


DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2020 Someone
License: GPL-3+

Files: src/activities/zoo/resource/*
Copyright: 2019 Photographer
License: CC-BY-SA-4.0
 The long text of the licence
 continues here.

Files: data/*
Copyright: 2018 Other
License: BSD-3-Clause

Files: debian/*
Copyright: 2021 Packager
License: GPL-2+

License: GPL-3+
 On Debian systems ...
"""


@pytest.mark.parametrize("path,expected", [
    ("/usr/share/demo/rcc/zoo.rcc:/demo/src/activities/zoo/resource/lion.webp", "CC-BY-SA-4.0"),
    ("/usr/share/demo/images/other.jpg", "GPL-3+"),
    ("/usr/share/doc/demo/data/photo.jpg", "BSD-3-Clause"),
    ("/usr/share/doc/demo/debian-notes/a.jpg", "GPL-3+"),
])
def test_dep5_license_for_path(path, expected):
    assert build_photo_set.parse_copyright(DEP5).license_for(path) == expected


@pytest.mark.parametrize("text,expected", [
    ("This package was debianized by X.\n\nLicense: LGPL-2.1+\n", "LGPL-2.1+"),
    ("Released under the GNU General Public License, version 2 or later,\nsee /usr/share/common-licenses/GPL-2.\n", "GPL-2+"),
    ("No licence statement here.\n", "unknown"),
])
def test_non_dep5_copyright_gives_package_license(text, expected):
    copyright_info = build_photo_set.parse_copyright(text)
    assert copyright_info.stanzas == []
    assert copyright_info.license_for("/usr/share/x/a.jpg") == expected


def test_package_list_and_exclude_filter(tmp_path):
    listing = tmp_path / "packages.txt"
    listing.write_text("# comment\nalpha include=/photos/ skip=_thumb label=animal license=Apache-2.0 AND MIT\n\nbeta  # trailing\n")
    alpha, beta = build_photo_set.read_packages(listing)
    assert (alpha.name, alpha.label, alpha.license) == ("alpha", "animal", "Apache-2.0 AND MIT")
    assert (beta.name, beta.include, beta.license) == ("beta", None, None)
    assert alpha.wants("/usr/share/alpha/photos/cat.jpg")
    assert not alpha.wants("/usr/share/alpha/photos/cat_thumb.jpg")
    assert not alpha.wants("/usr/share/alpha/icons/cat.png")
    assert beta.wants("/anything.png")
    listing.write_text("gamma colour=red\n")
    with pytest.raises(ValueError, match="bad option .colour=red"):
        build_photo_set.read_packages(listing)
    exclude = tmp_path / "EXCLUDE.tsv"
    exclude.write_text("source_package\toriginal_path_inside_package\nalpha\t/usr/share/alpha/photos/cat.jpg\n")
    reserved = {(row["source_package"], row["original_path_inside_package"]) for row in build_photo_set.read_tsv(exclude)}
    assert ("alpha", "/usr/share/alpha/photos/cat.jpg") in reserved
    assert ("beta", "/usr/share/alpha/photos/cat.jpg") not in reserved


def _rcc(files: dict[str, bytes], compress: set[str]) -> bytes:
    """A version-1 Qt resource bundle holding `files` in one folder `img`."""
    names, data, name_offsets = b"", b"", {}
    for name in ["img", *files]:
        name_offsets[name] = len(names)
        encoded = name.encode("utf-16-be")
        names += struct.pack(">HI", len(name), 0) + encoded
    data_offsets = {}
    for name, content in files.items():
        payload = struct.pack(">I", len(content)) + zlib.compress(content) if name in compress else content
        data_offsets[name] = len(data)
        data += struct.pack(">I", len(payload)) + payload
    nodes = struct.pack(">IHII", 0, 2, 1, 1)  # root: 1 child starting at node 1
    nodes += struct.pack(">IHII", name_offsets["img"], 2, len(files), 2)
    for name in files:
        flags = 1 if name in compress else 0
        nodes += struct.pack(">IHHHI", name_offsets[name], flags, 0, 0, data_offsets[name])
    header = 20
    tree, data_start = header, header + len(nodes)
    names_start = data_start + len(data)
    return struct.pack(">4sIIII", b"qres", 1, tree, data_start, names_start) + nodes + data + names


def test_rcc_entries_reads_plain_and_compressed_members():
    blob = _rcc({"a.webp": b"first", "b.png": b"second" * 20}, compress={"b.png"})
    assert dict(build_photo_set.rcc_entries(blob)) == {"/img/a.webp": b"first", "/img/b.png": b"second" * 20}
    with pytest.raises(ValueError, match="Qt resource"):
        list(build_photo_set.rcc_entries(b"nope" + bytes(16)))


@pytest.mark.parametrize("inside,expected", [
    ("/usr/share/wallpapers/Kite/contents/images/2560x1600.jpg", "pkg__kite_2560x1600.jpg"),
    ("/usr/share/x/Big Ben.JPG", "pkg__big_ben.jpg"),
    ("/usr/share/x.rcc:/gcompris/resource/lion.webp", "pkg__lion.jpg"),
])
def test_output_name(inside, expected):
    taken: set[str] = set()
    assert build_photo_set.output_name("pkg", inside, taken) == expected
    assert build_photo_set.output_name("pkg", inside, taken) == expected.replace(".jpg", "-2.jpg")


@pytest.mark.parametrize("path,label", [("/x/red_fox.jpg", "animal"), ("/x/hamburger.jpg", "food"), ("/x/abzug.jpg", "unknown")])
def test_guess_label(path, label):
    assert build_photo_set.guess_label(path) == label


# --------------------------------------------------------------------------- git snapshots

def _git(cwd: Path, *arguments: str) -> str:
    import subprocess
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *arguments],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def _save(image: Image.Image, path: Path, **save_args) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_args)


SOURCE_HEADER = "name\trepository\tpaths\tskip\tlicence\tlicence_class\tcap\tlabel\tnote\n"


@pytest.fixture
def tiny_world(tmp_path):
    """A fake shared/photos (1 train, 1 val photo, nothing reserved) and a git work tree holding
    photos, a gray one, a near-copy of the val photo, an exact copy, a tiny one and non-candidates."""
    fit = build_photo_set.fit_to_set
    shared = tmp_path / "shared"
    _save(fit(photo_like(20)), shared / "val" / "pkg__val.jpg", quality=92)
    _save(fit(photo_like(21)), shared / "train" / "pkg__train.jpg", quality=92)
    columns = "file\tsource_package\toriginal_path_inside_package\toriginal_width\toriginal_height\tlicense\tlabel\n"
    (shared / "MANIFEST-val.tsv").write_text(columns + "pkg__val.jpg\tpkg\t/usr/share/pkg/val.jpg\t480\t320\tGPL-3+\tunknown\n")
    (shared / "MANIFEST-train.tsv").write_text(columns + "pkg__train.jpg\tpkg\t/usr/share/pkg/train.jpg\t480\t320\tCC0-1.0\tanimal\n")
    (shared / "EXCLUDE.tsv").write_text("source_package\toriginal_path_inside_package\n")

    repo = tmp_path / "mirror" / "someone+photos" / "repo"
    photos = repo / "pics"
    _save(photo_like(1), photos / "cat" / "image_0001.jpg", quality=95)
    _save(photo_like(2), photos / "dog" / "image_0001.png")
    _save(photo_like(3, size=(300, 500)), photos / "dog" / "image_0002.jpg", quality=95)
    (photos / "dog" / "copy_of_cat.jpg").write_bytes((photos / "cat" / "image_0001.jpg").read_bytes())
    _save(photo_like(7).convert("L").convert("RGB"), photos / "gray.jpg", quality=95)
    _save(reencode(photo_like(20), 0.8, "JPEG", quality=70), photos / "near_val.jpg", quality=95)
    _save(photo_like(9, size=(120, 90)), photos / "tiny.jpg", quality=95)
    (photos / "notes.txt").write_text("not an image")
    _save(photo_like(10), repo / "other" / "outside_prefix.jpg", quality=95)
    _save(photo_like(11), photos / "skipped" / "x.jpg", quality=95)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "photos")
    sources = tmp_path / "sources.tsv"
    sources.write_text("# a comment\n" + SOURCE_HEADER
                       + "fake\tsomeone/photos\tpics/\t^pics/skipped/\tCC-BY-4.0\tpermissive\t\t\tnote\n")
    return tmp_path, shared, repo, sources


def test_git_source_build(tiny_world):
    tmp_path, shared, repo, sources = tiny_world
    output, training_data = tmp_path / "out", tmp_path / "training_data.tsv"
    build_photo_set.main([
        "--output", str(output), "--skip-packages", "--git-source-list", str(sources),
        "--mirror-root", str(tmp_path / "mirror"), "--no-clone", "--no-update",
        "--shared", str(shared), "--cache", str(tmp_path / "cache"), "--training-data", str(training_data),
    ])
    commit = _git(repo, "rev-parse", "HEAD").strip()
    rejected = {row["original_path_inside_package"]: row["reason"] for row in build_photo_set.read_tsv(output / "REJECTED.tsv")}
    assert rejected == {
        "pics/gray.jpg": "grayscale", "pics/near_val.jpg": "near-val", "pics/tiny.jpg": "tiny",
        "pics/dog/copy_of_cat.jpg": "duplicate",  # same size as cat/image_0001.jpg, which sorts first
    }
    rows = build_photo_set.read_tsv(training_data)
    assert list(rows[0]) == list(build_photo_set.TRAINING_DATA_COLUMNS)
    train_row, *git_rows = rows
    assert (train_row["file"], train_row["folder"], train_row["source"], train_row["licence"]) == ("pkg__train.jpg", "train", "pkg", "CC0-1.0")
    assert {row["path"]: row["file"] for row in git_rows} == {
        "pics/cat/image_0001.jpg": "fake__cat_image_0001.jpg",
        "pics/dog/image_0001.png": "fake__dog_image_0001.jpg",
        "pics/dog/image_0002.jpg": "fake__dog_image_0002.jpg",
    }
    val_hash = build_photo_set.phash(Image.open(shared / "val" / "pkg__val.jpg"))
    for row in git_rows:
        assert (row["folder"], row["origin"], row["source"], row["commit"]) == ("out", "git", "someone/photos", commit)
        assert (row["licence"], row["licence_class"]) == ("CC-BY-4.0", "permissive")
        assert len(row["phash"]) == 16 and int(row["phash"], 16) >= 0
        with Image.open(output / row["file"]) as written:
            assert min(written.size) == build_photo_set.SET_SHORT_SIDE
            assert row["phash"] == str(imagehash.phash(written))  # what anyone checking the file gets
    assert (git_rows[2]["width"], git_rows[2]["height"]) == ("300", "500")
    for row in rows:
        assert build_photo_set.hamming(int(row["phash"], 16), val_hash) > 8
    manifest = build_photo_set.read_tsv(output / "MANIFEST.tsv")
    assert sorted(row["file"] for row in manifest) == sorted(path.name for path in output.glob("*.jpg"))
    assert {row["licence_class"] for row in manifest} == {"permissive"}


def test_git_source_cap_and_list_errors(tiny_world):
    tmp_path, shared, repo, sources = tiny_world
    sources.write_text(SOURCE_HEADER + "fake\tsomeone/photos\tpics/dog/,pics/cat/\t\tCC0-1.0\tresearch-only\t2\tanimal\t\n")
    output = tmp_path / "out"
    build_photo_set.main(["--output", str(output), "--skip-packages", "--git-source-list", str(sources),
                          "--mirror-root", str(tmp_path / "mirror"), "--no-clone", "--no-update",
                          "--shared", str(shared), "--cache", str(tmp_path / "cache")])
    # in path order: cat/image_0001 and dog/copy_of_cat pass, dog/image_0001 passes (3 >= 2 x CAP_MARGIN),
    # so dog/image_0002 is not even decoded; then the copy goes as a duplicate, leaving 2, the cap
    manifest = build_photo_set.read_tsv(output / "MANIFEST.tsv")
    assert [row["original_path_inside_package"] for row in manifest] == ["pics/cat/image_0001.jpg", "pics/dog/image_0001.png"]
    assert {(row["label"], row["licence_class"]) for row in manifest} == {("animal", "research-only")}
    rejected = {row["original_path_inside_package"]: row["reason"] for row in build_photo_set.read_tsv(output / "REJECTED.tsv")}
    assert rejected == {"pics/dog/copy_of_cat.jpg": "duplicate", "pics/dog/image_0002.jpg": "over-cap"}
    for bad, message in [("fake\tsomeone/photos\t.\t\tCC0\tfree\t\t\t\n", "licence_class"),
                         ("fake\tnot-a-repository\t.\t\tCC0\tpermissive\t\t\t\n", "bad repository"),
                         ("fake\tsomeone/photos\t.\t\tCC0\tpermissive\tmany\t\t\n", "cap")]:
        sources.write_text(SOURCE_HEADER + bad)
        with pytest.raises(ValueError, match=message):
            build_photo_set.read_git_sources(sources)
    sources.write_text(SOURCE_HEADER + "fake\tsomeone/photos\t.\t\tCC0\tpermissive\t\t\t\n")
    with pytest.raises(SystemExit, match="not under"):
        build_photo_set.main(["--output", str(output), "--skip-packages", "--git-source-list", str(sources),
                              "--mirror-root", str(tmp_path / "elsewhere"), "--no-clone", "--no-update",
                              "--shared", str(shared), "--cache", str(tmp_path / "cache")])


def test_locate_repository_takes_bare_dirs_and_work_trees_only(tiny_world):
    tmp_path, _shared, repo, _sources = tiny_world
    source = build_photo_set.GitSource("fake", "someone/photos", ("",), "CC0", "permissive")
    assert build_photo_set.locate_repository(source, tmp_path / "mirror", tmp_path / "clones", False) == repo
    bare_root = tmp_path / "bare"
    _git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare_root / "someone+photos"))
    assert build_photo_set.locate_repository(source, bare_root, tmp_path / "clones", False) == bare_root / "someone+photos"
    (repo / "pics" / "someone+photos").mkdir()  # a folder inside a work tree is not a repository
    with pytest.raises(RuntimeError, match="not under"):
        build_photo_set.locate_repository(source, repo / "pics", tmp_path / "clones", False)
    assert build_photo_set.GitSource("x", "a/b", ("",), "", "permissive").wants("n01_tench.JPEG")
    assert not build_photo_set.GitSource("x", "a/b", ("",), "", "permissive").wants("README.md")


def test_hash_index_matches_nearest():
    hashes = {build_photo_set.phash(photo_like(seed)): f"p{seed}" for seed in range(6)}
    index = build_photo_set.HashIndex()
    assert index.nearest(123) == (65, "")
    for value, name in hashes.items():
        index.add(value, name)
    probe = build_photo_set.phash(reencode(photo_like(3), 0.5, "JPEG", quality=40))
    assert index.nearest(probe) == build_photo_set.nearest(probe, hashes)
    assert build_photo_set.phash_hex(0xAB) == "00000000000000ab"
