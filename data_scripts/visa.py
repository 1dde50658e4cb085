"""Convert VisA (Visual Anomaly data set) to the MVTec AD layout, one subset per object.

VisA (Zou et al., ECCV 2022) contains 10,821 colour images of 12 objects (PCBs, capsules,
candles, macaroni, cashews, chewing gum, fryum) with 9,621 normal and 1,200 anomalous
images and pixel masks. It ships with split files; ``split_csv/1cls.csv`` is the
one-class split: normal images in train and test, anomalies in test only.

Expected raw layout under ``--source``::

    split_csv/1cls.csv                        columns object,split,label,image,mask
    <object>/Data/Images/Normal/<nnnn>.JPG
    <object>/Data/Images/Anomaly/<nnn>.JPG
    <object>/Data/Masks/Anomaly/<nnn>.png     0 = background, non-zero = defect

The ``image`` and ``mask`` columns hold paths relative to ``--source``; ``label`` is
``normal`` or ``anomaly``; ``split`` is ``train`` or ``test``.

Split rule: the rows of ``1cls.csv``, unchanged. Normal rows go to ``<split>/good``;
anomaly rows go to ``test/bad``, the class name of the VisA preparation script, with
their masks written as 0/255 PNG.

Output: ``OUT/<object>/{train/good, test/good, test/bad, ground_truth/bad}``, images
copied unchanged. ``--check`` compares each object with the normal and anomaly totals
of the VisA README (the README gives no train/test counts).

Usage::

    python data_scripts/visa.py --source VisA --output data/visa_mvtec --check
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__:
    from . import _common as common
else:  # run as a script: python data_scripts/visa.py
    import _common as common

logger = logging.getLogger(__name__)

ANOMALY_CLASS = "bad"
SPLIT_CSV = Path("split_csv") / "1cls.csv"
RAW_LAYOUT = """\
  split_csv/1cls.csv                        columns object,split,label,image,mask
  <object>/Data/Images/Normal/<nnnn>.JPG
  <object>/Data/Images/Anomaly/<nnn>.JPG
  <object>/Data/Masks/Anomaly/<nnn>.png     0 = background, non-zero = defect"""

# Normal images per object in the VisA README; every object has 100 anomalies.
_NORMAL_PER_OBJECT = {
    "candle": 1000,
    "capsules": 602,
    "cashew": 500,
    "chewinggum": 503,
    "fryum": 500,
    "macaroni1": 1000,
    "macaroni2": 1000,
    "pcb1": 1004,
    "pcb2": 1001,
    "pcb3": 1006,
    "pcb4": 1005,
    "pipe_fryum": 500,
}

PUBLISHED = {
    name: common.Published(normal_total=normal, anomalies=100, n_classes=1, source="VisA README")
    for name, normal in _NORMAL_PER_OBJECT.items()
}


@dataclass(frozen=True)
class Row:
    """One row of the split file."""

    object_name: str
    split: str
    anomalous: bool
    image: Path
    mask: Path | None


def read_split(path: Path, source: Path) -> list[Row]:
    """Read the split file; ``image`` and ``mask`` paths are resolved against ``source``.

    Raises:
        ValueError: a column is missing, or a row has an unknown split or label, an
            anomaly in the training split, or an anomaly without a mask.
    """
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"object", "split", "label", "image", "mask"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for line_number, record in enumerate(reader, start=2):
            where = f"{path}, line {line_number}"
            split, label = record["split"].strip(), record["label"].strip()
            if split not in ("train", "test"):
                raise ValueError(f"{where}: split must be train or test, got {split!r}")
            if label not in ("normal", "anomaly"):
                raise ValueError(f"{where}: label must be normal or anomaly, got {label!r}")
            anomalous = label == "anomaly"
            if anomalous and split == "train":
                raise ValueError(f"{where}: the one-class split has no anomalies in train")
            mask = (record["mask"] or "").strip()
            if anomalous and not mask:
                raise ValueError(f"{where}: anomaly without a mask path")
            rows.append(
                Row(
                    record["object"].strip(),
                    split,
                    anomalous,
                    source / record["image"].strip(),
                    source / mask if anomalous else None,
                )
            )
    return rows


def convert(
    source: Path,
    output: Path,
    overwrite: bool = False,
    objects: list[str] | None = None,
    split_csv: Path | None = None,
) -> Path:
    """Convert VisA under ``source`` into one subset per object under ``output``.

    Args:
        objects: object names to convert; None converts every object in the split file.
        split_csv: split file to use instead of ``source/split_csv/1cls.csv``.

    Returns:
        The output folder (it contains one subset folder per object).

    Raises:
        FileNotFoundError: the split file, or an image or mask it lists, is missing.
        ValueError: the split file is malformed, or ``objects`` names an unknown object.
        FileExistsError: ``output`` is not empty and ``overwrite`` is False.
    """
    source = Path(source)
    common.require_dir(source, RAW_LAYOUT, "source folder")
    split_path = Path(split_csv) if split_csv is not None else source / SPLIT_CSV
    rows = read_split(common.require_file(split_path, RAW_LAYOUT, "split file"), source)
    available = sorted({row.object_name for row in rows})
    if objects:
        unknown = sorted(set(objects) - set(available))
        if unknown:
            raise ValueError(f"unknown objects {unknown}; the split file lists {available}")
        rows = [row for row in rows if row.object_name in objects]
    for row in rows:
        common.require_file(row.image, RAW_LAYOUT, f"image listed in {split_path}")
        if row.mask is not None:
            common.require_file(row.mask, RAW_LAYOUT, f"mask listed in {split_path}")

    logger.info("VisA: %d images of %d objects", len(rows), len({row.object_name for row in rows}))
    with common.staged_output(Path(output), [source], overwrite) as staging:
        for row in rows:
            subset = staging / row.object_name
            if row.anomalous:
                common.copy_file(row.image, subset / "test" / ANOMALY_CLASS / row.image.name)
                common.save_mask(
                    common.load_mask(row.mask),
                    subset / "ground_truth" / ANOMALY_CLASS / f"{row.image.stem}_mask.png",
                )
            else:
                common.copy_file(row.image, subset / row.split / "good" / row.image.name)
    return Path(output).expanduser().resolve()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; see ``--help``."""
    parser = common.make_parser(__doc__.splitlines()[0], RAW_LAYOUT)
    parser.add_argument("--objects", nargs="+", help="convert only these objects (default: all)")
    parser.add_argument(
        "--split-csv", type=Path, help="split file (default: SOURCE/split_csv/1cls.csv)"
    )

    def run(args: argparse.Namespace) -> Path:
        return convert(args.source, args.output, args.overwrite, args.objects, args.split_csv)

    def published(args: argparse.Namespace) -> dict[str, common.Published]:
        if not args.objects:
            return PUBLISHED
        return {name: PUBLISHED.get(name, common.Published()) for name in args.objects}

    return common.run_cli(parser, argv, run, published)


if __name__ == "__main__":
    sys.exit(main())
