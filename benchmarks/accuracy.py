"""Accuracy benchmark: AUROC and AUPR of named configurations over settings and seeds.

Each run draws the split, fits the detector, scores the test set and appends one row to
a CSV file. A row contains the configuration, setting and seed, AUROC and AUPR (overall,
seen and unseen classes), and wall-clock and process CPU seconds of fitting and
scoring. It also records the load average of the machine before and after the run,
because the CPU may be shared and timings are only comparable at similar load. Runs
already in the CSV are skipped, so an interrupted benchmark resumes where it stopped.
``--summary`` prints the mean and standard deviation per configuration and setting as a
Markdown table.

Examples::

    python benchmarks/accuracy.py --configs patch_knn two_head_quick --seeds 0 1 2
    python benchmarks/accuracy.py --configs two_head_best --settings general1 hard_mono
    python benchmarks/accuracy.py --summary

Runs execute one after another in this process with ``torch.set_num_threads(--threads)``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

from sclib import experiment
from sclib.baselines import KnnEnsemble
from sclib.config import Config, get_profile
from sclib.metrics import aupr, auroc
from sclib.paths import project_root

logger = logging.getLogger("accuracy")

# Named configurations: (profile, overrides).
CONFIGS: dict[str, tuple[str, dict]] = {
    "patch_knn": ("best_cpu", {"method": "patch_knn", "scoring": "model"}),
    "patch_knn_coreset": (
        "best_cpu", {"method": "patch_knn", "scoring": "model", "knn_sampling": "coreset"}
    ),
    "devnet_quick": ("quick", {"method": "devnet", "augmentation": "none", "scoring": "model"}),
    "devnet_best": ("best_cpu", {"method": "devnet", "augmentation": "none", "scoring": "model"}),
    "devnet_best_knn": ("best_cpu", {"method": "devnet", "augmentation": "none"}),
    "two_head_quick": ("quick", {}),
    # quick as first measured: 60 steps, all training normals used for training
    "two_head_quick_60": (
        "quick",
        {"epochs": 3, "steps_per_epoch": 20, "lr_step_epochs": 2, "validation_normal": 0},
    ),
    "two_head_best": ("best_cpu", {}),
    "two_head_best_model_only": ("best_cpu", {"scoring": "model"}),
    "two_head_best_200": ("best_cpu", {"epochs": 8, "lr_step_epochs": 6}),
    # the quick profile before multi-level frozen features: EfficientNet-Lite0 last stage
    # fine-tuned end to end, 224 px, 150 steps
    "two_head_finetune_last": (
        "quick",
        {
            "features": "last",
            "feature_smoothing": 1,
            "train_backbone": True,
            "validation_normal": 0,
            "image_size": 224,
            "n_scales": 2,
            "epochs": 6,
            "steps_per_epoch": 25,
            "lr_step_epochs": 4,
            "scoring": "model",
        },
    ),
}

SETTINGS: dict[str, dict] = {
    "general10": {"setting": "general", "n_anomaly": 10},
    "general1": {"setting": "general", "n_anomaly": 1},
    "hard_mono": {"setting": "hard", "n_anomaly": 10, "known_class": "mono"},
    "hard_poly": {"setting": "hard", "n_anomaly": 10, "known_class": "poly"},
}


def build_config(name: str, setting: str, seed: int, overrides: dict) -> Config:
    """Return the config of configuration ``name`` in ``setting`` with ``seed``."""
    profile, values = CONFIGS[name]
    return get_profile(profile, **{**values, **SETTINGS[setting], "seed": seed, **overrides})


def machine_description() -> str:
    """Return the CPU model and the number of logical CPUs, for example 'Intel Xeon (2 CPUs)'."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({os.cpu_count()} CPUs)"


def git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=project_root(),
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip()


COMPONENT_COLUMNS = (
    "auroc_model_part",
    "auroc_knn_part",
    "auroc_rank_average",
    "aupr_rank_average",
)


def component_metrics(model, scores: pd.DataFrame) -> dict:
    """AUROC of each part of a KnnEnsemble score, and of their rank average.

    The two-head score is anomaly minus normal score, and the PatchKNN distance is
    recovered from the ensemble score and the calibration statistics.
    """
    if not isinstance(model, KnnEnsemble):
        return dict.fromkeys(COMPONENT_COLUMNS, np.nan)
    labels = scores["label"].to_numpy()
    model_score = (scores["anomaly_score"] - scores["normal_score"]).to_numpy()
    reference = model.reference.cpu().numpy().astype(np.float64)
    model_z = (model_score - reference[0, 0]) / reference[0, 1]
    knn_score = (2 * scores["score"].to_numpy() - model_z) * reference[1, 1] + reference[1, 0]
    rank_average = rankdata(model_score) + rankdata(knn_score)
    return {
        "auroc_model_part": auroc(labels, model_score),
        "auroc_knn_part": auroc(labels, knn_score),
        "auroc_rank_average": auroc(labels, rank_average),
        "aupr_rank_average": aupr(labels, rank_average),
    }


def run_one(name: str, setting: str, seed: int, data_root: Path, overrides: dict) -> dict:
    """Fit and evaluate one configuration and return its CSV row."""
    config = build_config(name, setting, seed, overrides)
    load_before = os.getloadavg()[0]
    data = experiment.prepare_data(config, data_root)

    wall, cpu = time.perf_counter(), time.process_time()
    model, history = experiment.fit(config, data, progress=False)
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu

    wall, cpu = time.perf_counter(), time.process_time()
    scores, metrics = experiment.evaluate_run(model, data, config)
    score_wall, score_cpu = time.perf_counter() - wall, time.process_time() - cpu

    row = {
        "config": name,
        "setting": setting,
        "seed": seed,
        "profile": config.profile,
        "method": config.method,
        "scoring": config.scoring,
        "overrides": repr(overrides) if overrides else "",
        "auroc": metrics["overall"]["auroc"],
        "aupr": metrics["overall"]["aupr"],
        "auroc_seen": (metrics.get("seen") or {}).get("auroc", np.nan),
        "auroc_unseen": (metrics.get("unseen") or {}).get("auroc", np.nan),
        "n_test_normal": metrics["overall"]["n_normal"],
        "n_test_anomaly": metrics["overall"]["n_anomaly"],
        "steps": len(history),
        "fit_wall_s": fit_wall,
        "fit_cpu_s": fit_cpu,
        "score_wall_s": score_wall,
        "score_cpu_s": score_cpu,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "threads": torch.get_num_threads(),
        "machine": machine_description(),
        "commit": git_commit(),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    row.update(component_metrics(model, scores))
    return row


def summarize(rows: pd.DataFrame) -> str:
    """Return a Markdown table of mean and std per configuration, setting and overrides.

    A single seed has no standard deviation and shows only its value. For the
    ``knn_ensemble`` scoring, ``model part`` and ``PatchKNN part`` give the AUROC of
    each of the two averaged scores on their own; other rows show "-". Times are means
    per run: wall-clock minutes of fitting plus scoring, and process CPU minutes (both
    threads counted) of the same. ``load`` is the range of the load average at the
    starts of the runs.
    """
    lines = [
        "| configuration | setting | profile | scoring | steps | seeds | AUROC | AUPR "
        "| model part | PatchKNN part | wall min | CPU min | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    grouped = rows.groupby(["config", "setting", "overrides"], sort=False, dropna=False)
    for (name, setting, overrides), group in grouped:
        label = name + (f" `{overrides}`" if isinstance(overrides, str) and overrides else "")
        seeds = ",".join(str(seed) for seed in sorted(group.seed))
        wall = (group.fit_wall_s + group.score_wall_s).mean() / 60
        cpu = (group.fit_cpu_s + group.score_cpu_s).mean() / 60
        lines.append(
            f"| {label} | {setting} | {group.profile.iloc[0]} | {group.scoring.iloc[0]} "
            f"| {int(group.steps.iloc[0])} | {seeds} | {_mean_std(group.auroc)} "
            f"| {_mean_std(group.aupr)} | {_mean_std(group.auroc_model_part)} "
            f"| {_mean_std(group.auroc_knn_part)} | {wall:.1f} | {cpu:.1f} "
            f"| {group.load_before.min():.1f}-{group.load_before.max():.1f} |"
        )
    return "\n".join(lines)


def _mean_std(values: pd.Series) -> str:
    values = pd.to_numeric(values).dropna()
    if values.empty:
        return "-"
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def parse_overrides(items: list[str]) -> dict:
    """Parse ``field=value`` pairs; values are read as Python literals when possible."""
    import ast

    overrides = {}
    for item in items:
        field, _, text = item.partition("=")
        try:
            overrides[field] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[field] = text
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["patch_knn"], choices=sorted(CONFIGS))
    parser.add_argument("--settings", nargs="+", default=["general10"], choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="FIELD=VALUE", help="Config overrides"
    )
    parser.add_argument("--data-root", default="data/elpv", help="ELPV subset folder")
    parser.add_argument(
        "--csv", default="benchmarks/accuracy.csv", help="CSV file the rows are appended to"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--summary", action="store_true", help="print the table and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("sclib.data").setLevel(logging.WARNING)

    csv_path = Path(args.csv)
    existing = pd.read_csv(csv_path, keep_default_na=False) if csv_path.is_file() else None
    if args.summary:
        if existing is None:
            parser.error(f"{csv_path} does not exist; run some configurations first.")
        print(summarize(existing))
        return 0

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    data_root = Path(args.data_root)
    for name in args.configs:
        for setting in args.settings:
            for seed in args.seeds:
                key = (name, setting, seed, repr(overrides) if overrides else "")
                if existing is not None and (
                    (existing.config == key[0])
                    & (existing.setting == key[1])
                    & (existing.seed == key[2])
                    & (existing.overrides == key[3])
                ).any():
                    logger.info("skipping %s %s seed %d: already in %s", *key[:3], csv_path)
                    continue
                row = run_one(name, setting, seed, data_root, overrides)
                logger.info(
                    "%s %s seed %d: AUROC %.4f AUPR %.4f fit %.0f s (%.0f CPU s) score %.0f s "
                    "load %.1f",
                    name, setting, seed, row["auroc"], row["aupr"], row["fit_wall_s"],
                    row["fit_cpu_s"], row["score_wall_s"], row["load_before"],
                )
                frame = pd.DataFrame([row])
                frame.to_csv(csv_path, mode="a", header=not csv_path.is_file(), index=False)
                existing = pd.read_csv(csv_path, keep_default_na=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
