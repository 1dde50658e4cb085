"""Image decoding and the decoded-image cache.

``load_image`` turns any file a data set is likely to hold into one array format, uint8
``(H, W, 3)``. ``build_image_cache`` decodes and resizes a list of files once and keeps
the result as a uint8 tensor ``(N, 3, S, S)`` in a cache folder, so training never decodes
a file twice.

Conversion rules of ``load_image``:

- Grey, grey + alpha, palette, CMYK and other modes become RGB. An alpha channel is
  dropped, not composited.
- 16-bit data is scaled by its dtype range, ``round(value * 255 / 65535)``, and not by
  the image's own minimum and maximum, so one raw value gives one pixel value in every
  file.
- PIL's 32-bit integer mode ``"I"`` is read as 16-bit data (values clipped to
  0..65535), because PIL decodes some 16-bit grey files into that mode.
- Float data must lie in [0, 1] and is scaled by 255.
- ``.npy`` arrays may be ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with C in 1..4.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from sclib import paths as sclib_paths
from sclib.runs import atomic_open

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".npy")
_TIFF_EXTENSIONS = (".tif", ".tiff")
_CACHE_FORMAT_VERSION = 1

# Decoders fed a damaged file raise many exception types, not only OSError.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)


class ImageReadError(ValueError):
    """An image file that exists but cannot be decoded into an RGB array."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"Failed to read image {self.path}: {reason}. Replace or delete the file, "
            "or pass skip_unreadable=True to leave unreadable files out."
        )


@dataclass(frozen=True)
class ImageInfo:
    """Header facts of one image file: size in pixels and a PIL-style mode name.

    Arrays that are not uint8 carry their dtype in the mode, for example ``"L;uint16"``.
    """

    width: int
    height: int
    mode: str


def _mode_name(channels: int, dtype: np.dtype) -> str:
    base = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels}ch")
    return base if dtype == np.uint8 else f"{base};{dtype}"


def _channels_last(array: np.ndarray, path: Path) -> np.ndarray:
    """Return ``array`` as ``(H, W, C)``, given ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)``."""
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3:
        if array.shape[2] <= 4:
            return array
        if array.shape[0] <= 4:
            return np.moveaxis(array, 0, -1)  # (C, H, W) -> (H, W, C)
    raise ImageReadError(
        path, f"array shape {array.shape} is not (H, W), (H, W, C) or (C, H, W) with C in 1..4"
    )


def _to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    """Scale an array of a supported dtype to uint8 by the dtype range (see module docstring)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array / 257.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ImageReadError(path, "float array contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise ImageReadError(
                path, f"float values span [{low:g}, {high:g}] but must lie in [0, 1]"
            )
        return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if 0 <= low and high <= 255:
            return array.astype(np.uint8)
        raise ImageReadError(
            path,
            f"{array.dtype} values span [{low}, {high}], but only uint8, uint16, "
            "float in [0, 1], or integers in [0, 255] are supported",
        )
    raise ImageReadError(path, f"unsupported array dtype {array.dtype}")


def array_to_rgb(array: np.ndarray, path: str | os.PathLike = "<array>") -> np.ndarray:
    """Convert a grey, grey + alpha, RGB or RGBA array of a supported dtype to uint8 (H, W, 3).

    The result is writable and C-contiguous.

    Args:
        array: ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with C in 1..4; uint8, uint16,
            bool, float in [0, 1], or another integer dtype with values in [0, 255].
        path: file name used in error messages.

    Raises:
        ImageReadError: for any other shape, dtype or value range.
    """
    path = Path(path)
    array = _channels_last(np.asarray(array), path)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(path, f"image has zero size, shape {array.shape}")
    channels = array.shape[2]
    if channels in (1, 2):
        array = np.repeat(array[:, :, :1], 3, axis=2)  # grey (+ alpha) -> RGB
    elif channels == 4:
        array = array[:, :, :3]  # alpha dropped
    rgb = np.ascontiguousarray(_to_uint8(array, path))
    return rgb if rgb.flags.writeable else rgb.copy()  # PIL hands out read-only arrays


def _pil_to_rgb(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in ("RGB", "L", "RGBA", "LA", "F") or mode.startswith("I;16"):
        return array_to_rgb(np.asarray(image), path)
    if mode == "I":
        # NOTE: mode "I" is read as 16-bit data, so values of true 32-bit images are clipped.
        return array_to_rgb(np.clip(np.asarray(image), 0, 65535).astype(np.uint16), path)
    if mode == "1":
        return array_to_rgb(np.asarray(image.convert("L")), path)
    return array_to_rgb(np.asarray(image.convert("RGB")), path)  # P, PA, CMYK, YCbCr, ...


def _read_with_pil(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        # Cameras store the orientation in EXIF; apply it as image viewers do.
        upright = ImageOps.exif_transpose(image)
        return _pil_to_rgb(upright, path)


def _read_tiff_array(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        return tiff.pages[0].asarray()


def _read_tiff_info(path: Path) -> ImageInfo:
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        shape = page.shape if len(page.shape) == 3 else (*page.shape, 1)
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and len(page.shape) == 3:
            shape = (*page.shape[1:], page.shape[0])  # (C, H, W) -> (H, W, C)
        return ImageInfo(shape[1], shape[0], _mode_name(shape[2], page.dtype))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file into a uint8 RGB array.

    Handles PNG (8 and 16 bit, grey, RGB, RGBA, palette), JPEG, BMP, WebP, TIFF (first
    page, through ``tifffile`` with PIL as fallback) and ``.npy`` arrays. The module
    docstring lists the conversion rules.

    Returns:
        uint8 array ``(H, W, 3)``, values 0..255.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: the file is empty, damaged or in an unsupported format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file not found: {path}. Check the path and the folder.")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes)")

    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return array_to_rgb(np.load(path, allow_pickle=False), path)
        if suffix in _TIFF_EXTENSIONS:
            try:
                return array_to_rgb(_read_tiff_array(path), path)
            except ImageReadError:
                raise
            except _DECODE_ERRORS as tiff_error:
                logger.debug("tifffile failed on %s (%s); trying PIL", path, tiff_error)
        return _read_with_pil(path)
    except ImageReadError:
        raise
    except _DECODE_ERRORS as error:
        raise ImageReadError(path, f"{type(error).__name__}: {error}") from error


def read_image_info(path: str | os.PathLike) -> ImageInfo:
    """Read the size and mode of an image from its header, without decoding the pixels.

    Raises:
        ImageReadError: the header cannot be read.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes)")
    try:
        suffix = path.suffix.lower()
        if suffix == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            array = _channels_last(array, path)
            return ImageInfo(
                array.shape[1], array.shape[0], _mode_name(array.shape[2], array.dtype)
            )
        if suffix in _TIFF_EXTENSIONS:
            return _read_tiff_info(path)
        with Image.open(path) as image:
            return ImageInfo(image.width, image.height, image.mode)
    except ImageReadError:
        raise
    except _DECODE_ERRORS as error:
        raise ImageReadError(path, f"{type(error).__name__}: {error}") from error


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 ``(H, W, 3)`` array to ``(size, size, 3)``.

    Non-square images are resized directly, so the aspect ratio is not kept. This matches
    the ``Resize((size, size))`` step of MVTec AD pipelines. PIL's bilinear filter widens
    its support when shrinking, so downscaling is antialiased.
    """
    if image.shape[0] == size and image.shape[1] == size:
        return image
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
    return np.array(resized)


@dataclass
class ImageCache:
    """Decoded images of a file list.

    Attributes:
        images: uint8 tensor ``(N, 3, S, S)``, values 0..255, one row per kept path.
        paths: the kept files, in the order of ``images``.
        skipped: files left out because they could not be read.
    """

    images: torch.Tensor
    paths: list[Path]
    skipped: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def default_cache_dir() -> Path:
    """Return ``$SCLIB_CACHE_DIR`` or ``~/.cache/sclib``."""
    return sclib_paths.cache_dir()


def _data_folder(files: Sequence[Path]) -> Path:
    """Return the data folder of ``files``: the subset folder when there is one.

    Starts at the common parent of the image folders and goes up to the nearest folder
    that contains ``train/`` or ``test/``, so that images of one class folder still
    count as part of the whole subset. The search stops below the home folder and the
    file-system root. Without such a folder, the common parent is the data folder.
    """
    common = Path(os.path.commonpath([str(path.parent) for path in files]))
    home = Path.home().resolve()
    for folder in (common, *common.parents):
        if folder == home or folder in home.parents or folder == Path(folder.anchor):
            break
        if (folder / "train").is_dir() or (folder / "test").is_dir():
            return folder
    return common


def _check_cache_location(cache_dir: Path, files: Sequence[Path]) -> None:
    """Raise when ``cache_dir`` lies inside the folder that contains the images.

    The data folder is found by ``_data_folder``. It is not checked when it is the home
    folder, one of its parents, or the file-system root, because such a folder is not a
    data folder.
    """
    data_dir = _data_folder(files)
    home = Path.home().resolve()
    if data_dir == Path(data_dir.anchor) or data_dir == home or data_dir in home.parents:
        return
    if cache_dir == data_dir or data_dir in cache_dir.parents:
        raise ValueError(
            f"cache_dir={cache_dir} is inside the data folder {data_dir}, and the cache "
            "must not write into a data folder. Pass a cache_dir outside it or None."
        )


def _cache_key(files: Sequence[Path], size: int, skip_unreadable: bool) -> str:
    entries = []
    for path in files:
        try:
            stat = path.stat()
            entries.append([str(path), stat.st_size, stat.st_mtime_ns])
        except FileNotFoundError:
            entries.append([str(path), None, None])
    payload = json.dumps([_CACHE_FORMAT_VERSION, size, skip_unreadable, entries])
    return hashlib.sha256(payload.encode()).hexdigest()


def _load_cached(cache_file: Path) -> ImageCache | None:
    try:
        content = torch.load(cache_file, weights_only=True)
        return ImageCache(
            images=content["images"],
            paths=[Path(p) for p in content["paths"]],
            skipped=[Path(p) for p in content["skipped"]],
        )
    except FileNotFoundError:
        return None
    except (OSError, RuntimeError, KeyError, EOFError, ValueError) as error:
        logger.warning("Ignoring damaged image cache %s (%s); decoding again", cache_file, error)
        return None


def _save_cached(cache_file: Path, cache: ImageCache) -> None:
    """Write the cache atomically, so a reader never loads half a file."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "images": cache.images,
        "paths": [str(p) for p in cache.paths],
        "skipped": [str(p) for p in cache.skipped],
    }
    with atomic_open(cache_file, "wb") as handle:
        torch.save(content, handle)


def _warn_skipped(skipped: Sequence[Path]) -> None:
    listed = "\n  ".join(str(p) for p in skipped[:50])
    more = f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
    warnings.warn(
        f"Skipped {len(skipped)} unreadable image file(s):\n  {listed}{more}",
        stacklevel=3,
    )


def build_image_cache(
    paths: Sequence[str | os.PathLike],
    size: int,
    cache_dir: str | os.PathLike | None = None,
    skip_unreadable: bool = False,
    progress: bool = False,
) -> ImageCache:
    """Decode and resize every image once, and keep the result in a cache file.

    The cache file name is a hash of the resolved paths, file sizes, modification times,
    ``size`` and ``skip_unreadable``, so a changed, added or removed file gives a new
    cache. Cache files are written atomically and never inside the data folder.

    Args:
        paths: image files, in the order the tensor rows should have.
        size: side length S of the square output in pixels (see ``resize_image``).
        cache_dir: cache folder; None means ``$SCLIB_CACHE_DIR`` or ``~/.cache/sclib``.
        skip_unreadable: leave out missing or undecodable files with one warning listing
            them, instead of raising.
        progress: show a tqdm progress bar while decoding.

    Returns:
        ``ImageCache`` with uint8 images ``(N, 3, S, S)`` and the kept paths.

    Raises:
        ValueError: ``paths`` is empty or a single path, ``size`` is not positive, or
            ``cache_dir`` is inside the data folder.
        FileNotFoundError, ImageReadError: a file is missing or unreadable and
            ``skip_unreadable`` is False.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer number of pixels, got {size!r}.")
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ValueError(
            f"paths must be a list of image files, got the single path {paths!r}. "
            "Wrap it in a list: build_image_cache([path], size)."
        )
    files = [Path(p).expanduser().resolve() for p in paths]
    if not files:
        raise ValueError("paths is empty; pass at least one image file.")
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_dir = cache_dir.resolve()
    _check_cache_location(cache_dir, files)

    cache_file = cache_dir / "images" / f"{_cache_key(files, int(size), skip_unreadable)}.pt"
    cache = _load_cached(cache_file)
    if cache is not None:
        logger.info("Loaded %d images of %d px from cache %s", len(cache), size, cache_file)
        if cache.skipped:
            _warn_skipped(cache.skipped)
        return cache

    images = torch.empty((len(files), 3, size, size), dtype=torch.uint8)
    kept_paths: list[Path] = []
    skipped: list[Path] = []
    for path in tqdm(files, desc=f"Decoding images to {size} px", disable=not progress):
        try:
            pixels = resize_image(load_image(path), size)
        except (FileNotFoundError, ImageReadError):
            if not skip_unreadable:
                raise
            skipped.append(path)
            continue
        images.numpy()[len(kept_paths)] = pixels.transpose(2, 0, 1)  # (S, S, 3) -> (3, S, S)
        kept_paths.append(path)

    if skipped:
        images = images[: len(kept_paths)].clone()  # drop the unused rows
    cache = ImageCache(images=images, paths=kept_paths, skipped=skipped)
    _save_cached(cache_file, cache)
    logger.info(
        "Decoded %d images to %d px; cache written to %s", len(kept_paths), size, cache_file
    )
    if skipped:
        _warn_skipped(skipped)
    return cache
