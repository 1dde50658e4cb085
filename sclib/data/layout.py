"""Folder discovery and validation for data sets in the MVTec AD layout.

A subset folder looks like this::

    <subset>/train/good/*               normal training images
    <subset>/test/good/*                normal test images
    <subset>/test/<defect_class>/*      anomalies, one folder per defect class
    <subset>/ground_truth/<defect_class>/<stem>_mask.png   optional pixel masks

``discover`` lists the images as ``ImageRecord`` rows and raises on a broken layout.
``check_layout`` does not raise for a layout problem. It returns a ``LayoutReport`` whose
``problems`` list, in plain sentences, what is wrong, for a notebook or a terminal.
"""

from __future__ import annotations

import hashlib
import html
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sclib.data.images import IMAGE_EXTENSIONS, ImageReadError, load_image, read_image_info

NORMAL_CLASS = "good"

EXPECTED_LAYOUT = (
    "expected <subset>/train/good/ with normal images, <subset>/test/good/ and "
    "<subset>/test/<defect_class>/ with test images"
)


@dataclass(frozen=True)
class ImageRecord:
    """One image of a data set.

    Attributes:
        path: the image file.
        label: 0 for normal, 1 for anomaly.
        defect_class: name of the class folder; ``"good"`` for normal images.
        split: ``"train"`` or ``"test"``, the folder the file sits in.
        mask_path: the ground-truth mask file, or None when there is none.
    """

    path: Path
    label: int
    defect_class: str
    split: str
    mask_path: Path | None = None


def is_image_file(path: Path) -> bool:
    """Return True for a visible file with an image extension (case-insensitive)."""
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS
    )


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def _list_class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _mask_stem(mask: Path) -> str:
    return mask.stem[: -len("_mask")] if mask.stem.endswith("_mask") else mask.stem


def find_mask(root: Path, defect_class: str, image: Path) -> Path | None:
    """Find the mask of a test image.

    Looks for ``ground_truth/<class>/<stem>_mask.<ext>``, then ``<stem>.<ext>``.
    """
    folder = root / "ground_truth" / defect_class
    if not folder.is_dir():
        return None
    for stem in (f"{image.stem}_mask", image.stem):
        for extension in (".png", *IMAGE_EXTENSIONS):
            candidate = folder / f"{stem}{extension}"
            if candidate.is_file():
                return candidate
    return None


def _subset_hint(root: Path) -> str:
    """Name subsets when ``root`` looks like a folder of subsets rather than one subset."""
    if not root.is_dir():
        return ""
    subsets = [p.name for p in _list_class_dirs(root) if (p / "train").is_dir()]
    if subsets:
        return (
            f" {root} looks like a folder of subsets; pass one of them, e.g. {root / subsets[0]}."
        )
    return ""


def discover(root: str | os.PathLike) -> list[ImageRecord]:
    """List every image of a subset folder, sorted by path.

    Args:
        root: the subset folder that contains ``train/`` and ``test/``.

    Returns:
        ``ImageRecord`` rows sorted by path: train normals, test normals and test
        anomalies, with mask paths where ``ground_truth/`` has them.

    Raises:
        FileNotFoundError: ``root``, ``train/good`` or ``test`` is missing.
        ValueError: a class folder contains no image, ``test/`` contains no class folder,
            or ``train/`` contains a folder other than ``good``.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"Data folder not found: {root}. Layout: {EXPECTED_LAYOUT}.")
    train_good = root / "train" / NORMAL_CLASS
    if not train_good.is_dir():
        raise FileNotFoundError(
            f"Missing folder {train_good}. Layout: {EXPECTED_LAYOUT}.{_subset_hint(root)}"
        )
    other_train = [p.name for p in _list_class_dirs(root / "train") if p.name != NORMAL_CLASS]
    if other_train:
        raise ValueError(
            f"{root / 'train'} contains folders {other_train} besides good/, but the training "
            "split contains only normal images. Move anomalies to test/<defect_class>/."
        )
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise FileNotFoundError(f"Missing folder {test_dir}. Layout: {EXPECTED_LAYOUT}.")
    test_classes = _list_class_dirs(test_dir)
    if not test_classes:
        raise ValueError(f"{test_dir} contains no class folder. Layout: {EXPECTED_LAYOUT}.")

    records: list[ImageRecord] = []
    for split, class_dir in [("train", train_good)] + [("test", d) for d in test_classes]:
        images = _list_images(class_dir)
        if not images:
            raise ValueError(
                f"Class folder {class_dir} contains no image file (extensions: "
                f"{', '.join(IMAGE_EXTENSIONS)}). Add images or remove the folder."
            )
        defect_class = class_dir.name
        label = 0 if defect_class == NORMAL_CLASS else 1
        for path in images:
            mask = find_mask(root, defect_class, path) if label == 1 else None
            records.append(ImageRecord(path, label, defect_class, split, mask))
    return sorted(records, key=lambda record: str(record.path))


@dataclass
class LayoutReport:
    """Result of ``check_layout``.

    Attributes:
        root: the subset folder checked.
        problems: one plain sentence per problem found; empty when the layout is fine.
        summary: one row per (split, class) with columns split, class, n_images,
            n_masks, sizes (``"WxH (count)"``) and modes (PIL mode names).
    """

    root: Path
    problems: list[str] = field(default_factory=list)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def __str__(self) -> str:
        lines = [
            f"Layout check of {self.root}: "
            + ("OK" if self.ok else f"{len(self.problems)} problem(s)")
        ]
        if not self.summary.empty:
            lines.append(self.summary.to_string(index=False))
        lines.extend(f"- {problem}" for problem in self.problems)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        status = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        parts = [f"<p><b>Layout check of {html.escape(str(self.root))}</b>: {status}</p>"]
        if not self.summary.empty:
            parts.append(self.summary.to_html(index=False))
        if self.problems:
            items = "".join(f"<li>{html.escape(problem)}</li>" for problem in self.problems)
            parts.append(f"<ul>{items}</ul>")
        return "\n".join(parts)


def _format_counts(counter: Counter) -> str:
    return ", ".join(f"{value} ({count})" for value, count in sorted(counter.items()))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _class_folders(root: Path, problems: list[str]) -> list[tuple[str, Path]]:
    """Return (split, folder) pairs to scan and add the structural problems."""
    folders: list[tuple[str, Path]] = []
    train_dir, test_dir = root / "train", root / "test"
    if (train_dir / NORMAL_CLASS).is_dir():
        folders.append(("train", train_dir / NORMAL_CLASS))
    else:
        problems.append(
            f"No train/good folder: put the normal training images in {train_dir / NORMAL_CLASS}."
            + _subset_hint(root)
        )
    if train_dir.is_dir():
        for extra in _list_class_dirs(train_dir):
            if extra.name != NORMAL_CLASS:
                problems.append(
                    f"Unexpected folder {extra}: train/ contains only normal images, in "
                    "train/good. Move anomalies to test/<defect_class>/."
                )
    if not test_dir.is_dir():
        problems.append(
            f"No test folder: create {test_dir} with good/ and one folder per defect class."
        )
        return folders
    test_classes = _list_class_dirs(test_dir)
    if not any(d.name != NORMAL_CLASS for d in test_classes):
        problems.append(f"No defect class folder in {test_dir}: the test set has no anomalies.")
    if not (test_dir / NORMAL_CLASS).is_dir():
        problems.append(
            "No test/good folder: the test set has no normal images, so AUROC is undefined."
        )
    folders.extend(("test", d) for d in test_classes)
    return folders


def _check_masks(root: Path, test_images: dict[str, set[str]], problems: list[str]) -> None:
    ground_truth = root / "ground_truth"
    if not ground_truth.is_dir():
        return
    for class_dir in _list_class_dirs(ground_truth):
        stems = test_images.get(class_dir.name)
        masks = [p for p in sorted(class_dir.iterdir()) if is_image_file(p)]
        if stems is None:
            problems.append(
                f"Mask folder {class_dir} has no matching test/{class_dir.name} folder."
            )
            continue
        orphans = [m for m in masks if _mask_stem(m) not in stems]
        if orphans:
            names = ", ".join(m.name for m in orphans[:10])
            problems.append(
                f"{len(orphans)} mask(s) without an image in {class_dir}: {names}"
                + (" ..." if len(orphans) > 10 else "")
            )


def check_layout(root: str | os.PathLike, decode: bool = True) -> LayoutReport:
    """Check a subset folder and report every problem found, without raising.

    Reports a missing ``train/good``, no test classes, empty class folders, files with
    other extensions, broken links, mixed image sizes or modes, masks without images,
    duplicate files (same content hash) and unreadable files.

    Args:
        root: the subset folder that contains ``train/`` and ``test/``.
        decode: decode every image to find damaged files; False reads headers only, which
            is faster but misses truncated pixel data.
    """
    root = Path(root).expanduser().resolve()
    report = LayoutReport(root=root)
    problems = report.problems
    if not root.is_dir():
        problems.append(f"Data folder {root} does not exist. Layout: {EXPECTED_LAYOUT}.")
        return report

    rows = []
    all_sizes: dict[str, list[Path]] = defaultdict(list)
    all_modes: dict[str, list[Path]] = defaultdict(list)
    digests: dict[str, list[Path]] = defaultdict(list)
    unreadable: list[str] = []
    test_images: dict[str, set[str]] = {}
    for split, folder in _class_folders(root, problems):
        entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
        images = [p for p in entries if is_image_file(p)]
        others = [p.name for p in entries if p.is_file() and not is_image_file(p)]
        if others:
            problems.append(
                f"{len(others)} file(s) in {folder} are not images and are ignored: "
                + ", ".join(others[:5])
                + (" ..." if len(others) > 5 else "")
            )
        broken = [p.name for p in entries if p.is_symlink() and not p.exists()]
        if broken:
            problems.append(
                f"{len(broken)} broken link(s) in {folder} point to missing files and are "
                "ignored: " + ", ".join(broken[:5]) + (" ..." if len(broken) > 5 else "")
            )
        if not images:
            problems.append(f"Empty class folder {folder}: add images or remove the folder.")
        if split == "test":
            test_images[folder.name] = {p.stem for p in images}
        sizes, modes = Counter(), Counter()
        n_masks = 0
        for path in images:
            relative = path.relative_to(root)
            digests[_file_digest(path)].append(relative)
            try:
                info = read_image_info(path)
                if decode:
                    load_image(path)
            except ImageReadError as error:
                unreadable.append(f"{relative} ({error.reason})")
                continue
            size_text = f"{info.width}x{info.height}"
            sizes[size_text] += 1
            modes[info.mode] += 1
            all_sizes[size_text].append(relative)
            all_modes[info.mode].append(relative)
            if split == "test" and folder.name != NORMAL_CLASS:
                n_masks += find_mask(root, folder.name, path) is not None
        rows.append(
            {
                "split": split,
                "class": folder.name,
                "n_images": len(images),
                "n_masks": n_masks,
                "sizes": _format_counts(sizes),
                "modes": _format_counts(modes),
            }
        )

    for name, groups in (("sizes", all_sizes), ("modes", all_modes)):
        if len(groups) > 1:
            counts = ", ".join(
                f"{value} ({len(files)}, e.g. {files[0]})"
                for value, files in sorted(groups.items())
            )
            problems.append(f"Mixed image {name}: {counts}.")
    for files in digests.values():
        if len(files) > 1:
            problems.append("Duplicate files (same content): " + ", ".join(map(str, files)) + ".")
    if unreadable:
        problems.append(
            f"{len(unreadable)} unreadable file(s): "
            + "; ".join(unreadable[:10])
            + (" ..." if len(unreadable) > 10 else "")
        )
    _check_masks(root, test_images, problems)
    report.summary = pd.DataFrame(
        rows, columns=["split", "class", "n_images", "n_masks", "sizes", "modes"]
    )
    return report
