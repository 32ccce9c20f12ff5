"""Build a folder of extra real colour photographs, for training: from Debian packages and git snapshots.

The same tooling as /work/shared/photos (see its README): photos are taken from Debian
packages that ship them (wallpapers, education data, documentation samples, photo-tool
samples), each converted to a JPEG (quality 92) whose short side is 384 px and whose long
side is at most 768 px (centre-cropped), named `<package>__<name>.jpg`, with a manifest row
giving its package, version, path inside the package, original size, licence and a label.

    python scripts/build_photo_set.py --output /work/photo-build/extra

Steps: `apt-get download` every package of scripts/photo_packages.txt (plus those named in
EXCLUDE.tsv, whose reserved photos must be known to be left out) into a cache, `dpkg-deb -x`
each, list image files (also inside Qt .rcc resource bundles, where GCompris keeps its
photos), and keep only real colour photographs:

- reserved: the (package, path) is in EXCLUDE.tsv;
- near duplicates (`imagehash.phash`, Hamming distance <= PHASH_MAX_DISTANCE) of a reserved
  photo or of a val/ photo (so both stay unseen), or already in the train/ set;
- tiny: short side under --min-side (default MIN_SHORT_SIDE);
- transparent: more than MAX_TRANSPARENT of the pixels are see-through (cut-outs, icons);
- grayscale: mean Lab chroma under MIN_CHROMA;
- few colours / flat: too few distinct colours or too many perfectly flat pixels, the marks
  of illustrations, renders and screenshots (JPEG noise alone does not give a photo's texture);
- duplicates within the new set: of near-identical images (the same wallpaper at several
  resolutions) only the largest is kept;
- over-cap: beyond a git source's cap of kept photos.

Git snapshots (`--git-source-list scripts/photo_git_sources.tsv`): public repositories that
commit real photos (Caltech-101, UTKFace, ImageNet samples, super-resolution and denoising
benchmarks, ...). Each is read from a fetched bare git directory or a work tree under
--mirror-root (`<owner>+<name>/repo`), or cloned (`git clone --depth 1 --bare`) into the cache
when it is not on disk. The image files under the listed path prefixes of HEAD are candidates,
judged by the same filters and hashes as the package photos, and recorded with repository,
commit, path, licence and licence class (permissive / research-only). A per-source cap keeps a
low-variety source (the clothing photos) from dominating. With --skip-packages only the git
sources are built; the packages of EXCLUDE.tsv are still unpacked, because their reserved photos
must be hashed to be left out.

    python scripts/build_photo_set.py --skip-packages --git-source-list scripts/photo_git_sources.tsv \
        --output /work/photo-build/git-photos

Every candidate and the reason it was rejected (if any) is written to REJECTED.tsv beside
MANIFEST.tsv, so the filters can be audited. --training-data writes the manifest of every
training photo (the new ones and those of train/), with each photo's 16-hex-digit pHash. The output folder streams unchanged with
`train_accelerate.py --dataset FOLDER` (a folder of images; the .tsv files are ignored).
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
import torch
from PIL import Image

from colorgan.color import rgb_to_lab
from colorgan.imaging import ImageError, open_image

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")
SET_SHORT_SIDE, SET_LONG_SIDE, SET_JPEG_QUALITY = 384, 768, 92
MIN_SHORT_SIDE = 150  # smaller originals would be upscaled by more than 2.5x (the existing set goes to 146)
MAX_TRANSPARENT = 0.01  # fraction of pixels with alpha < 250
MIN_CHROMA = 5.0  # mean sqrt(a^2 + b^2); the training loader itself skips below 4
MIN_COLOURS = 350  # distinct colours (5 bits per channel) in the 384-px working copy
MAX_FLAT = 0.75  # fraction of pixels equal to both right and lower neighbours
PHASH_MAX_DISTANCE = 10  # of 64 bits; see docs/photo_set.md for the measured distances
SKIP_REASONS = (
    "reserved", "near-reserved", "near-val", "in-set", "near-train", "undecodable", "tiny",
    "transparent", "grayscale", "few-colours", "flat", "duplicate", "missing", "over-cap",
)
LABEL_KEYWORDS = {
    "animal": "animal bird cat dog horse cow pig sheep goat fish insect bee butterfly dragonfly ladybird "
              "lion tiger bear elephant giraffe zebra monkey gorilla owl duck chicken rabbit mouse frog "
              "snake squirrel fox wolf deer camel penguin parrot eagle spider whale dolphin turtle "
              "lizard chameleon snail ant alpaca donkey",
    "plants": "flower tree leaf leaves plant rose tulip garden forest grass moss fern cactus blossom "
              "daisy sunflower mushroom",
    "food": "fruit apple orange banana lemon grape cherry strawberry vegetable carrot tomato potato bread "
            "cheese cake food coffee wine citrus berry hamburger pancake soup salad",
    "building": "castle church temple tower bridge house building monument palace cathedral mosque "
                "pyramid ruins cave wall fort",
    "landscape": "mountain beach sea ocean lake river landscape sunset sunrise desert valley canyon hill "
                 "field sky cloud snow waterfall island coast",
    "city": "city street town skyline road",
    "vehicle": "car bus train boat ship plane bike bicycle truck tractor helicopter",
    "people": "people person man woman child girl boy face portrait",
}


# --------------------------------------------------------------------------- perceptual hash

def phash(image: Image.Image) -> int:
    """64-bit DCT perceptual hash, `imagehash.phash` (the 8x8 lowest frequencies of a 32x32 gray copy
    vs their median), as an int. imagehash rather than our own code so that anyone can check the
    manifest's hashes and the near-duplicate claims with the common tool.
    """
    return int(str(imagehash.phash(image)), 16)


def phash_hex(value: int) -> str:
    """The 16-hex-digit form of a pHash, as `str(imagehash.phash(image))` writes it."""
    return f"{value:016x}"


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def nearest(hash_value: int, references: dict[int, str]) -> tuple[int, str]:
    """(distance, name) of the reference hash closest to `hash_value`; (65, '') when none."""
    best = (65, "")
    for other, name in references.items():
        distance = hamming(hash_value, other)
        if distance < best[0]:
            best = (distance, name)
    return best


class HashIndex:
    """A growing set of pHashes with a vectorised nearest-neighbour query.

    `nearest` over a dict is a Python loop: fine for the few hundred reference photos, but the
    within-set duplicate check compares each of 20,000 candidates with every photo kept so far.
    """

    def __init__(self) -> None:
        self.hashes = np.zeros(1024, dtype=np.uint64)
        self.names: list[str] = []

    def nearest(self, hash_value: int) -> tuple[int, str]:
        """(distance, name) of the closest stored hash; (65, '') when empty."""
        if not self.names:
            return 65, ""
        distances = np.bitwise_count(self.hashes[:len(self.names)] ^ np.uint64(hash_value))
        index = int(distances.argmin())
        return int(distances[index]), self.names[index]

    def add(self, hash_value: int, name: str) -> None:
        if len(self.names) == len(self.hashes):
            self.hashes = np.concatenate([self.hashes, np.zeros_like(self.hashes)])
        self.hashes[len(self.names)] = hash_value
        self.names.append(name)


# --------------------------------------------------------------------------- geometry and filters

def fit_to_set(image: Image.Image) -> Image.Image:
    """Resize to short side 384 (up or down), then centre-crop the long side to at most 768."""
    scale = SET_SHORT_SIDE / min(image.size)
    width, height = max(SET_SHORT_SIDE, round(image.width * scale)), max(SET_SHORT_SIDE, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    crop_w, crop_h = min(width, SET_LONG_SIDE), min(height, SET_LONG_SIDE)
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return image.crop((left, top, left + crop_w, top + crop_h))


@dataclass
class PhotoFeatures:
    """Measurements deciding whether an image looks like a real colour photograph."""

    transparent: float  # fraction of pixels with alpha < 250
    chroma: float  # mean Lab chroma
    colours: int  # distinct colours at 5 bits per channel
    flat: float  # fraction of pixels equal to their right and lower neighbours


def photo_features(image: Image.Image) -> PhotoFeatures:
    """Measure an RGB(A) image on a working copy no larger than the set's size (never upscaled).

    Args:
        image: decoded image, any mode; alpha is measured before it is dropped.
    """
    transparent = 0.0
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        transparent = float((alpha < 250).mean())
    working = image.convert("RGB")
    if min(working.size) > SET_SHORT_SIDE:
        scale = SET_SHORT_SIDE / min(working.size)
        working = working.resize((round(working.width * scale), round(working.height * scale)), Image.Resampling.BOX)
    pixels = np.asarray(working)  # (H, W, 3) uint8
    lab = rgb_to_lab(torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None])  # (1, 3, H, W)
    chroma = float(lab[:, 1:].norm(dim=1).mean())
    quantized = pixels.astype(np.int32) >> 3
    colours = len(np.unique((quantized[..., 0] << 10) | (quantized[..., 1] << 5) | quantized[..., 2]))
    same_right = (pixels[:-1, :-1] == pixels[:-1, 1:]).all(axis=-1)
    same_down = (pixels[:-1, :-1] == pixels[1:, :-1]).all(axis=-1)
    flat = float((same_right & same_down).mean())
    return PhotoFeatures(transparent, chroma, colours, flat)


def rejection_reason(features: PhotoFeatures) -> str | None:
    """Why an image is not a real colour photograph, or None. The first failing filter wins."""
    if features.transparent > MAX_TRANSPARENT:
        return "transparent"
    if features.chroma < MIN_CHROMA:
        return "grayscale"
    if features.colours < MIN_COLOURS:
        return "few-colours"
    if features.flat > MAX_FLAT:
        return "flat"
    return None


# --------------------------------------------------------------------------- licences and labels

@dataclass
class Copyright:
    """A package's copyright file: the licence of each Files stanza, and the package-level one."""

    default: str = "unknown"
    stanzas: list[tuple[list[str], str]] = field(default_factory=list)

    def license_for(self, path: str) -> str:
        """Licence of an installed path: the last Files stanza whose pattern matches its tail.

        DEP-5 patterns name paths in the source tree (`src/images/*.jpg`); installed paths
        differ in their prefix, so a pattern matches when it matches the end of the path.
        """
        found = self.default
        for patterns, license_name in self.stanzas:
            if any(_pattern_matches(pattern, path) for pattern in patterns):
                found = license_name
        return found


def _pattern_matches(pattern: str, path: str) -> bool:
    """Whether a DEP-5 `Files:` pattern (a source-tree path) matches the tail of an installed path.

    Approximate: `data/*` (the source's top folder) also matches `.../examples/data/x.jpg`.
    The package list's `license=` settles a package where that picks the wrong stanza.
    """
    pattern = pattern.removeprefix("./")
    return pattern == "*" or fnmatch.fnmatchcase(path, "*/" + pattern) or fnmatch.fnmatchcase(path, pattern)


def parse_copyright(text: str) -> Copyright:
    """Parse a Debian copyright file. Machine-readable (DEP-5) files give per-path licences;
    for others the first `License:` line, or a licence named in the text, is package-wide.
    """
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    machine_readable = bool(paragraphs) and re.match(r"(?i)format:\s*\S*copyright-format", paragraphs[0].strip())
    result = Copyright()
    if machine_readable:
        for paragraph in paragraphs:
            fields = _dep5_fields(paragraph)
            if "files" in fields and "license" in fields:
                license_name = fields["license"].splitlines()[0].strip()
                result.stanzas.append((fields["files"].split(), license_name))
                if fields["files"].split() == ["*"]:
                    result.default = license_name
            elif "license" in fields and result.default == "unknown" and "files" not in fields and paragraph is paragraphs[0]:
                result.default = fields["license"].splitlines()[0].strip()
        if result.default == "unknown" and result.stanzas:
            result.default = result.stanzas[0][1]
        return result
    match = re.search(r"(?im)^license:\s*(\S.*)$", text)
    if match:
        result.default = match.group(1).strip()
        return result
    for pattern, name in (
        (r"GNU General Public License.{0,80}version 3", "GPL-3+"), (r"GNU General Public License.{0,80}version 2", "GPL-2+"),
        (r"GNU Lesser General Public License", "LGPL"), (r"Creative Commons", "CC"), (r"public domain", "public-domain"),
        (r"/usr/share/common-licenses/GPL-3", "GPL-3+"), (r"/usr/share/common-licenses/GPL-2", "GPL-2+"),
        (r"/usr/share/common-licenses/GPL", "GPL"), (r"/usr/share/common-licenses/BSD", "BSD"),
    ):
        if re.search(pattern, text, re.IGNORECASE | re.DOTALL):
            result.default = name
            break
    return result


def _dep5_fields(paragraph: str) -> dict[str, str]:
    """Fields of one DEP-5 paragraph, lower-cased names; continuation lines joined with newlines."""
    fields: dict[str, str] = {}
    name = None
    for line in paragraph.splitlines():
        if line.startswith("#"):
            continue
        if line[:1] in (" ", "\t") and name:
            fields[name] += "\n" + line.strip()
        elif ":" in line:
            name, value = line.split(":", 1)
            name = name.strip().lower()
            fields[name] = value.strip()
    return fields


def guess_label(path: str) -> str:
    """Content label from keywords in the path (a heuristic: 'unknown' when nothing matches)."""
    words = set(re.split(r"[^a-z]+", path.lower().rsplit("/", 1)[-1]))
    words |= {word.rstrip("s") for word in words}
    for label, keywords in LABEL_KEYWORDS.items():
        if words & set(keywords.split()):
            return label
    return "unknown"


# --------------------------------------------------------------------------- reading packages

def rcc_entries(blob: bytes) -> Iterator[tuple[str, bytes]]:
    """(path, data) of each file in a Qt binary resource (.rcc), zlib-compressed or not.

    Format: header `qres`, version, then offsets of the node tree, the data and the names.
    A node is 14 bytes (22 from version 2, with a modification time): name offset, flags,
    then (directory) child count and first child index, or (file) locale and data offset.
    """
    magic, version, tree, data, names = struct.unpack(">4sIIII", blob[:20])
    if magic != b"qres":
        raise ValueError("not a Qt resource file")
    node_size = 14 if version < 2 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset:names + offset + 2])
        return blob[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        node = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", blob[node:node + 6])
        path = f"{prefix}/{name_at(name_offset)}" if index else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", blob[node + 6:node + 14])
            stack.extend((child, path) for child in range(first, first + count))
            continue
        (data_offset,) = struct.unpack(">I", blob[node + 10:node + 14])
        (size,) = struct.unpack(">I", blob[data + data_offset:data + data_offset + 4])
        raw = blob[data + data_offset + 4:data + data_offset + 4 + size]
        if flags & 4:  # zstd: Qt >= 5.13 may use it; skip rather than add a dependency
            continue
        yield path, zlib.decompress(raw[4:]) if flags & 1 else raw


def package_images(root: Path) -> Iterator[tuple[str, bytes]]:
    """(path inside the package, encoded bytes) of every image file, also inside .rcc bundles."""
    for file in sorted(root.rglob("*")):
        if not file.is_file() or file.is_symlink():
            continue
        inside = "/" + str(file.relative_to(root))
        suffix = file.suffix.lower()
        if suffix in PHOTO_SUFFIXES:
            yield inside, file.read_bytes()
        elif suffix == ".rcc":
            try:
                entries = list(rcc_entries(file.read_bytes()))
            except (ValueError, struct.error, zlib.error) as error:
                print(f"warning: {inside}: {error}", file=sys.stderr)
                continue
            for path, data in sorted(entries):
                if path.lower().endswith(PHOTO_SUFFIXES):
                    yield f"{inside}:{path}", data


def download(package: str, cache: Path) -> Path:
    """The package's .deb in `cache`, fetched with `apt-get download` if not there yet."""
    found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", "-q", package], cwd=cache, check=True, stdout=subprocess.DEVNULL)
        found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} left no .deb in {cache}")
    return found[-1]


def extract(deb: Path, scratch: Path) -> tuple[Path, str]:
    """Unpack a .deb into a fresh folder under `scratch`; return it and the package version."""
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True).stdout.strip()
    target = scratch / deb.stem
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    return target, version


@dataclass
class PackageSpec:
    """One line of the package list: `name [include=REGEX] [skip=REGEX] [label=LABEL] [license=NAME]`.

    include: only paths inside the package matching it are candidates (curated photo folders);
    skip: paths matching it are not (screenshots, renders and artwork found by inspection);
    label: content label of all its photos (else guessed from the file name);
    license: licence of all its photos, read by hand from the copyright file (the rest of the
        line, so it may hold spaces), where matching paths to its stanzas would go wrong.
    """

    name: str
    include: re.Pattern | None = None
    skip: re.Pattern | None = None
    label: str | None = None
    license: str | None = None

    def wants(self, path: str) -> bool:
        if self.include is not None and not self.include.search(path):
            return False
        return self.skip is None or not self.skip.search(path)


def read_packages(path: Path) -> list[PackageSpec]:
    """Package list: one `name [include=REGEX] [skip=REGEX] [label=LABEL] [license=NAME]` per line
    (`license=` last), `#` starts a comment."""
    packages = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        line, _, license_name = line.partition(" license=")
        if not line:
            continue
        name, *options = line.split()
        spec = PackageSpec(name, license=license_name.strip() or None)
        for option in options:
            key, _, value = option.partition("=")
            if key not in ("include", "skip", "label") or not value:
                raise ValueError(f"{path}: bad option {option!r} for {name} (include=, skip=, label= or license=)")
            setattr(spec, key, value if key == "label" else re.compile(value))
        packages.append(spec)
    return packages


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def output_name(package: str, inside: str, taken: set[str]) -> str:
    """`<package>__<name>.jpg`; generic names (`2560x1600`, `background`) get their folder's name."""
    parts = [p for p in re.split(r"[/:]", inside) if p]
    stem = re.sub(r"[^a-z0-9_.-]+", "_", parts[-1].rsplit(".", 1)[0].lower()).strip("_") or "image"
    folders = [p for p in parts[:-1] if p.lower() not in ("images", "contents", "image", "resource", "resources")]
    if re.fullmatch(r"\d+x\d+|background|image|wallpaper|\d+", stem) and folders:
        stem = re.sub(r"[^a-z0-9_.-]+", "_", folders[-1].lower()) + "_" + stem
    return _unique(f"{package}__{stem}", taken)


# --------------------------------------------------------------------------- reading git snapshots

LICENCE_CLASSES = ("permissive", "research-only")
DEBIAN_LICENCE_CLASS = "permissive"  # every Debian main photo is under a DFSG-free licence (some copyleft)
GIT_SOURCE_COLUMNS = ("name", "repository", "paths", "skip", "licence", "licence_class", "cap", "label")
CAP_MARGIN = 1.05  # a capped source is measured until this many times its cap pass the filters


@dataclass
class GitSource:
    """One row of the git source list (scripts/photo_git_sources.tsv).

    name: short name, the prefix of its output files (`<name>__<path>.jpg`);
    repository: `owner/name` on GitHub;
    paths: path prefixes inside the repository whose image files are candidates ("" = all of it);
    licence, licence_class: the photos' licence as stated, and "permissive" or "research-only";
    skip: paths matching this regex are not candidates (a duplicated folder, background clutter);
    cap: keep at most this many photos (a source of little variety), None for all;
    label: content label of all its photos (else guessed from the path).
    """

    name: str
    repository: str
    paths: tuple[str, ...]
    licence: str
    licence_class: str
    skip: re.Pattern | None = None
    cap: int | None = None
    label: str | None = None

    def wants(self, path: str) -> bool:
        if not path.lower().endswith(PHOTO_SUFFIXES) or not any(path.startswith(prefix) for prefix in self.paths):
            return False
        return self.skip is None or not self.skip.search(path)

    def prefix_of(self, path: str) -> str:
        """The longest listed prefix of `path` (left out of its output file name)."""
        return max((prefix for prefix in self.paths if path.startswith(prefix)), key=len, default="")


def read_git_sources(path: Path) -> list[GitSource]:
    """The git source list: a TSV whose header names GIT_SOURCE_COLUMNS (`note` and others are
    ignored); `paths` is comma-separated (`.` = the whole repository); `skip`, `cap` and `label`
    may be empty; lines starting with `#` are comments."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(lines, delimiter="\t")
    missing = set(GIT_SOURCE_COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    sources = []
    for row in reader:
        row = {key: (value or "").strip() for key, value in row.items() if key}
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", row["repository"]):
            raise ValueError(f"{path}: bad repository {row['repository']!r} (owner/name)")
        if not re.fullmatch(r"[a-z0-9_-]+", row["name"]) or any(s.name == row["name"] for s in sources):
            raise ValueError(f"{path}: bad or repeated name {row['name']!r} (lower-case letters, digits, _ and -)")
        if row["licence_class"] not in LICENCE_CLASSES:
            raise ValueError(f"{path}: {row['repository']}: licence_class must be one of {LICENCE_CLASSES}")
        if row["cap"] and not row["cap"].isdigit():
            raise ValueError(f"{path}: {row['repository']}: cap must be a whole number")
        paths = tuple("" if prefix.strip() == "." else prefix.strip() for prefix in row["paths"].split(","))
        sources.append(GitSource(
            row["name"], row["repository"], paths, row["licence"], row["licence_class"],
            skip=re.compile(row["skip"]) if row["skip"] else None, cap=int(row["cap"]) if row["cap"] else None,
            label=row["label"] or None,
        ))
    return sources


def _git(git_dir: Path, *arguments: str) -> str:
    return subprocess.run(["git", "-C", str(git_dir), *arguments], check=True, capture_output=True, text=True).stdout


def _is_repository_root(folder: Path) -> bool:
    """Whether `folder` is itself a bare git directory or the top of a work tree (not a folder
    inside some other repository, which `git rev-parse` would also accept)."""
    if not folder.is_dir():
        return False
    try:
        git_dir = Path(_git(folder, "rev-parse", "--absolute-git-dir").strip()).resolve()
    except subprocess.CalledProcessError:
        return False
    return git_dir in (folder.resolve(), (folder / ".git").resolve())


def locate_repository(source: GitSource, mirror_root: Path, clone_root: Path, allow_clone: bool) -> Path:
    """The git directory or work tree of a source: a fetched snapshot `<mirror_root>/<owner>+<name>/repo`
    (or that folder itself), an earlier clone under `clone_root`, else a fresh shallow bare clone from
    GitHub (only HEAD is read, so one commit is enough)."""
    folder = source.repository.replace("/", "+")
    for candidate in (mirror_root / folder / "repo", mirror_root / folder, clone_root / folder):
        if _is_repository_root(candidate):
            return candidate
    if not allow_clone:
        raise RuntimeError(f"{source.repository} is not under {mirror_root} (and --no-clone was given)")
    clone_root.mkdir(parents=True, exist_ok=True)
    target, partial = clone_root / folder, clone_root / (folder + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"cloning {source.repository} into {target}", file=sys.stderr, flush=True)
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--bare",
                    f"https://github.com/{source.repository}.git", str(partial)], check=True)
    os.replace(partial, target)
    return target


def tree_files(git_dir: Path) -> Iterator[tuple[str, str]]:
    """(path, blob id) of every file of HEAD."""
    listing = subprocess.run(["git", "-C", str(git_dir), "ls-tree", "-r", "-z", "HEAD"],
                             check=True, capture_output=True).stdout
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, path = record.split(b"\t", 1)
        _mode, kind, blob = meta.split()
        if kind == b"blob":
            yield path.decode("utf-8", "surrogateescape"), blob.decode()


class BlobReader:
    """Reads blobs through one `git cat-file --batch` process: thousands of files, one process."""

    def __init__(self, git_dir: Path) -> None:
        self.process = subprocess.Popen(["git", "-C", str(git_dir), "cat-file", "--batch"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self, blob: str) -> bytes | None:
        """The blob's bytes; None when it is absent (a snapshot leaves out its largest files)."""
        self.process.stdin.write(blob.encode() + b"\n")
        self.process.stdin.flush()
        header = self.process.stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":  # `<id> missing`
            return None
        data = self.process.stdout.read(int(header[2]))
        self.process.stdout.read(1)  # the newline after each blob
        return data

    def __enter__(self) -> "BlobReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.stdin.close()
        self.process.wait()


def git_output_name(source_name: str, relative: str, taken: set[str]) -> str:
    """`<source>__<folders>_<file stem>.jpg`: the folders stay in the name because repositories
    reuse file names across folders (Caltech-101's `image_0001.jpg` in each of 101 classes)."""
    parts = [p for p in relative.split("/") if p]
    parts[-1] = parts[-1].split(".", 1)[0] or parts[-1]  # `9_1_4_2017....jpg.chip.jpg` -> `9_1_4_2017...`
    stem = re.sub(r"[^a-z0-9_.-]+", "_", "_".join(parts).lower()).strip("_") or "image"
    return _unique(f"{source_name}__{stem}", taken)


def _unique(stem: str, taken: set[str]) -> str:
    name, counter = f"{stem}.jpg", 2
    while name in taken:
        name, counter = f"{stem}-{counter}.jpg", counter + 1
    taken.add(name)
    return name


# --------------------------------------------------------------------------- the build

@dataclass
class Candidate:
    """An image found in a package or a git snapshot; `reason` is empty while it is kept.

    For a git photo `package` is the repository (`owner/name`) and `version` the commit.
    """

    package: str
    version: str
    inside: str
    width: int
    height: int
    license: str
    label: str = "unknown"
    encoded: bytes = b""  # the set's JPEG
    hash: int = 0  # pHash of the set's JPEG as written
    features: PhotoFeatures | None = None
    reason: str = ""
    detail: str = ""
    origin: str = "debian"  # or "git"
    licence_class: str = DEBIAN_LICENCE_CLASS
    source_name: str = ""  # a git source's short name (its output file prefix and cap key)
    name_prefix: str = ""  # the git path prefix left out of the output file name


def reference_hashes(shared: Path, exclude_images: dict[str, Image.Image]) -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    """pHashes of the reserved originals (already fitted), of val/ and of train/ (all in the set's geometry)."""
    reserved = {phash(image): name for name, image in exclude_images.items()}
    val = {phash(open_image(path)): path.name for path in sorted((shared / "val").glob("*.jpg"))}
    train = {phash(open_image(path)): path.name for path in sorted((shared / "train").glob("*.jpg"))}
    return reserved, val, train


def decode(candidate: Candidate, data: bytes, min_side: int) -> Image.Image | None:
    """Read the candidate's size and decode it; None (with reason tiny or undecodable) when it is
    too small (decided from the header alone) or not a readable image. min_side 0: no size check."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            candidate.width, candidate.height = header.size
        if min(header.size) < min_side:
            candidate.reason = "tiny"
            return None
        # JPEG decoding at 1/2..1/8 scale when the original is far larger than the set
        return open_image(data, draft_size=(2 * SET_SHORT_SIDE, 2 * SET_SHORT_SIDE))
    except (ImageError, OSError, Image.DecompressionBombError):
        candidate.reason = "undecodable"
        return None


def gather(args: argparse.Namespace, wanted: dict[str, PackageSpec], exclude: set[tuple[str, str]],
           existing: set[tuple[str, str]]) -> tuple[list[Candidate], dict[str, Image.Image]]:
    """Download and unpack every package; measure each wanted image; keep the reserved ones.

    Returns:
        the candidates (those already decided carry their reason: reserved, in-set, tiny,
        undecodable) and the reserved originals in the set's geometry, by `package:path`.
    """
    scratch = args.cache / "unpacked"
    reserved_images: dict[str, Image.Image] = {}
    candidates: list[Candidate] = []
    for package in list(wanted) + sorted({pkg for pkg, _ in exclude} - set(wanted)):
        root, version = extract(download(package, args.cache), scratch)
        copyright_file = root / "usr/share/doc" / package / "copyright"
        copyright_info = parse_copyright(copyright_file.read_text(errors="replace")) if copyright_file.exists() else Copyright()
        spec = wanted.get(package)
        for inside, data in package_images(root):
            reserved = (package, inside) in exclude
            if not reserved and (spec is None or not spec.wants(inside)):
                continue
            license_name = (spec.license if spec else None) or copyright_info.license_for(inside)
            candidate = Candidate(package, version, inside, 0, 0, license_name, (spec.label or guess_label(inside)) if spec else "")
            image = decode(candidate, data, 0 if reserved else args.min_side)
            if image is None:
                if spec is not None:
                    candidates.append(candidate)
                continue
            if reserved:
                reserved_images[f"{package}:{inside}"] = fit_to_set(image.convert("RGB"))
                candidate.reason = "reserved"
            elif (package, inside) in existing:
                candidate.reason = "in-set"  # already in train/ or val/ (same package and path)
            else:
                measure(candidate, image)
            if spec is not None:
                candidates.append(candidate)
        shutil.rmtree(root, ignore_errors=True)
        print(f"{package} {version}: {sum(c.package == package for c in candidates)} images", file=sys.stderr, flush=True)
    return candidates, reserved_images


def gather_git(args: argparse.Namespace, sources: list[GitSource], references: dict[str, dict[int, str]]) -> list[Candidate]:
    """Read, measure and judge every wanted image of each git source's HEAD.

    Judged here rather than after all sources (as the package photos are) so that a capped source
    stops decoding once CAP_MARGIN times its cap have passed the filters: the rest are `over-cap`.
    """
    candidates: list[Candidate] = []
    for source in sources:
        started = time.monotonic()
        git_dir = locate_repository(source, args.mirror_root, args.cache / "git", not args.no_clone)
        commit = _git(git_dir, "rev-parse", "HEAD").strip()
        files = sorted((path, blob) for path, blob in tree_files(git_dir) if source.wants(path))
        passed = 0
        with BlobReader(git_dir) as blobs:
            for path, blob in files:
                candidate = Candidate(
                    source.repository, commit, path, 0, 0, source.licence,
                    source.label or guess_label(path.replace("/", "_")),
                    origin="git", licence_class=source.licence_class, source_name=source.name,
                    name_prefix=source.prefix_of(path),
                )
                candidates.append(candidate)
                if source.cap is not None and passed >= source.cap * CAP_MARGIN:
                    candidate.reason = "over-cap"
                    continue
                data = blobs.read(blob)
                if data is None:
                    candidate.reason = "missing"
                    continue
                image = decode(candidate, data, args.min_side)
                if image is None:
                    continue
                measure(candidate, image)
                judge([candidate], references)
                passed += not candidate.reason
        print(f"{source.repository} {commit[:12]}: {len(files)} images, {passed} pass the filters "
              f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    return candidates


def measure(candidate: Candidate, image: Image.Image) -> None:
    """Fill in the photo features, the set's JPEG and its pHash (of the JPEG as written, so that
    the manifest's hash is what anyone gets from the file)."""
    candidate.features = photo_features(image)
    fitted = fit_to_set(image.convert("RGB"))
    buffer = io.BytesIO()
    fitted.save(buffer, format="JPEG", quality=SET_JPEG_QUALITY)
    candidate.encoded = buffer.getvalue()
    candidate.hash = phash(Image.open(io.BytesIO(candidate.encoded)))


def judge(candidates: list[Candidate], references: dict[str, dict[int, str]]) -> None:
    """Give each measured candidate its reason: a near-duplicate of a reference set, then the photo filters.

    Args:
        references: reason ("near-reserved", "near-val", "near-train") -> {pHash: image name}.
            The safety checks come before the quality filters so that their counts are complete.
    """
    for candidate in candidates:
        if candidate.reason or candidate.features is None:
            continue
        for reason, hashes in references.items():
            distance, name = nearest(candidate.hash, hashes)
            if distance <= PHASH_MAX_DISTANCE:
                candidate.reason, candidate.detail = reason, f"{name} (distance {distance})"
                break
        else:
            candidate.reason = rejection_reason(candidate.features) or ""


def drop_duplicates(candidates: list[Candidate]) -> None:
    """Of near-identical kept candidates (the same wallpaper at several sizes), keep the largest."""
    kept = HashIndex()
    for candidate in sorted(candidates, key=lambda c: (-(c.width * c.height), c.package, c.inside)):
        if candidate.reason:
            continue
        distance, name = kept.nearest(candidate.hash)
        if distance <= PHASH_MAX_DISTANCE:
            candidate.reason, candidate.detail = "duplicate", f"{name} (distance {distance})"
        else:
            kept.add(candidate.hash, f"{candidate.package}:{candidate.inside}")


def enforce_caps(candidates: list[Candidate], sources: list[GitSource]) -> None:
    """Reject a capped git source's kept photos beyond its cap (in path order), after the duplicates went."""
    caps = {source.name: source.cap for source in sources if source.cap is not None}
    kept: Counter[str] = Counter()
    for candidate in sorted(candidates, key=lambda c: (c.package, c.inside)):
        if candidate.reason or candidate.source_name not in caps:
            continue
        kept[candidate.source_name] += 1
        if kept[candidate.source_name] > caps[candidate.source_name]:
            candidate.reason = "over-cap"


def build(args: argparse.Namespace) -> None:
    start = time.monotonic()
    shared = args.shared
    wanted = {} if args.skip_packages else {spec.name: spec for spec in read_packages(args.packages)}
    sources = read_git_sources(args.git_source_list) if args.git_source_list else []
    exclude = {(row["source_package"], row["original_path_inside_package"]) for row in read_tsv(shared / "EXCLUDE.tsv")}
    existing = {
        (row["source_package"], row["original_path_inside_package"])
        for split in ("train", "val") for row in read_tsv(shared / f"MANIFEST-{split}.tsv")
    }
    args.cache.mkdir(parents=True, exist_ok=True)
    if not args.no_update and (wanted or exclude):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
    candidates, reserved_images = gather(args, wanted, exclude, existing)
    missing = {f"{pkg}:{path}" for pkg, path in exclude} - set(reserved_images)
    if missing:
        raise SystemExit(f"error: {len(missing)} reserved photos not found in their packages, e.g. {sorted(missing)[0]}")
    reserved_hashes, val_hashes, train_hashes = reference_hashes(shared, reserved_images)
    references = {"near-reserved": reserved_hashes, "near-val": val_hashes, "near-train": train_hashes}
    judge(candidates, references)
    candidates += gather_git(args, sources, references)
    drop_duplicates(candidates)
    enforce_caps(candidates, sources)
    kept = write_output(args.output, candidates)
    if args.training_data:
        write_training_data(args.training_data, training_rows(shared, args.output.name, kept))
    report(candidates, kept, val_hashes, time.monotonic() - start)


def report(candidates: list[Candidate], kept: list[tuple[str, Candidate]], val_hashes: dict[int, str], seconds: float) -> None:
    """Print the counts a reader of the build wants: kept per source and licence class, rejections by reason,
    and how close the nearest kept photo comes to a val/ photo."""
    counts = Counter(c.reason or "kept" for c in candidates)
    print(f"{counts['kept']} photos kept of {len(candidates)} candidates in {seconds:.0f} s; "
          + ", ".join(f"{reason} {counts[reason]}" for reason in SKIP_REASONS if counts[reason]))
    for source, number in sorted(Counter(c.package for _, c in kept).items()):
        print(f"  {source}: {number}")
    print("  by licence class: " + ", ".join(f"{name} {n}" for name, n in sorted(Counter(c.licence_class for _, c in kept).items())))
    if kept and val_hashes:
        distance, name = min((nearest(c.hash, val_hashes)[0], f"{c.package}:{c.inside}") for _, c in kept)
        print(f"  nearest kept photo to a val/ photo: {distance} bits ({name})")


def write_output(output: Path, candidates: list[Candidate]) -> list[tuple[str, Candidate]]:
    """Write the JPEGs, MANIFEST.tsv and REJECTED.tsv into a fresh temporary folder, then swap it in.

    Returns:
        (file name, candidate) of every kept photo.
    """
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    taken: set[str] = set()
    kept: list[tuple[str, Candidate]] = []
    manifest = [["file", "source_package", "original_path_inside_package", "original_width", "original_height",
                 "license", "label", "package_version", "origin", "licence_class", "phash"]]
    rejected = [["source_package", "original_path_inside_package", "original_width", "original_height", "reason",
                 "detail", "chroma", "colours", "flat", "transparent"]]
    for candidate in sorted(candidates, key=lambda c: (c.package, c.inside)):
        if candidate.reason:
            features = candidate.features
            measured = [f"{features.chroma:.1f}", str(features.colours), f"{features.flat:.3f}", f"{features.transparent:.3f}"] if features else ["", "", "", ""]
            rejected.append([candidate.package, candidate.inside, str(candidate.width), str(candidate.height),
                             candidate.reason, candidate.detail, *measured])
            continue
        if candidate.origin == "git":
            name = git_output_name(candidate.source_name, candidate.inside.removeprefix(candidate.name_prefix), taken)
        else:
            name = output_name(candidate.package, candidate.inside, taken)
        (staging / name).write_bytes(candidate.encoded)
        kept.append((name, candidate))
        manifest.append([name, candidate.package, candidate.inside, str(candidate.width), str(candidate.height),
                         candidate.license, candidate.label, candidate.version, candidate.origin,
                         candidate.licence_class, phash_hex(candidate.hash)])
    for file_name, rows in (("MANIFEST.tsv", manifest), ("REJECTED.tsv", rejected)):
        with open(staging / file_name, "w", newline="") as handle:
            csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(rows)
    if output.exists():
        old = output.with_name(output.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(output, old)
        os.replace(staging, output)
        shutil.rmtree(old)
    else:
        os.replace(staging, output)
    return kept


TRAINING_DATA_COLUMNS = ("file", "folder", "origin", "source", "commit", "path", "width", "height",
                         "licence", "licence_class", "label", "phash")


def training_rows(shared: Path, folder: str, kept: list[tuple[str, Candidate]]) -> list[dict[str, str]]:
    """One row per training photo: the photos of train/ (training reads them too) and the new ones.

    Args:
        folder: the new photos' folder name, written in the `folder` column (train/'s rows say `train`).
    """
    rows = []
    for row in read_tsv(shared / "MANIFEST-train.tsv"):
        rows.append({
            "file": row["file"], "folder": "train", "origin": "debian", "source": row["source_package"],
            "commit": "", "path": row["original_path_inside_package"], "width": row["original_width"],
            "height": row["original_height"], "licence": row["license"], "licence_class": DEBIAN_LICENCE_CLASS,
            "label": row["label"], "phash": phash_hex(phash(open_image(shared / "train" / row["file"]))),
        })
    for name, candidate in kept:
        rows.append({
            "file": name, "folder": folder, "origin": candidate.origin, "source": candidate.package,
            "commit": candidate.version if candidate.origin == "git" else "", "path": candidate.inside,
            "width": str(candidate.width), "height": str(candidate.height), "licence": candidate.license,
            "licence_class": candidate.licence_class, "label": candidate.label, "phash": phash_hex(candidate.hash),
        })
    return rows


def write_training_data(path: Path, rows: list[dict[str, str]]) -> None:
    """Write the training manifest (TRAINING_DATA_COLUMNS) through a temporary file, so a failed run leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, TRAINING_DATA_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="folder to write (replaced atomically)")
    parser.add_argument("--packages", type=Path, default=here / "photo_packages.txt", help="package list")
    parser.add_argument("--skip-packages", action="store_true",
                        help="build no package photos, only the git sources (EXCLUDE.tsv's packages are still "
                             "unpacked: their reserved photos must be hashed)")
    parser.add_argument("--git-source-list", type=Path,
                        help="TSV of git sources (e.g. scripts/photo_git_sources.tsv); none when left out")
    parser.add_argument("--mirror-root", type=Path, default=Path("/work/.mirror"),
                        help="where fetched snapshots are: <owner>+<name>/repo, a bare git directory or a work tree")
    parser.add_argument("--no-clone", action="store_true",
                        help="fail instead of cloning from GitHub a repository that is not under --mirror-root")
    parser.add_argument("--training-data", type=Path,
                        help="also write this manifest of every training photo, train/'s and the new ones "
                             "(e.g. docs/photo_set_manifest.tsv)")
    parser.add_argument("--shared", type=Path, default=here.parent.parent / "shared" / "photos",
                        help="the existing set: EXCLUDE.tsv, MANIFEST-*.tsv, train/, val/")
    parser.add_argument("--cache", type=Path, default=Path("/work/photo-build/cache"),
                        help="where .deb files (and clones of git sources not on disk) are kept")
    parser.add_argument("--min-side", type=int, default=MIN_SHORT_SIDE, help="drop originals with a shorter short side")
    parser.add_argument("--no-update", action="store_true", help="skip `apt-get update`")
    args = parser.parse_args(argv)
    for needed in ("EXCLUDE.tsv", "MANIFEST-train.tsv", "MANIFEST-val.tsv", "train", "val"):
        if not (args.shared / needed).exists():
            parser.error(f"{args.shared / needed} not found (pass --shared)")
    if args.skip_packages and not args.git_source_list:
        parser.error("--skip-packages leaves nothing to build without --git-source-list")
    try:
        build(args)
    except (subprocess.CalledProcessError, RuntimeError, ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
