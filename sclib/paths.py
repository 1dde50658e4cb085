"""Project folders: where data, runs and caches go by default.

Notebooks run with their own folder as the working directory (nbval) or with the
caller's (papermill), so relative paths are resolved against the project root, the
folder holding ``pyproject.toml``, when the project is a source checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """Return the source checkout's root, or the working directory for an installed package."""
    candidate = _PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "notebooks").is_dir():
        return candidate
    return Path.cwd()


def resolve_path(path: str | os.PathLike) -> Path:
    """Make ``path`` absolute: a relative path is taken from the project root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def runs_dir() -> Path:
    """Return the parent folder of run folders: ``$SCLIB_RUNS_DIR`` or ``<project>/runs``."""
    return resolve_path(os.environ.get("SCLIB_RUNS_DIR", "runs"))


def cache_dir() -> Path:
    """Return the cache folder: ``$SCLIB_CACHE_DIR`` or ``~/.cache/sclib``."""
    return Path(os.environ.get("SCLIB_CACHE_DIR", Path.home() / ".cache" / "sclib")).expanduser()
