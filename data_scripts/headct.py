"""Convert the HeadCT set (head CT slices with and without haemorrhage) to the MVTec AD layout.

HeadCT is the Kaggle set "Head CT - hemorrhage" (F. Kitamura, 2018): 200 PNG slices,
100 normal and 100 with an intracranial haemorrhage, labelled in ``labels.csv``.

Expected raw layout under ``--source``::

    labels.csv                 columns "id" and "hemorrhage" (0 or 1); the header in the
                               download reads "id, hemorrhage", with a space
    head_ct/head_ct/<id>.png   slice of each id, named with three digits (000.png)
                               (head_ct/<id>.png is accepted too)

Published split rule (DRA benchmark): rows with ``hemorrhage`` 0 are normal. They are
sorted by id and split 75/25 with ``train_test_split(test_size=0.25, random_state=42)``.
Rows with 1 form the anomaly class ``hemorrhage``.

Output: ``OUT/headct/{train/good, test/good, test/hemorrhage}``, files copied unchanged.
Published counts: 75 / 25 normal, 100 anomalies.

Usage::

    python data_scripts/headct.py --source head_ct --output data/headct_mvtec --check
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

if __package__:
    from . import _common as common
else:  # run as a script: python data_scripts/headct.py
    import _common as common

logger = logging.getLogger(__name__)

SUBSET = "headct"
ANOMALY_CLASS = "hemorrhage"
RAW_LAYOUT = """\
  labels.csv                 columns "id" and "hemorrhage" (0 or 1)
  head_ct/head_ct/<id>.png   slice of each id, named with three digits (000.png)
  (head_ct/<id>.png is accepted too)"""

PUBLISHED = {
    SUBSET: common.Published(
        train_good=75, test_good=25, anomalies=100, n_classes=1, source="DRA, Table 5"
    )
}


def read_labels(path: Path) -> list[tuple[int, int]]:
    """Read (id, hemorrhage) pairs from ``labels.csv``, sorted by id.

    Raises:
        ValueError: a column is missing or a value is not an integer id or 0/1 label.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        if "id" not in header or "hemorrhage" not in header:
            raise ValueError(f"{path}: expected columns 'id' and 'hemorrhage', got {header}")
        id_column, label_column = header.index("id"), header.index("hemorrhage")
        labels = []
        for line_number, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                image_id, label = int(row[id_column]), int(row[label_column])
            except (ValueError, IndexError):
                raise ValueError(
                    f"{path}, line {line_number}: expected an integer id and 0/1, got {row}"
                ) from None
            if label not in (0, 1):
                raise ValueError(
                    f"{path}, line {line_number}: hemorrhage must be 0 or 1, got {label}"
                )
            labels.append((image_id, label))
    return sorted(labels)


def image_folder(source: Path) -> Path:
    """Return ``head_ct/head_ct`` under ``source``, or ``head_ct`` when it is not nested."""
    nested = source / "head_ct" / "head_ct"
    if nested.is_dir():
        return nested
    return common.require_dir(source / "head_ct", RAW_LAYOUT, "image folder")


def find_image(folder: Path, image_id: int) -> Path:
    """Return the slice file of ``image_id``: ``<id:03d>.png``, else ``<id>.png``."""
    # TODO: the three-digit names (000.png - 199.png) come from code that reads the Kaggle
    # download; the plain-number fallback covers copies renamed without padding.
    for name in (f"{image_id:03d}.png", f"{image_id}.png"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"image of id {image_id} not found: expected {folder / f'{image_id:03d}.png'}\n"
        f"Expected raw layout:\n{RAW_LAYOUT}"
    )


def convert(source: Path, output: Path, overwrite: bool = False) -> Path:
    """Convert HeadCT under ``source`` into ``output/headct``; return that folder.

    Raises:
        FileNotFoundError: ``labels.csv``, the image folder or a listed image is missing.
        ValueError: ``labels.csv`` is malformed.
        FileExistsError: ``output`` is not empty and ``overwrite`` is False.
    """
    source = Path(source)
    common.require_dir(source, RAW_LAYOUT, "source folder")
    labels = read_labels(common.require_file(source / "labels.csv", RAW_LAYOUT, "label file"))
    folder = image_folder(source)
    normal, hemorrhage = [], []
    for image_id, label in labels:
        path = find_image(folder, image_id)
        (hemorrhage if label == 1 else normal).append((path, path.name))

    train, test = common.split_normals(normal)
    logger.info("HeadCT: %d / %d normal, %d anomalies", len(train), len(test), len(hemorrhage))
    with common.staged_output(Path(output), [source], overwrite) as staging:
        common.copy_split(staging / SUBSET, train, test, {ANOMALY_CLASS: hemorrhage})
    return Path(output).expanduser().resolve() / SUBSET


def main(argv: list[str] | None = None) -> int:
    """Run the command line; see ``--help``."""
    parser = common.make_parser(__doc__.splitlines()[0], RAW_LAYOUT)

    def run(args: argparse.Namespace) -> Path:
        return convert(args.source, args.output, args.overwrite)

    return common.run_cli(parser, argv, run, PUBLISHED)


if __name__ == "__main__":
    sys.exit(main())
