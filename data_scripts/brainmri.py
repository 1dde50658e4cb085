"""Convert the BrainMRI set (brain tumour detection MRI slices) to the MVTec AD layout.

BrainMRI is the Kaggle set "Brain MRI Images for Brain Tumor Detection" (N. Chakrabarty,
2019): 253 axial MRI slices of varying size and format, 98 without and 155 with a
tumour.

Expected raw layout under ``--source``::

    no/<name>.jpg      slices without a tumour (file names and suffixes vary:
                       .jpg, .JPG, .jpeg, .png)
    yes/<name>.jpg     slices with a tumour

The archive also contains a copy of both folders under ``brain_tumor_dataset/``, and a
source folder with only that copy is accepted.

Published split rule (DRA benchmark): ``no/`` is normal, split 75/25 with
``train_test_split(test_size=0.25, random_state=42)`` after sorting by file name;
``yes/`` is the anomaly class ``tumor``.

Output: ``OUT/brainmri/{train/good, test/good, test/tumor}``, files copied unchanged.
Published counts: 73 / 25 normal, 155 anomalies.

Usage::

    python data_scripts/brainmri.py --source brain_mri --output data/brainmri_mvtec --check
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__:
    from . import _common as common
else:  # run as a script: python data_scripts/brainmri.py
    import _common as common

logger = logging.getLogger(__name__)

SUBSET = "brainmri"
ANOMALY_CLASS = "tumor"
RAW_LAYOUT = """\
  no/<name>.jpg      slices without a tumour (suffixes vary: .jpg, .JPG, .jpeg, .png)
  yes/<name>.jpg     slices with a tumour
  (brain_tumor_dataset/no and brain_tumor_dataset/yes are accepted too)"""

PUBLISHED = {
    SUBSET: common.Published(
        train_good=73, test_good=25, anomalies=155, n_classes=1, source="DRA, Table 5"
    )
}


def data_root(source: Path) -> Path:
    """Return the folder holding ``no/`` and ``yes/``: ``source`` or its ``brain_tumor_dataset``."""
    common.require_dir(source, RAW_LAYOUT, "source folder")
    nested = source / "brain_tumor_dataset"
    if not (source / "no").is_dir() and (nested / "no").is_dir():
        logger.info("BrainMRI: reading %s", nested)
        return nested
    return source


def convert(source: Path, output: Path, overwrite: bool = False) -> Path:
    """Convert BrainMRI under ``source`` into ``output/brainmri``; return that folder.

    Raises:
        FileNotFoundError: ``no/`` or ``yes/`` is missing or contains no images.
        FileExistsError: ``output`` is not empty and ``overwrite`` is False.
    """
    source = Path(source)
    root = data_root(source)
    normal = common.list_files(common.require_dir(root / "no", RAW_LAYOUT))
    tumour = common.list_files(common.require_dir(root / "yes", RAW_LAYOUT))
    for folder, files in (("no", normal), ("yes", tumour)):
        if not files:
            raise FileNotFoundError(
                f"no images found in {root / folder}\nExpected raw layout:\n{RAW_LAYOUT}"
            )

    train, test = common.split_normals([(path, path.name) for path in normal])
    logger.info("BrainMRI: %d / %d normal, %d anomalies", len(train), len(test), len(tumour))
    with common.staged_output(Path(output), [source], overwrite) as staging:
        common.copy_split(
            staging / SUBSET, train, test, {ANOMALY_CLASS: [(path, path.name) for path in tumour]}
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
