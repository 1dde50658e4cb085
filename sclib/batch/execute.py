"""Run a grid of notebooks with papermill, in parallel on Dask or one after another.

Each run gets its own folder under the batch folder. Before the notebook starts, the
folder receives ``params.json`` with the parameters. Papermill then writes the executed
notebook there, and the notebook writes ``metrics.json`` into the ``run_dir`` parameter
it receives. After the run, ``status.json`` records the outcome. A run whose
``metrics.json`` exists is skipped, so calling the batch again resumes it and retries
failed runs. A failed run never stops the others. At the end the batch folder receives
``summary.csv`` and ``summary.json``: one row per run with its status (ok, failed or
skipped), seconds, error message and the executed notebook, which shows the failing cell.

Parallel runs use a ``distributed.LocalCluster`` bound to 127.0.0.1 with one
single-threaded worker process per parallel run, or an existing Dask scheduler given by
address. Each run sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` for its kernel (PyTorch sizes its thread pool from
``OMP_NUM_THREADS``), so parallel runs do not compete for cores.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sclib.batch.grid import GridSpec, RunSpec
from sclib.runs import atomic_write_json, write_csv_atomic

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PARAMS_FILE = "params.json"
STATUS_FILE = "status.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# NOTE: the default gives each parallel run at least this many cores, because one CNN
# training run keeps a few cores busy. Pass `workers` to choose another split.
MIN_CORES_PER_RUN = 4
SUMMARY_COLUMNS = ["run", "status", "seconds", "error", "notebook", "params"]


@dataclass
class RunResult:
    """Outcome of one run.

    Attributes:
        run: Run name, which is also its folder name.
        status: "ok", "failed" or "skipped" (metrics.json existed before this batch).
        seconds: Wall-clock seconds spent on the run in this batch; 0 when skipped.
        error: Error message of a failed run, else None.
        notebook: Path of the executed notebook, or None when no notebook was written.
        params: Parameters passed to the notebook, without ``run_dir``.
    """

    run: str
    status: str
    seconds: float
    error: str | None
    notebook: str | None
    params: dict[str, Any]


def available_cores() -> int:
    """Return the number of CPU cores this process may use (CPU affinity, if the OS has it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_workers(n_runs: int, cores: int | None = None) -> int:
    """Choose how many runs execute in parallel: at most one per MIN_CORES_PER_RUN cores."""
    cores = available_cores() if cores is None else cores
    return max(1, min(n_runs, cores // MIN_CORES_PER_RUN))


def plan_runs(spec: GridSpec) -> pd.DataFrame:
    """List every run of a grid with the action a batch would take, without running anything.

    Returns:
        One row per run: ``run``, ``action`` ("run" or "skip": metrics.json exists),
        ``last_status`` (from a previous batch's status.json, or None) and ``run_dir``.
    """
    rows = []
    for run in spec.runs():
        run_dir = spec.run_dir(run)
        previous = _read_status(run_dir)
        rows.append(
            {
                "run": run.name,
                "action": "skip" if (run_dir / METRICS_FILE).is_file() else "run",
                "last_status": previous.get("status") if previous else None,
                "run_dir": str(run_dir),
            }
        )
    return pd.DataFrame(rows, columns=["run", "action", "last_status", "run_dir"])


def execute_run(
    run: RunSpec,
    notebook: str,
    run_dir: str,
    kernel: str,
    cwd: str,
    timeout: float | None = None,
    threads: int | None = None,
) -> RunResult:
    """Execute one notebook with papermill into its run folder and record the outcome.

    A failing notebook, a timeout or a dead kernel does not raise: the error goes into
    the returned RunResult and into ``status.json``. Runs inside a Dask worker or in the
    calling process.

    Args:
        run: Name and parameters; ``run_dir`` is added to the parameters.
        notebook: Notebook to execute.
        run_dir: Folder for params.json, the executed notebook and the notebook's outputs.
        kernel: Jupyter kernel name.
        cwd: Directory the kernel starts in.
        timeout: Wall-clock limit for the whole run in seconds, or None for no limit.
        threads: Value for OMP_NUM_THREADS and the other thread variables of the
            kernel, or None to leave the environment as it is.
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / PARAMS_FILE, run.params)
    executed = folder / Path(notebook).name
    parameters = {**run.params, "run_dir": str(folder)}
    error = None

    start = time.perf_counter()
    try:
        with _thread_environment(threads):
            papermill.execute_notebook(
                notebook,
                str(executed),
                parameters=parameters,
                kernel_name=kernel,
                cwd=cwd,
                progress_bar=False,
                timeout_func=_deadline_timeout(start, timeout) if timeout else None,
            )
    except PapermillExecutionError as failure:
        location = f"cell index {failure.cell_index} of {executed.name}"
        error = f"{failure.ename}: {failure.evalue} ({location})"
    except CellTimeoutError:
        error = f"timed out after {timeout:g} s"
    except Exception as failure:  # noqa: BLE001 - a failing run must not stop the batch
        # Kernel start failures, dead kernels and unreadable notebooks end up here.
        error = f"{type(failure).__name__}: {failure}"
    seconds = time.perf_counter() - start

    if error is None and not (folder / METRICS_FILE).is_file():
        error = f"the notebook finished without writing {METRICS_FILE} into run_dir ({folder})"
    result = RunResult(
        run=run.name,
        status="ok" if error is None else "failed",
        seconds=round(seconds, 3),
        error=error,
        notebook=str(executed) if executed.is_file() else None,
        params=run.params,
    )
    atomic_write_json(folder / STATUS_FILE, asdict(result))
    return result


def run_batch(
    spec: GridSpec,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    local: bool = False,
    threads_per_run: int | None = None,
) -> pd.DataFrame:
    """Execute every pending run of a grid and write the batch summary.

    By default the runs go to a new ``distributed.LocalCluster`` on 127.0.0.1 with
    ``workers`` single-threaded worker processes, and each run gets
    ``cores // workers`` threads. With ``scheduler`` (an address such as
    ``tcp://host:8786``) or ``client`` they go to an existing cluster, whose workers
    should run one task at a time (one thread per worker process).

    Args:
        spec: The validated grid.
        workers: Parallel runs on the local cluster; default ``spec.workers``, else one
            per MIN_CORES_PER_RUN cores.
        scheduler: Address of a running Dask scheduler.
        client: A connected ``distributed.Client`` to use; the caller keeps owning it.
        local: Run one after another in this process, without Dask.
        threads_per_run: Thread count for each kernel; default ``cores // workers`` on
            the local cluster and in local mode, unchanged environment on other clusters.

    Returns:
        The summary, one row per run, as written to ``summary.csv``.
    """
    if sum(option is not None and option is not False for option in (scheduler, client, local)) > 1:
        raise ValueError("choose at most one of scheduler, client and local")
    runs = spec.runs()
    pending = [run for run in runs if not (spec.run_dir(run) / METRICS_FILE).is_file()]
    pending_names = {run.name for run in pending}
    results = {
        run.name: RunResult(
            run.name, "skipped", 0.0, None, _existing_notebook(spec, run), run.params
        )
        for run in runs
        if run.name not in pending_names
    }
    logger.info(
        "batch %s: %d runs, %d to run, %d skipped",
        spec.output,
        len(runs),
        len(pending),
        len(results),
    )

    if pending:
        if local:
            threads = threads_per_run or available_cores()
            for run in pending:
                results[run.name] = _log_result(
                    execute_run(run, **_run_arguments(spec, run, threads))
                )
        else:
            for result in _run_on_dask(spec, pending, workers, scheduler, client, threads_per_run):
                results[result.run] = result

    summary = _summary_frame([results[run.name] for run in runs])
    write_summary(summary, spec.output)
    return summary


def write_summary(summary: pd.DataFrame, batch_dir: str | Path) -> None:
    """Write a batch summary atomically as ``summary.csv`` and ``summary.json``.

    In the CSV the ``params`` column contains JSON text, and the JSON file keeps it as a
    mapping.
    """
    batch_dir = Path(batch_dir)
    batch_dir.mkdir(parents=True, exist_ok=True)
    # Missing values become null, not NaN, so that strict JSON readers accept the file.
    records = summary.astype(object).where(summary.notna(), None).to_dict(orient="records")
    atomic_write_json(batch_dir / SUMMARY_JSON, records)
    table = summary.copy()
    table["params"] = [json.dumps(params, sort_keys=True) for params in table["params"]]
    write_csv_atomic(table, batch_dir / SUMMARY_CSV)


def _run_on_dask(
    spec: GridSpec,
    pending: list[RunSpec],
    workers: int | None,
    scheduler: str | None,
    client: Any,
    threads_per_run: int | None,
) -> Iterator[RunResult]:
    from distributed import as_completed

    with contextlib.ExitStack() as stack:
        if client is None and scheduler is not None:
            client = stack.enter_context(_connect(scheduler))
        if client is None:
            n_workers = workers or spec.workers or default_workers(len(pending))
            threads_per_run = threads_per_run or max(1, available_cores() // n_workers)
            client = stack.enter_context(_local_client(n_workers))
            logger.info(
                "local Dask cluster: %d workers, %d threads per run", n_workers, threads_per_run
            )
        elif threads_per_run is None:
            logger.warning(
                "runs keep the thread settings of the cluster's workers (Dask sets "
                "OMP_NUM_THREADS=1 unless configured); pass threads_per_run to choose"
            )

        futures = {}
        for run in pending:
            arguments = _run_arguments(spec, run, threads_per_run)
            key = f"run-{run.name}-{uuid.uuid4().hex[:8]}"
            futures[client.submit(execute_run, run, **arguments, key=key, pure=False)] = run
        for future in as_completed(futures):
            run = futures[future]
            try:
                result = future.result()
            except Exception as failure:  # noqa: BLE001 - e.g. KilledWorker after a crash
                error = f"{type(failure).__name__}: {failure}"
                notebook = _existing_notebook(spec, run)
                result = RunResult(run.name, "failed", 0.0, error, notebook, run.params)
            yield _log_result(result)


@contextlib.contextmanager
def _local_client(n_workers: int) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    # Scheduler, workers and the scheduler's HTTP server (dashboard) bind to the loopback
    # interface only. Port 0 picks a free HTTP port, so several batches can run at once.
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@contextlib.contextmanager
def _connect(address: str) -> Iterator[Any]:
    from distributed import Client

    logger.info("connecting to Dask scheduler %s", address)
    with Client(address) as client:
        yield client


def _run_arguments(spec: GridSpec, run: RunSpec, threads: int | None) -> dict[str, Any]:
    return {
        "notebook": str(spec.notebook),
        "run_dir": str(spec.run_dir(run)),
        "kernel": spec.kernel,
        "cwd": str(spec.cwd),
        "timeout": spec.timeout,
        "threads": threads,
    }


def _log_result(result: RunResult) -> RunResult:
    if result.status == "ok":
        logger.info("run %s ok in %.1f s", result.run, result.seconds)
    else:
        logger.error(
            "run %s failed after %.1f s: %s (notebook: %s)",
            result.run,
            result.seconds,
            result.error,
            result.notebook,
        )
    return result


def _summary_frame(results: list[RunResult]) -> pd.DataFrame:
    return pd.DataFrame([asdict(result) for result in results], columns=SUMMARY_COLUMNS)


def _existing_notebook(spec: GridSpec, run: RunSpec) -> str | None:
    executed = spec.run_dir(run) / spec.notebook.name
    return str(executed) if executed.is_file() else None


def _read_status(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STATUS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.warning("ignoring unreadable %s", path)
        return None


def _deadline_timeout(start: float, timeout: float):
    """Return a per-cell timeout function that enforces one deadline for the whole run."""
    deadline = start + timeout

    def remaining_seconds(cell: Any) -> int:
        # nbclient treats 0 as "no limit", so the last cell still gets one second.
        return max(1, math.ceil(deadline - time.perf_counter()))

    return remaining_seconds


@contextlib.contextmanager
def _thread_environment(threads: int | None) -> Iterator[None]:
    """Set the thread variables the kernel inherits, and restore them afterwards."""
    if threads is None:
        yield
        return
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
