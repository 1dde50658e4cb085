"""Run folders and atomic file writes.

Every training run gets its own folder, ``runs/<name>-YYYYmmdd-HHMMSS``, which
:func:`new_run_dir` creates and never reuses. Files inside it are written atomically:
the bytes go to a temporary file in the same folder, which then replaces the target
with ``os.replace``. A reader therefore sees the old file or the new one, never half a
file, and a writer that fails leaves the old file in place.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

_TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"


def new_run_dir(parent: str | Path = "runs", name: str = "run") -> Path:
    """Create and return a fresh folder ``parent/<name>-YYYYmmdd-HHMMSS``.

    When that folder exists (two runs started in the same second), a counter is
    appended: ``<name>-YYYYmmdd-HHMMSS-2``, ``-3`` and so on. The folder is created
    with ``exist_ok=False``, so two processes never receive the same folder.

    Raises:
        ValueError: when ``name`` is empty or contains a path separator.
        FileExistsError: when ``parent`` is a file.
    """
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"run name {name!r} is invalid; use a plain folder name such as 'elpv'.")
    parent = Path(parent)
    if parent.exists() and not parent.is_dir():
        raise FileExistsError(
            f"run parent {parent} is a file, not a folder; pass a folder for the run folders "
            "(or set SCLIB_RUNS_DIR to one)."
        )
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{datetime.now().strftime(_TIMESTAMP_FORMAT)}"

    counter = 1
    while True:
        candidate = parent / (stem if counter == 1 else f"{stem}-{counter}")
        try:
            candidate.mkdir(exist_ok=False)
        except FileExistsError:
            counter += 1
            continue
        logger.info("created run folder %s", candidate)
        return candidate


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to ``path`` and move it onto ``path`` on success.

    Use it as ``with atomic_open(path, "wb") as handle: ...``. If the block raises, the
    temporary file is deleted, ``path`` keeps its old content, and the error propagates.

    Args:
        path: target file. Its folder must exist.
        mode: ``"w"`` for text or ``"wb"`` for bytes.
        encoding: text encoding; ignored in binary mode.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r} is invalid; use 'w' or 'wb'.")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"folder {path.parent} does not exist; create it before writing {path.name}."
        )

    descriptor, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        open_kwargs = {"encoding": encoding, "newline": ""} if mode == "w" else {}
        with open(descriptor, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file with mode 0600; give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_name, 0o666 & ~umask)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, value: Any, indent: int = 2) -> Path:
    """Write ``value`` as JSON to ``path`` atomically and return the path.

    NumPy scalars and arrays, paths and sets are converted to plain JSON values. Any
    other object that ``json`` cannot encode raises ``TypeError``, and the file keeps
    its old content.
    """
    text = json.dumps(value, indent=indent, default=_to_json_value, allow_nan=True) + "\n"
    return atomic_write_text(path, text)


def write_csv_atomic(frame, path: str | Path, index: bool = False) -> Path:
    """Write a pandas DataFrame as CSV to ``path`` atomically and return the path."""
    with atomic_open(path, "w") as handle:
        frame.to_csv(handle, index=index)
    return Path(path)


def save_figure_atomic(figure, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib Figure to ``path`` atomically and return the path.

    The file format follows the suffix (``.png``, ``.pdf``, ``.svg``).
    """
    path = Path(path)
    image_format = path.suffix.lstrip(".").lower()
    if not image_format:
        raise ValueError(f"figure path {path} has no suffix; use .png, .pdf or .svg.")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format, dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def library_versions() -> dict[str, Any]:
    """Return the versions of Python, the main libraries, the platform and the devices.

    Libraries that are not installed appear as None.
    """
    import numpy
    import torch

    import sclib

    versions: dict[str, Any] = {
        "python": sys.version.split()[0],
        "sclib": sclib.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    for key, distribution in (
        ("torchvision", "torchvision"),
        ("timm", "timm"),
        ("sklearn", "scikit-learn"),
        ("pandas", "pandas"),
        ("matplotlib", "matplotlib"),
    ):
        versions[key] = _distribution_version(distribution)

    versions["platform"] = platform.platform()
    versions["machine"] = platform.machine()
    versions["cpu_count"] = os.cpu_count()
    versions["torch_threads"] = torch.get_num_threads()
    try:
        versions["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # torch builds before 2.1 lack this function
        versions["cpu_capability"] = None
    versions["cuda"] = torch.version.cuda
    versions["cuda_available"] = torch.cuda.is_available()
    versions["cuda_devices"] = [
        torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())
    ]
    return versions


def _distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _to_json_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    # NumPy and torch scalars and arrays, without importing either library here.
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} object is not JSON serialisable: {value!r}")
