"""Convert the AITEX fabric image database to the MVTec AD layout.

AITEX (Silvestre-Blanes et al., AUTEX Research Journal 2019) contains grey 4096 x 256 px
strips of seven fabrics: 140 defect-free strips and 105 strips with one of 12 defect
types, each with a pixel mask.

Expected raw layout under ``--source``::

    NODefect_images/<fabric folder>/<name>.png   defect-free strips, 4096 x 256 px
    Defect_images/<nnnn>_<ddd>_<ff>.png          defective strips; ddd is the defect code
    Mask_images/<nnnn>_<ddd>_<ff>_mask.png       defect mask of each strip, same size

Published split rule (DRA benchmark converter):

- every strip is cut into crops 256 px wide (16 per 4096 px strip);
- all crops of defect-free strips are normal, split 75/25 with
  ``train_test_split(test_size=0.25, random_state=42)``;
- a crop of a defective strip is an anomaly when its mask crop has a non-zero pixel,
  filed under the defect type of the strip; the other crops of defective strips are
  dropped.

Output: ``OUT/aitex/{train/good, test/good, test/<defect type>,
ground_truth/<defect type>}`` as PNG; crops are named ``<fabric folder>_<strip>_<i>.png``
and ``<strip>_<i>.png``. Published counts: 1692 / 564 normal crops, 183 anomalous crops
in 12 classes.

Usage::

    python data_scripts/aitex.py --source AITEX --output data/aitex_mvtec --check
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

if __package__:
    from . import _common as common
else:  # run as a script: python data_scripts/aitex.py
    import _common as common

logger = logging.getLogger(__name__)

SUBSET = "aitex"
CROP_WIDTH = 256
STRIP_WIDTH = 4096
RAW_LAYOUT = """\
  NODefect_images/<fabric folder>/<name>.png   defect-free strips, 4096 x 256 px
  Defect_images/<nnnn>_<ddd>_<ff>.png          defective strips; ddd is the defect code
  Mask_images/<nnnn>_<ddd>_<ff>_mask.png       defect mask of each strip, same size"""

# Defect codes in the file names and the class folder names the DRA converter used.
DEFECT_CLASSES = {
    "002": "Broken_end",
    "006": "Broken_yarn",
    "010": "Broken_pick",
    "016": "Weft_curling",
    "019": "Fuzzyball",
    "022": "Cut_selvage",
    "023": "Crease",
    "025": "Warp_ball",
    "027": "Knots",
    "029": "Contamination",
    "030": "Nep",
    "036": "Weft_crack",
}

PUBLISHED = {
    SUBSET: common.Published(
        train_good=1692, test_good=564, anomalies=183, n_classes=12, source="DRA, Table 5"
    )
}


@dataclass(frozen=True)
class NormalCrop:
    """One 256 px wide crop of a defect-free strip."""

    image: Path
    index: int
    name: str


@dataclass(frozen=True)
class DefectStrip:
    """A defective strip with its defect class and mask files (several are merged)."""

    image: Path
    defect_class: str
    masks: tuple[Path, ...]


def crop_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Return the (left, top, right, bottom) boxes of the 256 px wide crops of a strip.

    The last crop is narrower when ``width`` is not a multiple of 256.
    """
    # NOTE: the DRA converter takes ceil(width / height) crops of a defective strip. The
    # AITEX strips are 256 px high, so that equals ceil(width / 256), used for all strips.
    count = math.ceil(width / CROP_WIDTH)
    return [(i * CROP_WIDTH, 0, min((i + 1) * CROP_WIDTH, width), height) for i in range(count)]


def defect_class_of(image: Path) -> str:
    """Return the class folder name for a defective strip named ``<nnnn>_<ddd>_<ff>``."""
    parts = image.stem.split("_")
    code = parts[1] if len(parts) >= 2 else ""
    if code not in DEFECT_CLASSES:
        raise ValueError(
            f"cannot read a known defect code from {image.name}: expected <nnnn>_<ddd>_<ff>.png "
            f"with ddd one of {', '.join(sorted(DEFECT_CLASSES))}"
        )
    return DEFECT_CLASSES[code]


def find_masks(mask_dir: Path, image: Path) -> tuple[Path, ...]:
    """Return the mask files of a defective strip.

    That is ``<stem>_mask.png`` when it exists, else every ``<stem>_mask*.png``.
    """
    exact = mask_dir / f"{image.stem}_mask.png"
    if exact.is_file():
        return (exact,)
    # TODO: the DRA converter reads only <stem>_mask.png. Third-party preparation scripts
    # say two strips (0044_019_04, 0097_030_03) ship as <stem>_mask1.png and _mask2.png;
    # their union is used here. Not checked against the released archive.
    return tuple(sorted(mask_dir.glob(f"{image.stem}_mask*.png")))


def _normal_strips(normal_root: Path) -> list[tuple[Path, str]]:
    """Return (strip, name prefix) pairs sorted by path: strips in fabric folders and loose ones."""
    strips = [(path, "") for path in common.list_files(normal_root, frozenset({".png"}))]
    for folder in common.list_subfolders(normal_root):
        strips += [
            (path, f"{folder.name}_") for path in common.list_files(folder, frozenset({".png"}))
        ]
    return sorted(strips)


def collect_normal_crops(source: Path) -> list[NormalCrop]:
    """List every crop of every defect-free strip, strips sorted by path."""
    normal_root = common.require_dir(source / "NODefect_images", RAW_LAYOUT)
    strips = _normal_strips(normal_root)
    if not strips:
        raise FileNotFoundError(
            f"no .png strips found in {normal_root} or its fabric folders\n"
            f"Expected raw layout:\n{RAW_LAYOUT}"
        )
    crops = []
    for path, prefix in strips:
        with Image.open(path) as image:
            width, height = image.size
        if width != STRIP_WIDTH:
            logger.warning(
                "defect-free strip %s is %d px wide, expected %d", path, width, STRIP_WIDTH
            )
        for index in range(len(crop_boxes(width, height))):
            crops.append(NormalCrop(path, index, f"{prefix}{path.stem}_{index:02d}"))
    return crops


def collect_defect_strips(source: Path, skip_missing_masks: bool) -> list[DefectStrip]:
    """List the defective strips with their classes and masks, sorted by name."""
    defect_root = common.require_dir(source / "Defect_images", RAW_LAYOUT)
    mask_root = common.require_dir(source / "Mask_images", RAW_LAYOUT)
    strips = []
    for image in common.list_files(defect_root, frozenset({".png"})):
        masks = find_masks(mask_root, image)
        if not masks:
            if skip_missing_masks:
                logger.warning("skipping %s: no mask %s_mask.png", image, image.stem)
                continue
            raise FileNotFoundError(
                f"mask not found for {image}: expected {mask_root / (image.stem + '_mask.png')}; "
                "pass --skip-missing-masks to leave such strips out"
            )
        strips.append(DefectStrip(image, defect_class_of(image), masks))
    if not strips:
        raise FileNotFoundError(f"no defective .png strips found in {defect_root}")
    return strips


def _union_mask(strip: DefectStrip, size: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((size[1], size[0]), dtype=bool)
    for path in strip.masks:
        part = common.load_mask(path)
        if part.shape != mask.shape:
            raise ValueError(
                f"mask {path} is {part.shape[1]} x {part.shape[0]} px but its strip "
                f"{strip.image} is {size[0]} x {size[1]} px"
            )
        mask |= part
    return mask


def _write_normal_crops(crops: list[NormalCrop], test: set[NormalCrop], subset: Path) -> None:
    by_strip: dict[Path, list[NormalCrop]] = {}
    for crop in crops:
        by_strip.setdefault(crop.image, []).append(crop)
    for path, strip_crops in by_strip.items():
        with Image.open(path) as image:
            image.load()
            boxes = crop_boxes(*image.size)
            for crop in strip_crops:
                folder = "test" if crop in test else "train"
                common.save_image(
                    image.crop(boxes[crop.index]), subset / folder / "good" / f"{crop.name}.png"
                )


def _write_defect_crops(strips: list[DefectStrip], subset: Path) -> Counter:
    written: Counter = Counter()
    for strip in strips:
        with Image.open(strip.image) as image:
            image.load()
            mask = _union_mask(strip, image.size)
            for index, box in enumerate(crop_boxes(*image.size)):
                left, top, right, bottom = box
                mask_crop = mask[top:bottom, left:right]
                if not mask_crop.any():
                    continue
                name = f"{strip.image.stem}_{index:02d}"
                common.save_image(
                    image.crop(box), subset / "test" / strip.defect_class / f"{name}.png"
                )
                common.save_mask(
                    mask_crop, subset / "ground_truth" / strip.defect_class / f"{name}_mask.png"
                )
                written[strip.defect_class] += 1
    return written


def convert(
    source: Path, output: Path, overwrite: bool = False, skip_missing_masks: bool = False
) -> Path:
    """Convert AITEX under ``source`` into ``output/aitex`` and return that subset folder.

    Raises:
        FileNotFoundError: a folder, strip or mask of the raw layout is missing.
        ValueError: a strip name has no known defect code, or a mask size differs.
        FileExistsError: ``output`` is not empty and ``overwrite`` is False.
    """
    source = Path(source)
    normal_crops = collect_normal_crops(source)
    defect_strips = collect_defect_strips(source, skip_missing_masks)
    train, test = common.split_normals(normal_crops)
    logger.info(
        "AITEX: %d normal crops (%d train, %d test)", len(normal_crops), len(train), len(test)
    )

    with common.staged_output(Path(output), [source], overwrite) as staging:
        subset = staging / SUBSET
        _write_normal_crops(normal_crops, set(test), subset)
        written = _write_defect_crops(defect_strips, subset)
    logger.info("AITEX: %d anomalous crops in %d classes", sum(written.values()), len(written))
    return Path(output).expanduser().resolve() / SUBSET


def main(argv: list[str] | None = None) -> int:
    """Run the command line; see ``--help``."""
    parser = common.make_parser(__doc__.splitlines()[0], RAW_LAYOUT)
    parser.add_argument(
        "--skip-missing-masks",
        action="store_true",
        help="leave out defective strips without a mask file instead of stopping",
    )

    def run(args: argparse.Namespace) -> Path:
        return convert(args.source, args.output, args.overwrite, args.skip_missing_masks)

    return common.run_cli(parser, argv, run, PUBLISHED)


if __name__ == "__main__":
    sys.exit(main())
