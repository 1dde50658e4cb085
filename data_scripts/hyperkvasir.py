"""Convert the upper-GI part of Hyper-Kvasir (endoscopy images) to the MVTec AD layout.

Hyper-Kvasir (Borgli et al., Scientific Data 2020) contains labelled gastrointestinal
endoscopy images sorted by organ, category and finding. The DRA benchmark uses the
upper GI tract: anatomical landmarks as normal images, pathological findings as
anomalies in four classes.

Expected raw layout under ``--source`` (the download root, ``labeled-images/`` or
``upper-gi-tract/`` itself)::

    labeled-images/upper-gi-tract/anatomical-landmarks/pylorus/<uuid>.jpg
    labeled-images/upper-gi-tract/anatomical-landmarks/retroflex-stomach/<uuid>.jpg
    labeled-images/upper-gi-tract/anatomical-landmarks/z-line/<uuid>.jpg
    labeled-images/upper-gi-tract/pathological-findings/barretts/<uuid>.jpg
    labeled-images/upper-gi-tract/pathological-findings/barretts-short-segment/<uuid>.jpg
    labeled-images/upper-gi-tract/pathological-findings/esophagitis-a/<uuid>.jpg
    labeled-images/upper-gi-tract/pathological-findings/esophagitis-b-d/<uuid>.jpg

Published split rule (DRA benchmark): every anatomical-landmark image is normal; they
are sorted by (landmark, file name) and split 75/25 with
``train_test_split(test_size=0.25, random_state=42)``. Each pathological-finding folder
becomes an anomaly class.

Output: ``OUT/hyperkvasir/{train/good, test/good, test/<finding>}``, files copied
unchanged; normal images are named ``<landmark>_<file>``. Published counts: 2021 / 674
normal, 757 anomalies in 4 classes.

Usage::

    python data_scripts/hyperkvasir.py --source hyper-kvasir --output data/hk_mvtec --check
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__:
    from . import _common as common
else:  # run as a script: python data_scripts/hyperkvasir.py
    import _common as common

logger = logging.getLogger(__name__)

SUBSET = "hyperkvasir"
NORMAL_CATEGORY = "anatomical-landmarks"
ANOMALY_CATEGORY = "pathological-findings"
RAW_LAYOUT = """\
  labeled-images/upper-gi-tract/anatomical-landmarks/<landmark>/<uuid>.jpg
      landmarks: pylorus, retroflex-stomach, z-line
  labeled-images/upper-gi-tract/pathological-findings/<finding>/<uuid>.jpg
      findings: barretts, barretts-short-segment, esophagitis-a, esophagitis-b-d
  (--source may also be labeled-images/ or upper-gi-tract/ itself)"""

# Class sizes of the Hyper-Kvasir paper; they add up to the 757 anomalies of DRA Table 5.
_FINDINGS = {
    "barretts": 41,
    "barretts-short-segment": 53,
    "esophagitis-a": 403,
    "esophagitis-b-d": 260,
}

PUBLISHED = {
    SUBSET: common.Published(
        train_good=2021,
        test_good=674,
        anomalies=757,
        n_classes=4,
        per_class=_FINDINGS,
        source="DRA, Table 5; per class: Hyper-Kvasir paper",
    )
}


def upper_gi_root(source: Path) -> Path:
    """Return the ``upper-gi-tract`` folder under ``source`` (or ``source`` itself)."""
    common.require_dir(source, RAW_LAYOUT, "source folder")
    for candidate in (
        source / "labeled-images" / "upper-gi-tract",
        source / "upper-gi-tract",
        source,
    ):
        if (candidate / NORMAL_CATEGORY).is_dir():
            return candidate
    raise FileNotFoundError(
        f"folder {NORMAL_CATEGORY}/ not found under {source}, {source / 'upper-gi-tract'} "
        f"or {source / 'labeled-images' / 'upper-gi-tract'}\nExpected raw layout:\n{RAW_LAYOUT}"
    )


def _images_by_folder(category_root: Path) -> dict[str, list[Path]]:
    folders = common.list_subfolders(common.require_dir(category_root, RAW_LAYOUT))
    images = {folder.name: common.list_files(folder) for folder in folders}
    images = {name: files for name, files in images.items() if files}
    if not images:
        raise FileNotFoundError(
            f"no images found in the subfolders of {category_root}\n"
            f"Expected raw layout:\n{RAW_LAYOUT}"
        )
    return images


def convert(source: Path, output: Path, overwrite: bool = False) -> Path:
    """Convert the upper-GI images under ``source`` into ``output/hyperkvasir``; return it.

    Raises:
        FileNotFoundError: the landmark or finding folders are missing or empty.
        FileExistsError: ``output`` is not empty and ``overwrite`` is False.
    """
    source = Path(source)
    root = upper_gi_root(source)
    landmarks = _images_by_folder(root / NORMAL_CATEGORY)
    findings = _images_by_folder(root / ANOMALY_CATEGORY)

    normal = [(path, f"{name}_{path.name}") for name, files in landmarks.items() for path in files]
    train, test = common.split_normals(normal)
    anomalies = {name: [(path, path.name) for path in files] for name, files in findings.items()}
    logger.info(
        "Hyper-Kvasir: %d / %d normal, %d anomalies in %d classes",
        len(train),
        len(test),
        sum(len(items) for items in anomalies.values()),
        len(anomalies),
    )
    with common.staged_output(Path(output), [source], overwrite) as staging:
        common.copy_split(staging / SUBSET, train, test, anomalies)
    return Path(output).expanduser().resolve() / SUBSET


def main(argv: list[str] | None = None) -> int:
    """Run the command line; see ``--help``."""
    parser = common.make_parser(__doc__.splitlines()[0], RAW_LAYOUT)

    def run(args: argparse.Namespace) -> Path:
        return convert(args.source, args.output, args.overwrite)

    return common.run_cli(parser, argv, run, PUBLISHED)


if __name__ == "__main__":
    sys.exit(main())
