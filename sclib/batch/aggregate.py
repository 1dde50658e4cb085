"""Collect the metrics of a batch, summarise them over seeds and set them beside published numbers.

``collect_metrics`` reads every ``metrics.json`` with its ``params.json`` into one long
table. ``paper_table`` reduces it to the rows the literature reports: general 10-shot and
1-shot, hard setting per known class and the hard-setting mean over known classes, each
as mean and sample standard deviation (ddof=1) over seeds. ``compare_with_reference``
adds the published values from ``sclib.reference``, and ``plot_paper_table`` draws the
table as bars with error bars.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from sclib.batch.execute import METRICS_FILE, PARAMS_FILE
from sclib.reference import reference_table

logger = logging.getLogger(__name__)

METRIC_COLUMNS = ["scope", "defect_class", "auroc", "aupr", "n_test_normal", "n_test_anomaly"]
# Parameters that define a row of the paper table; other parameters that vary between
# runs (an augmentation grid, say) split rows further.
ROW_PARAMETERS = ("setting", "n_anomaly", "known_class")
TABLE_COLUMNS = [
    "row",
    "setting",
    "n_anomaly",
    "known_class",
    "auroc_mean",
    "auroc_std",
    "aupr_mean",
    "aupr_std",
    "n_seeds",
    "seeds",
    "AUROC",
    "AUPR",
]
OURS = "sclib (this batch)"
_SETTING_ORDER = {"general": 0, "hard": 1}


def collect_metrics(batch_dir: str | Path) -> pd.DataFrame:
    """Read every run's metrics.json and params.json below a batch folder into a long table.

    Args:
        batch_dir: The batch folder; each run is a sub-folder with metrics.json.

    Returns:
        One row per run and scope: ``run``, the run's parameters (``seed`` included), then
        ``scope`` ("overall", "seen", "unseen" or "class"), ``defect_class`` (for scope
        "class", else None), ``auroc``, ``aupr``, ``n_test_normal`` and
        ``n_test_anomaly``. Empty, with the metric columns, when the folder is missing or
        contains no metrics.

    Raises:
        ValueError: A metrics.json or params.json is not valid JSON.
    """
    batch_dir = Path(batch_dir)
    metric_files = sorted(batch_dir.glob(f"*/{METRICS_FILE}")) if batch_dir.is_dir() else []
    rows: list[dict[str, Any]] = []
    parameter_names: list[str] = []
    for metrics_path in metric_files:
        run_dir = metrics_path.parent
        metrics = _read_json(metrics_path)
        params_path = run_dir / PARAMS_FILE
        params = _read_json(params_path) if params_path.is_file() else {}
        if not params:
            logger.warning(
                "run %s has no %s; its parameters are unknown", run_dir.name, PARAMS_FILE
            )
        parameter_names += [name for name in params if name not in parameter_names]
        for scope, defect_class, values in _metric_entries(metrics):
            rows.append(
                {
                    "run": run_dir.name,
                    **params,
                    "scope": scope,
                    "defect_class": defect_class,
                    "auroc": values.get("auroc", math.nan),
                    "aupr": values.get("aupr", math.nan),
                    "n_test_normal": values.get("n_normal"),
                    "n_test_anomaly": values.get("n_anomaly"),
                }
            )
    return pd.DataFrame(rows, columns=["run", *parameter_names, *METRIC_COLUMNS])


def paper_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Summarise the overall metrics over seeds in the rows the literature reports.

    Rows: each (setting, n_anomaly) for general and other settings, each known class in
    the hard setting, and per n_anomaly the hard-setting mean. That mean is taken over
    known classes for each seed, then summarised over the seeds that ran every known
    class. Other parameters that vary between runs split rows and appear in the label.

    Args:
        metrics: Output of ``collect_metrics``; needs the parameters ``setting``,
            ``n_anomaly`` and ``seed``.

    Returns:
        One row per table entry: ``row`` (label such as "hard 10-shot, mono known"),
        ``setting``, ``n_anomaly``, ``known_class`` (None, a class, or "mean"), any
        varying parameters, ``auroc_mean``, ``auroc_std``, ``aupr_mean``, ``aupr_std``,
        ``n_seeds``, ``seeds`` and the display strings ``AUROC`` and ``AUPR``
        ("0.845 ± 0.013"). Empty when ``metrics`` holds no overall scores.

    Raises:
        ValueError: ``metrics`` lacks one of the columns ``setting``, ``n_anomaly``, ``seed``.
    """
    overall = metrics[metrics["scope"] == "overall"] if "scope" in metrics else metrics.iloc[0:0]
    if overall.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    missing = [name for name in ("setting", "n_anomaly", "seed") if name not in overall]
    if missing:
        raise ValueError(
            f"metrics table lacks parameter column(s) {missing}; the runs must pass them"
        )

    overall = overall.copy()
    if "known_class" not in overall:
        overall["known_class"] = None
    # Known class only matters in the hard setting.
    overall["known_class"] = overall["known_class"].where(overall["setting"] == "hard", None)
    extras = _varying_parameters(overall)
    overall["_extras"] = [_extras_label(row, extras) for _, row in overall.iterrows()]

    rows = []
    for (setting, n_anomaly, known_class, extras_label), group in overall.groupby(
        ["setting", "n_anomaly", overall["known_class"].fillna(""), "_extras"], sort=False
    ):
        rows.append(
            _summary_row(group, setting, n_anomaly, known_class or None, extras, extras_label)
        )
    hard = overall[overall["setting"] == "hard"]
    for (n_anomaly, extras_label), group in hard.groupby(["n_anomaly", "_extras"], sort=False):
        row = _hard_mean_row(group, n_anomaly, extras, extras_label)
        if row is not None:
            rows.append(row)

    table = pd.DataFrame(rows)
    table = table.iloc[sorted(range(len(table)), key=lambda index: _row_order(table.iloc[index]))]
    columns = TABLE_COLUMNS[:4] + extras + TABLE_COLUMNS[4:]
    return table[columns].reset_index(drop=True)


def compare_with_reference(
    table: pd.DataFrame, dataset: str = "elpv", methods: list[str] | None = None
) -> pd.DataFrame:
    """Put published AUROC values beside the batch's AUROC, row by row.

    Args:
        table: Output of ``paper_table``.
        dataset: Data set of the published values (see ``sclib.reference``).
        methods: Published methods to show, by name as in ``reference_table``; all by default.

    Returns:
        Display strings ("0.845 ± 0.013", "—" where not reported), indexed by the
        table's ``row``. The first column is this batch; each other column is
        "METHOD [SOURCE]", where SOURCE is a key of ``sclib.reference.SOURCES``.
        ``attrs["sources"]`` maps the source keys to citations.

    Raises:
        ValueError: A name in ``methods`` has no published values for ``dataset``.
    """
    reference = reference_table(dataset)
    available = list(dict.fromkeys(reference["method"]))
    if methods is not None:
        unknown = [method for method in methods if method not in available]
        if unknown:
            raise ValueError(f"no published {dataset} values for {unknown}; available: {available}")
        available = list(methods)

    comparison = pd.DataFrame(
        {OURS: list(table["AUROC"])}, index=pd.Index(table["row"], name="row")
    )
    for method in available:
        published = reference[reference["method"] == method]
        source = published["source"].iloc[0]
        cells = []
        for _, row in table.iterrows():
            match = published[_matches(published, row)]
            cells.append(
                _format(match["auroc_mean"].iloc[0], match["auroc_std"].iloc[0])
                if len(match)
                else "—"
            )
        comparison[f"{method} [{source}]"] = cells
    listed = reference[reference["method"].isin(available)]
    comparison.attrs["sources"] = dict(zip(listed["source"], listed["citation"]))
    return comparison


def plot_paper_table(
    table: pd.DataFrame,
    dataset: str | None = "elpv",
    methods: tuple[str, ...] = ("DRA (D)", "AHL (DRA)"),
    metric: str = "auroc",
    ax: Any = None,
) -> Any:
    """Draw the table as grouped bars, mean with std error bars, beside published values.

    Args:
        table: Output of ``paper_table``.
        dataset: Data set of the published values, or None to draw only this batch.
        methods: Published methods drawn beside the batch (AUROC only).
        metric: "auroc" or "aupr".
        ax: Matplotlib axes to draw on; a new figure by default.

    Returns:
        The matplotlib axes.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if metric not in ("auroc", "aupr"):
        raise ValueError(f"metric must be 'auroc' or 'aupr', got {metric!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(table)), 4.0))
    series = [
        (OURS, table[f"{metric}_mean"].to_numpy(float), table[f"{metric}_std"].to_numpy(float))
    ]
    if dataset is not None and metric == "auroc":
        reference = reference_table(dataset)
        for method in methods:
            published = reference[reference["method"] == method]
            means, stds = [], []
            for _, row in table.iterrows():
                match = published[_matches(published, row)]
                means.append(match["auroc_mean"].iloc[0] if len(match) else np.nan)
                stds.append(match["auroc_std"].iloc[0] if len(match) else np.nan)
            series.append(
                (f"{method} [{published['source'].iloc[0]}]", np.array(means), np.array(stds))
            )

    positions = np.arange(len(table))
    width = 0.8 / len(series)
    for index, (label, means, stds) in enumerate(series):
        offset = positions + (index - (len(series) - 1) / 2) * width
        ax.bar(offset, means, width, label=label)
        # Whiskers only where a std exists: one seed, or a source without std, gives none.
        known = np.isfinite(stds) & np.isfinite(means)
        ax.errorbar(
            offset[known], means[known], yerr=stds[known], fmt="none", ecolor="black", capsize=3
        )
    ax.set_xticks(positions, table["row"], rotation=20, ha="right")
    ax.set_ylabel(f"{metric.upper()} (mean ± std over seeds)")
    ax.set_ylim(0.0, 1.0)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); rerun that run or delete its folder"
        ) from error


def _metric_entries(metrics: dict[str, Any]) -> list[tuple[str, str | None, dict[str, Any]]]:
    entries = []
    for scope in ("overall", "seen", "unseen"):
        if metrics.get(scope):
            entries.append((scope, None, metrics[scope]))
    for defect_class, values in (metrics.get("per_class") or {}).items():
        entries.append(("class", defect_class, values))
    return entries


def _varying_parameters(overall: pd.DataFrame) -> list[str]:
    fixed_columns = {"run", "seed", "_extras", *ROW_PARAMETERS, *METRIC_COLUMNS}
    names = []
    for name in overall.columns:
        if name in fixed_columns:
            continue
        # Parameters may hold lists, so compare their JSON text.
        if overall[name].map(lambda value: json.dumps(value, default=str)).nunique() > 1:
            names.append(name)
    return names


def _extras_label(row: pd.Series, extras: list[str]) -> str:
    return ", ".join(f"{name}={row[name]}" for name in extras)


def _summary_row(
    group: pd.DataFrame,
    setting: str,
    n_anomaly: Any,
    known_class: str | None,
    extras: list[str],
    extras_label: str,
) -> dict[str, Any]:
    label = f"{setting} {n_anomaly}-shot" + (f", {known_class} known" if known_class else "")
    return _stats_row(
        group, group["seed"], label, setting, n_anomaly, known_class, extras, extras_label
    )


def _hard_mean_row(
    group: pd.DataFrame, n_anomaly: Any, extras: list[str], extras_label: str
) -> dict[str, Any] | None:
    classes = sorted(group["known_class"].dropna().unique())
    if len(classes) < 2:
        return None
    per_seed = group.pivot_table(
        index="seed", columns="known_class", values=["auroc", "aupr"], aggfunc="mean"
    )
    complete = per_seed.dropna()
    dropped = sorted(set(per_seed.index) - set(complete.index))
    if dropped:
        logger.warning(
            "hard %s-shot mean leaves out seeds %s: not every known class ran", n_anomaly, dropped
        )
    if complete.empty:
        return None
    means = pd.DataFrame(
        {"auroc": complete["auroc"].mean(axis=1), "aupr": complete["aupr"].mean(axis=1)}
    )
    means = means.reset_index()
    first = group.iloc[0]
    for name in extras:
        means[name] = first[name]
    label = f"hard {n_anomaly}-shot, mean over {'/'.join(classes)} known"
    return _stats_row(means, means["seed"], label, "hard", n_anomaly, "mean", extras, extras_label)


def _stats_row(
    values: pd.DataFrame,
    seeds: pd.Series,
    label: str,
    setting: str,
    n_anomaly: Any,
    known_class: str | None,
    extras: list[str],
    extras_label: str,
) -> dict[str, Any]:
    row = {
        "row": f"{label} ({extras_label})" if extras_label else label,
        "setting": setting,
        "n_anomaly": n_anomaly,
        "known_class": known_class,
        **{name: values[name].iloc[0] for name in extras},
        "n_seeds": int(seeds.nunique()),
        "seeds": sorted(int(seed) for seed in seeds.unique()),
    }
    for metric in ("auroc", "aupr"):
        row[f"{metric}_mean"] = float(values[metric].mean())
        row[f"{metric}_std"] = float(values[metric].std(ddof=1)) if len(values) > 1 else math.nan
        row[metric.upper()] = _format(row[f"{metric}_mean"], row[f"{metric}_std"])
    return row


def _row_order(row: pd.Series) -> tuple:
    known = None if pd.isna(row["known_class"]) else row["known_class"]
    class_order = (1, "") if known == "mean" else (0, known or "")
    return (
        _SETTING_ORDER.get(row["setting"], 2),
        row["setting"],
        -row["n_anomaly"],
        class_order,
        row["row"],
    )


def _matches(published: pd.DataFrame, row: pd.Series) -> pd.Series:
    known = row["known_class"]
    same_class = (
        published["known_class"].isna() if pd.isna(known) else published["known_class"] == known
    )
    return (
        (published["setting"] == row["setting"])
        & (published["n_anomaly"] == row["n_anomaly"])
        & same_class
    )


def _format(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    if math.isnan(std):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f}"
