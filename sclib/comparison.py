"""Compare pseudo-anomaly augmentations on the same model, split and seeds.

:func:`compare_augmentations` trains one model per augmentation, seed and setting and
scores it. All runs of one setting and seed share the split, the decoded images, the
head initialisation and the batch draws, so the augmentation is the only thing that
changes between them. Two settings measure two things:

- ``general``: the labelled anomalies come from every class, so the test anomalies are
  of seen classes (``auroc_seen``);
- ``hard`` with a known class: the test anomalies all belong to other classes, which
  the model never saw labelled (``auroc_unseen``).

:func:`summarize_comparison` gives the mean and standard deviation over seeds, and
:func:`plot_comparison` draws them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sclib import experiment
from sclib.config import AUGMENTATIONS, Config

logger = logging.getLogger(__name__)

COMPARISON_COLUMNS = (
    "case",
    "seed",
    "augmentation",
    "auroc",
    "aupr",
    "auroc_seen",
    "auroc_unseen",
    "train_s",
)


def comparison_cases(config: Config, hard_known_class: str | None) -> dict[str, Config]:
    """Return the settings to compare, by display name.

    The first case is ``config`` itself. With ``hard_known_class``, a second case uses
    the hard setting with that known class and the same number of labelled anomalies.
    """
    cases = {config.setting: config}
    if hard_known_class is not None and not (
        config.setting == "hard" and config.known_class == hard_known_class
    ):
        cases[f"hard, known {hard_known_class}"] = config.replace(
            setting="hard", known_class=hard_known_class
        )
    return cases


def compare_augmentations(
    config: Config,
    data_root: str | Path,
    augmentations: Sequence[str] = AUGMENTATIONS,
    seeds: Sequence[int] = (0,),
    hard_known_class: str | None = None,
    progress: bool = False,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Train and score one model per case, seed and augmentation.

    Args:
        config: the base configuration; its ``augmentation`` and ``seed`` are replaced.
        data_root: the subset folder that contains ``train/`` and ``test/``.
        augmentations: names from ``sclib.config.AUGMENTATIONS``.
        seeds: seeds of the split, the head initialisation and the training draws.
        hard_known_class: adds a hard-setting case with this known class; None skips it.
        progress: show progress bars.
        cache_dir: decoded-image cache folder, see ``sclib.experiment.prepare_data``.

    Returns:
        One row per run with the columns of ``COMPARISON_COLUMNS`` and one
        ``auroc_<class>`` column per defect class. ``auroc_seen`` is NaN when no test
        anomaly is of a seen class, ``auroc_unseen`` when all are.
    """
    unknown = sorted(set(augmentations) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentations {unknown}; choose from {list(AUGMENTATIONS)}.")
    rows = []
    for case, case_config in comparison_cases(config, hard_known_class).items():
        for seed in seeds:
            seeded = case_config.replace(seed=seed)
            data = experiment.prepare_data(seeded, data_root, cache_dir, progress=progress)
            for augmentation in augmentations:
                logger.info("%s, seed %d: training with %s", case, seed, augmentation)
                run_config = seeded.replace(augmentation=augmentation)
                started = time.perf_counter()
                model, _ = experiment.fit(run_config, data, progress=progress)
                train_seconds = time.perf_counter() - started
                _, metrics = experiment.evaluate_run(model, data, run_config)
                rows.append(_comparison_row(case, seed, augmentation, metrics, train_seconds))
    table = pd.DataFrame(rows)
    class_columns = sorted(column for column in table.columns if column not in COMPARISON_COLUMNS)
    return table[list(COMPARISON_COLUMNS) + class_columns]


def _comparison_row(case, seed, augmentation, metrics, train_seconds) -> dict:
    def auroc_of(summary):
        return np.nan if summary is None else summary["auroc"]

    row = {
        "case": case,
        "seed": seed,
        "augmentation": augmentation,
        "auroc": metrics["overall"]["auroc"],
        "aupr": metrics["overall"]["aupr"],
        "auroc_seen": auroc_of(metrics["seen"]),
        "auroc_unseen": auroc_of(metrics["unseen"]),
        "train_s": train_seconds,
    }
    for name, summary in metrics["per_class"].items():
        row[f"auroc_{name}"] = summary["auroc"]
    return row


def summarize_comparison(table: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """Return the mean and sample standard deviation over seeds of ``metric``.

    Args:
        table: output of :func:`compare_augmentations`.
        metric: a column of ``table``, such as ``"auroc"``, ``"auroc_seen"`` or
            ``"auroc_unseen"``.

    Returns:
        One row per augmentation (in the order of ``table``) and, for each case, the
        columns ``(case, "mean")``, ``(case, "std")`` and ``(case, "n_seeds")``. The std
        uses ddof=1, so it is NaN with one seed.
    """
    if metric not in table.columns:
        raise ValueError(f"unknown metric {metric!r}; the table has {list(table.columns)}.")
    grouped = table.groupby(["augmentation", "case"], sort=False)[metric]
    summary = grouped.agg(mean="mean", std="std", n_seeds="count").unstack("case")
    summary = summary.swaplevel(axis=1)
    cases = list(dict.fromkeys(table["case"]))
    columns = [(case, statistic) for case in cases for statistic in ("mean", "std", "n_seeds")]
    order = list(dict.fromkeys(table["augmentation"]))
    return summary.reindex(index=order, columns=pd.MultiIndex.from_tuples(columns))


def format_mean_std(summary: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Return ``summarize_comparison`` output as text: ``"mean ± std"`` per case."""
    cases = list(dict.fromkeys(case for case, _ in summary.columns))
    text = {}
    for case in cases:
        means, stds = summary[(case, "mean")], summary[(case, "std")]
        text[case] = [
            f"{mean:.{digits}f}" + ("" if np.isnan(std) else f" ± {std:.{digits}f}")
            for mean, std in zip(means, stds)
        ]
    return pd.DataFrame(text, index=summary.index)


def plot_comparison(summary: pd.DataFrame, title: str = "AUROC by augmentation") -> Figure:
    """Draw ``summarize_comparison`` output as grouped bars with one-std whiskers."""
    cases = list(dict.fromkeys(case for case, _ in summary.columns))
    positions = np.arange(len(summary.index))
    width = 0.8 / max(1, len(cases))
    figure = Figure(figsize=(1.6 + 1.4 * len(positions), 3.5))
    axes = figure.add_subplot()
    for index, case in enumerate(cases):
        means = summary[(case, "mean")].to_numpy(dtype=float)
        stds = summary[(case, "std")].to_numpy(dtype=float)
        # no whiskers at all with one seed, rather than whiskers of length zero
        whiskers = None if np.isnan(stds).all() else np.nan_to_num(stds)
        offsets = positions + (index - (len(cases) - 1) / 2) * width
        axes.bar(offsets, means, width, yerr=whiskers, capsize=3, label=case)
    axes.axhline(0.5, color="grey", lw=0.8, ls="--")
    axes.set_xticks(positions, summary.index)
    axes.set(ylabel="AUROC", ylim=(0, 1.02), title=title)
    axes.legend(fontsize="small", loc="lower right")
    figure.tight_layout()
    return figure
