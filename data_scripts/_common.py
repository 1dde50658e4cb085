"""Shared helpers for the converters in ``data_scripts/``.

Every converter writes one public data set in the MVTec AD folder layout::

    OUT/<subset>/train/good/*
    OUT/<subset>/test/good/*
    OUT/<subset>/test/<defect_class>/*
    OUT/<subset>/ground_truth/<defect_class>/<image stem>_mask.png   (where masks exist)

The rules they share live here:

- The source folder is only read. The output is built in a temporary folder next to
  ``OUT`` and renamed to ``OUT`` at the end, so a failed run leaves no half-written
  output behind.
- A non-empty ``OUT`` is rejected unless ``overwrite=True`` (``--overwrite``).
- Normal images are split with scikit-learn
  ``train_test_split(test_size=0.25, random_state=42)``, the rule of the DRA benchmark
  converters, after the inputs are sorted.
- ``--check`` prints the converted counts beside the published ones and flags every
  difference that is not a documented one.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)

TEST_SIZE = 0.25
SPLIT_SEED = 42
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

Item = TypeVar("Item")


# ---------------------------------------------------------------------------
# Reading the source
# ---------------------------------------------------------------------------


def require_dir(path: Path, raw_layout: str, description: str = "folder") -> Path:
    """Return ``path`` if it is a folder, else raise FileNotFoundError naming it.

    The message names the missing path and repeats the expected raw layout.
    """
    if not path.is_dir():
        raise FileNotFoundError(
            f"{description} not found: {path}\nExpected raw layout:\n{raw_layout}"
        )
    return path


def require_file(path: Path, raw_layout: str, description: str = "file") -> Path:
    """Return ``path`` if it is a file, else raise FileNotFoundError naming it."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{description} not found: {path}\nExpected raw layout:\n{raw_layout}"
        )
    return path


def list_files(folder: Path, suffixes: frozenset[str] | None = IMAGE_SUFFIXES) -> list[Path]:
    """List the files of ``folder`` with one of ``suffixes`` (any case), sorted by name.

    Hidden files (name starting with ".") are skipped. ``suffixes=None`` keeps every file.
    """
    files = [
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and (suffixes is None or path.suffix.lower() in suffixes)
    ]
    return sorted(files)


def list_subfolders(folder: Path) -> list[Path]:
    """List the non-hidden subfolders of ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_mask(path: Path) -> np.ndarray:
    """Read a mask file as a boolean array (H, W): True where any channel is non-zero.

    Palette images are expanded to RGB first, and an alpha channel is ignored, so a
    fully opaque background does not count as a defect.
    """
    with Image.open(path) as image:
        if image.mode in ("P", "PA"):
            image = image.convert("RGBA")
        pixels = np.asarray(image)
    if pixels.ndim == 3:
        if pixels.shape[-1] == 2:  # grey + alpha
            pixels = pixels[..., :1]
        elif pixels.shape[-1] == 4:  # RGBA
            pixels = pixels[..., :3]
        return np.any(pixels != 0, axis=-1)
    return pixels != 0


def split_normals(items: Sequence[Item]) -> tuple[list[Item], list[Item]]:
    """Split normal items into (train, test) with the published 75/25 rule.

    ``items`` must already be in a reproducible order (sorted, or the order of a label
    file). The test part contains ``ceil(0.25 * len(items))`` items.
    """
    # NOTE: the public DRA converters shuffle os.listdir order, which differs between
    # file systems. Sorted input gives the same counts but not the same files.
    if len(items) < 2:
        raise ValueError(f"need at least 2 normal images to split, got {len(items)}")
    train_index, test_index = train_test_split(
        np.arange(len(items)), test_size=TEST_SIZE, random_state=SPLIT_SEED
    )
    return [items[i] for i in train_index], [items[i] for i in test_index]


# ---------------------------------------------------------------------------
# Writing the output
# ---------------------------------------------------------------------------


def copy_file(source: Path, destination: Path) -> None:
    """Copy the bytes of ``source`` to ``destination``, creating its folder.

    Permission bits are not copied, so read-only sources give writable copies.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        raise ValueError(f"two inputs map to the same output file: {destination}")
    shutil.copyfile(source, destination)
    logger.debug("copied %s to %s", source, destination)


def save_image(image: Image.Image, destination: Path) -> None:
    """Save ``image`` as PNG at ``destination``, creating its folder."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        raise ValueError(f"two inputs map to the same output file: {destination}")
    image.save(destination, format="PNG")
    logger.debug("wrote %s", destination)


def save_mask(mask: np.ndarray, destination: Path) -> None:
    """Save a boolean mask (H, W) as an 8-bit PNG with 0 = normal and 255 = defect."""
    save_image(Image.fromarray(mask.astype(np.uint8) * 255, mode="L"), destination)


def copy_split(
    subset: Path,
    train: Sequence[tuple[Path, str]],
    test: Sequence[tuple[Path, str]],
    anomalies: Mapping[str, Sequence[tuple[Path, str]]],
) -> None:
    """Copy (source file, output name) pairs into the MVTec AD folders of ``subset``."""
    for path, name in train:
        copy_file(path, subset / "train" / "good" / name)
    for path, name in test:
        copy_file(path, subset / "test" / "good" / name)
    for class_name, items in anomalies.items():
        for path, name in items:
            copy_file(path, subset / "test" / class_name / name)


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@contextmanager
def staged_output(output: Path, sources: Sequence[Path], overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``output`` when the block succeeds.

    The temporary folder sits next to ``output``, on the same file system, so the final
    step is a rename. If the block raises, the temporary folder is deleted and
    ``output`` is left as it was.

    Raises:
        ValueError: ``output`` lies inside a source folder, a source lies inside
            ``output``, or ``output`` is a file.
        FileExistsError: ``output`` is a non-empty folder and ``overwrite`` is False.
    """
    output = output.expanduser().resolve()
    for source in sources:
        source = source.expanduser().resolve()
        if _is_inside(output, source):
            raise ValueError(
                f"output folder {output} is inside the source folder {source}; "
                "converters never write into the source, so choose an output outside it"
            )
        if _is_inside(source, output):
            raise ValueError(
                f"source folder {source} is inside the output folder {output}; "
                "replacing the output would delete the source, so choose another output"
            )
    if output.exists() and not output.is_dir():
        raise ValueError(f"output path {output} is a file, expected a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder {output} is not empty; pass --overwrite (overwrite=True) "
            "to replace it, or choose another folder"
        )

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    if output.is_dir() and any(output.iterdir()):
        previous = output.with_name(f".{output.name}.old-{uuid.uuid4().hex[:8]}")
        output.rename(previous)
        staging.rename(output)
        shutil.rmtree(previous)
    else:
        if output.is_dir():
            output.rmdir()
        staging.rename(output)
    logger.info("wrote %s", output)


# ---------------------------------------------------------------------------
# Counting and checking
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SubsetCounts:
    """Image counts of one converted subset (files in each folder, hidden files skipped)."""

    train_good: int
    test_good: int
    anomalies: dict[str, int]
    masks: dict[str, int]


@dataclass(frozen=True)
class Published:
    """Published counts of one subset; None where the source gives no number.

    ``known_deviations`` maps a row name of the check table (for example
    ``"train/good"``) to the count the published split rule gives there and the reason
    why it differs from the published count.
    """

    train_good: int | None = None
    test_good: int | None = None
    normal_total: int | None = None
    anomalies: int | None = None
    n_classes: int | None = None
    per_class: Mapping[str, int] = field(default_factory=dict)
    known_deviations: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class CheckRow:
    """One row of the check table; ``status`` is "ok", "MISMATCH", "known" or ""."""

    name: str
    converted: int
    published: int | None
    status: str
    note: str = ""


def _count_files(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def count_subset(subset_root: Path) -> SubsetCounts:
    """Count the files of a subset folder in the MVTec AD layout."""
    test_root = subset_root / "test"
    classes = [p.name for p in list_subfolders(test_root)] if test_root.is_dir() else []
    anomaly_classes = [name for name in classes if name != "good"]
    return SubsetCounts(
        train_good=_count_files(subset_root / "train" / "good"),
        test_good=_count_files(test_root / "good"),
        anomalies={name: _count_files(test_root / name) for name in anomaly_classes},
        masks={name: _count_files(subset_root / "ground_truth" / name) for name in anomaly_classes},
    )


def check_row(
    name: str,
    converted: int,
    published: int | None,
    deviations: Mapping[str, tuple[int, str]] | None = None,
) -> CheckRow:
    """Compare one count with its published value; see ``Published.known_deviations``."""
    deviations = deviations or {}
    if published is None:
        return CheckRow(name, converted, None, "")
    if converted == published:
        return CheckRow(name, converted, published, "ok")
    if name in deviations and converted == deviations[name][0]:
        return CheckRow(name, converted, published, "known", deviations[name][1])
    return CheckRow(name, converted, published, "MISMATCH")


def compare_counts(counts: SubsetCounts, published: Published) -> list[CheckRow]:
    """Build the check table rows of one subset."""
    deviations = published.known_deviations
    rows = [
        check_row("train/good", counts.train_good, published.train_good, deviations),
        check_row("test/good", counts.test_good, published.test_good, deviations),
    ]
    if published.normal_total is not None:
        total = counts.train_good + counts.test_good
        rows.append(check_row("normal (train + test)", total, published.normal_total, deviations))
    rows.append(
        check_row("anomalies", sum(counts.anomalies.values()), published.anomalies, deviations)
    )
    rows.append(check_row("defect classes", len(counts.anomalies), published.n_classes, deviations))
    for name in sorted(set(counts.anomalies) | set(published.per_class)):
        rows.append(
            check_row(
                f"test/{name}",
                counts.anomalies.get(name, 0),
                published.per_class.get(name),
                deviations,
            )
        )
    return rows


def format_check_table(subset: str, rows: Sequence[CheckRow], source: str = "") -> str:
    """Format check rows as a plain-text table, one line per row."""
    header = ("count", "found", "published", "status")
    lines = [
        (
            row.name,
            str(row.converted),
            "-" if row.published is None else str(row.published),
            row.status,
        )
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    title = f"subset {subset}" + (f" (published counts: {source})" if source else "")
    text = [
        title,
        "  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip(),
    ]
    for row, cells in zip(rows, lines, strict=True):
        line = "  ".join(
            cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
        ).rstrip()
        if row.note:
            line += f"  ({row.note})"
        text.append(line)
    return "\n".join(text)


def check_output(output: Path, published: Mapping[str, Published]) -> tuple[str, bool]:
    """Compare the subsets under ``output`` with the published counts.

    Returns:
        The report text and whether every count matched or differed in a documented way.
        A subset that is published but missing from ``output`` counts as a mismatch.
    """
    if not output.is_dir():
        raise FileNotFoundError(f"output folder not found: {output}")
    found = {p.name for p in list_subfolders(output)}
    blocks, ok = [], True
    for subset in sorted(found | set(published)):
        expected = published.get(subset, Published())
        if subset not in found:
            blocks.append(f"subset {subset}: folder {output / subset} is missing  MISMATCH")
            ok = False
            continue
        rows = compare_counts(count_subset(output / subset), expected)
        ok = ok and all(row.status != "MISMATCH" for row in rows)
        blocks.append(format_check_table(subset, rows, expected.source))
    return "\n\n".join(blocks), ok


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def make_parser(description: str, raw_layout: str) -> argparse.ArgumentParser:
    """Build the argument parser shared by the converters; the epilog shows the raw layout."""
    parser = argparse.ArgumentParser(
        description=description,
        epilog=f"Expected raw layout under --source:\n{raw_layout}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", type=Path, help="folder of the downloaded data set (read only)")
    parser.add_argument(
        "--output", type=Path, required=True, help="folder to write the MVTec AD layout into"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="print converted counts beside the published ones; without --source, "
        "check an existing output folder",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty output folder"
    )
    parser.add_argument("--verbose", action="store_true", help="log every file written")
    return parser


def run_cli(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    convert: Callable[[argparse.Namespace], Path],
    published: Mapping[str, Published] | Callable[[argparse.Namespace], Mapping[str, Published]],
) -> int:
    """Parse ``argv``, convert and check; return the exit status.

    ``published`` is the table of published counts, or a function that picks it from
    the parsed arguments. Exit status: 0 on success, 1 when ``--check`` finds an
    undocumented mismatch, 2 when the input is invalid (the message goes to stderr).
    """
    args = parser.parse_args(argv)
    if callable(published):
        published = published(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    if args.source is None and not args.check:
        parser.error("--source is required unless --check is given for an existing output")
    if args.source is not None and not args.source.expanduser().is_dir():
        print(
            f"error: --source folder not found: {args.source}. Pass the folder of the "
            f"downloaded data set.\n{parser.epilog}",
            file=sys.stderr,
        )
        return 2
    try:
        if args.source is not None:
            convert(args)
        if args.check:
            report, ok = check_output(args.output.expanduser(), published)
            print(report)
            if not ok:
                print("check: some counts differ from the published ones (MISMATCH rows)")
                return 1
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
