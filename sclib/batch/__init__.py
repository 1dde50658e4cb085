"""Batch experiments: run a notebook over a grid of parameters and seeds, then aggregate.

- ``grid``: read and validate a YAML grid file, expand it into named runs.
- ``execute``: run each notebook with papermill into its own folder, in parallel on Dask
  (a local cluster on 127.0.0.1 or an existing scheduler) or one after another. A run
  that already wrote ``metrics.json`` is skipped, and the batch ends with
  ``summary.csv`` and ``summary.json``.
- ``aggregate``: collect every ``metrics.json`` into a table, summarise over seeds, set
  the result beside published numbers and plot it.

Command line: ``python -m sclib.batch GRID.yaml`` (``--help`` lists the options).
"""

from sclib.batch.aggregate import (
    collect_metrics,
    compare_with_reference,
    paper_table,
    plot_paper_table,
)
from sclib.batch.execute import (
    RunResult,
    default_workers,
    execute_run,
    plan_runs,
    run_batch,
    write_summary,
)
from sclib.batch.grid import (
    GridError,
    GridSpec,
    RunSpec,
    expand_runs,
    load_grid,
    parse_grid,
    run_name,
)

__all__ = [
    "GridError",
    "GridSpec",
    "RunResult",
    "RunSpec",
    "collect_metrics",
    "compare_with_reference",
    "default_workers",
    "execute_run",
    "expand_runs",
    "load_grid",
    "paper_table",
    "parse_grid",
    "plan_runs",
    "plot_paper_table",
    "run_batch",
    "run_name",
    "write_summary",
]
