"""Published image-level AUROC on ELPV, as data, to set beside the results of a batch.

Each value is the mean over three runs, with the standard deviation where the source
gives one. The protocol is the open-set supervised one of DRA. The general setting draws
10 or 1 labelled anomalies from all classes. The hard setting draws them from one known
class: ``known_class`` names that training class, so ``mono`` is tested on poly anomalies
only, and ``known_class="mean"`` is the mean over both choices.

Re-runs of the same method disagree: DRA general 10-shot ranges from 0.821 to 0.845 and
DevNet 1-shot from 0.514 to 0.810 across the three sources, so compare means and
standard deviations over at least three seeds.

SaliencyCut (Ye et al., Pattern Recognition 153, 2024) has no row because its ELPV numbers
were not available to check.

ELPV test set under this protocol: 377 normal cells and 715 anomalies (313 mono, 402 poly).
"""

from __future__ import annotations

import math

import pandas as pd

SOURCES = {
    "D": "Ding, Pang, Shen, 'Catching Both Gray and Black Swans: Open-set Supervised "
    "Anomaly Detection', CVPR 2022 (DRA), Tables 1, 2, 7, 8",
    "A": "Zhu et al., 'Anomaly Heterogeneity Learning for Open-set Supervised Anomaly "
    "Detection', CVPR 2024 (AHL), re-runs, Tables 1, 2, 4, 7-9",
    "Q": "Peng et al., AAAI 2025 (Qsco), re-runs, Tables 2, 4, 5",
    "DPDL": "DPDL, CVPR 2025, value from a secondary summary without std",
}
"""Citation for each source key used in the ``source`` column."""

ELPV_TEST_COUNTS = {"normal": 377, "mono": 313, "poly": 402}

# One row per method: (method, source, general 10-shot, general 1-shot, hard 10-shot mean,
# hard 1-shot mean, hard 10-shot mono known, hard 10-shot poly known, hard 1-shot mono
# known, hard 1-shot poly known). None: not reported.
# NOTE: transcribed from a summary of the cited tables; check a value against its paper
# before quoting it.
# fmt: off
_ELPV_ROWS = (
    # KDAD uses no labelled anomalies, so DRA lists the same model for 10 and 1 shots.
    ("KDAD (unsupervised)", "D", "0.744±0.001", "0.744±0.001", "0.737±0.002", "0.737±0.002",
     "0.796", "0.679", "0.796", "0.679"),
    ("PatchCore (unsupervised)", "A", "0.916", None, None, None, None, None, None, None),
    ("FLOS", "D", "0.818±0.032", "0.457±0.056", "0.646±0.032", "0.691±0.008",
     "0.629", "0.662", "0.717", "0.665"),
    ("SAOE", "D", "0.793±0.047", "0.635±0.092", "0.683±0.047", "0.614±0.048",
     "0.569", "0.796", "0.563", "0.665"),
    ("MLEP", "D", "0.794±0.047", "0.578±0.062", "0.745±0.020", "0.566±0.111",
     "0.756", "0.734", "0.649", "0.483"),
    ("DeepSAD", "D", "0.722±0.053", None, "0.588±0.021", None, "0.554", "0.621", None, None),
    ("MINNS", "D", "0.788±0.028", None, "0.663±0.015", None, "0.557", "0.770", None, None),
    ("DevNet (D)", "D", "0.846±0.022", "0.514±0.076", "0.702±0.023", "0.648±0.057",
     "0.599", "0.804", "0.634", "0.662"),
    ("DevNet (A)", "A", "0.843±0.001", "0.810±0.024", "0.722±0.018", "0.663±0.008",
     "0.639", "0.806", "0.620", "0.705"),
    # Qsco copies its DevNet hard-setting numbers from DRA, so they are left out here.
    ("DevNet (Q)", "Q", "0.856±0.013", "0.691±0.069", None, None, None, None, None, None),
    ("DRA (D)", "D", "0.845±0.013", "0.675±0.024", "0.766±0.029", "0.703±0.022",
     "0.731", "0.800", "0.735", "0.671"),
    ("DRA (A)", "A", "0.843±0.002", "0.676±0.003", "0.771±0.005", "0.722±0.006",
     "0.735", "0.806", "0.762", "0.681"),
    ("DRA (Q)", "Q", "0.821±0.028", "0.626±0.074", "0.705±0.050", "0.627±0.056",
     None, None, None, None),
    ("DRA+Qsco (l=2)", "Q", "0.819±0.020", "0.749±0.048", "0.731±0.042", "0.616±0.032",
     None, None, None, None),
    ("AHL (DevNet)", "A", "0.849±0.003", "0.828±0.005", "0.752±0.005", "0.678±0.006",
     "0.663", "0.842", "0.638", "0.717"),
    ("AHL (DRA)", "A", "0.850±0.004", "0.723±0.008", "0.788±0.003", "0.740±0.003",
     "0.745", "0.831", "0.774", "0.705"),
    # Fully supervised upper reference: its 10 anomalies cover both classes.
    ("FS-DRA (fully supervised)", "A", "0.874±0.004", None, None, None, None, None, None, None),
    ("DPDL", "DPDL", "0.937", None, None, None, None, None, None, None),
)
# fmt: on

# (setting, n_anomaly, known_class) of each value column in _ELPV_ROWS.
_ELPV_COLUMNS = (
    ("general", 10, None),
    ("general", 1, None),
    ("hard", 10, "mean"),
    ("hard", 1, "mean"),
    ("hard", 10, "mono"),
    ("hard", 10, "poly"),
    ("hard", 1, "mono"),
    ("hard", 1, "poly"),
)

REFERENCE_COLUMNS = [
    "method",
    "source",
    "citation",
    "setting",
    "n_anomaly",
    "known_class",
    "auroc_mean",
    "auroc_std",
]


def reference_table(dataset: str = "elpv") -> pd.DataFrame:
    """Return the published AUROC values of one data set in long form.

    Returns:
        One row per reported value with columns ``method``, ``source`` (a key of
        SOURCES), ``citation``, ``setting`` ("general" or "hard"), ``n_anomaly`` (10 or
        1), ``known_class`` (None for general, "mono", "poly" or "mean"), ``auroc_mean``
        and ``auroc_std`` (NaN where the source gives none).

    Raises:
        ValueError: No reference values are stored for ``dataset``.
    """
    if dataset.lower() != "elpv":
        raise ValueError(f"no reference results stored for dataset {dataset!r}; available: 'elpv'")
    rows = []
    for method, source, *values in _ELPV_ROWS:
        for (setting, n_anomaly, known_class), text in zip(_ELPV_COLUMNS, values):
            if text is None:
                continue
            mean, std = parse_mean_std(text)
            rows.append(
                {
                    "method": method,
                    "source": source,
                    "citation": SOURCES[source],
                    "setting": setting,
                    "n_anomaly": n_anomaly,
                    "known_class": known_class,
                    "auroc_mean": mean,
                    "auroc_std": std,
                }
            )
    return pd.DataFrame(rows, columns=REFERENCE_COLUMNS)


def parse_mean_std(text: str) -> tuple[float, float]:
    """Parse ``"0.845±0.013"`` into ``(0.845, 0.013)`` and ``"0.916"`` into ``(0.916, nan)``."""
    mean, _, std = text.replace("+-", "±").partition("±")
    return float(mean), float(std) if std else math.nan
