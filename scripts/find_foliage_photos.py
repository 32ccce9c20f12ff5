"""List the photo set's photos whose pixels are largely green foliage, for `make_training_mix.py --boost`.

    python scripts/find_foliage_photos.py docs/photo_set_manifest.tsv \
        --folder train=../shared/photos/train --folder git-photos=/work/photo-build/git-photos \
        --min-share 0.15 > scripts/photo_foliage.txt

Why: an L1-trained colorizer paints what is most common for a texture. Grass and leaves are green in
some photos and dry or autumn-brown in others, and the photo set is mostly faces and objects, so
vegetation comes out brown. Linking these photos a few more times moves that choice towards green,
the colour a viewer expects (Zhang et al. 2016 rebalance rare colours for the same reason).

A pixel counts as foliage when, in CIELAB, a* < -6 (green), b* > 4 (yellowish: leaves, grass, not
teal water or sky) and 20 < L* < 90 (neither shadow nor glare). Each photo is scored on a thumbnail
of at most 96 px. Names go to stdout, one per line, in manifest order; the share of each goes to
stderr with `--verbose`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

from colorgan.color import rgb_to_lab
from colorgan.imaging import decode
from make_training_mix import check_folders, parse_folders, photo_path, read_manifest  # the sibling script: same manifest and --folder rules

THUMBNAIL_SIDE = 96  # enough to tell a lawn from a face; keeps 15,000 photos under a minute


def foliage_share(path: Path) -> float:
    """Fraction of the photo's pixels that look like green foliage (see the module's docstring)."""
    with Image.open(path) as image:
        image.draft("RGB", (2 * THUMBNAIL_SIDE, 2 * THUMBNAIL_SIDE))  # JPEG: decode at a fraction of full size
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        rgb = decode(image).rgb  # (1, 3, h, w), any mode
    lightness, a, b = rgb_to_lab(rgb)[0]
    foliage = (a < -6) & (b > 4) & (lightness > 20) & (lightness < 90)
    return foliage.float().mean().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="the photo set's manifest (docs/photo_set_manifest.tsv)")
    parser.add_argument("--folder", action="append", default=[], metavar="NAME=PATH",
                        help="where the photos of the manifest's `folder` NAME lie; repeatable")
    parser.add_argument("--min-share", type=float, default=0.15,
                        help="least fraction of foliage pixels for a photo to be listed (0.15: a lawn or a tree"
                             " in the frame, not a green shirt on a face)")
    parser.add_argument("--verbose", action="store_true", help="print each photo's share to stderr")
    args = parser.parse_args(argv)
    if not 0 < args.min_share <= 1:
        parser.error("--min-share must be in (0, 1]")
    folders = parse_folders(args.folder)
    rows, _ = read_manifest(args.manifest)
    check_folders(rows, folders)
    listed = 0
    for row in rows:
        share = foliage_share(photo_path(row, folders))
        if args.verbose:
            print(f"{share:.3f}\t{row['file']}", file=sys.stderr)
        if share >= args.min_share:
            print(row["file"])
            listed += 1
    print(f"{listed} of {len(rows)} photos have {args.min_share:.0%} or more foliage", file=sys.stderr)


if __name__ == "__main__":
    torch.set_num_threads(1)  # a background job beside training
    main()
