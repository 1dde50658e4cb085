"""Grid files: read, validate and expand a YAML experiment grid into named runs.

A grid file names one notebook and the parameters to run it with::

    notebook: notebooks/04_train_and_evaluate.ipynb   # executed once per run
    output: runs/batch/elpv_quick                     # one sub-folder per run
    fixed: {profile: quick, data_root: data/elpv}     # same value in every run
    grid: {setting: [general], n_anomaly: [10, 1]}    # Cartesian product
    cases:                                            # extra combinations, as listed
      - {setting: hard, known_class: mono, n_anomaly: 10}
    seeds: [0, 1, 2]                                  # every combination runs per seed
    kernel: python3                                   # optional, default python3
    timeout: 3600                                     # optional, seconds per run
    workers: 2                                        # optional, parallel runs

Every combination of ``grid``, plus every entry of ``cases``, runs once per seed. A case
may pin one ``seed`` of its own and then runs only with that seed. The run folder name
joins the varying parameters in the order the file lists them, seed last, for example
``setting=general__n_anomaly=10__seed=0``. Reordering keys in the file renames the runs.
Relative paths resolve against the project root (the source checkout that holds
``pyproject.toml``, else the current directory), as everywhere in sclib; the notebook
kernels start in that folder too.
"""

from __future__ import annotations

import difflib
import itertools
import keyword
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sclib.batch.checks import (
    check_notebook_parameters,
    check_output_outside_data,
    check_run_configs,
)
from sclib.paths import project_root

ALLOWED_KEYS = (
    "notebook",
    "output",
    "fixed",
    "grid",
    "cases",
    "seeds",
    "kernel",
    "timeout",
    "workers",
)
REQUIRED_KEYS = ("notebook", "output", "seeds")
# Parameters the batch runner sets itself: a grid file must not set them.
RESERVED_PARAMETERS = ("run_dir",)
DEFAULT_KERNEL = "python3"

_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._+-]")


class GridError(ValueError):
    """A grid file or grid mapping that cannot be expanded into runs."""


@dataclass(frozen=True)
class RunSpec:
    """One notebook execution: a folder name and the parameters passed to the notebook.

    Attributes:
        name: Folder name, built from the varying parameters and the seed.
        params: Every parameter passed to the notebook except ``run_dir``: the fixed
            parameters, the varying ones and ``seed``.
    """

    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class GridSpec:
    """A validated grid file with absolute paths.

    Attributes:
        notebook: Notebook executed once per run.
        output: Batch folder; each run gets ``output / run.name``.
        grid: Parameter name to list of values, expanded as a Cartesian product.
        cases: Extra parameter combinations, each expanded over the seeds unless it
            pins a ``seed``.
        seeds: Seeds every combination runs with.
        fixed: Parameters passed unchanged to every run; they do not appear in run names.
        kernel: Jupyter kernel name passed to papermill.
        timeout: Wall-clock limit per run in seconds, or None for no limit.
        workers: Number of runs executed in parallel, or None to size it to the machine.
        cwd: Directory the kernels start in and relative paths resolve against; the
            project root by default.
        source: The YAML file the grid came from, or None for a mapping.
    """

    notebook: Path
    output: Path
    grid: dict[str, list[Any]]
    cases: list[dict[str, Any]]
    seeds: list[int]
    fixed: dict[str, Any] = field(default_factory=dict)
    kernel: str = DEFAULT_KERNEL
    timeout: float | None = None
    workers: int | None = None
    cwd: Path = field(default_factory=project_root)
    source: Path | None = None

    def runs(self) -> list[RunSpec]:
        """Expand the grid into runs, seed-major, so that early results cover every setting."""
        return expand_runs(self)

    def run_dir(self, run: RunSpec) -> Path:
        """Return the folder of one run."""
        return self.output / run.name


def load_grid(path: str | Path, check_notebook: bool = True) -> GridSpec:
    """Read and validate a grid YAML file.

    Args:
        path: The grid file.
        check_notebook: Raise FileNotFoundError when the notebook does not exist. Turn
            off only to inspect a grid whose notebook is written later.

    Raises:
        FileNotFoundError: The grid file or the notebook does not exist.
        GridError: The file is not valid YAML or breaks a rule of the grid format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise GridError(f"{path}: invalid YAML: {error}") from error
    return parse_grid(document, source=path, check_notebook=check_notebook)


def parse_grid(
    document: Any,
    source: Path | None = None,
    cwd: Path | None = None,
    check_notebook: bool = True,
) -> GridSpec:
    """Validate a grid mapping (the parsed YAML) and return a GridSpec.

    Args:
        document: The mapping read from a grid file.
        source: File the mapping came from, used in error messages.
        cwd: Directory relative paths resolve against and kernels start in; the project
            root by default (see ``sclib.paths.project_root``).
        check_notebook: Raise FileNotFoundError when the notebook does not exist, and
            GridError when a parameter is not defined in its ``parameters`` cell.

    Raises:
        FileNotFoundError: The notebook does not exist.
        GridError: A key is unknown or missing, a value has the wrong type, the grid
            expands to no run, two runs get the same name, a parameter is unknown to the
            notebook, a run's Config values are invalid, or the output folder lies
            inside a ``data_root`` (see ``sclib.batch.checks``).
    """
    where = str(source) if source is not None else "grid"
    cwd = (project_root() if cwd is None else Path(cwd)).resolve()
    if not isinstance(document, dict):
        raise GridError(
            f"{where}: expected a mapping of keys such as 'notebook' and 'grid', "
            f"got {type(document).__name__}"
        )
    _check_keys(document, where)

    notebook = _resolve(cwd, _require_text(document, "notebook", where))
    if check_notebook and not notebook.is_file():
        raise FileNotFoundError(
            f"{where}: notebook not found: {notebook} (relative paths resolve against {cwd}; "
            "give a path relative to that folder or an absolute path)"
        )
    output = _resolve(cwd, _require_text(document, "output", where))

    fixed = _parse_fixed(document.get("fixed"), where)
    grid = _parse_grid_lists(document.get("grid"), where)
    cases = _parse_cases(document.get("cases"), where)
    seeds = _parse_seeds(document["seeds"], where)
    if not grid and not cases:
        raise GridError(
            f"{where}: the grid is empty; give 'grid' (parameter lists) "
            "or 'cases' (a list of mappings)"
        )
    _check_overlaps(fixed, grid, cases, where)

    spec = GridSpec(
        notebook=notebook,
        output=output,
        grid=grid,
        cases=cases,
        seeds=seeds,
        fixed=fixed,
        kernel=_parse_kernel(document.get("kernel", DEFAULT_KERNEL), where),
        timeout=_parse_positive(
            document.get("timeout"), "timeout", where, number_type=(int, float)
        ),
        workers=_parse_positive(document.get("workers"), "workers", where, number_type=(int,)),
        cwd=cwd,
        source=source,
    )
    runs = expand_runs(spec)
    _check_unique_names(runs, where)
    if check_notebook:
        names = {name for run in runs for name in run.params}
        check_notebook_parameters(notebook, sorted(names), where, GridError)
    check_run_configs(runs, where, GridError)
    check_output_outside_data(output, runs, cwd, where, GridError)
    return spec


def expand_runs(spec: GridSpec) -> list[RunSpec]:
    """Expand a grid into runs: grid product first, then cases, each over every seed.

    The order is seed-major (all combinations for the first seed, then the next seed),
    so a batch that stops early still covers every setting.
    """
    combinations = (
        [dict(zip(spec.grid, values)) for values in itertools.product(*spec.grid.values())]
        if spec.grid
        else []
    )
    pinned: list[tuple[dict[str, Any], int]] = []
    for case in spec.cases:
        if "seed" in case:
            varying = {key: value for key, value in case.items() if key != "seed"}
            pinned.append((varying, case["seed"]))
        else:
            combinations.append(dict(case))

    runs = []
    for seed in spec.seeds:
        for varying in combinations:
            runs.append(_make_run(spec.fixed, varying, seed))
    for varying, seed in pinned:
        runs.append(_make_run(spec.fixed, varying, seed))
    return runs


def run_name(varying: dict[str, Any], seed: int) -> str:
    """Build a stable, filesystem-safe folder name from the varying parameters and the seed.

    Keys keep their order and the seed comes last: ``{"setting": "hard", "known_class":
    "mono"}`` with seed 1 gives ``setting=hard__known_class=mono__seed=1``. Characters
    outside ``A-Z a-z 0-9 . _ + -`` become ``-``.
    """
    parts = [
        f"{key}={_UNSAFE_CHARACTERS.sub('-', _format_value(value))}"
        for key, value in varying.items()
    ]
    parts.append(f"seed={seed}")
    return "__".join(parts)


def _make_run(fixed: dict[str, Any], varying: dict[str, Any], seed: int) -> RunSpec:
    return RunSpec(name=run_name(varying, seed), params={**fixed, **varying, "seed": seed})


def _format_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _check_keys(document: dict, where: str) -> None:
    for key in document:
        if key not in ALLOWED_KEYS:
            close = difflib.get_close_matches(str(key), ALLOWED_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise GridError(
                f"{where}: unknown key '{key}'{hint}; allowed keys: {', '.join(ALLOWED_KEYS)}"
            )
    for key in REQUIRED_KEYS:
        if key not in document:
            raise GridError(f"{where}: missing required key '{key}'")


def _require_text(document: dict, key: str, where: str) -> str:
    value = document[key]
    if not isinstance(value, str) or not value.strip():
        raise GridError(f"{where}: '{key}' must be a non-empty path string, got {value!r}")
    return value


def _resolve(cwd: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else cwd / path


def _check_parameter_name(name: Any, where: str, section: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise GridError(
            f"{where}: parameter name {name!r} in '{section}' is not a valid Python identifier"
        )
    if name in RESERVED_PARAMETERS:
        raise GridError(
            f"{where}: '{section}' must not set '{name}': the batch runner sets it for each run"
        )


def _check_scalar(value: Any, where: str, section: str, name: str) -> None:
    # Names are built from these values, so lists and mappings are rejected here.
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise GridError(
            f"{where}: '{section}.{name}' value {value!r} must be a string, number, "
            "boolean or null; put lists and mappings in 'fixed'"
        )


def _parse_fixed(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(
            f"{where}: 'fixed' must be a mapping of parameter names to values, got {value!r}"
        )
    for name in value:
        _check_parameter_name(name, where, "fixed")
        if name == "seed":
            raise GridError(f"{where}: put seeds in 'seeds', not in 'fixed'")
    return dict(value)


def _parse_grid_lists(value: Any, where: str) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(
            f"{where}: 'grid' must be a mapping of parameter names to lists, got {value!r}"
        )
    grid = {}
    for name, values in value.items():
        _check_parameter_name(name, where, "grid")
        if name == "seed":
            raise GridError(f"{where}: put seeds in 'seeds', not in 'grid'")
        if not isinstance(values, list):
            raise GridError(f"{where}: 'grid.{name}' must be a list of values, got {values!r}")
        if not values:
            raise GridError(f"{where}: 'grid.{name}' is an empty list, so the grid has no runs")
        for item in values:
            _check_scalar(item, where, "grid", name)
        duplicates = [item for item, count in Counter(map(repr, values)).items() if count > 1]
        if duplicates:
            raise GridError(f"{where}: 'grid.{name}' lists {duplicates[0]} more than once")
        grid[name] = list(values)
    return grid


def _parse_cases(value: Any, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise GridError(f"{where}: 'cases' must be a list of mappings, got {value!r}")
    cases = []
    for index, case in enumerate(value):
        section = f"cases[{index}]"
        if not isinstance(case, dict) or not case:
            raise GridError(
                f"{where}: '{section}' must be a non-empty mapping of parameter names "
                f"to values, got {case!r}"
            )
        for name, item in case.items():
            _check_parameter_name(name, where, section)
            if name == "seed":
                if isinstance(item, bool) or not isinstance(item, int):
                    raise GridError(f"{where}: '{section}.seed' must be one integer, got {item!r}")
            else:
                _check_scalar(item, where, section, name)
        cases.append(dict(case))
    return cases


def _parse_seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise GridError(f"{where}: 'seeds' must be a non-empty list of integers, got {value!r}")
    for seed in value:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise GridError(f"{where}: seed {seed!r} is not an integer")
    if len(set(value)) != len(value):
        raise GridError(f"{where}: 'seeds' lists a seed more than once: {value}")
    return list(value)


def _parse_kernel(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GridError(f"{where}: 'kernel' must be a kernel name such as 'python3', got {value!r}")
    return value


def _parse_positive(value: Any, key: str, where: str, number_type: tuple[type, ...]) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, number_type) or value <= 0:
        kind = "integer" if number_type == (int,) else "number"
        raise GridError(f"{where}: '{key}' must be a positive {kind}, got {value!r}")
    return value


def _check_overlaps(fixed: dict, grid: dict, cases: list[dict], where: str) -> None:
    for name in grid:
        if name in fixed:
            raise GridError(f"{where}: parameter '{name}' is in both 'fixed' and 'grid'; keep one")
    for index, case in enumerate(cases):
        for name in case:
            if name in fixed:
                raise GridError(
                    f"{where}: parameter '{name}' is in both 'fixed' and 'cases[{index}]'; keep one"
                )


def _check_unique_names(runs: list[RunSpec], where: str) -> None:
    counts = Counter(run.name for run in runs)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise GridError(
            f"{where}: {len(duplicates)} run name(s) occur more than once, for example "
            f"'{duplicates[0]}'. Either a case repeats a grid combination, or two values "
            "differ only in characters that names replace by '-'"
        )
