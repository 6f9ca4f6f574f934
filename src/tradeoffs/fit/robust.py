"""The fitting engine shared by the scaling laws: a Huber loss on log residuals (Hoffmann et al. 2022 fit log L
with Huber delta 1e-3), a grid of initialisations scored in one vectorised pass, scipy's trust-region least
squares from the best of them, a convergence check, and seeded bootstrap resampling of runs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from tradeoffs.errors import ConfigError, check_positive

Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class FitOptions:
    """How a law is fitted: Huber delta on log residuals, how many of the best grid points start the optimiser,
    bootstrap replicates, seed and interval level, and the decades a term's variable must span for its
    exponent to count as identified (tradeoffs.fit.identify). `max_nfev` allows for a valley the data leave
    flat: on a 29-run ladder whose loss was still falling, the optimiser took 4,000-8,000 evaluations along log E
    (no minimum within the runs' range) before meeting its tolerance."""

    huber_delta: float = 1e-3
    n_starts: int = 8
    n_bootstrap: int = 200
    seed: int = 0
    level: float = 0.95
    max_nfev: int = 20000
    min_decades: float = 1.0

    def __post_init__(self) -> None:
        check_positive("huber_delta", self.huber_delta)
        check_positive("n_starts", self.n_starts)
        check_positive("n_bootstrap", self.n_bootstrap, allow_zero=True)
        check_positive("max_nfev", self.max_nfev)
        check_positive("min_decades", self.min_decades, allow_zero=True)
        if not 0 < self.level < 1:
            raise ConfigError(f"level: must be in (0, 1), got {self.level}")

    def for_refit(self) -> FitOptions:
        """The options of a bootstrap refit: one start (the full fit's optimum), no nested bootstrap."""
        return replace(self, n_starts=1, n_bootstrap=0)


@dataclass(frozen=True)
class LogModel:
    """A law in log space over its free parameters: `predict(theta, columns)` broadcasts over leading axes
    of theta (shape (..., p)) and returns log-predictions (..., n); `jacobian(theta, columns)` is (n, p)."""

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    predict: Callable[[np.ndarray, Columns], np.ndarray]
    jacobian: Callable[[np.ndarray, Columns], np.ndarray]


@dataclass(frozen=True)
class Optimum:
    """The best of the optimiser's runs: parameters, Huber cost, whether it converged (and why not), how many
    starts reached the same cost, and which parameters sit on a bound. A parameter on its bound is a constrained
    optimum, not a failure: the data do not identify it (its bootstrap interval reaches the bound), while the
    others keep their estimates and intervals."""

    theta: np.ndarray
    cost: float
    converged: bool
    message: str
    starts_agreeing: int
    at_bound: tuple[str, ...]


def huber_cost(residuals: np.ndarray, delta: float) -> np.ndarray:
    """scipy's 'huber' objective, 0.5 delta^2 sum rho((r/delta)^2), summed over the last axis."""
    z = (residuals / delta) ** 2
    return 0.5 * delta**2 * np.where(z <= 1, z, 2 * np.sqrt(z) - 1).sum(axis=-1)


def grid(axes: Mapping[str, Sequence[float]], names: Sequence[str]) -> np.ndarray:
    """All combinations of the initial values of each parameter, as rows (in the order of `names`)."""
    return np.array(list(itertools.product(*(axes[name] for name in names))), dtype=float)


def minimise(model: LogModel, columns: Columns, log_y: np.ndarray, starts: np.ndarray, options: FitOptions) -> Optimum:
    """Fit `model` to log_y: score every start at once, run least squares (Huber, bounded) from the
    `options.n_starts` best, and keep the lowest cost. Converged means scipy met a tolerance; the parameters
    pinned to a bound are named in `at_bound` and in the message."""
    lower, upper = np.array(model.lower), np.array(model.upper)
    starts = np.clip(starts, lower, upper)
    with np.errstate(over="ignore", invalid="ignore"):
        scores = huber_cost(model.predict(starts, columns) - log_y, options.huber_delta)
    order = [i for i in np.argsort(scores) if np.isfinite(scores[i])][: options.n_starts]
    runs = []
    for index in order:
        solution = least_squares(
            lambda theta: model.predict(theta, columns) - log_y,
            starts[index],
            jac=lambda theta: model.jacobian(theta, columns),
            bounds=(lower, upper),
            loss="huber",
            f_scale=options.huber_delta,
            method="trf",
            x_scale="jac",
            max_nfev=options.max_nfev,
        )
        runs.append(solution)
    succeeded = [run for run in runs if run.success and np.isfinite(run.cost)]
    if not succeeded:
        message = runs[0].message if runs else "no start gave a finite loss"
        return Optimum(np.full(len(model.names), math.nan), math.inf, False, message, 0, ())
    best = min(succeeded, key=lambda run: run.cost)
    agreeing = sum(run.cost <= best.cost * (1 + 1e-4) + 1e-15 for run in succeeded)
    span = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
    pinned = (best.x - lower <= 1e-6 * span) | (upper - best.x <= 1e-6 * span)
    at_bound = tuple(name for name, flag in zip(model.names, pinned, strict=True) if flag)
    message = f"{', '.join(at_bound)} at a bound: not identified by these runs" if at_bound else best.message
    return Optimum(best.x, float(best.cost), True, message, agreeing, at_bound)


def resample(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of one bootstrap replicate: runs drawn with replacement within each stratum (so every
    precision or setting keeps its number of runs)."""
    picks = [
        rng.choice(np.flatnonzero(strata == stratum), size=(strata == stratum).sum()) for stratum in np.unique(strata)
    ]
    return np.sort(np.concatenate(picks))


def bootstrap(
    refit: Callable[[np.ndarray], np.ndarray | None], strata: np.ndarray, options: FitOptions
) -> tuple[np.ndarray, int]:
    """Refit on `options.n_bootstrap` replicates (seeded by options.seed); `refit(indices)` returns the
    replicate's parameter vector, or None when that replicate cannot be fitted. Returns the successful
    replicates (rows) and the number that failed."""
    rng = np.random.default_rng(options.seed)
    samples, failed = [], 0
    for _ in range(options.n_bootstrap):
        values = refit(resample(strata, rng))
        if values is None or not np.all(np.isfinite(values)):
            failed += 1
        else:
            samples.append(values)
    return (np.array(samples) if samples else np.empty((0, 0))), failed


def percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of each column (nan where there are fewer than 2 replicates)."""
    if len(samples) < 2:
        nan = np.full(samples.shape[1] if samples.ndim == 2 else 0, math.nan)
        return nan, nan
    tail = (1 - level) / 2
    low, high = np.quantile(samples, [tail, 1 - tail], axis=0)
    return low, high


def fit_quality(log_y: np.ndarray, log_prediction: np.ndarray) -> dict[str, float]:
    """R^2 of the loss itself, and the spread of log residuals."""
    y, prediction = np.exp(log_y), np.exp(log_prediction)
    total = float(((y - y.mean()) ** 2).sum())
    residual = log_y - log_prediction
    return {
        "r2": 1 - float(((y - prediction) ** 2).sum()) / total if total > 0 else math.nan,
        "rmse_log": float(np.sqrt(np.mean(residual**2))),
        "max_abs_log_residual": float(np.abs(residual).max()),
    }


def logsumexp(*terms: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """log(sum(exp(t))) of broadcast terms, with the softmax weights of each term (its derivative)."""
    stacked = np.stack(np.broadcast_arrays(*terms))
    peak = stacked.max(axis=0)
    weights = np.exp(stacked - peak)
    total = weights.sum(axis=0)
    return peak + np.log(total), list(weights / total)
