"""Escape-rate estimators: the censored-exponential MLE and the paper's uncensored estimator.

Post-processing in NumPy/SciPy. Inputs are one experiment cell: per-particle first-passage times, an
``escaped`` mask, a ``diverged`` mask and the ``horizon`` (steps run). Diverged particles are excluded from
every estimate and counted in the result; they are never averaged in.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats as _sps

__all__ = ["RateEstimate", "censored_rate", "paper_rate"]


@dataclasses.dataclass(frozen=True)
class RateEstimate:
    """An escape-rate estimate for one experiment cell (rates are per step when times are steps).

    Attributes:
        rate: point estimate Gamma_hat.
        lower, upper: confidence interval for Gamma at level ``confidence``.
        n: particles used (not diverged).
        events: escapes among them (d).
        censored: particles still inside at the horizon (n - d).
        diverged: particles excluded because they diverged.
        exposure: total observed time S (escape time for escaped particles, the horizon for censored ones).
        mean_time: 1 / rate (inf when there is no escape).
        log_rate_se: approximate standard error of log(rate), 1 / sqrt(d) (inf when d = 0).
        method: ``"censored-mle"`` or ``"paper-uncensored"``.
        confidence: the interval's level.
    """

    rate: float
    lower: float
    upper: float
    n: int
    events: int
    censored: int
    diverged: int
    exposure: float
    mean_time: float
    log_rate_se: float
    method: str
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{field: value}``, suitable for a table row."""
        return dataclasses.asdict(self)


def _as_arrays(result: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(times, escaped, diverged, horizon)`` from an engine result.

    ``result`` is any object with attributes ``first_passage``, ``escaped``, ``steps_run`` and (optionally)
    ``diverged``; JAX arrays are converted to NumPy.
    """
    missing = [name for name in ("first_passage", "escaped", "steps_run") if not hasattr(result, name)]
    if missing:
        raise TypeError(
            f"an engine result needs attributes first_passage, escaped, steps_run; {type(result).__name__} "
            f"lacks {', '.join(missing)}"
        )
    times = np.asarray(result.first_passage)
    escaped = np.asarray(result.escaped, dtype=bool)
    div = getattr(result, "diverged", None)
    diverged = np.zeros(escaped.shape, bool) if div is None else np.asarray(div, dtype=bool)
    horizon = np.asarray(result.steps_run)
    return times, escaped, diverged, horizon


def _is_result(obj: Any) -> bool:
    return hasattr(obj, "first_passage") and hasattr(obj, "escaped")


def _cell_arrays(
    times: Any, escaped: Any, horizon: Any, diverged: Any, *, fn: str, need_horizon: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate one cell's inputs; return ``(times, escaped, diverged, horizon)`` as 1-D float/bool arrays.

    ``times`` may be an engine result (then ``escaped``, ``horizon`` and ``diverged`` must be left unset).
    ``horizon`` is broadcast to the particle axis. Only the times of escaped, non-diverged particles are
    checked (the others are meaningless by contract).
    """
    if _is_result(times):
        if escaped is not None or horizon is not None or diverged is not None:
            raise TypeError(
                f"{fn}: pass either an engine result or the arrays (times, escaped, horizon, diverged=), not both"
            )
        times, escaped, diverged, horizon = _as_arrays(times)
    elif escaped is None:
        raise TypeError(f"{fn}: `escaped` is required unless `times` is an engine result")
    elif need_horizon and horizon is None:
        raise TypeError(f"{fn}: `horizon` is required unless `times` is an engine result")

    t = np.asarray(times, dtype=float)
    esc = np.asarray(escaped)
    if t.ndim != 1:
        raise ValueError(
            f"{fn}: `times` must be 1-D (one experiment cell), got shape {t.shape}; index the cell first"
        )
    if esc.shape != t.shape:
        raise ValueError(f"{fn}: `escaped` has shape {esc.shape}, `times` has shape {t.shape}")
    if esc.dtype != bool:
        raise TypeError(f"{fn}: `escaped` must be a boolean mask, got dtype {esc.dtype}")
    if diverged is None:
        div = np.zeros(t.shape, bool)
    else:
        div = np.asarray(diverged)
        if div.dtype != bool:
            raise TypeError(f"{fn}: `diverged` must be a boolean mask, got dtype {div.dtype}")
        if div.shape != t.shape:
            raise ValueError(f"{fn}: `diverged` has shape {div.shape}, `times` has shape {t.shape}")
    h = None
    if horizon is not None:
        h = np.asarray(horizon, dtype=float)
        try:
            h = np.broadcast_to(h, t.shape)
        except ValueError:
            raise ValueError(
                f"{fn}: `horizon` (shape {h.shape}) must be a scalar or one value per particle {t.shape}"
            ) from None
        if not np.all(np.isfinite(h)) or np.any(h <= 0):
            raise ValueError(f"{fn}: `horizon` must be finite and > 0")
    used_esc = esc & ~div
    te = t[used_esc]
    if not np.all(np.isfinite(te)) or np.any(te < 0):
        raise ValueError(f"{fn}: `times` of escaped particles must be finite and >= 0")
    if h is not None and np.any(te > h[used_esc]):
        raise ValueError(f"{fn}: some escaped particles have `times` beyond the `horizon`")
    return t, esc, div, h


def _check_confidence(confidence: float, fn: str) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"{fn}: `confidence` must lie in (0, 1), got {confidence}")
    return c


def censored_rate(
    times: Any,
    escaped: Any = None,
    horizon: Any = None,
    *,
    diverged: Any = None,
    confidence: float = 0.95,
) -> RateEstimate:
    """Censored-exponential MLE of the escape rate with the chi-square (Garwood) interval.

    Gamma_hat = d / S with d the escapes and S the total observed time (the escape time of each escaped
    particle plus ``horizon`` for each censored one). The interval is
    ``[chi2.ppf(a/2, 2d) / (2S), chi2.ppf(1 - a/2, 2d + 2) / (2S)]`` with ``a = 1 - confidence`` (lower bound 0
    when d = 0). With integer times (steps) d / S is also the exact MLE of the per-step escape probability of a
    geometric law.

    Args:
        times: first-passage time per particle (ignored where not escaped), or an engine result with
            ``first_passage``, ``escaped``, ``diverged``, ``steps_run`` (then leave the other arguments unset).
        escaped: boolean mask, True where the particle escaped within the horizon.
        horizon: steps run (scalar or one per particle): the observation time of a censored particle.
        diverged: boolean mask of particles to exclude (reported in ``RateEstimate.diverged``).
        confidence: interval level.

    Returns:
        A [`RateEstimate`][escape.stats.RateEstimate] with ``method="censored-mle"``. If every particle
        diverged, rate and mean time are nan and the interval is [0, inf].
    """
    conf = _check_confidence(confidence, "censored_rate")
    t, esc, div, h = _cell_arrays(times, escaped, horizon, diverged, fn="censored_rate")
    assert h is not None
    used = ~div
    hit = esc & used
    cens = ~esc & used
    d = int(hit.sum())
    n = int(used.sum())
    s = float(t[hit].sum() + h[cens].sum())
    alpha = 1.0 - conf
    if s <= 0.0:  # every particle diverged (or escaped at time 0): nothing to estimate
        rate, lower, upper = math.nan, 0.0, math.inf
    else:
        rate = d / s
        lower = float(_sps.chi2.ppf(alpha / 2, 2 * d) / (2 * s)) if d > 0 else 0.0
        upper = float(_sps.chi2.ppf(1 - alpha / 2, 2 * d + 2) / (2 * s))
    mean_time = (1.0 / rate if rate > 0 else math.inf) if not math.isnan(rate) else math.nan
    return RateEstimate(
        rate=rate,
        lower=lower,
        upper=upper,
        n=n,
        events=d,
        censored=int(cens.sum()),
        diverged=int(div.sum()),
        exposure=s,
        mean_time=mean_time,
        log_rate_se=1.0 / math.sqrt(d) if d > 0 else math.inf,
        method="censored-mle",
        confidence=conf,
    )


def paper_rate(
    times: Any,
    escaped: Any = None,
    *,
    diverged: Any = None,
    confidence: float = 0.95,
) -> RateEstimate:
    """The paper's uncensored estimator (App. E, Eq. 119-120): Gamma_hat = n / sum(tau_i).

    The interval is Gamma_hat * (1 -/+ z / sqrt(n)) with z = Phi^-1((1 + confidence) / 2) (1.96 at 95%),
    the lower end clipped at 0. It is only valid when every particle escaped: any censored particle raises.

    Args:
        times: escape time per particle, or an engine result (then leave ``escaped``/``diverged`` unset).
        escaped: optional boolean mask; when given it must be all True among non-diverged particles. When
            omitted, every non-diverged particle counts as escaped (its time must be finite).
        diverged: boolean mask of particles to exclude (reported).
        confidence: interval level.

    Raises:
        ValueError: if any non-diverged particle is censored.
    """
    conf = _check_confidence(confidence, "paper_rate")
    if _is_result(times):
        t, esc, div, _ = _cell_arrays(times, escaped, None, diverged, fn="paper_rate")
    else:
        t = np.asarray(times, dtype=float)
        if escaped is None:
            escaped = np.isfinite(t) if t.ndim == 1 else np.ones(t.shape, bool)
        t, esc, div, _ = _cell_arrays(t, escaped, None, diverged, fn="paper_rate", need_horizon=False)
    used = ~div
    n_cens = int((~esc & used).sum())
    n = int(used.sum())
    if n_cens:
        raise ValueError(
            f"paper_rate: {n_cens} of {n} particles are censored (did not escape); the uncensored "
            "estimator needs every particle to escape - use censored_rate"
        )
    s = float(t[used].sum())
    z = float(_sps.norm.ppf(0.5 + conf / 2))
    if n == 0 or s <= 0.0:
        rate, lower, upper = math.nan, 0.0, math.inf
    else:
        rate = n / s
        lower = max(0.0, rate * (1.0 - z / math.sqrt(n)))
        upper = rate * (1.0 + z / math.sqrt(n))
    return RateEstimate(
        rate=rate,
        lower=lower,
        upper=upper,
        n=n,
        events=n,
        censored=0,
        diverged=int(div.sum()),
        exposure=s,
        mean_time=s / n if n > 0 else math.nan,
        log_rate_se=1.0 / math.sqrt(n) if n > 0 else math.inf,
        method="paper-uncensored",
        confidence=conf,
    )
