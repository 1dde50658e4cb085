"""A two-dimensional toy problem where the likelihood bounds can be checked exactly.

``ToyMixture`` is a two-component Gaussian mixture in the plane: normal points come from
``N(0, I)`` and anomalies, with prior ``prior``, from ``N(separation * d, I)`` where
``d = (1, 1) / sqrt(2)``. Its joint log-terms ``a_y(x) = log p(x, y)`` and its density
``log p(x)`` are known in closed form, so the bounds of ``sclib.bound`` can be compared
with the exact log-likelihood.

``train_toy_heads`` trains, with the deviation loss, a two-head model (a normal MLP head
and an anomaly MLP head on ``x``) and a one-head model (a normal head only), then fits
``sclib.bound.fit_calibration`` on held-out validation points. ``toy_bound_table``
evaluates both on fresh test points. ``toy_figure_data`` computes, without training,
what the interactive explorer draws.

Points are NumPy float64 arrays of shape (N, 2); labels are 0 (normal) or 1 (anomaly).
Everything runs on the CPU in seconds.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.metrics import roc_auc_score
from torch import nn

from sclib import bound
from sclib.losses import deviation_loss

logger = logging.getLogger(__name__)

# Unit vector from the normal mean to the anomaly mean.
_DIRECTION = np.array([1.0, 1.0]) / math.sqrt(2.0)

# Seed-sequence keys, so that one seed gives different training, validation and test points.
_TRAIN_STREAM, _VALIDATION_STREAM, _TEST_STREAM, _FIGURE_STREAM = 0, 1, 2, 3


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


@dataclass(frozen=True)
class ToyMixture:
    """Two-component Gaussian mixture in the plane with exact log-densities.

    Attributes:
        prior: anomaly prior ``p(y=1)``, in (0, 1).
        separation: distance between the two component means, ``>= 0``.
        seed: seed of the generator that ``sample`` uses when none is passed.
    """

    prior: float = 0.1
    separation: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.prior < 1:
            raise ValueError(f"prior must be in (0, 1); received {self.prior}.")
        if not self.separation >= 0:
            raise ValueError(f"separation must be >= 0; received {self.separation}.")

    @property
    def means(self) -> np.ndarray:
        """Component means, shape (2, 2): row 0 normal, row 1 anomaly."""
        return np.stack([np.zeros(2), self.separation * _DIRECTION])

    def sample(
        self, n: int, generator: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` labelled points.

        Args:
            n: number of points.
            generator: source of randomness; None uses a new generator seeded with
                ``self.seed``, so repeated calls return the same points.

        Returns:
            ``(x, y)``: points, float64 (n, 2), and labels, int64 (n,), 1 = anomaly.
        """
        generator = np.random.default_rng(self.seed) if generator is None else generator
        labels = (generator.random(n) < self.prior).astype(np.int64)
        points = generator.standard_normal((n, 2)) + self.means[labels]
        return points, labels

    def log_joint(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the exact ``(a0, a1)`` with ``a_y = log p(x, y)``, each float64 (N,), nats."""
        x = np.asarray(x, dtype=np.float64)
        priors = (1.0 - self.prior, self.prior)
        terms = []
        for label in (0, 1):
            squared_distance = ((x - self.means[label]) ** 2).sum(axis=-1)
            terms.append(math.log(priors[label]) - math.log(2 * math.pi) - 0.5 * squared_distance)
        return terms[0], terms[1]

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """Return the exact ``log p(x)``, float64 (N,), nats.

        It is computed with ``scipy.stats`` and not from ``log_joint``, so each one checks
        the other.
        """
        x = np.asarray(x, dtype=np.float64)
        component_logpdf = np.stack(
            [multivariate_normal(mean, np.eye(2)).logpdf(x) for mean in self.means], axis=-1
        )
        weights = np.array([1.0 - self.prior, self.prior])
        return logsumexp(component_logpdf, axis=-1, b=weights)


# ---------------------------------------------------------------------------------------------
# Heads and training
# ---------------------------------------------------------------------------------------------


class ToyHead(nn.Module):
    """MLP head on a 2-D point: Linear, ReLU, Linear, ReLU, Linear, absolute value.

    The absolute value makes the score non-negative, like the image heads of sclib.
    """

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(2, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Map points (N, 2) to scores (N,)."""
        return self.layers(points).squeeze(-1).abs()  # (N, 1) -> (N,)


def _initialise(module: nn.Module, generator: torch.Generator) -> None:
    """Draw every parameter from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with ``generator``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            limit = 1.0 / math.sqrt(layer.in_features)
            with torch.no_grad():
                layer.weight.uniform_(-limit, limit, generator=generator)
                layer.bias.uniform_(-limit, limit, generator=generator)


@dataclass
class ToyHeads:
    """A trained two-head model, a trained one-head model and the two-head calibration.

    Attributes:
        mixture: the problem the heads were trained on.
        normal_head: normal head of the two-head model; high on normal points.
        anomaly_head: anomaly head of the two-head model; high on anomalies.
        one_head: the normal head of the one-head model.
        calibration: ``sclib.bound.Calibration`` of the two-head scores, fitted on the
            validation points only (their ids are ``validation-<i>``).
        history: one row per step: ``step``, ``loss_two_head``, ``loss_one_head``.
    """

    mixture: ToyMixture
    normal_head: ToyHead
    anomaly_head: ToyHead
    one_head: ToyHead
    calibration: bound.Calibration
    history: pd.DataFrame = field(repr=False)

    @torch.no_grad()
    def scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the two-head ``(normal_score, anomaly_score)``, each float64 (N,)."""
        points = torch.as_tensor(x, dtype=torch.float32)
        return (
            self.normal_head(points).double().numpy(),
            self.anomaly_head(points).double().numpy(),
        )

    @torch.no_grad()
    def one_head_score(self, x: np.ndarray) -> np.ndarray:
        """Return the one-head model's normal score, float64 (N,); high = normal."""
        return self.one_head(torch.as_tensor(x, dtype=torch.float32)).double().numpy()


def train_toy_heads(
    mixture: ToyMixture,
    n_train: int = 2000,
    steps: int = 300,
    seed: int = 0,
    n_validation: int = 1000,
    hidden: int = 32,
    lr: float = 1e-2,
) -> ToyHeads:
    """Train the two-head and one-head toy models and calibrate the two-head scores.

    Both models train full-batch with Adam on the same ``n_train`` points. The normal head
    has target 1 on normal points, the anomaly head target 1 on anomalies, both with
    ``sclib.losses.deviation_loss`` (fixed reference, margin 5). The calibration is then fitted on ``n_validation`` further points, drawn
    from a separate stream of ``seed``.

    Args:
        mixture: the toy problem.
        n_train: number of training points.
        steps: number of optimiser steps.
        seed: seed of the data draws and of the weight initialisation.
        n_validation: number of validation points for the calibration; it needs at least
            two of each class.
        hidden: width of the hidden layers.
        lr: Adam learning rate.

    Returns:
        The trained ``ToyHeads``.
    """
    points, labels = mixture.sample(n_train, _rng(seed, _TRAIN_STREAM))
    points_t = torch.as_tensor(points, dtype=torch.float32)
    is_normal = torch.as_tensor(labels == 0, dtype=torch.float32)
    is_anomaly = 1.0 - is_normal

    generator = torch.Generator().manual_seed(seed)
    normal_head, anomaly_head, one_head = ToyHead(hidden), ToyHead(hidden), ToyHead(hidden)
    for head in (normal_head, anomaly_head, one_head):
        _initialise(head, generator)
    two_head_parameters = [*normal_head.parameters(), *anomaly_head.parameters()]
    two_head_optimiser = torch.optim.Adam(two_head_parameters, lr=lr)
    one_head_optimiser = torch.optim.Adam(one_head.parameters(), lr=lr)

    rows = []
    for step in range(steps):
        two_head_loss = deviation_loss(normal_head(points_t), is_normal) + deviation_loss(
            anomaly_head(points_t), is_anomaly
        )
        two_head_optimiser.zero_grad()
        two_head_loss.backward()
        two_head_optimiser.step()

        one_head_loss = deviation_loss(one_head(points_t), is_normal)
        one_head_optimiser.zero_grad()
        one_head_loss.backward()
        one_head_optimiser.step()
        rows.append((step, two_head_loss.item(), one_head_loss.item()))
    history = pd.DataFrame(rows, columns=["step", "loss_two_head", "loss_one_head"])
    logger.info("Trained toy heads: final loss two-head %.4f, one-head %.4f", *rows[-1][1:])

    validation_rng = _rng(seed, _VALIDATION_STREAM)
    validation_points, validation_labels = mixture.sample(n_validation, validation_rng)
    with torch.no_grad():
        validation_points_t = torch.as_tensor(validation_points, dtype=torch.float32)
        normal_score = normal_head(validation_points_t).double().numpy()
        anomaly_score = anomaly_head(validation_points_t).double().numpy()
    calibration = bound.fit_calibration(
        normal_score,
        anomaly_score,
        validation_labels,
        [f"validation-{i}" for i in range(n_validation)],
        roles=["validation"] * n_validation,
        prior_anomaly=mixture.prior,
    )
    return ToyHeads(mixture, normal_head, anomaly_head, one_head, calibration, history)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def toy_bound_table(
    mixture: ToyMixture, heads: ToyHeads, n_test: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Compare exact and model-based bounds with the exact ``log p(x)`` on test points.

    The test points come from a stream of ``seed`` that training and validation do not use.
    A model's bound is the ELBO ``L(q)`` of ``sclib.bound.elbo`` with the model's ``q`` and
    the exact joint terms, so it is a true lower bound of ``log p(x)``:

    - ``one_head_model``: a one-head model has no term for ``y = 1``, so its ``q`` puts all
      mass on ``y = 0`` and its bound is ``a0``, whatever its weights.
    - ``two_head_model``: ``q`` is the calibrated posterior of the two-head scores; the
      bound equals ``log p(x)`` exactly where that posterior is exact.

    Args:
        mixture: the toy problem (normally ``heads.mixture``).
        heads: trained heads from ``train_toy_heads``.
        n_test: number of test points.
        seed: seed of the test draw.

    Returns:
        One row per test point. Point: ``sample_id``, ``x0``, ``x1``, ``y``.
        Exact: ``log_p``, ``a0``, ``a1``, ``one_head_exact`` (``a0``), ``two_head_exact``
        (``logsumexp(a0, a1)``), ``gap_exact`` (``softplus(a1 - a0)``),
        ``posterior_exact``, ``log_odds_exact``.
        Model: ``normal_score``, ``anomaly_score``, ``two_head_score`` (anomaly minus
        normal), ``one_head_score`` (minus the one-head normal score), ``log_odds_model``,
        ``posterior_model``, ``one_head_model``, ``two_head_model``, ``gap_model``
        (``two_head_model - one_head_model``) and ``gap_predicted``
        (``softplus(log_odds_model)``, the gap that the calibrated heads predict).
    """
    points, labels = mixture.sample(n_test, _rng(seed, _TEST_STREAM))
    sample_ids = [f"test-{i}" for i in range(n_test)]
    heads.calibration.check_unseen(sample_ids)
    a0, a1 = mixture.log_joint(points)

    normal_score, anomaly_score = heads.scores(points)
    estimated_a0, estimated_a1 = heads.calibration.transform(normal_score, anomaly_score)
    posterior_model = bound.posterior(estimated_a0, estimated_a1)
    one_head_model = bound.elbo(np.zeros(n_test), a0, a1)
    two_head_model = bound.elbo(posterior_model, a0, a1)

    return pd.DataFrame(
        {
            "sample_id": sample_ids,
            "x0": points[:, 0],
            "x1": points[:, 1],
            "y": labels,
            "log_p": mixture.log_density(points),
            "a0": a0,
            "a1": a1,
            "one_head_exact": bound.one_head_bound(a0),
            "two_head_exact": bound.two_head_bound(a0, a1),
            "gap_exact": bound.bound_gap(a0, a1),
            "posterior_exact": bound.posterior(a0, a1),
            "log_odds_exact": bound.log_odds(a0, a1),
            "normal_score": normal_score,
            "anomaly_score": anomaly_score,
            "two_head_score": anomaly_score - normal_score,
            "one_head_score": -heads.one_head_score(points),
            "log_odds_model": bound.log_odds(estimated_a0, estimated_a1),
            "posterior_model": posterior_model,
            "one_head_model": one_head_model,
            "two_head_model": two_head_model,
            "gap_model": two_head_model - one_head_model,
            "gap_predicted": bound.bound_gap(estimated_a0, estimated_a1),
        }
    )


def toy_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Summarise a ``toy_bound_table`` per class: mean gaps, bound errors and AUROC.

    Returns:
        Rows ``normal``, ``anomaly`` and ``all``. The columns ``gap_exact``, ``gap_model``
        and ``gap_predicted`` are mean gaps in nats. ``one_head_error`` and
        ``two_head_error`` are the mean of ``log_p`` minus the model bound, in nats and
        ``>= 0``. Row ``all`` also carries the AUROC of ``log_odds_exact``,
        ``two_head_score`` and ``one_head_score`` (NaN in the other rows).
    """
    groups = {"normal": table[table["y"] == 0], "anomaly": table[table["y"] == 1], "all": table}
    rows = {}
    for name, rows_of_class in groups.items():
        rows[name] = {
            "n": len(rows_of_class),
            "gap_exact": rows_of_class["gap_exact"].mean(),
            "gap_model": rows_of_class["gap_model"].mean(),
            "gap_predicted": rows_of_class["gap_predicted"].mean(),
            "one_head_error": (rows_of_class["log_p"] - rows_of_class["one_head_model"]).mean(),
            "two_head_error": (rows_of_class["log_p"] - rows_of_class["two_head_model"]).mean(),
        }
    for column in ("log_odds_exact", "two_head_score", "one_head_score"):
        rows["all"][f"auroc_{column}"] = roc_auc_score(table["y"], table[column])
    return pd.DataFrame.from_dict(rows, orient="index")


# ---------------------------------------------------------------------------------------------
# Figure data and the interactive explorer
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyFigureData:
    """Exact quantities of a ``ToyMixture`` on a grid, on a line and on a sample.

    Attributes:
        axis: grid coordinates, shape (G,), shared by both coordinates.
        log_p: ``log p(x)`` on the grid, shape (G, G), indexed ``[x1, x0]``.
        gap: ``softplus(a1 - a0)`` on the grid, shape (G, G), indexed ``[x1, x0]``.
        line_position: signed distance from the normal mean along ``(1, 1) / sqrt(2)``,
            shape (L,).
        line_log_p: ``log p(x)`` on that line, shape (L,); equal to the two-head bound.
        line_one_head: ``a0`` on that line, shape (L,).
        points: sample points, shape (N, 2).
        labels: sample labels, shape (N,).
        mean_gap: mean exact gap over the sample: keys ``normal``, ``anomaly``, ``all``.
    """

    axis: np.ndarray
    log_p: np.ndarray
    gap: np.ndarray
    line_position: np.ndarray
    line_log_p: np.ndarray
    line_one_head: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    mean_gap: dict


def toy_figure_data(
    prior: float = 0.1,
    separation: float = 3.0,
    grid_size: int = 101,
    n_points: int = 400,
    seed: int = 0,
) -> ToyFigureData:
    """Compute the exact bounds of ``ToyMixture(prior, separation)`` for one figure.

    This is the pure computation behind ``plot_toy_figure`` and ``toy_explorer``; it trains
    nothing and takes milliseconds.
    """
    mixture = ToyMixture(prior=prior, separation=separation, seed=seed)
    low, high = -4.0, separation / math.sqrt(2.0) + 4.0
    axis = np.linspace(low, high, grid_size)
    grid_x0, grid_x1 = np.meshgrid(axis, axis)  # (G, G) each, indexed [x1, x0]
    grid_points = np.stack([grid_x0.ravel(), grid_x1.ravel()], axis=-1)  # (G*G, 2)
    a0, a1 = mixture.log_joint(grid_points)

    line_position = np.linspace(-4.0, separation + 4.0, 200)
    line_points = line_position[:, None] * _DIRECTION  # (L,) -> (L, 2)
    line_a0, line_a1 = mixture.log_joint(line_points)

    points, labels = mixture.sample(n_points, _rng(seed, _FIGURE_STREAM))
    sample_gap = bound.bound_gap(*mixture.log_joint(points))
    mean_gap = {
        "normal": float(sample_gap[labels == 0].mean()) if (labels == 0).any() else float("nan"),
        "anomaly": float(sample_gap[labels == 1].mean()) if (labels == 1).any() else float("nan"),
        "all": float(sample_gap.mean()),
    }
    return ToyFigureData(
        axis=axis,
        log_p=bound.two_head_bound(a0, a1).reshape(grid_size, grid_size),
        gap=bound.bound_gap(a0, a1).reshape(grid_size, grid_size),
        line_position=line_position,
        line_log_p=bound.two_head_bound(line_a0, line_a1),
        line_one_head=bound.one_head_bound(line_a0),
        points=points,
        labels=labels,
        mean_gap=mean_gap,
    )


def plot_toy_figure(data: ToyFigureData, figure=None):
    """Draw ``log p(x)``, the gap map and the bounds along the line through both means.

    Args:
        data: output of ``toy_figure_data``.
        figure: a matplotlib Figure to draw into (it is cleared); None creates one.

    Returns:
        The matplotlib Figure with three panels.
    """
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(13, 3.8)) if figure is None else figure
    figure.clear()
    log_p_axes, gap_axes, line_axes = figure.subplots(1, 3)
    extent = (data.axis[0], data.axis[-1], data.axis[0], data.axis[-1])

    image = log_p_axes.imshow(data.log_p, origin="lower", extent=extent, vmin=-12, cmap="viridis")
    figure.colorbar(image, ax=log_p_axes, label="nats")
    for label, colour in ((0, "white"), (1, "red")):
        chosen = data.points[data.labels == label]
        name = "normal" if label == 0 else "anomaly"
        log_p_axes.scatter(chosen[:, 0], chosen[:, 1], s=4, c=colour, label=name)
    log_p_axes.set(title="log p(x) and a sample", xlabel="x0", ylabel="x1")
    log_p_axes.legend(loc="upper left", fontsize=8)

    image = gap_axes.imshow(data.gap, origin="lower", extent=extent, cmap="magma")
    figure.colorbar(image, ax=gap_axes, label="nats")
    gap_axes.set(title="gap = softplus(a1 - a0)", xlabel="x0", ylabel="x1")

    line_axes.plot(data.line_position, data.line_log_p, label="two-head bound = log p(x)")
    line_axes.plot(data.line_position, data.line_one_head, "--", label="one-head bound a0")
    line_axes.set(title="along the line through both means", xlabel="position", ylabel="nats")
    line_axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def toy_explorer():
    """Return an ipywidgets view with sliders for the anomaly prior and the separation.

    Each slider move redraws ``plot_toy_figure(toy_figure_data(prior, separation))`` and
    prints the mean exact gap per class.
    """
    # TODO: move this view to sclib.widgets, next to the other explorers.
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    prior_slider = widgets.FloatSlider(value=0.1, min=0.01, max=0.5, step=0.01, description="prior")
    separation_slider = widgets.FloatSlider(
        value=3.0, min=0.0, max=8.0, step=0.25, description="separation"
    )
    output = widgets.Output()

    def redraw(_change=None) -> None:
        data = toy_figure_data(prior_slider.value, separation_slider.value)
        with output:
            output.clear_output(wait=True)
            plot_toy_figure(data)
            plt.show()
            gaps = ", ".join(f"{name} {value:.3f}" for name, value in data.mean_gap.items())
            print(f"mean exact gap (nats): {gaps}")

    prior_slider.observe(redraw, names="value")
    separation_slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([prior_slider, separation_slider]), output])
