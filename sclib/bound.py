"""Likelihood bounds of one-head and two-head anomaly detection.

The SaliencyCut paper states that learning a normal head and an anomaly head gives a more
tractable and tighter lower bound of the data log-likelihood than a normal head alone. Its
formal statement was not available, so sclib reads the claim as follows.

An image ``x`` has a binary latent ``y`` (0 normal, 1 anomaly) and joint log-terms
``a_y(x) = log p(x, y)``, so ``log p(x) = logsumexp(a_0, a_1)``. For any ``q(y|x)``,
``log p(x) = L(q) + KL(q || p(y|x)) >= L(q)`` with ``L(q) = sum_y q_y (a_y - log q_y)``.

- One head: ``q`` puts all mass on ``y = 0``, so ``L_1 = a_0``.
- Two heads: ``q = softmax(h_0, h_1)``. With exact heads, ``L_2 = logsumexp(a_0, a_1)``,
  which is ``log p(x)`` itself. The improvement over one head, the gap, is
  ``softplus(a_1 - a_0) = -log p(y=0|x) >= 0``.
- ``h_1 - h_0`` is the posterior log-odds, a monotone function of the likelihood ratio, so
  by the Neyman-Pearson lemma it ranks images in the ROC-optimal order.

Deviation-trained heads are margin scores, not log-densities. ``fit_calibration`` maps
them to log-joint estimates on held-out validation data and records which samples it saw.

The bound functions (``one_head_bound`` to ``elbo``) and ``Calibration.transform`` take
NumPy arrays or torch tensors of shape (N,), or any shapes that broadcast, and return the
same kind. When the inputs mix kinds, the result is a tensor. Python floats and lists are
treated as NumPy arrays. ``likelihood_bounds`` returns a pandas DataFrame.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import expit

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor

# Columns of the table returned by ``likelihood_bounds``.
BOUND_COLUMNS = ("one_head", "two_head", "gap", "posterior_anomaly", "log_odds")

# Manifest role that a calibration must never see.
TEST_ROLE = "test"


def _to_common_kind(*values: Any) -> tuple[bool, list[ArrayLike]]:
    """Convert ``values`` to one kind: tensors if any value is a tensor, else float arrays."""
    tensors = [value for value in values if isinstance(value, torch.Tensor)]
    if not tensors:
        return False, [np.asarray(value, dtype=np.float64) for value in values]

    reference = tensors[0]
    dtype = reference.dtype if reference.is_floating_point() else torch.get_default_dtype()
    converted = [torch.as_tensor(value, dtype=dtype, device=reference.device) for value in values]
    return True, converted


def one_head_bound(a0: ArrayLike) -> ArrayLike:
    """Return the one-head bound ``L_1 = a_0``: q puts all mass on the normal class.

    Args:
        a0: ``log p(x, y=0)`` per sample, shape (N,), nats.

    Returns:
        A copy of ``a0`` as float, shape (N,), nats; never above ``log p(x)``.
    """
    is_torch, (a0,) = _to_common_kind(a0)
    return a0.clone() if is_torch else a0.copy()


def two_head_bound(a0: ArrayLike, a1: ArrayLike) -> ArrayLike:
    """Return the two-head bound with exact heads, ``logsumexp(a_0, a_1) = log p(x)``.

    Args:
        a0: ``log p(x, y=0)`` per sample, shape (N,), nats.
        a1: ``log p(x, y=1)`` per sample, shape (N,), nats; ``-inf`` is allowed.

    Returns:
        ``log(exp(a0) + exp(a1))`` computed without overflow, shape (N,), nats.
    """
    is_torch, (a0, a1) = _to_common_kind(a0, a1)
    return torch.logaddexp(a0, a1) if is_torch else np.logaddexp(a0, a1)


def bound_gap(a0: ArrayLike, a1: ArrayLike) -> ArrayLike:
    """Return the two-head minus one-head bound, ``softplus(a_1 - a_0) = -log p(y=0|x)``.

    Args:
        a0: ``log p(x, y=0)`` per sample, shape (N,), nats.
        a1: ``log p(x, y=1)`` per sample, shape (N,), nats.

    Returns:
        The gap, shape (N,), nats, ``>= 0``: about ``a1 - a0`` where ``a1 >> a0`` and
        about 0 where ``a1 << a0``.
    """
    is_torch, (a0, a1) = _to_common_kind(a0, a1)
    difference = a1 - a0
    # logaddexp(0, d) = log(1 + exp(d)) without overflow for large d or loss for small d.
    if is_torch:
        return torch.logaddexp(torch.zeros_like(difference), difference)
    return np.logaddexp(0.0, difference)


def posterior(h0: ArrayLike, h1: ArrayLike) -> ArrayLike:
    """Return ``q(y=1|x)``, the anomaly entry of ``softmax(h_0, h_1)``.

    Args:
        h0: normal-class logit per sample (a log-joint estimate), shape (N,).
        h1: anomaly-class logit per sample, shape (N,).

    Returns:
        Probability of the anomaly class, shape (N,), in [0, 1].
    """
    is_torch, (h0, h1) = _to_common_kind(h0, h1)
    return torch.sigmoid(h1 - h0) if is_torch else expit(h1 - h0)


def log_odds(h0: ArrayLike, h1: ArrayLike) -> ArrayLike:
    """Return ``h_1 - h_0``, the posterior log-odds ``log q(y=1|x) - log q(y=0|x)``.

    Higher means more anomalous, and the value rises monotonically with ``posterior``.
    """
    _, (h0, h1) = _to_common_kind(h0, h1)
    return h1 - h0


def elbo(q1: ArrayLike, a0: ArrayLike, a1: ArrayLike) -> ArrayLike:
    """Return the evidence lower bound ``L(q) = sum_y q_y (a_y - log q_y)``.

    A class with ``q_y = 0`` contributes 0, even where ``a_y = -inf``, so ``q1`` in {0, 1}
    gives no NaN (and no NaN gradient). ``L(q) <= log p(x)`` for every ``q``, with equality
    at ``q1 = posterior(a0, a1)``.

    Args:
        q1: ``q(y=1|x)`` per sample, shape (N,), in [0, 1].
        a0: ``log p(x, y=0)`` per sample, shape (N,), nats.
        a1: ``log p(x, y=1)`` per sample, shape (N,), nats.

    Returns:
        ``L(q)`` per sample, shape (N,), nats.

    Raises:
        ValueError: if some ``q1`` is outside [0, 1] or NaN.
    """
    is_torch, (q1, a0, a1) = _to_common_kind(q1, a0, a1)
    module = torch if is_torch else np
    inside = (q1 >= 0) & (q1 <= 1)
    if not bool(inside.all()):
        bad = q1[~inside].reshape(-1)[:3]
        raise ValueError(f"q1 must lie in [0, 1]; received values such as {bad.tolist()}.")

    q0 = 1 - q1
    return _elbo_term(q0, a0, module) + _elbo_term(q1, a1, module)


def _elbo_term(q: ArrayLike, a: ArrayLike, module: Any) -> ArrayLike:
    """Return ``q * (a - log q)``, or 0 where ``q == 0``."""
    has_mass = q > 0
    # Replace the unused entries first, so that neither the value nor its gradient is NaN.
    safe_q = module.where(has_mass, q, module.ones_like(q))
    safe_a = module.where(has_mass, a, module.zeros_like(a))
    term = safe_q * (safe_a - module.log(safe_q))
    return module.where(has_mass, term, module.zeros_like(term))


def _to_numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def likelihood_bounds(a0: ArrayLike, a1: ArrayLike, index: Sequence | None = None) -> pd.DataFrame:
    """Tabulate the bounds of each sample from its joint log-terms.

    Args:
        a0: ``log p(x, y=0)`` per sample, shape (N,), nats.
        a1: ``log p(x, y=1)`` per sample, shape (N,), nats.
        index: optional row labels (sample ids), length N.

    Returns:
        DataFrame with N rows and the columns ``one_head`` (``a0``), ``two_head``
        (``logsumexp(a0, a1)``), ``gap`` (``softplus(a1 - a0)``), ``posterior_anomaly``
        (``p(y=1|x)``) and ``log_odds`` (``a1 - a0``; higher = more anomalous).
    """
    a0 = _to_numpy(a0).reshape(-1)
    a1 = _to_numpy(a1).reshape(-1)
    if a0.shape != a1.shape:
        raise ValueError(
            f"a0 and a1 must have the same length; received {a0.shape} and {a1.shape}."
        )

    columns = {
        "one_head": one_head_bound(a0),
        "two_head": two_head_bound(a0, a1),
        "gap": bound_gap(a0, a1),
        "posterior_anomaly": posterior(a0, a1),
        "log_odds": log_odds(a0, a1),
    }
    return pd.DataFrame(columns, index=None if index is None else list(index))


# ---------------------------------------------------------------------------------------------
# Calibration of head scores to log-joint estimates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Map from head scores to estimated log-joint terms, fitted on validation data.

    The method is a one-dimensional Gaussian class-conditional model of the image score
    ``s = anomaly_score - normal_score``:
    ``a_y = log pi_y + log N(s; mean_y, std_y)``. The terms are therefore log-joint
    densities of the score ``s`` (nats per unit of score), not of the image. Their
    difference, the posterior ``p(y|s)`` and the gap ``softplus(a_1 - a_0)`` carry no
    units and can be compared with the same quantities of the image.

    Attributes:
        prior_anomaly: ``pi_1``, the anomaly prior used in ``a_1``; ``pi_0 = 1 - pi_1``.
        mean: ``(mean_0, mean_1)`` of the score per class.
        std: ``(std_0, std_1)`` of the score per class (equal when ``shared_variance``).
        shared_variance: whether both classes use the pooled standard deviation, which
            makes the log-odds linear in the score.
        fitted_ids: ids of the samples the fit saw, as strings, in input order.
        n_normal: number of normal validation samples.
        n_anomaly: number of anomalous validation samples.
    """

    prior_anomaly: float
    mean: tuple[float, float]
    std: tuple[float, float]
    shared_variance: bool
    fitted_ids: tuple[str, ...]
    n_normal: int
    n_anomaly: int

    def image_score(self, normal_score: ArrayLike, anomaly_score: ArrayLike) -> ArrayLike:
        """Return ``anomaly_score - normal_score``, shape (N,); higher = more anomalous."""
        _, (normal_score, anomaly_score) = _to_common_kind(normal_score, anomaly_score)
        return anomaly_score - normal_score

    def transform(
        self, normal_score: ArrayLike, anomaly_score: ArrayLike
    ) -> tuple[ArrayLike, ArrayLike]:
        """Estimate ``(a0, a1)`` from the two head scores.

        Args:
            normal_score: normal-head score per sample, shape (N,).
            anomaly_score: anomaly-head score per sample, shape (N,). A one-head model
                passes zeros.

        Returns:
            ``(a0, a1)``, each shape (N,), log-joint densities of the score in nats, of the
            same kind (NumPy or torch) as the input.
        """
        _, (normal_score, anomaly_score) = _to_common_kind(normal_score, anomaly_score)
        score = anomaly_score - normal_score
        priors = (1.0 - self.prior_anomaly, self.prior_anomaly)
        terms = []
        for label in (0, 1):
            z = (score - self.mean[label]) / self.std[label]
            log_density = -0.5 * z**2 - math.log(self.std[label]) - 0.5 * math.log(2 * math.pi)
            terms.append(math.log(priors[label]) + log_density)
        return terms[0], terms[1]

    def check_unseen(self, sample_ids: Sequence) -> None:
        """Raise ValueError if any of ``sample_ids`` was used to fit this calibration."""
        seen = set(self.fitted_ids).intersection(str(sample_id) for sample_id in sample_ids)
        if seen:
            examples = sorted(seen)[:3]
            raise ValueError(
                f"{len(seen)} sample(s) were used to fit the calibration, for example "
                f"{examples}; evaluate on samples outside the validation split."
            )

    def to_dict(self) -> dict:
        """Return the fitted parameters and sample counts (not the ids) as a plain dict."""
        return {
            "method": "gaussian_score",
            "prior_anomaly": self.prior_anomaly,
            "mean": list(self.mean),
            "std": list(self.std),
            "shared_variance": self.shared_variance,
            "n_normal": self.n_normal,
            "n_anomaly": self.n_anomaly,
        }


def _roles_for_ids(
    sample_ids: list[str],
    roles: Sequence[str] | None,
    manifest: pd.DataFrame | None,
    id_column: str,
) -> list[str] | None:
    """Look up the role of each id, from an aligned sequence or from a manifest."""
    if roles is not None and manifest is not None:
        raise ValueError("Pass either roles or manifest, not both.")
    if roles is not None:
        roles = [str(role) for role in roles]
        if len(roles) != len(sample_ids):
            raise ValueError(
                f"roles has {len(roles)} entries but sample_ids has {len(sample_ids)}; "
                "pass one role per sample."
            )
        return roles
    if manifest is None:
        return None

    if "role" not in manifest.columns:
        raise ValueError(
            f"manifest has no 'role' column; its columns are {list(manifest.columns)}."
        )
    keys = manifest[id_column] if id_column in manifest.columns else manifest.index
    role_of = dict(zip((str(key) for key in keys), manifest["role"].astype(str)))
    missing = [sample_id for sample_id in sample_ids if sample_id not in role_of]
    if missing:
        raise ValueError(
            f"{len(missing)} sample id(s) are not in the manifest (looked up in {id_column!r}), "
            f"for example {missing[:3]}; pass ids from the manifest."
        )
    return [role_of[sample_id] for sample_id in sample_ids]


def fit_calibration(
    normal_scores: ArrayLike,
    anomaly_scores: ArrayLike,
    labels: ArrayLike,
    sample_ids: Sequence,
    *,
    roles: Sequence[str] | None = None,
    manifest: pd.DataFrame | None = None,
    id_column: str = "path",
    prior_anomaly: float | None = None,
    shared_variance: bool = False,
    min_std: float = 1e-3,
) -> Calibration:
    """Fit a ``Calibration`` from head scores to log-joint estimates on validation samples.

    Fit it on a held-out validation split of the training data, never on test samples:
    given ``roles`` or a ``manifest``, the function raises if a sample is marked ``"test"``.
    The returned object records the ids it saw (``Calibration.fitted_ids``).

    Args:
        normal_scores: normal-head score per validation sample, shape (N,).
        anomaly_scores: anomaly-head score per validation sample, shape (N,); zeros for a
            one-head model.
        labels: 0 (normal) or 1 (real anomaly) per sample, shape (N,).
        sample_ids: one id per sample (a path, a name or an index), compared as strings.
        roles: optional role of each sample, aligned with ``sample_ids``.
        manifest: optional table with a ``role`` column, where the ids are looked up in
            ``id_column`` (or in the index when that column is absent).
        id_column: the manifest column that contains the ids.
        prior_anomaly: anomaly prior ``pi_1`` for ``a_1``; None uses the anomaly share of
            the validation labels. Set it when the deployment prior differs.
        shared_variance: pool the two class variances (linear log-odds in the score).
        min_std: lower limit of each standard deviation, so that a class of equal
            scores does not give an infinite density.

    Returns:
        The fitted ``Calibration``.

    Raises:
        ValueError: on a test sample, mismatched lengths, labels outside {0, 1}, fewer
            than two samples of a class, duplicate ids or a prior outside (0, 1).
    """
    normal_scores = _to_numpy(normal_scores).reshape(-1)
    anomaly_scores = _to_numpy(anomaly_scores).reshape(-1)
    labels = _to_numpy(labels).reshape(-1)
    sample_ids = [str(sample_id) for sample_id in sample_ids]
    lengths = {len(normal_scores), len(anomaly_scores), len(labels), len(sample_ids)}
    if len(lengths) != 1:
        raise ValueError(
            "normal_scores, anomaly_scores, labels and sample_ids must have one length; "
            f"received {len(normal_scores)}, {len(anomaly_scores)}, {len(labels)}, "
            f"{len(sample_ids)}."
        )
    if len(set(sample_ids)) != len(sample_ids):
        raise ValueError("sample_ids contains duplicates; pass one id per sample.")

    sample_roles = _roles_for_ids(sample_ids, roles, manifest, id_column)
    if sample_roles is not None:
        test_ids = [i for i, role in zip(sample_ids, sample_roles) if role == TEST_ROLE]
        if test_ids:
            raise ValueError(
                f"{len(test_ids)} calibration sample(s) have role 'test', for example "
                f"{test_ids[:3]}; fit the calibration on validation samples only."
            )

    if not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f"labels must be 0 (normal) or 1 (anomaly); received {sorted(set(labels.tolist()))}."
        )
    scores = anomaly_scores - normal_scores
    classes = [scores[labels == 0], scores[labels == 1]]
    counts = [len(values) for values in classes]
    if min(counts) < 2:
        raise ValueError(
            f"calibration needs at least 2 normal and 2 anomalous samples; received "
            f"{counts[0]} normal and {counts[1]} anomalous."
        )

    if prior_anomaly is None:
        prior_anomaly = counts[1] / sum(counts)
    if not 0 < prior_anomaly < 1:
        raise ValueError(f"prior_anomaly must be in (0, 1); received {prior_anomaly}.")

    means = (float(classes[0].mean()), float(classes[1].mean()))
    if shared_variance:
        pooled = sum(((values - values.mean()) ** 2).sum() for values in classes)
        stds = (math.sqrt(pooled / (sum(counts) - 2)),) * 2
    else:
        stds = tuple(float(values.std(ddof=1)) for values in classes)
    stds = tuple(max(std, min_std) for std in stds)

    calibration = Calibration(
        prior_anomaly=float(prior_anomaly),
        mean=means,
        std=stds,
        shared_variance=shared_variance,
        fitted_ids=tuple(sample_ids),
        n_normal=counts[0],
        n_anomaly=counts[1],
    )
    logger.info("Fitted calibration on %d samples: %s", len(sample_ids), calibration.to_dict())
    return calibration


def bounds_from_scores(
    scores: pd.DataFrame,
    *,
    id_column: str | None = None,
    fit_role: str = "validation",
    eval_role: str = TEST_ROLE,
    prior_anomaly: float | None = None,
    shared_variance: bool = False,
) -> tuple[Calibration, pd.DataFrame]:
    """Calibrate on the validation rows of a score table and tabulate bounds for test rows.

    Args:
        scores: one row per image with columns ``normal_score``, ``anomaly_score``,
            ``label`` (0/1) and ``role``; the ids come from ``id_column``.
        id_column: column of image ids; None picks ``sample_id`` or ``path`` when present,
            else the row index.
        fit_role: role of the rows to fit the calibration on.
        eval_role: role of the rows to evaluate.
        prior_anomaly: passed to ``fit_calibration``.
        shared_variance: passed to ``fit_calibration``.

    Returns:
        The calibration and a table of the evaluated rows: the id, ``label``,
        ``image_score`` and the columns of ``likelihood_bounds``. The ``one_head`` and
        ``two_head`` values are log-densities of the score, see ``Calibration``.
    """
    required = {"normal_score", "anomaly_score", "label", "role"}
    missing = required.difference(scores.columns)
    if missing:
        raise ValueError(
            f"scores lacks the column(s) {sorted(missing)}; it has {list(scores.columns)}."
        )
    if id_column is None:
        id_column = next((name for name in ("sample_id", "path") if name in scores.columns), None)
    ids = scores[id_column].astype(str) if id_column else scores.index.astype(str).to_series()
    table = scores.assign(sample_id=ids.to_numpy())

    fit_rows = table[table["role"] == fit_role]
    eval_rows = table[table["role"] == eval_role]
    if eval_rows.empty:
        raise ValueError(
            f"scores has no rows with role {eval_role!r}; its roles are "
            f"{sorted(set(table['role']))}."
        )

    calibration = fit_calibration(
        fit_rows["normal_score"].to_numpy(),
        fit_rows["anomaly_score"].to_numpy(),
        fit_rows["label"].to_numpy(),
        fit_rows["sample_id"].tolist(),
        manifest=table,
        id_column="sample_id",
        prior_anomaly=prior_anomaly,
        shared_variance=shared_variance,
    )
    calibration.check_unseen(eval_rows["sample_id"])

    normal_score = eval_rows["normal_score"].to_numpy(dtype=np.float64)
    anomaly_score = eval_rows["anomaly_score"].to_numpy(dtype=np.float64)
    a0, a1 = calibration.transform(normal_score, anomaly_score)
    bounds = likelihood_bounds(a0, a1)
    bounds.insert(0, "image_score", anomaly_score - normal_score)
    bounds.insert(0, "label", eval_rows["label"].to_numpy())
    bounds.insert(0, "sample_id", eval_rows["sample_id"].to_numpy())
    return calibration, bounds
