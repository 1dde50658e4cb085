"""The open-set supervised anomaly detection protocol: which image plays which role.

``make_split`` turns the records of a subset folder into a ``Split``: normal training
images, a handful of labelled anomalies drawn from the test set, and the test set that
remains. The settings follow the benchmark protocol of DRA (Ding et al., CVPR 2022):

- ``general``: the n labelled anomalies come from all defect classes of the test set and
  leave the test set;
- ``hard``: the n labelled anomalies come from ``known_class`` only, and every image of
  that class leaves the test set, so the test anomalies are all of unseen classes;
- ``anomaly_free``: no labelled anomaly (n = 0).

Two rules keep the draw reproducible. First, the records are sorted by path before any
seeded shuffle, so the listing order of the file system cannot change the draw. Second,
with fewer than 10 labelled anomalies (1-shot, for example) the labelled anomalies are the
first n of the 10-shot draw, and the test set is exactly the 10-shot test set. The other
drawn anomalies get role ``"unused"``, so 1-shot and 10-shot scores share one test set.
In the general setting with at most 10 anomalies the 10-shot draw would leave no test
anomaly, so there only the n labelled anomalies are drawn.

Manifest roles: ``train_normal``, ``train_anomaly``, ``test``, ``unused``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sclib.data.layout import ImageRecord
from sclib.runs import write_csv_atomic

SETTINGS = ("general", "hard", "anomaly_free")
ROLES = ("train_normal", "train_anomaly", "test", "unused")
MANIFEST_COLUMNS = ["path", "label", "defect_class", "role", "contaminated"]
REFERENCE_SHOTS = 10

logger = logging.getLogger(__name__)


@dataclass
class Split:
    """Roles of every image for one run.

    Attributes:
        manifest: one row per image with columns path, label (0 normal, 1 anomaly),
            defect_class, role and contaminated (True for anomalies hidden among the
            training normals). Rows are grouped by role in the order of ``ROLES``.
        train_normal: unlabelled training images. With contamination it contains
            anomalies whose ``label`` is 1: a trainer must treat the whole list as
            normal and use the label only for analysis.
        train_anomaly: labelled anomalies, in draw order.
        test: test images, sorted by path.
        unused: drawn anomalies left out of both training and test.
        seen_classes: defect classes of the labelled anomalies, sorted.
    """

    manifest: pd.DataFrame
    train_normal: list[ImageRecord] = field(default_factory=list)
    train_anomaly: list[ImageRecord] = field(default_factory=list)
    test: list[ImageRecord] = field(default_factory=list)
    unused: list[ImageRecord] = field(default_factory=list)
    seen_classes: list[str] = field(default_factory=list)

    def write_manifest(self, path: str | os.PathLike) -> Path:
        """Write the manifest as CSV through a temporary file and ``os.replace``.

        Returns:
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_csv_atomic(self.manifest, path)


def _build_manifest(groups: dict[str, list[ImageRecord]], contaminated: set[Path]) -> pd.DataFrame:
    rows = [
        {
            "path": str(record.path),
            "label": record.label,
            "defect_class": record.defect_class,
            "role": role,
            "contaminated": record.path in contaminated,
        }
        for role in ROLES
        for record in groups[role]
    ]
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def _split_from_groups(groups: dict[str, list[ImageRecord]], contaminated: set[Path]) -> Split:
    return Split(
        manifest=_build_manifest(groups, contaminated),
        train_normal=groups["train_normal"],
        train_anomaly=groups["train_anomaly"],
        test=groups["test"],
        unused=groups["unused"],
        seen_classes=sorted({record.defect_class for record in groups["train_anomaly"]}),
    )


def read_manifest(path: str | os.PathLike) -> Split:
    """Read a manifest CSV written by ``Split.write_manifest`` back into a ``Split``.

    Mask paths are not stored in the manifest, so the records come back with
    ``mask_path=None``. The split of each record is rebuilt from its role: only
    uncontaminated training normals come from ``train/``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a column is missing or a role is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Manifest file not found: {path}.")
    table = pd.read_csv(path, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS[:4] if c not in table.columns]
    if missing:
        raise ValueError(f"Manifest {path} lacks columns {missing}. Expected {MANIFEST_COLUMNS}.")
    if "contaminated" not in table.columns:
        table["contaminated"] = False
    table["contaminated"] = table["contaminated"].astype(str).str.lower().eq("true")
    invalid_roles = sorted(set(table["role"]) - set(ROLES))
    if invalid_roles:
        raise ValueError(
            f"Manifest {path} has invalid roles {invalid_roles}. Valid roles: {ROLES}."
        )

    groups: dict[str, list[ImageRecord]] = {role: [] for role in ROLES}
    contaminated: set[Path] = set()
    for row in table.itertuples(index=False):
        record_path = Path(row.path)
        from_train = row.role == "train_normal" and not row.contaminated
        groups[row.role].append(
            ImageRecord(
                record_path,
                int(row.label),
                str(row.defect_class),
                "train" if from_train else "test",
            )
        )
        if row.contaminated:
            contaminated.add(record_path)
    return _split_from_groups(groups, contaminated)


def _sorted_records(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    return sorted(records, key=lambda record: str(record.path))


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_split_arguments(
    setting: str, n_anomaly: int, known_class: str | None, contamination: float, seed: int
) -> None:
    """Raise ``ValueError`` for arguments ``make_split`` rejects before it sees any record.

    Run configurations can be checked with it before any data is read.
    """
    if setting not in SETTINGS:
        raise ValueError(f"Unknown setting {setting!r}. Valid settings: {', '.join(SETTINGS)}.")
    if isinstance(n_anomaly, bool) or not isinstance(n_anomaly, (int, np.integer)) or n_anomaly < 0:
        raise ValueError(f"n_anomaly must be a non-negative integer, got {n_anomaly!r}.")
    if setting == "hard" and known_class is None:
        raise ValueError(
            "setting='hard' needs known_class, the defect class the labelled anomalies come from."
        )
    if setting != "hard" and known_class is not None:
        raise ValueError(
            f"known_class={known_class!r} is only used by setting='hard', but setting={setting!r}. "
            "Pass known_class=None or setting='hard'."
        )
    is_number = isinstance(contamination, (int, float, np.number)) and not isinstance(
        contamination, bool
    )
    if not is_number or not 0.0 <= contamination < 1.0:
        raise ValueError(f"contamination must be a fraction in [0, 1), got {contamination!r}.")
    if not _is_integer(seed) or seed < 0:
        raise ValueError(
            f"seed must be a non-negative integer, got {seed!r}. The split is drawn from it, "
            "so the same seed gives the same split."
        )


def make_split(
    records: Iterable[ImageRecord],
    setting: str = "general",
    n_anomaly: int = 10,
    known_class: str | None = None,
    seed: int = 0,
    contamination: float = 0.0,
    one_shot_from_ten: bool = True,
) -> Split:
    """Assign a role to every record according to an OSAD setting.

    Args:
        records: the records of one subset, e.g. from ``discover``; any order.
        setting: ``"general"``, ``"hard"`` or ``"anomaly_free"`` (see module docstring).
            ``"anomaly_free"`` ignores ``n_anomaly`` and uses 0.
        n_anomaly: number of labelled anomalies.
        known_class: the defect class of the labelled anomalies; required by ``"hard"``
            and rejected by the other settings.
        seed: seed of the ``numpy.random.default_rng`` that draws the anomalies.
        contamination: fraction c of hidden anomalies: ``round(c * n_train_normal)``
            test anomalies that are not labelled move into ``train_normal``, keep label 1,
            and are flagged ``contaminated``. They are drawn after the labelled
            anomalies, so contamination does not change which anomalies are labelled.
        one_shot_from_ten: for 0 < n < 10, draw 10 anomalies (or all, when fewer exist),
            label the first n, and set the other drawn ones aside as ``"unused"``. In the
            general setting with at most 10 anomalies, such a draw would leave the test
            set without anomalies, so only n are drawn and a warning is logged.

    Raises:
        ValueError: unknown setting, unknown ``known_class`` (the message lists the valid
            classes), more anomalies requested than exist (the message gives the number
            available), a contamination that needs more anomalies than remain, or a
            seed that is not a non-negative integer.
    """
    check_split_arguments(setting, n_anomaly, known_class, contamination, seed)
    if setting == "anomaly_free":
        n_anomaly = 0
    records = _sorted_records(records)
    train_anomalies = [r for r in records if r.split == "train" and r.label != 0]
    if train_anomalies:
        raise ValueError(
            f"{len(train_anomalies)} training record(s) have label 1, e.g. "
            f"{train_anomalies[0].path}, but the training split contains only normal images. "
            "Move anomalies to test/<defect_class>/."
        )
    train_normal = [r for r in records if r.split == "train"]
    test_records = [r for r in records if r.split == "test"]
    anomalies = [r for r in test_records if r.label == 1]
    defect_classes = sorted({r.defect_class for r in anomalies})
    if not train_normal:
        raise ValueError(
            "No normal training image among the records. Check that train/good has images."
        )

    if setting == "hard":
        if known_class not in defect_classes:
            raise ValueError(
                f"Unknown known_class {known_class!r}. "
                f"Valid defect classes: {', '.join(defect_classes)}."
            )
        pool = [r for r in anomalies if r.defect_class == known_class]
    else:
        pool = anomalies
    if n_anomaly > len(pool):
        where = f"class {known_class!r}" if setting == "hard" else "the test set"
        raise ValueError(
            f"n_anomaly={n_anomaly}, but {where} has only {len(pool)} anomalies. "
            f"Pass n_anomaly <= {len(pool)}."
        )

    rng = np.random.default_rng(seed)
    draw_size = n_anomaly
    if one_shot_from_ten and 0 < n_anomaly < REFERENCE_SHOTS:
        draw_size = min(REFERENCE_SHOTS, len(pool))
        if setting == "general" and draw_size == len(pool):
            # NOTE: a 10-shot draw would take every anomaly, so its test set has none to
            # share. Drawing only n keeps the other anomalies in the test set.
            logger.warning(
                "one_shot_from_ten: the test set has only %d anomalies, so the 10-shot "
                "draw would leave none for testing; drawing %d instead.",
                len(pool),
                n_anomaly,
            )
            draw_size = n_anomaly
    order = rng.permutation(len(pool))
    drawn = [pool[i] for i in order[:draw_size]]
    labelled = drawn[:n_anomaly]
    removed = {r.path for r in drawn}
    if setting == "hard":
        removed |= {r.path for r in pool}
    labelled_paths = {r.path for r in labelled}
    unused = [r for r in test_records if r.path in removed and r.path not in labelled_paths]
    test = [r for r in test_records if r.path not in removed]

    contaminated: list[ImageRecord] = []
    n_contaminated = round(contamination * len(train_normal))
    if n_contaminated:
        candidates = [r for r in test if r.label == 1]
        if n_contaminated > len(candidates):
            raise ValueError(
                f"contamination={contamination} needs {n_contaminated} hidden anomalies, but only "
                f"{len(candidates)} unlabelled anomalies remain in the test set. "
                "Pass a smaller fraction."
            )
        picks = rng.permutation(len(candidates))[:n_contaminated]
        contaminated = [candidates[i] for i in sorted(picks)]
        hidden = {r.path for r in contaminated}
        test = [r for r in test if r.path not in hidden]

    groups = {
        "train_normal": _sorted_records(train_normal + contaminated),
        "train_anomaly": labelled,
        "test": test,
        "unused": unused,
    }
    return _split_from_groups(groups, {r.path for r in contaminated})
