"""Convert the "Optical" set (DAGM 2007 textures, 10 classes) to the MVTec AD layout.

"Optical" in the DRA benchmark is the DAGM 2007 competition data set for weakly
supervised industrial optical inspection. It contains grey synthetic textures in ten
classes, each with a Train and a Test part. Defective images come with a coarse
(weak) defect mask.

Expected raw layout under ``--source``. The download nests each class folder twice,
and a single ``Class<N>/Train`` level is accepted too::

    Class<N>/Class<N>/Train/<nnnn>.PNG
    Class<N>/Class<N>/Train/Label/Labels.txt
    Class<N>/Class<N>/Train/Label/<nnnn>_label.PNG
    Class<N>/Class<N>/Test/...                        same as Train

``Labels.txt`` starts with a header line of one field, then one tab-separated row per
image: row number, 1 if defective else 0, image file name, a fourth field, and for
defective images the mask file name.

Published split rule (DRA benchmark converter): the normal images of all classes, in
label-file order (Class1 to Class10, Train before Test, rows in file order), are split
75/25 with ``train_test_split(test_size=0.25, random_state=42)``. Defective images go
to ``test/Class<N>`` with their masks. The label-file order is the same on every
machine, so this split picks the same files as the DRA converter.

Output: ``OUT/optical/{train/good, test/good, test/Class<N>, ground_truth/Class<N>}``,
images copied unchanged and named ``Class<N>_<Train|Test>_<file>``, masks written as
0/255 PNG. Published counts: 10500 / 3500 normal, 2100 defective.

Usage::

    python data_scripts/optical.py --source DAGM --output data/optical_mvtec --check
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__:
    from . import _common as common
else:  # run as a script: python data_scripts/optical.py
    import _common as common

logger = logging.getLogger(__name__)

SUBSET = "optical"
PARTS = ("Train", "Test")
RAW_LAYOUT = """\
  Class<N>/Class<N>/Train/<nnnn>.PNG
  Class<N>/Class<N>/Train/Label/Labels.txt
  Class<N>/Class<N>/Train/Label/<nnnn>_label.PNG
  Class<N>/Class<N>/Test/...                        same as Train
  (Class<N>/Train/... without the second Class<N> level is accepted too)"""

# Defective images per class in DAGM 2007, Train + Test: 150 in Class1-6 and 300 in
# Class7-10. They add up to the 2100 anomalies of DRA Table 5.
_DEFECTS_PER_CLASS = {f"Class{n}": 150 if n <= 6 else 300 for n in range(1, 11)}

PUBLISHED = {
    SUBSET: common.Published(
        train_good=10500,
        test_good=3500,
        anomalies=2100,
        n_classes=10,
        per_class=_DEFECTS_PER_CLASS,
        source="DRA, Table 5; per class: DAGM 2007 defect counts",
    )
}


@dataclass(frozen=True)
class LabelRow:
    """One image row of a DAGM ``Labels.txt``."""

    image: str
    defective: bool
    mask: str | None


@dataclass(frozen=True)
class Sample:
    """One image of the source with its output name."""

    image: Path
    class_name: str
    mask: Path | None
    name: str


def read_labels(path: Path) -> list[LabelRow]:
    """Parse a DAGM ``Labels.txt``; the one-field header line is skipped.

    Raises:
        ValueError: a row does not have the expected fields; the message gives the line.
    """
    rows = []
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        # TODO: no source read here documents the one-field header line or the fourth
        # field. Both are ignored, as the DRA converter does.
        if not fields or (line_number == 1 and len(fields) == 1):
            continue
        if len(fields) < 3 or fields[1] not in ("0", "1"):
            raise ValueError(
                f"{path}, line {line_number}: expected <row>\t<0|1>\t<image>\t<field>\t<mask>, "
                f"got {line!r}"
            )
        defective = fields[1] == "1"
        if defective and len(fields) < 5:
            raise ValueError(
                f"{path}, line {line_number}: defective image without a mask file name"
            )
        rows.append(LabelRow(fields[2], defective, fields[4] if defective else None))
    return rows


def class_folders(source: Path) -> list[tuple[str, Path]]:
    """Return (class name, folder holding Train/ and Test/) for each ``Class<N>``, by N."""
    common.require_dir(source, RAW_LAYOUT, "source folder")
    found = []
    for folder in common.list_subfolders(source):
        match = re.fullmatch(r"Class(\d+)", folder.name)
        if match is None:
            continue
        nested = folder / folder.name
        found.append((int(match.group(1)), folder.name, nested if nested.is_dir() else folder))
    if not found:
        raise FileNotFoundError(
            f"no Class<N> folders found in {source}\nExpected raw layout:\n{RAW_LAYOUT}"
        )
    return [(name, root) for _, name, root in sorted(found)]


def collect_samples(source: Path) -> tuple[list[Sample], list[Sample]]:
    """Return (normal, defective) samples in label-file order."""
    normal, defective = [], []
    for class_name, class_root in class_folders(source):
        for part in PARTS:
            part_root = common.require_dir(class_root / part, RAW_LAYOUT)
            labels = common.require_file(
                part_root / "Label" / "Labels.txt", RAW_LAYOUT, "label file"
            )
            for row in read_labels(labels):
                image = common.require_file(
                    part_root / row.image, RAW_LAYOUT, f"image listed in {labels}"
                )
                mask = None
                if row.defective:
                    mask = common.require_file(
                        part_root / "Label" / row.mask, RAW_LAYOUT, f"mask listed in {labels}"
                    )
                sample = Sample(image, class_name, mask, f"{class_name}_{part}_{row.image}")
                (defective if row.defective else normal).append(sample)
    return normal, defective


def convert(source: Path, output: Path, overwrite: bool = False) -> Path:
    """Convert the DAGM classes under ``source`` into ``output/optical``; return that folder.

    Raises:
        FileNotFoundError: a class folder, label file, image or mask is missing.
        ValueError: a label file row is malformed.
        FileExistsError: ``output`` is not empty and ``overwrite`` is False.
    """
    source = Path(source)
    normal, defective = collect_samples(source)
    train, test = common.split_normals(normal)
    logger.info(
        "Optical: %d normal (%d train, %d test), %d defective",
        len(normal),
        len(train),
        len(test),
        len(defective),
    )
    with common.staged_output(Path(output), [source], overwrite) as staging:
        subset = staging / SUBSET
        for folder, samples in (("train", train), ("test", test)):
            for sample in samples:
                common.copy_file(sample.image, subset / folder / "good" / sample.name)
        # NOTE: the DRA converter names the anomaly folders Class0-Class9 (one less than
        # the source folder); the source names Class1-Class10 are kept here.
        for sample in defective:
            common.copy_file(sample.image, subset / "test" / sample.class_name / sample.name)
            mask_name = f"{Path(sample.name).stem}_mask.png"
            common.save_mask(
                common.load_mask(sample.mask),
                subset / "ground_truth" / sample.class_name / mask_name,
            )
    return Path(output).expanduser().resolve() / SUBSET


def main(argv: list[str] | None = None) -> int:
    """Run the command line; see ``--help``."""
    parser = common.make_parser(__doc__.splitlines()[0], RAW_LAYOUT)

    def run(args: argparse.Namespace) -> Path:
        return convert(args.source, args.output, args.overwrite)

    return common.run_cli(parser, argv, run, PUBLISHED)


if __name__ == "__main__":
    sys.exit(main())
