"""Scaling laws of the final loss in model size N and training tokens D, fitted in log space.

- Chinchilla (Hoffmann et al. 2022, approach 3): L = E + A / N^alpha + B / D^beta, fitted as
  log L = LSE(a - alpha log N, b - beta log D, e) with a = log A, b = log B, e = log E, from Hoffmann's grid
  of initialisations. Derived: the compute-optimal exponents N_opt ~ C^(beta/(alpha+beta)),
  D_opt ~ C^(alpha/(alpha+beta)).
- Quartet (Castro et al. 2025): L = (A / (N effN)^alpha + B / (D effD)^beta)^gamma + E. The shared
  parameters are fitted on the full-precision (reference) runs with effN = effD = 1; then effN and effD of
  every other precision with the shared parameters held, so each precision's cost is an effective
  parameter (and data) multiplier. The bootstrap repeats both stages on every replicate, so the intervals of
  effN and effD include the uncertainty of the shared fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from tradeoffs.errors import ConfigError
from tradeoffs.fit.identify import coverage_reason, decades, identify
from tradeoffs.fit.result import NOT_CONVERGED, OK, TOO_FEW_RUNS, Estimate, FitResult, cannot_fit
from tradeoffs.fit.robust import (
    Columns,
    FitOptions,
    LogModel,
    Optimum,
    bootstrap,
    fit_quality,
    grid,
    huber_cost,
    logsumexp,
    minimise,
    percentile_interval,
)

CHINCHILLA_PAPER = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al. 2022
QUARTET_PAPER = {"alpha": 0.589, "beta": 0.544, "gamma": 0.274}  # Castro et al. 2025


def chinchilla_loss(n_params, tokens, *, E, A, B, alpha, beta):
    """L = E + A / N^alpha + B / D^beta."""
    return E + A / np.asarray(n_params, float) ** alpha + B / np.asarray(tokens, float) ** beta


def quartet_loss(n_params, tokens, *, A, alpha, B, beta, gamma, E, eff_n=1.0, eff_d=1.0):
    """L = (A / (N effN)^alpha + B / (D effD)^beta)^gamma + E."""
    n, d = np.asarray(n_params, float) * eff_n, np.asarray(tokens, float) * eff_d
    return (A / n**alpha + B / d**beta) ** gamma + E


# Chinchilla in log space: theta = (a, alpha, b, beta, e).


def _chinchilla_terms(theta: np.ndarray, columns: Columns):
    a, alpha, b, beta, e = (theta[..., i, None] for i in range(5))
    return logsumexp(a - alpha * columns["log_n"], b - beta * columns["log_d"], e + 0 * columns["log_n"])


def _chinchilla_jacobian(theta: np.ndarray, columns: Columns) -> np.ndarray:
    _, (w_n, w_d, w_e) = _chinchilla_terms(theta, columns)
    return np.stack([w_n, -w_n * columns["log_n"], w_d, -w_d * columns["log_d"], w_e], axis=-1)


CHINCHILLA = LogModel(
    names=("a", "alpha", "b", "beta", "e"),
    lower=(-20.0, 0.0, -20.0, 0.0, -10.0),
    upper=(60.0, 4.0, 60.0, 4.0, 5.0),
    predict=lambda theta, columns: _chinchilla_terms(theta, columns)[0],
    jacobian=_chinchilla_jacobian,
)
CHINCHILLA_GRID = {  # Hoffmann et al. 2022, appendix D.2
    "a": (0, 5, 10, 15, 20, 25),
    "alpha": (0, 0.5, 1, 1.5, 2),
    "b": (0, 5, 10, 15, 20, 25),
    "beta": (0, 0.5, 1, 1.5, 2),
    "e": (-1, -0.5, 0, 0.5, 1, 1.5),
}
CHINCHILLA_ESTIMATES = ("E", "A", "B", "alpha", "beta", "n_opt_exponent", "d_opt_exponent")
EXPONENTS = {"N": "alpha", "D": "beta"}  # the exponent of each term of both laws
CHINCHILLA_TERMS = {
    "E": ("N", "D"),
    "A": ("N",),
    "alpha": ("N",),
    "B": ("D",),
    "beta": ("D",),
    "n_opt_exponent": ("N", "D"),
    "d_opt_exponent": ("N", "D"),
}


def _natural_bounds(model: LogModel, logged: tuple[str, ...], names: dict[str, str]) -> dict[str, tuple[float, float]]:
    """The optimiser's bounds of `model` in natural units, keyed by the natural names (`names`: log-space
    name -> natural name); the parameters in `logged` are fitted as logs."""
    bounds = {}
    for name, low, high in zip(model.names, model.lower, model.upper, strict=True):
        if name in names:
            bounds[names[name]] = (math.exp(low), math.exp(high)) if name in logged else (low, high)
    return bounds


def _chinchilla_natural(theta: np.ndarray) -> np.ndarray:
    a, alpha, b, beta, e = theta
    return np.array([math.exp(e), math.exp(a), math.exp(b), alpha, beta, beta / (alpha + beta), alpha / (alpha + beta)])


# Quartet in log space: shared theta = (a, alpha, b, beta, gamma, e); per precision (u, v) = log(effN, effD).


def _quartet_terms(shared: np.ndarray, u, v, columns: Columns):
    a, alpha, b, beta, gamma, e = (shared[..., i, None] for i in range(6))
    log_n, log_d = columns["log_n"] + u, columns["log_d"] + v
    inner, (r_n, r_d) = logsumexp(a - alpha * log_n, b - beta * log_d)
    out, (q_inner, q_e) = logsumexp(gamma * inner, e + 0 * log_n)
    return out, inner, q_inner, q_e, r_n, r_d, log_n, log_d, alpha, beta, gamma


def _quartet_shared_jacobian(theta: np.ndarray, columns: Columns) -> np.ndarray:
    _, inner, q, q_e, r_n, r_d, log_n, log_d, _, _, gamma = _quartet_terms(theta, 0.0, 0.0, columns)
    g = q * gamma
    return np.stack([g * r_n, -g * r_n * log_n, g * r_d, -g * r_d * log_d, q * inner, q_e], axis=-1)


QUARTET_SHARED = LogModel(
    names=("a", "alpha", "b", "beta", "gamma", "e"),
    lower=(-20.0, 0.0, -20.0, 0.0, 1e-3, -10.0),
    upper=(80.0, 4.0, 80.0, 4.0, 10.0, 5.0),
    predict=lambda theta, columns: _quartet_terms(theta, 0.0, 0.0, columns)[0],
    jacobian=_quartet_shared_jacobian,
)
QUARTET_GRID = {
    "a": (0, 4, 8, 12, 16, 20),
    "alpha": (0.25, 0.5, 1, 1.5),
    "b": (0, 4, 8, 12, 16, 20),
    "beta": (0.25, 0.5, 1, 1.5),
    "gamma": (0.25, 0.5, 1),
    "e": (-1, 0, 0.5, 1, 1.5),
}
EFFICIENCY_GRID = {"u": tuple(np.log([0.1, 0.3, 0.6, 1.0, 1.5])), "v": tuple(np.log([0.1, 0.3, 0.6, 1.0, 1.5]))}
EFFICIENCY_BOUNDS = (math.log(1e-3), math.log(1e2))
QUARTET_ESTIMATES = ("A", "alpha", "B", "beta", "gamma", "E")
QUARTET_TERMS = {
    "A": ("N",),
    "alpha": ("N",),
    "B": ("D",),
    "beta": ("D",),
    "gamma": ("N", "D"),
    "E": ("N", "D"),
    "eff_n": ("N",),
    "eff_d": ("D",),
}


def _efficiency_model(shared: np.ndarray) -> LogModel:
    """The law over (log effN, log effD) of one precision, the shared parameters held."""

    def predict(theta: np.ndarray, columns: Columns) -> np.ndarray:
        return _quartet_terms(shared, theta[..., 0, None], theta[..., 1, None], columns)[0]

    def jacobian(theta: np.ndarray, columns: Columns) -> np.ndarray:
        _, _, q, _, r_n, r_d, _, _, alpha, beta, gamma = _quartet_terms(shared, theta[0], theta[1], columns)
        return np.stack([-q * gamma * r_n * alpha, -q * gamma * r_d * beta], axis=-1)

    low, high = EFFICIENCY_BOUNDS
    return LogModel(("log_eff_n", "log_eff_d"), (low, low), (high, high), predict, jacobian)


def _quartet_natural(shared: np.ndarray) -> list[float]:
    a, alpha, b, beta, gamma, e = shared
    return [math.exp(a), alpha, math.exp(b), beta, gamma, math.exp(e)]


# Input checks shared by the laws.


@dataclass(frozen=True)
class _Runs:
    run_ids: tuple[str, ...]
    log_n: np.ndarray
    log_d: np.ndarray
    log_loss: np.ndarray
    excluded: int

    def columns(self, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        pick = slice(None) if indices is None else indices
        return {"log_n": self.log_n[pick], "log_d": self.log_d[pick]}


def run_ids_or_rows(run_ids: Sequence[str] | None, count: int) -> tuple[str, ...]:
    """The given run ids (as strings), or row0, row1, ... when none are given."""
    if run_ids is None:
        return tuple(f"row{i}" for i in range(count))
    if len(run_ids) != count:
        raise ConfigError(f"run_ids: {len(run_ids)} ids for {count} runs")
    return tuple(str(run) for run in run_ids)


def checked_runs(n_params, tokens, loss, run_ids) -> tuple[_Runs, np.ndarray]:
    """Validate the columns; runs whose loss is not finite (diverged) are left out and counted. Returns the
    runs and the mask of kept rows."""
    columns = {"n_params": np.asarray(n_params, float), "tokens": np.asarray(tokens, float)}
    loss = np.asarray(loss, float)
    for key, values in [*columns.items(), ("loss", loss)]:
        if values.ndim != 1 or len(values) != len(loss):
            raise ConfigError(f"{key}: expected one value per run ({len(loss)}), got shape {values.shape}")
    for key, values in columns.items():
        if not np.all(np.isfinite(values) & (values > 0)):
            bad = values[~(np.isfinite(values) & (values > 0))][0]
            raise ConfigError(f"{key}: every value must be a positive finite number, got {bad}")
    if np.any(np.isfinite(loss) & (loss <= 0)):
        raise ConfigError(f"loss: a scaling law needs positive losses, got {loss[np.isfinite(loss) & (loss <= 0)][0]}")
    ids = run_ids_or_rows(run_ids, len(loss))
    keep = np.isfinite(loss)
    runs = _Runs(
        run_ids=tuple(i for i, k in zip(ids, keep, strict=True) if k),
        log_n=np.log(columns["n_params"][keep]),
        log_d=np.log(columns["tokens"][keep]),
        log_loss=np.log(loss[keep]),
        excluded=int((~keep).sum()),
    )
    return runs, keep


def _coverage(runs: _Runs, rows: np.ndarray, options: FitOptions) -> tuple[dict[str, str], dict[str, float]]:
    """Why the runs `rows` cannot identify each term (N, D; '' where they can), and their spans as quality
    values: `n_decades`, `d_decades` and the distinct values `n_values`, `d_values`."""
    log_n, log_d = runs.log_n[rows], runs.log_d[rows]
    reasons = {symbol: coverage_reason(symbol, v, options.min_decades) for symbol, v in (("N", log_n), ("D", log_d))}
    spans = {
        "n_decades": decades(log_n),
        "d_decades": decades(log_d),
        "n_values": float(len(np.unique(log_n))),
        "d_values": float(len(np.unique(log_d))),
    }
    return reasons, spans


CHINCHILLA_NAMES = {"a": "A", "alpha": "alpha", "b": "B", "beta": "beta", "e": "E"}
QUARTET_NAMES = {**CHINCHILLA_NAMES, "gamma": "gamma"}


def _shortage(runs: _Runs, indices: np.ndarray, parameters: int, what: str) -> str:
    """Why these runs cannot determine `parameters` parameters ("" when they can)."""
    if len(indices) <= parameters:
        return f"{len(indices)} {what} for {parameters} parameters (need at least {parameters + 1})"
    for key, label in (("log_n", "model sizes N"), ("log_d", "token counts D")):
        if len(np.unique(getattr(runs, key)[indices])) < 2:
            return f"{what} span a single value of {label}: its exponent is not identified"
    return ""


def _estimates(names, point, samples, level, labels=None, status=OK, reason="") -> list[Estimate]:
    low, high = percentile_interval(samples, level) if len(samples) else ([math.nan] * len(names),) * 2
    return [
        Estimate(name, float(v), float(lo), float(hi), labels or {}, status, reason)
        for name, v, lo, hi in zip(names, point, low, high, strict=True)
    ]


def _bootstrap_quality(optimum: Optimum, samples: np.ndarray, failed: int, excluded: int) -> dict[str, float]:
    return {
        "huber_cost": optimum.cost,
        "starts_agreeing": optimum.starts_agreeing,
        "n_bootstrap_ok": len(samples),
        "n_bootstrap_failed": failed,
        "n_excluded_nonfinite": excluded,
    }


def _at_bound_reason(optimum: Optimum, prefix: str = "") -> str:
    """The parameters an optimum pinned to a bound, as a fit's reason ('' when none)."""
    return f"{prefix}{optimum.message}" if optimum.at_bound else ""


def _bootstrap_reason(samples: np.ndarray, failed: int) -> str:
    if failed and failed >= len(samples):
        return f"{failed} of {failed + len(samples)} bootstrap replicates could not be fitted: intervals unreliable"
    return ""


def fit_chinchilla(
    n_params: Sequence[float],
    tokens: Sequence[float],
    loss: Sequence[float],
    run_ids: Sequence[str] | None = None,
    options: FitOptions | None = None,
) -> FitResult:
    """Fit L = E + A/N^alpha + B/D^beta to runs (N: parameters, D: training tokens, L: final loss), with
    bootstrap intervals from resampling runs. Runs with a non-finite loss are left out (and counted)."""
    options = options or FitOptions()
    runs, _ = checked_runs(n_params, tokens, loss, run_ids)
    everything = np.arange(len(runs.run_ids))
    coverage, spans = _coverage(runs, everything, options)
    shortage = _shortage(runs, everything, len(CHINCHILLA.names), "runs")
    if shortage:
        return cannot_fit(
            "chinchilla", TOO_FEW_RUNS, shortage, runs.run_ids, quality=spans, level=options.level, seed=options.seed
        )
    optimum = minimise(CHINCHILLA, runs.columns(), runs.log_loss, grid(CHINCHILLA_GRID, CHINCHILLA.names), options)
    if not optimum.converged:
        return _not_converged(
            "chinchilla",
            optimum,
            CHINCHILLA_ESTIMATES,
            _point(_chinchilla_natural, optimum, len(CHINCHILLA_ESTIMATES)),
            runs,
            options,
            spans,
            coverage,
            CHINCHILLA_TERMS,
        )
    warm = options.for_refit()

    def refit(indices: np.ndarray) -> np.ndarray | None:
        if _shortage(runs, indices, len(CHINCHILLA.names), "runs"):
            return None
        replicate = minimise(CHINCHILLA, runs.columns(indices), runs.log_loss[indices], optimum.theta[None], warm)
        return _chinchilla_natural(replicate.theta) if np.isfinite(replicate.cost) else None

    samples, failed = bootstrap(refit, np.zeros(len(everything)), options)
    log_prediction = CHINCHILLA.predict(optimum.theta, runs.columns())
    estimates = _estimates(CHINCHILLA_ESTIMATES, _chinchilla_natural(optimum.theta), samples, options.level)
    bounds = _natural_bounds(CHINCHILLA, ("a", "b", "e"), CHINCHILLA_NAMES)
    return FitResult(
        fit="chinchilla",
        status=OK,
        reason="; ".join(r for r in (_at_bound_reason(optimum), _bootstrap_reason(samples, failed)) if r),
        estimates=tuple(identify(estimates, bounds, EXPONENTS, CHINCHILLA_TERMS, coverage)),
        quality={
            **fit_quality(runs.log_loss, log_prediction),
            **spans,
            **_bootstrap_quality(optimum, samples, failed, runs.excluded),
        },
        residuals=dict(zip(runs.run_ids, map(float, runs.log_loss - log_prediction), strict=True)),
        run_ids=runs.run_ids,
        level=options.level,
        seed=options.seed,
    )


def _point(natural, optimum: Optimum, size: int) -> list[float]:
    """The natural parameters of an optimum (nan where the optimiser gave none)."""
    return list(natural(optimum.theta)) if np.all(np.isfinite(optimum.theta)) else [math.nan] * size


def _not_converged(fit, optimum, names, point, runs: _Runs, options: FitOptions, spans, coverage, terms) -> FitResult:
    """A fit that did not converge: point values kept, no intervals; no parameter identified, each with its
    term's coverage problem where the runs have one, else the convergence failure."""
    short = [text for text in coverage.values() if text]
    reason = f"did not converge: {optimum.message}" + "".join(f"; {text}" for text in short)
    estimates = _estimates(names, point, np.empty((0, len(names))), options.level, None, NOT_CONVERGED, reason)
    judged = identify(estimates, {}, EXPONENTS, terms, coverage)
    return FitResult(
        fit=fit,
        status=NOT_CONVERGED,
        reason=reason,
        estimates=tuple(replace(e, identified=False, identification=e.identification or reason) for e in judged),
        quality={**(spans or {}), "huber_cost": optimum.cost, "starts_agreeing": optimum.starts_agreeing},
        run_ids=runs.run_ids,
        level=options.level,
        seed=options.seed,
    )


def fit_quartet(
    n_params: Sequence[float],
    tokens: Sequence[float],
    loss: Sequence[float],
    precision: Sequence[str],
    reference: str | Sequence[str] = "fp32",
    run_ids: Sequence[str] | None = None,
    options: FitOptions | None = None,
) -> FitResult:
    """Fit Quartet's law: the shared A, alpha, B, beta, gamma, E on the runs whose precision is `reference`
    (one name or several), then effN and effD of every other precision. A precision with fewer than 3 runs
    gets estimates with status too_few_runs; one whose multiplier sits on its bound, not_converged."""
    options = options or FitOptions()
    runs, keep = checked_runs(n_params, tokens, loss, run_ids)
    labels = np.asarray([str(p) for p in precision], dtype=object)
    if len(labels) != len(keep):
        raise ConfigError(f"precision: expected one value per run ({len(keep)}), got {len(labels)}")
    labels = labels[keep]
    references = {reference} if isinstance(reference, str) else set(reference)
    is_reference = np.isin(labels, list(references))
    if not is_reference.any():
        found = ", ".join(sorted(set(labels)))
        raise ConfigError(f"reference: no runs of precision {sorted(references)}; precisions in the runs: {found}")
    reference_rows = np.flatnonzero(is_reference)
    coverage, spans = _coverage(runs, reference_rows, options)
    shortage = _shortage(runs, reference_rows, len(QUARTET_SHARED.names), "reference-precision runs")
    if shortage:
        return cannot_fit(
            "quartet", TOO_FEW_RUNS, shortage, runs.run_ids, quality=spans, level=options.level, seed=options.seed
        )
    others = sorted(set(labels[~is_reference]))
    fitted = [p for p in others if (labels == p).sum() >= 3]
    starved = [p for p in others if p not in fitted]

    def stage_one(rows: np.ndarray, starts: np.ndarray, stage_options: FitOptions) -> Optimum:
        return minimise(QUARTET_SHARED, runs.columns(rows), runs.log_loss[rows], starts, stage_options)

    def stage_two(shared: np.ndarray, rows: np.ndarray, starts: np.ndarray, stage_options: FitOptions) -> Optimum:
        return minimise(_efficiency_model(shared), runs.columns(rows), runs.log_loss[rows], starts, stage_options)

    shared = stage_one(reference_rows, grid(QUARTET_GRID, QUARTET_SHARED.names), options)
    if not shared.converged:
        point = _point(_quartet_natural, shared, len(QUARTET_ESTIMATES))
        return _not_converged(
            "quartet", shared, QUARTET_ESTIMATES, point, runs, options, spans, coverage, QUARTET_TERMS
        )
    efficiency_grid = grid(EFFICIENCY_GRID, ("u", "v"))
    per_precision = {p: stage_two(shared.theta, np.flatnonzero(labels == p), efficiency_grid, options) for p in fitted}
    warm = options.for_refit()

    def refit(indices: np.ndarray) -> np.ndarray | None:
        rows = indices[is_reference[indices]]
        if _shortage(runs, rows, len(QUARTET_SHARED.names), "runs"):
            return None
        replicate = stage_one(rows, shared.theta[None], warm)
        if not np.isfinite(replicate.cost):
            return None
        values = _quartet_natural(replicate.theta)
        for p in fitted:
            own = stage_two(replicate.theta, indices[labels[indices] == p], per_precision[p].theta[None], warm)
            values += list(np.exp(own.theta)) if np.isfinite(own.cost) else [math.nan, math.nan]
        return np.array(values)

    samples, failed = bootstrap(refit, np.unique(labels, return_inverse=True)[1], options)
    bounds = _natural_bounds(QUARTET_SHARED, ("a", "b", "e"), QUARTET_NAMES)
    bounds |= dict.fromkeys(("eff_n", "eff_d"), tuple(map(math.exp, EFFICIENCY_BOUNDS)))
    estimates = _estimates(QUARTET_ESTIMATES, _quartet_natural(shared.theta), samples[:, :6], options.level)
    estimates = identify(estimates, bounds, EXPONENTS, QUARTET_TERMS, coverage)
    for i, p in enumerate(fitted):
        own = per_precision[p]
        status = OK if own.converged else NOT_CONVERGED
        reason = _at_bound_reason(own) if own.converged else f"did not converge: {own.message}"
        columns = samples[:, 6 + 2 * i : 8 + 2 * i]
        own_estimates = _estimates(
            ("eff_n", "eff_d"), np.exp(own.theta), columns, options.level, {"precision": p}, status, reason
        )
        own_coverage, _ = _coverage(runs, np.flatnonzero(labels == p), options)
        merged = {term: coverage[term] or own_coverage[term] for term in coverage}
        estimates += identify(own_estimates, bounds, EXPONENTS, QUARTET_TERMS, merged, shared=estimates[:6])
    for p in starved:
        reason = f"{(labels == p).sum()} runs of precision {p} for 2 parameters (need at least 3)"
        starved_estimates = _estimates(
            ("eff_n", "eff_d"), [math.nan] * 2, samples[:0, :2], options.level, {"precision": p}, TOO_FEW_RUNS, reason
        )
        estimates += [replace(e, identified=False, identification=reason) for e in starved_estimates]

    log_prediction = np.full(len(runs.run_ids), math.nan)
    log_prediction[reference_rows] = QUARTET_SHARED.predict(shared.theta, runs.columns(reference_rows))
    for p in fitted:
        rows = np.flatnonzero(labels == p)
        log_prediction[rows] = _efficiency_model(shared.theta).predict(per_precision[p].theta, runs.columns(rows))
    used = np.isfinite(log_prediction)
    used_ids = tuple(run for run, flag in zip(runs.run_ids, used, strict=True) if flag)
    reasons = [_at_bound_reason(shared), _bootstrap_reason(samples, failed)]
    reasons += [_at_bound_reason(per_precision[p], f"precision {p}: ") for p in fitted]
    reasons += [f"precision {p}: too few runs" for p in starved]
    quality = {
        **fit_quality(runs.log_loss[used], log_prediction[used]),
        "r2_reference": fit_quality(runs.log_loss[reference_rows], log_prediction[reference_rows])["r2"],
        **spans,
        **_bootstrap_quality(shared, samples, failed, runs.excluded),
    }
    quality["huber_cost"] = float(huber_cost(runs.log_loss[used] - log_prediction[used], options.huber_delta))
    return FitResult(
        fit="quartet",
        status=OK,
        reason="; ".join(r for r in reasons if r),
        estimates=tuple(estimates),
        quality=quality,
        residuals=dict(zip(used_ids, map(float, (runs.log_loss - log_prediction)[used]), strict=True)),
        run_ids=used_ids,
        level=options.level,
        seed=options.seed,
    )


def predict_loss(result: FitResult, n_params, tokens, precision: str | None = None) -> np.ndarray:
    """The fitted law's loss at (N, D), for drawing curves: a chinchilla or quartet result (with
    `precision`, that precision's effN and effD; without, the reference precision)."""
    values = {e.name: e.value for e in result.estimates if e.name not in ("eff_n", "eff_d")}
    if result.fit == "chinchilla":
        return chinchilla_loss(n_params, tokens, **{k: values[k] for k in ("E", "A", "B", "alpha", "beta")})
    if result.fit != "quartet":
        raise ConfigError(
            f"predict_loss: fit {result.fit!r} is not a law of N and D; valid choices: chinchilla, quartet"
        )
    efficiency = {"eff_n": 1.0, "eff_d": 1.0}
    if precision is not None:
        efficiency = {name: result.value(name, precision=precision) for name in efficiency}
    return quartet_loss(n_params, tokens, **{k: values[k] for k in QUARTET_ESTIMATES}, **efficiency)
