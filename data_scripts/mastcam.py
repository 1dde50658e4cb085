"""Convert the Mastcam novelty detection data set to the MVTec AD layout.

The Mastcam set (Kerner et al., 2020) contains 64 x 64 px multispectral frames (6 bands)
cut from images of the Mars Curiosity rover's Mastcam: "typical" geology and "novel"
frames sorted into 11 classes.

Expected raw layout under ``--source``::

    train_typical/<name>.npy          typical frames for training
    validation_typical/<name>.npy     not used by the published split
    test_typical/<name>.npy           typical frames for testing
    test_novel/<class>/<name>.npy     novel frames, one folder per class (11 classes)
    test_novel/all/<name>.npy         copies of the class files, skipped

Published split rule (DRA benchmark converter): the data set's own split.
``train_typical`` becomes ``train/good``, ``test_typical`` becomes ``test/good`` and
every class folder of ``test_novel`` becomes ``test/<class>``. A frame that sits in two
class folders counts in both, which is how the published 451 anomalies arise.

Output: ``OUT/mastcam/{train/good, test/good, test/<class>}``. Each ``.npy`` frame
(64 x 64 x 6, float64 with 8-bit values) is written as an RGB PNG of its first three
bands, the bands the DRA loader reads; ``--keep-npy`` copies the arrays unchanged
instead (``sclib.data.load_image`` reads at most 4 channels of floats in [0, 1], so it
cannot read them). Published counts: 9302 / 426 typical, 451 novel in 11 classes.

Usage::

    python data_scripts/mastcam.py --source mastcam --output data/mastcam_mvtec --check
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from PIL import Image

if __package__:
    from . import _common as common
else:  # run as a script: python data_scripts/mastcam.py
    import _common as common

logger = logging.getLogger(__name__)

SUBSET = "mastcam"
FRAME_SUFFIXES = common.IMAGE_SUFFIXES | {".npy"}
SKIPPED_NOVEL_FOLDERS = frozenset({"all"})
RAW_LAYOUT = """\
  train_typical/<name>.npy          typical frames for training
  validation_typical/<name>.npy     not used by the published split
  test_typical/<name>.npy           typical frames for testing
  test_novel/<class>/<name>.npy     novel frames, one folder per class (11 classes)
  test_novel/all/<name>.npy         copies of the class files, skipped"""

PUBLISHED = {
    SUBSET: common.Published(
        train_good=9302, test_good=426, anomalies=451, n_classes=11, source="DRA, Table 5"
    )
}


def frame_to_png(source: Path, destination: Path) -> None:
    """Write the first three bands of a ``.npy`` frame as an 8-bit RGB PNG (grey for 2-D).

    Values are clipped to [0, 255] and truncated to integers.
    """
    # NOTE: the DRA loader casts with astype(uint8) and keeps bands 0-2; clipping first
    # gives the same pixels for values in [0, 255] and avoids wrap-around outside it.
    # TODO: the 0-255 value range comes from third-party code that reads the release.
    # The check below stops on frames that look scaled to [0, 1].
    frame = np.load(source)
    if np.issubdtype(frame.dtype, np.floating) and frame.size and float(frame.max()) <= 1.0:
        raise ValueError(
            f"{source}: float values lie in [0, 1], not 0-255 as expected; "
            "pass --keep-npy to copy the arrays unchanged"
        )
    if frame.ndim == 3 and frame.shape[-1] >= 3:
        frame = frame[..., :3]
    elif frame.ndim != 2:
        raise ValueError(
            f"{source}: expected an (H, W) or (H, W, C>=3) array, got shape {frame.shape}"
        )
    pixels = np.clip(frame, 0, 255).astype(np.uint8)
    common.save_image(Image.fromarray(pixels), destination)


def collect_frames(source: Path) -> tuple[list[Path], list[Path], dict[str, list[Path]]]:
    """Return (train typical, test typical, novel frames per class), each sorted."""
    common.require_dir(source, RAW_LAYOUT, "source folder")
    train = common.list_files(
        common.require_dir(source / "train_typical", RAW_LAYOUT), FRAME_SUFFIXES
    )
    test = common.list_files(
        common.require_dir(source / "test_typical", RAW_LAYOUT), FRAME_SUFFIXES
    )
    novel_root = common.require_dir(source / "test_novel", RAW_LAYOUT)
    novel = {
        folder.name: common.list_files(folder, FRAME_SUFFIXES)
        for folder in common.list_subfolders(novel_root)
        if folder.name not in SKIPPED_NOVEL_FOLDERS
    }
    for name, files in (("train_typical", train), ("test_typical", test)):
        if not files:
            raise FileNotFoundError(
                f"no frames found in {source / name}\nExpected raw layout:\n{RAW_LAYOUT}"
            )
    if not novel:
        raise FileNotFoundError(
            f"no class folders found in {novel_root} (all/ is skipped because it repeats "
            f"the class files)\nExpected raw layout:\n{RAW_LAYOUT}"
        )
    return train, test, novel


def convert(source: Path, output: Path, overwrite: bool = False, keep_npy: bool = False) -> Path:
    """Convert the Mastcam set under ``source`` into ``output/mastcam``; return that folder.

    Args:
        keep_npy: copy ``.npy`` frames unchanged instead of writing bands 0-2 as PNG.

    Raises:
        FileNotFoundError: a folder of the raw layout is missing or empty.
        FileExistsError: ``output`` is not empty and ``overwrite`` is False.
    """
    source = Path(source)
    train, test, novel = collect_frames(source)
    logger.info(
        "Mastcam: %d / %d typical, %d novel in %d classes",
        len(train),
        len(test),
        sum(len(files) for files in novel.values()),
        len(novel),
    )

    def write(frame: Path, folder: Path) -> None:
        if not keep_npy and frame.suffix.lower() == ".npy":
            frame_to_png(frame, folder / f"{frame.stem}.png")
        else:
            common.copy_file(frame, folder / frame.name)

    with common.staged_output(Path(output), [source], overwrite) as staging:
        subset = staging / SUBSET
        for frame in train:
            write(frame, subset / "train" / "good")
        for frame in test:
            write(frame, subset / "test" / "good")
        for class_name, frames in novel.items():
            for frame in frames:
                write(frame, subset / "test" / class_name)
    return Path(output).expanduser().resolve() / SUBSET


def main(argv: list[str] | None = None) -> int:
    """Run the command line; see ``--help``."""
    parser = common.make_parser(__doc__.splitlines()[0], RAW_LAYOUT)
    parser.add_argument(
        "--keep-npy",
        action="store_true",
        help="copy the .npy frames unchanged instead of writing bands 0-2 as RGB PNG",
    )

    def run(args: argparse.Namespace) -> Path:
        return convert(args.source, args.output, args.overwrite, args.keep_npy)

    return common.run_cli(parser, argv, run, PUBLISHED)


if __name__ == "__main__":
    sys.exit(main())
