"""Check an MVTec AD folder and print its counts beside the published ones.

MVTec AD (Bergmann et al., CVPR 2019) already comes in the layout every sclib data set
uses, so nothing is converted: this script validates a downloaded copy and compares its
counts with the published ones.

Expected layout under ``--source`` (15 subsets; license.txt and readme.txt are ignored)::

    <subset>/train/good/<nnn>.png
    <subset>/test/good/<nnn>.png
    <subset>/test/<defect type>/<nnn>.png
    <subset>/ground_truth/<defect type>/<nnn>_mask.png

Checks per subset: the folders exist, ``train/good`` and ``test/good`` hold images,
every defect image has its mask and every mask its image, and the counts match the
published ones (train normal, test normal, anomalies, defect types). Published totals:
3629 / 467 normal images, 1258 anomalies in 73 defect types over 15 subsets.

Exit status: 0 when every check passes, 1 when a check fails, 2 when ``--source`` is
not a folder.

Usage::

    python data_scripts/mvtec_ad.py --source mvtec_anomaly_detection
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__:
    from . import _common as common
else:  # run as a script: python data_scripts/mvtec_ad.py
    import _common as common

RAW_LAYOUT = """\
  <subset>/train/good/<nnn>.png
  <subset>/test/good/<nnn>.png
  <subset>/test/<defect type>/<nnn>.png
  <subset>/ground_truth/<defect type>/<nnn>_mask.png"""

# (train normal, test normal, anomalies, defect types) per subset, from Table 1 of the
# MVTec AD paper. The sums equal the totals of DRA Table 5 (3629, 467, 1258, 73).
_SUBSET_COUNTS = {
    "bottle": (209, 20, 63, 3),
    "cable": (224, 58, 92, 8),
    "capsule": (219, 23, 109, 5),
    "carpet": (280, 28, 89, 5),
    "grid": (264, 21, 57, 5),
    "hazelnut": (391, 40, 70, 4),
    "leather": (245, 32, 92, 5),
    "metal_nut": (220, 22, 93, 4),
    "pill": (267, 26, 141, 7),
    "screw": (320, 41, 119, 5),
    "tile": (230, 33, 84, 5),
    "toothbrush": (60, 12, 30, 1),
    "transistor": (213, 60, 40, 4),
    "wood": (247, 19, 60, 5),
    "zipper": (240, 32, 119, 7),
}

PUBLISHED = {
    name: common.Published(
        train_good=train,
        test_good=test,
        anomalies=anomalies,
        n_classes=classes,
        source="MVTec AD paper",
    )
    for name, (train, test, anomalies, classes) in _SUBSET_COUNTS.items()
}
PUBLISHED_TOTAL = common.Published(
    train_good=3629, test_good=467, anomalies=1258, n_classes=73, source="DRA, Table 5"
)


def validate_subset(subset: Path) -> list[str]:
    """Return the layout problems of one subset folder (empty when it is valid)."""
    if not subset.is_dir():
        return [f"subset folder missing: {subset}"]
    problems = []
    for folder in (subset / "train" / "good", subset / "test" / "good"):
        if not folder.is_dir() or not common.list_files(folder):
            problems.append(f"no images in {folder}")
    test_root = subset / "test"
    defect_folders = (
        [p for p in common.list_subfolders(test_root) if p.name != "good"]
        if test_root.is_dir()
        else []
    )
    if not defect_folders:
        problems.append(f"no defect folders in {test_root}")
    for folder in defect_folders:
        mask_folder = subset / "ground_truth" / folder.name
        image_stems = {path.stem for path in common.list_files(folder)}
        mask_stems = set()
        if mask_folder.is_dir():
            mask_stems = {
                path.stem.removesuffix("_mask") for path in common.list_files(mask_folder)
            }
        for stem in sorted(image_stems - mask_stems):
            problems.append(f"mask missing: {mask_folder / (stem + '_mask.png')}")
        for stem in sorted(mask_stems - image_stems):
            problems.append(f"mask without image: {mask_folder / (stem + '_mask.png')}")
    return problems


def check(root: Path, subsets: Sequence[str] | None = None) -> tuple[str, bool]:
    """Validate the MVTec AD folder ``root`` and compare its counts with the published ones.

    Args:
        subsets: subset names to check; None checks all 15.

    Returns:
        The report text and whether every check passed.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: ``subsets`` names an unknown subset.
    """
    common.require_dir(root, RAW_LAYOUT, "MVTec AD folder")
    names = list(subsets) if subsets else list(PUBLISHED)
    unknown = sorted(set(names) - set(PUBLISHED))
    if unknown:
        raise ValueError(f"unknown MVTec AD subsets {unknown}; known: {sorted(PUBLISHED)}")

    blocks, ok = [], True
    totals = {"train/good": 0, "test/good": 0, "anomalies": 0, "defect classes": 0}
    for name in names:
        problems = validate_subset(root / name)
        ok = ok and not problems
        if not (root / name).is_dir():
            blocks.append("\n".join(problems))
            continue
        counts = common.count_subset(root / name)
        rows = common.compare_counts(counts, PUBLISHED[name])
        ok = ok and all(row.status != "MISMATCH" for row in rows)
        blocks.append(
            "\n".join(
                [common.format_check_table(name, rows, PUBLISHED[name].source)]
                + [f"  problem: {p}" for p in problems]
            )
        )
        totals["train/good"] += counts.train_good
        totals["test/good"] += counts.test_good
        totals["anomalies"] += sum(counts.anomalies.values())
        totals["defect classes"] += len(counts.anomalies)

    # Over all 15 subsets these sums equal PUBLISHED_TOTAL (a test checks it).
    published = {
        "train/good": sum(PUBLISHED[name].train_good for name in names),
        "test/good": sum(PUBLISHED[name].test_good for name in names),
        "anomalies": sum(PUBLISHED[name].anomalies for name in names),
        "defect classes": sum(PUBLISHED[name].n_classes for name in names),
    }
    rows = [common.check_row(key, value, published[key]) for key, value in totals.items()]
    ok = ok and all(row.status != "MISMATCH" for row in rows)
    source = (
        PUBLISHED_TOTAL.source if len(names) == len(PUBLISHED) else "sum of the checked subsets"
    )
    blocks.append(common.format_check_table("total", rows, source))
    return "\n\n".join(blocks), ok


def main(argv: list[str] | None = None) -> int:
    """Run the command line; see ``--help``."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=f"Expected layout under --source:\n{RAW_LAYOUT}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", type=Path, required=True, help="MVTec AD folder (read only)")
    parser.add_argument("--subsets", nargs="+", help="check only these subsets (default: all 15)")
    parser.add_argument(
        "--check", action="store_true", help="accepted for symmetry with the converters; always on"
    )
    args = parser.parse_args(argv)
    try:
        report, ok = check(args.source.expanduser(), args.subsets)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report)
    if not ok:
        print(
            "check: the folder differs from the published MVTec AD (see MISMATCH and problem lines)"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
