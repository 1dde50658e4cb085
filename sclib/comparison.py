"""Compare pseudo-anomaly augmentations on the same model, split and seeds.

:func:`compare_augmentations` trains one model per augmentation, seed and setting and
scores it. All runs of one setting and seed share the split, the decoded images, the
head initialisation and the batch draws, so the augmentation is the only thing that
changes between them. Two settings measure two things:

- ``general``: the labelled anomalies come from every class, so the test anomalies are
  of seen classes (``auroc_seen``);
- ``hard`` with a known class: the test anomalies all belong to other classes, which
  the model never saw labelled (``auroc_unseen``).

:func:`compare_augmentations` can add baselines on the same split and seeds: the
training-free PatchKNN and the DevNet one-head model (see ``sclib.baselines``). Their rows
have the variant ``patch_knn`` or ``devnet`` and the augmentation ``none``.

:func:`compare_with_baselines` fits baselines on the data of one finished run and lists
them beside its metrics. :func:`summarize_comparison` gives the mean and standard
deviation over seeds, and :func:`plot_comparison` draws them.
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

# Baselines that compare_augmentations can add, by variant name: the method and the
# augmentation of their config.
BASELINES = {"patch_knn": ("patch_knn", "none"), "devnet": ("devnet", "none")}

COMPARISON_COLUMNS = (
    "case",
    "seed",
    "variant",
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
    baselines: Sequence[str] = (),
) -> pd.DataFrame:
    """Train and score one model per case, seed and augmentation, and optional baselines.

    Args:
        config: the base configuration; its ``augmentation`` and ``seed`` are replaced.
        data_root: the subset folder that contains ``train/`` and ``test/``.
        augmentations: names from ``sclib.config.AUGMENTATIONS``.
        seeds: seeds of the split, the head initialisation and the training draws.
        hard_known_class: adds a hard-setting case with this known class; None skips it.
        progress: show progress bars.
        cache_dir: decoded-image cache folder, see ``sclib.experiment.prepare_data``.
        baselines: names from ``BASELINES``, fitted once per case and seed on the same
            data. DevNet keeps ``config.scoring``, so with ``knn_ensemble`` it is
            averaged with PatchKNN just as the two-head model is.

    Returns:
        One row per run with the columns of ``COMPARISON_COLUMNS`` and one
        ``auroc_<class>`` column per defect class. ``auroc_seen`` is NaN when no test
        anomaly is of a seen class, ``auroc_unseen`` when all are.
    """
    unknown = sorted(set(augmentations) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentations {unknown}; choose from {list(AUGMENTATIONS)}.")
    _check_baselines(baselines)
    rows = []
    for case, case_config in comparison_cases(config, hard_known_class).items():
        for seed in seeds:
            seeded = case_config.replace(seed=seed)
            data = experiment.prepare_data(seeded, data_root, cache_dir, progress=progress)
            for variant in [*augmentations, *baselines]:
                logger.info("%s, seed %d: fitting %s", case, seed, variant)
                run_config = _variant_config(seeded, variant)
                metrics, train_seconds = _fit_and_evaluate(run_config, data, progress)
                rows.append(
                    _comparison_row(
                        case, seed, variant, run_config.augmentation, metrics, train_seconds
                    )
                )
    table = pd.DataFrame(rows)
    class_columns = sorted(column for column in table.columns if column not in COMPARISON_COLUMNS)
    return table[list(COMPARISON_COLUMNS) + class_columns]


def _comparison_row(case, seed, variant, augmentation, metrics, train_seconds) -> dict:
    overall = _overall_row(metrics, train_seconds)
    row = {
        "case": case,
        "seed": seed,
        "variant": variant,
        "augmentation": augmentation,
        **{key: overall[key] for key in ("auroc", "aupr", "auroc_seen", "auroc_unseen")},
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
        One row per variant (in the order of ``table``; the augmentation for a table
        without a ``variant`` column) and, for each case, the
        columns ``(case, "mean")``, ``(case, "std")`` and ``(case, "n_seeds")``. The std
        uses ddof=1, so it is NaN with one seed.
    """
    if metric not in table.columns:
        raise ValueError(f"unknown metric {metric!r}; the table has {list(table.columns)}.")
    label = "variant" if "variant" in table.columns else "augmentation"
    grouped = table.groupby([label, "case"], sort=False)[metric]
    summary = grouped.agg(mean="mean", std="std", n_seeds="count").unstack("case")
    summary.index.name = label
    summary = summary.swaplevel(axis=1)
    cases = list(dict.fromkeys(table["case"]))
    columns = [(case, statistic) for case in cases for statistic in ("mean", "std", "n_seeds")]
    order = list(dict.fromkeys(table[label]))
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


def compare_with_baselines(
    config: Config,
    data: experiment.PreparedData,
    metrics: dict,
    baselines: Sequence[str] = ("patch_knn",),
    progress: bool = False,
) -> pd.DataFrame:
    """Fit baselines on the data of a finished run and list them beside its metrics.

    Args:
        config: the configuration of the run.
        data: the run's prepared split, from ``sclib.experiment.prepare_data``.
        metrics: the run's metrics, from ``sclib.experiment.evaluate_run``.
        baselines: names from ``BASELINES``, each fitted on ``data`` with ``config``'s
            seed, as in :func:`compare_augmentations`.
        progress: show progress bars.

    Returns:
        One row per detector, the run first (named ``"<method>, <augmentation>"``), with
        the columns ``auroc``, ``aupr``, ``auroc_seen``, ``auroc_unseen`` and ``fit_s``
        (NaN for the run, which was timed elsewhere).
    """
    _check_baselines(baselines)
    rows = {f"{config.method}, {config.augmentation}": _overall_row(metrics, np.nan)}
    for name in baselines:
        logger.info("fitting baseline %s", name)
        baseline_metrics, fit_seconds = _fit_and_evaluate(
            _variant_config(config, name), data, progress
        )
        rows[name] = _overall_row(baseline_metrics, fit_seconds)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "detector"
    return table


def _check_baselines(baselines: Sequence[str]) -> None:
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {list(BASELINES)}.")


def _variant_config(config: Config, variant: str) -> Config:
    """Return ``config`` for a variant: an augmentation of its method, or a baseline.

    PatchKNN is scored alone (``scoring="model"``); DevNet keeps ``config.scoring``.
    """
    if variant not in BASELINES:
        return config.replace(augmentation=variant)
    method, augmentation = BASELINES[variant]
    scoring = "model" if method == "patch_knn" else config.scoring
    return config.replace(method=method, augmentation=augmentation, scoring=scoring)


def _fit_and_evaluate(
    config: Config, data: experiment.PreparedData, progress: bool
) -> tuple[dict, float]:
    """Fit the detector of ``config`` on ``data``; return its test metrics and fit seconds."""
    started = time.perf_counter()
    model, _ = experiment.fit(config, data, progress=progress)
    fit_seconds = time.perf_counter() - started
    _, metrics = experiment.evaluate_run(model, data, config)
    return metrics, fit_seconds


def _overall_row(metrics: dict, fit_seconds: float) -> dict:
    def auroc_of(summary):
        return np.nan if summary is None else summary["auroc"]

    return {
        "auroc": metrics["overall"]["auroc"],
        "aupr": metrics["overall"]["aupr"],
        "auroc_seen": auroc_of(metrics["seen"]),
        "auroc_unseen": auroc_of(metrics["unseen"]),
        "fit_s": fit_seconds,
    }
