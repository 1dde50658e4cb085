"""Setup shared by the notebooks: resolve parameters into a configuration and folders.

Every notebook has one papermill ``parameters`` cell of literals, then calls
:func:`start` with them. ``start`` applies the profile, builds ELPV when the default
ELPV folder is requested and missing, and picks the run folder: the one papermill passed
in (``run_dir``), or a new one under ``runs/`` when the notebook writes results.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sclib.config import Config, get_profile
from sclib.paths import resolve_path, runs_dir

logger = logging.getLogger(__name__)

ELPV_SUBSET = "elpv"


@dataclass(frozen=True)
class Session:
    """Resolved settings and folders of one notebook.

    Attributes:
        config: the resolved configuration (profile plus overrides).
        data_root: absolute path of the subset folder that contains ``train/`` and ``test/``.
        run_dir: folder for this notebook's outputs, or None when it writes none.
    """

    config: Config
    data_root: Path
    run_dir: Path | None


def prepare_data_root(data_root: str | Path) -> Path:
    """Return ``data_root`` as an absolute path, building ELPV there when it is missing.

    Only a missing folder named ``elpv`` is built (from the ``elpv-dataset`` package);
    any other missing folder raises ``FileNotFoundError``.
    """
    from sclib.data import build_elpv

    path = resolve_path(data_root)
    if path.is_dir():
        return path
    if path.name == ELPV_SUBSET:
        logger.info("building ELPV in %s (once, under a minute)", path)
        return build_elpv(path.parent)
    raise FileNotFoundError(
        f"data folder {path} does not exist. Pass data_root= a folder in the MVTec AD layout "
        "(train/good, test/good, test/<defect_class>), or 'data/elpv' to build ELPV there."
    )


def start(
    profile: str,
    data_root: str | Path,
    run_dir: str | Path | None = None,
    new_run: str | None = None,
    **overrides: Any,
) -> Session:
    """Resolve the notebook parameters.

    Args:
        profile: ``"paper"``, ``"quick"`` or ``"tiny"``.
        data_root: subset folder in the MVTec AD layout; relative paths start at the
            project root.
        run_dir: folder passed in by papermill or by the user; it is created if missing.
            It must lie outside ``data_root``.
        new_run: when ``run_dir`` is None, create a new run folder with this name prefix
            under ``runs/`` (or ``$SCLIB_RUNS_DIR``); None means the notebook writes nothing.
        **overrides: Config fields; a value of None keeps the profile's value.
    """
    from sclib.runs import new_run_dir

    _show_logs_in_notebook()
    config = get_profile(profile, **{key: value for key, value in overrides.items() if value is not None})
    root = prepare_data_root(data_root)
    if run_dir is not None:
        folder: Path | None = resolve_path(run_dir)
        _check_outside_data(folder, root)
        folder.mkdir(parents=True, exist_ok=True)
    elif new_run is not None:
        _check_outside_data(runs_dir(), root)
        folder = new_run_dir(runs_dir(), new_run)
    else:
        folder = None
    return Session(config=config, data_root=root, run_dir=folder)


def _show_logs_in_notebook() -> None:
    """Send INFO lines to stdout and warnings and errors to stderr.

    Jupyter draws stderr with a red background, so progress lines there read as errors.
    """
    info = logging.StreamHandler(sys.stdout)
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO, format="%(name)s: %(message)s", handlers=[info, problems], force=True
    )


def _check_outside_data(folder: Path, data_root: Path) -> None:
    """Raise before a run folder is created inside the data folder."""
    folder = folder.resolve()
    data_root = data_root.resolve()
    if folder == data_root or data_root in folder.parents:
        raise ValueError(
            f"run folder {folder} is inside the data folder {data_root}, and runs must not "
            "write into a data folder. Pass a run_dir outside it (or set SCLIB_RUNS_DIR)."
        )
