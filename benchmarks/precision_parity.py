"""Accuracy parity of bfloat16 and float32 training: test AUROC on ELPV over several seeds.

For each seed the same run (split, sampling, start weights) is trained and evaluated
twice with ``sclib.experiment.run_experiment``: once with ``precision="fp32"`` and once
with ``precision="bf16"`` (autocast in both the training and the scoring passes). The
script prints one row per seed and the mean AUROC of each precision. The check passes
when the two means differ by at most ``--tolerance`` (0.01 by default), and the exit
status is 1 when they do not.

Usage::

    python benchmarks/precision_parity.py                        # quick profile, seeds 0 1 2
    python benchmarks/precision_parity.py --steps 2 --max-test 60  # a short check of the script

The full check trains six quick-profile runs. On a CPU without AMX or AVX512-BF16,
bfloat16 brings no speed-up (ResNet-18 training ran about 2x slower under it on such a
CPU), so run the check on a GPU or an AMX CPU where possible.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from sclib.config import get_profile
from sclib.experiment import run_experiment
from sclib.notebook import prepare_data_root
from sclib.paths import runs_dir
from sclib.runs import atomic_write_json
from sclib.utils import autocast_dtype, resolve_device

PRECISIONS = ("fp32", "bf16")


def parity_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Pivot per-run rows into one row per seed with fp32, bf16 and bf16 - fp32 AUROC.

    Args:
        rows: dicts with ``seed``, ``precision`` (``"fp32"`` or ``"bf16"``) and ``auroc``.

    Returns:
        A DataFrame indexed by seed with the columns ``fp32``, ``bf16`` and
        ``difference``; seeds missing either precision are dropped.
    """
    frame = pd.DataFrame(rows, columns=["seed", "precision", "auroc"])
    table = frame.pivot(index="seed", columns="precision", values="auroc")
    table = table.reindex(columns=list(PRECISIONS)).dropna()
    table["difference"] = table["bf16"] - table["fp32"]
    return table


def mean_difference(table: pd.DataFrame) -> float:
    """Return mean(bf16 AUROC) - mean(fp32 AUROC) over the seeds of ``table``."""
    if table.empty:
        raise ValueError("the parity table has no seed with both precisions; run both first.")
    return float(table["bf16"].mean() - table["fp32"].mean())


def run_parity(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate every (seed, precision) pair and return the rows and the table."""
    data_root = prepare_data_root(args.data_root)
    run_parent = Path(args.run_parent) if args.run_parent else runs_dir() / "precision-parity"
    overrides: dict[str, Any] = {"device": args.device}
    if args.steps is not None:
        overrides.update(epochs=1, steps_per_epoch=args.steps, lr_step_epochs=1)
    for field in ("max_test", "max_train_normal"):
        value = getattr(args, field)
        if value is not None:
            overrides[field] = value

    rows = []
    for seed in args.seeds:
        for precision in PRECISIONS:
            config = get_profile(args.profile, seed=seed, precision=precision, **overrides)
            started = time.perf_counter()
            result = run_experiment(
                config,
                data_root,
                run_parent=run_parent,
                name=f"{args.profile}-{precision}-seed{seed}",
                progress=False,
            )
            row = {
                "seed": seed,
                "precision": precision,
                "auroc": result.metrics["overall"]["auroc"],
                "aupr": result.metrics["overall"]["aupr"],
                "train_s": result.timing["train_s"],
                "wall_s": time.perf_counter() - started,
                "run_dir": str(result.run_dir),
            }
            rows.append(row)
            print(
                f"seed {seed} {precision}: AUROC {row['auroc']:.4f}, AUPR {row['aupr']:.4f}, "
                f"training {row['train_s']:.0f} s ({row['run_dir']})",
                flush=True,
            )
    return {"rows": rows, "table": parity_table(rows)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare the test AUROC of bfloat16 and float32 training over seeds."
    )
    parser.add_argument(
        "--data-root",
        default="data/elpv",
        help="subset folder with train/ and test/; data/elpv is built when missing",
    )

    parser.add_argument("--profile", default="quick", help="config profile (default: quick)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train one epoch of this many steps instead of the profile's schedule",
    )

    parser.add_argument("--max-test", type=int, default=None, help="test images per run")
    parser.add_argument(
        "--max-train-normal", type=int, default=None, help="training normals per run"
    )

    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="largest accepted |mean bf16 AUROC - mean fp32 AUROC| (default: 0.01)",
    )
    parser.add_argument(
        "--run-parent",
        default=None,
        help="folder for the run folders (default: <runs>/precision-parity)",
    )
    parser.add_argument("--json", default=None, help="write rows and verdict to this JSON file")

    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.json:
        # create the folder now, so that a long run does not fail at its last write
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    device = resolve_device(args.device)
    if device.type == "cpu" and autocast_dtype(device, "auto") is None:
        print(
            "this CPU has neither AMX nor AVX512-BF16, so the bf16 runs are no faster than "
            "the fp32 runs and can be slower; the script compares accuracy, not speed",
            flush=True,
        )

    outcome = run_parity(args)
    table = outcome["table"]
    difference = mean_difference(table)
    passed = abs(difference) <= args.tolerance
    print()
    print(table.to_string(float_format=lambda value: f"{value:.4f}"))
    print(
        f"mean AUROC: fp32 {table['fp32'].mean():.4f}, bf16 {table['bf16'].mean():.4f}, "
        f"difference {difference:+.4f} (tolerance {args.tolerance}): "
        f"{'PASS' if passed else 'FAIL'}"
    )
    if args.json:
        atomic_write_json(
            args.json,
            {
                "profile": args.profile,
                "steps": args.steps,
                "rows": outcome["rows"],
                "mean_difference": difference,
                "tolerance": args.tolerance,
                "passed": passed,
            },
        )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
