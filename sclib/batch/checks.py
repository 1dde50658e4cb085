"""Checks that catch a mistyped or ignored grid parameter before any run starts.

Papermill passes every parameter to a notebook, and a notebook ignores a name that its
``parameters`` cell does not define. A misspelt ``n_anomly``, or a Config field such as
``lr`` that the notebook never forwards, would leave the default in place, so every run
of the grid would compute the same thing. These checks compare the grid with the
notebook and with ``sclib.config``:

- ``check_notebook_parameters``: every parameter name is defined in the notebook's
  ``parameters`` cell.
- ``check_run_configs``: for runs that pass a ``profile``, the Config fields among the
  parameters form a valid configuration and split.
- ``check_output_outside_data``: the batch folder is not inside a ``data_root`` of a run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def notebook_parameters(notebook: Path) -> set[str]:
    """Return the names defined in the notebook's ``parameters`` cell (empty without one)."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def check_notebook_parameters(
    notebook: Path, names: Iterable[str], where: str, error_type: type[Exception]
) -> None:
    """Raise ``error_type`` when a name is not a parameter of ``notebook``.

    A notebook without a ``parameters`` cell is not checked, because papermill then
    injects the values at the top and any name may be used.
    """
    known = notebook_parameters(notebook)
    if not known:
        return
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise error_type(
                f"{where}: parameter '{name}'{hint} is not defined in the parameters cell of "
                f"{notebook.name}, so the notebook would ignore it. Its parameters are: "
                f"{', '.join(sorted(known))}."
            )


def _yaml_hint(values: dict[str, Any]) -> str:
    for name, value in values.items():
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                continue
            return (
                f" YAML read {name}: {value} as a string; write numbers with a dot and a "
                "signed exponent, such as 1.0e-3, or without an exponent."
            )
    return ""


def check_run_configs(runs: Iterable[Any], where: str, error_type: type[Exception]) -> None:
    """Raise ``error_type`` when a run's parameters give an invalid Config or split.

    Only runs whose parameters contain ``profile`` are checked. As in
    ``sclib.notebook.start``, parameters that are Config fields override the profile,
    and a value of None keeps the profile's value.
    """
    from sclib.config import field_names, get_profile
    from sclib.data.protocol import check_split_arguments

    fields = set(field_names()) - {"profile"}
    for run in runs:
        if "profile" not in run.params:
            continue
        overrides = {
            name: value for name, value in run.params.items() if name in fields and value is not None
        }
        try:
            config = get_profile(run.params["profile"], **overrides)
            check_split_arguments(
                config.setting,
                config.n_anomaly,
                config.known_class,
                config.contamination,
                config.seed,
            )
        except ValueError as error:
            raise error_type(f"{where}: run {run.name}: {error}{_yaml_hint(overrides)}") from error


def check_output_outside_data(
    output: Path, runs: Iterable[Any], cwd: Path, where: str, error_type: type[Exception]
) -> None:
    """Raise ``error_type`` when ``output`` lies inside the ``data_root`` of a run."""
    output = output.resolve()
    data_roots = {str(run.params["data_root"]) for run in runs if "data_root" in run.params}
    for data_root in sorted(data_roots):
        path = Path(data_root).expanduser()
        path = (path if path.is_absolute() else cwd / path).resolve()
        if output == path or path in output.parents:
            raise error_type(
                f"{where}: output {output} is inside the data folder {path}, and runs must "
                "not write into a data folder. Choose an output folder elsewhere."
            )
