"""Convert KolektorSDD (surface defect data set) to the MVTec AD layout.

KolektorSDD (Tabernik et al., Journal of Intelligent Manufacturing 2019) contains 399
grey images of electrical commutators in 50 item folders. 52 images show a crack,
marked in a pixel mask.

Expected raw layout under ``--source``::

    kos01/Part0.jpg           image
    kos01/Part0_label.bmp     defect mask of Part0.jpg, same size (all zero when defect-free)
    ...
    kos50/Part7.jpg

Published split rule (DRA benchmark converter):

- every image is cut into three horizontal strips (rows ``[0, H//3)``, ``[H//3, 2H//3)``,
  ``[2H//3, H)``);
- a third is an anomaly (class ``defect``) when its mask third has a non-zero pixel;
- the other thirds are normal and split 75/25 with
  ``train_test_split(test_size=0.25, random_state=42)``.

Output: ``OUT/sdd/{train/good, test/good, test/defect, ground_truth/defect}`` as PNG,
named ``<kos folder>_<image>_<third>.png``. Published counts: 594 / 286 normal thirds,
54 anomalous thirds. The training count does not follow from the rule: 399 images give
1197 thirds, 1143 of them normal, and 75/25 of 1143 is 857 / 286. ``--check`` marks
857 as the known deviation.

Usage::

    python data_scripts/sdd.py --source KolektorSDD --output data/sdd_mvtec --check
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

if __package__:
    from . import _common as common
else:  # run as a script: python data_scripts/sdd.py
    import _common as common

logger = logging.getLogger(__name__)

SUBSET = "sdd"
DEFECT_CLASS = "defect"
RAW_LAYOUT = """\
  kos01/Part0.jpg           image
  kos01/Part0_label.bmp     defect mask of Part0.jpg, same size (all zero when defect-free)
  ...
  kos50/Part7.jpg"""

PUBLISHED = {
    SUBSET: common.Published(
        train_good=594,
        test_good=286,
        anomalies=54,
        n_classes=1,
        known_deviations={
            "train/good": (857, "75/25 of 1143 normal thirds gives 857; the paper prints 594")
        },
        source="DRA, Table 5",
    )
}


@dataclass(frozen=True)
class Third:
    """One horizontal third of an image; ``index`` 0 is the top third."""

    image: Path
    label: Path
    index: int
    name: str


def third_rows(height: int) -> list[tuple[int, int]]:
    """Return the (start, stop) rows of the three horizontal thirds of an image."""
    return [(0, height // 3), (height // 3, 2 * height // 3), (2 * height // 3, height)]


def collect_images(source: Path) -> list[tuple[Path, Path, str]]:
    """Return (image, label, item folder name) for every image, sorted by path."""
    common.require_dir(source, RAW_LAYOUT, "source folder")
    pairs = []
    for folder in common.list_subfolders(source):
        for image in common.list_files(folder, frozenset({".jpg", ".jpeg"})):
            label = common.require_file(
                folder / f"{image.stem}_label.bmp", RAW_LAYOUT, f"defect mask of {image.name}"
            )
            pairs.append((image, label, folder.name))
    if not pairs:
        raise FileNotFoundError(
            f"no .jpg images found in the item folders of {source}\n"
            f"Expected raw layout:\n{RAW_LAYOUT}"
        )
    return pairs


def label_thirds(source: Path) -> tuple[list[Third], list[Third]]:
    """Cut every mask into thirds and return (normal thirds, anomalous thirds)."""
    normal, anomalous = [], []
    for image, label, folder in collect_images(source):
        mask = common.load_mask(label)
        with Image.open(image) as opened:
            size = opened.size
        if mask.shape != (size[1], size[0]):
            raise ValueError(
                f"mask {label} is {mask.shape[1]} x {mask.shape[0]} px but image {image} "
                f"is {size[0]} x {size[1]} px"
            )
        for index, (start, stop) in enumerate(third_rows(mask.shape[0])):
            third = Third(image, label, index, f"{folder}_{image.stem}_{index}")
            (anomalous if mask[start:stop].any() else normal).append(third)
    return normal, anomalous


def _write(
    thirds: list[Third], test_normal: set[Third], anomalous: set[Third], subset: Path
) -> None:
    by_image: dict[Path, list[Third]] = {}
    for third in thirds:
        by_image.setdefault(third.image, []).append(third)
    for path, image_thirds in by_image.items():
        mask = common.load_mask(image_thirds[0].label)
        with Image.open(path) as image:
            image.load()
            rows = third_rows(image.size[1])
            for third in image_thirds:
                start, stop = rows[third.index]
                crop = image.crop((0, start, image.size[0], stop))
                if third in anomalous:
                    common.save_image(crop, subset / "test" / DEFECT_CLASS / f"{third.name}.png")
                    common.save_mask(
                        mask[start:stop],
                        subset / "ground_truth" / DEFECT_CLASS / f"{third.name}_mask.png",
                    )
                else:
                    folder = "test" if third in test_normal else "train"
                    common.save_image(crop, subset / folder / "good" / f"{third.name}.png")


def convert(source: Path, output: Path, overwrite: bool = False) -> Path:
    """Convert KolektorSDD under ``source`` into ``output/sdd`` and return that subset folder.

    Raises:
        FileNotFoundError: the source, an image or its ``_label.bmp`` mask is missing.
        ValueError: a mask and its image differ in size.
        FileExistsError: ``output`` is not empty and ``overwrite`` is False.
    """
    source = Path(source)
    normal, anomalous = label_thirds(source)
    train, test = common.split_normals(normal)
    logger.info(
        "SDD: %d normal thirds (%d train, %d test), %d anomalous thirds",
        len(normal),
        len(train),
        len(test),
        len(anomalous),
    )
    with common.staged_output(Path(output), [source], overwrite) as staging:
        _write(normal + anomalous, set(test), set(anomalous), staging / SUBSET)
    return Path(output).expanduser().resolve() / SUBSET


def main(argv: list[str] | None = None) -> int:
    """Run the command line; see ``--help``."""
    parser = common.make_parser(__doc__.splitlines()[0], RAW_LAYOUT)

    def run(args: argparse.Namespace) -> Path:
        return convert(args.source, args.output, args.overwrite)

    return common.run_cli(parser, argv, run, PUBLISHED)


if __name__ == "__main__":
    sys.exit(main())
