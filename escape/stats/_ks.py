"""Kolmogorov-Smirnov test of the exponential escape law, with censoring at the horizon."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats as _sps

from ._rates import _cell_arrays

__all__ = ["KSResult", "exponential_ks"]


@dataclasses.dataclass(frozen=True)
class KSResult:
    """Result of [`exponential_ks`][escape.stats.exponential_ks].

    Attributes:
        statistic: the KS distance D between the escape times' empirical CDF and the truncated law.
        pvalue: ``kstwo.sf(D, n)`` (nan when n = 0).
        n: escape times tested.
        rate: the continuous-time rate r of the null law ``1 - exp(-r t)``.
        discrete: whether the times were treated as integer steps.
    """

    statistic: float
    pvalue: float
    n: int
    rate: float = math.nan
    discrete: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{field: value}``, suitable for a table row."""
        return dataclasses.asdict(self)


def exponential_ks(
    times: Any,
    escaped: Any = None,
    horizon: Any = None,
    *,
    diverged: Any = None,
    rate: float | None = None,
    discrete: bool | None = None,
) -> KSResult:
    """KS test that the escape times follow the exponential law, truncated at the horizon.

    Escaped particle i (horizon H_i) has, under the null, the law F(t | t <= H_i) = F0(t) / F0(H_i) with
    F0(t) = 1 - exp(-r t). The escaped times are compared with the average of these truncated CDFs (a single
    truncated law when the horizon is common). ``r`` is the censored MLE unless given.

    Integer times (steps) follow, under the null, the geometric law P(T <= t) = 1 - exp(-r t) at integers,
    whose per-step escape probability 1 - exp(-r) has MLE d / S; so r = -log(1 - d / S) here. Both CDFs are
    then step functions on the integers and D is the supremum over integers (the discrete KS statistic). The
    p-value from the continuous KS law is conservative for discrete data, and also when r is estimated
    (Lilliefors effect): a small p-value is evidence against the exponential law, a large one is weak
    evidence for it.

    Args:
        times, escaped, horizon, diverged: as in [`censored_rate`][escape.stats.censored_rate] (``times``
            may be an engine result).
        rate: continuous-time rate r of the null law; the censored MLE when None.
        discrete: treat times as integer steps; when None, True iff every escaped time is an integer.

    Returns:
        A [`KSResult`][escape.stats.KSResult]; statistic and p-value are nan when nothing escaped.
    """
    t, esc, div, h = _cell_arrays(times, escaped, horizon, diverged, fn="exponential_ks")
    assert h is not None
    used = ~div
    hit = esc & used
    te = t[hit]
    n = int(te.size)
    if discrete is None:
        discrete = bool(np.all(te == np.round(te)))
    if rate is None:
        s = float(te.sum() + h[~esc & used].sum())
        p_step = n / s if s > 0 else math.nan
        r = -math.log1p(-p_step) if discrete and p_step < 1 else (math.inf if discrete else p_step)
    else:
        r = float(rate)
        if not r > 0 or math.isnan(r):
            raise ValueError(f"exponential_ks: `rate` must be > 0, got {rate}")
    if n == 0:
        return KSResult(math.nan, math.nan, 0, r, bool(discrete))

    # Null CDF of the pooled escaped times: mean over escaped particles of F0(t) / F0(H_i), capped at 1.
    hs, counts = np.unique(h[hit], return_counts=True)
    weights = counts / n
    f0_h = -np.expm1(-r * hs)

    def null_cdf(x: np.ndarray) -> np.ndarray:
        f0 = -np.expm1(-r * np.maximum(x, 0.0))
        return np.minimum(f0[:, None] / f0_h[None, :], 1.0) @ weights

    u, cnt = np.unique(te, return_counts=True)
    ecdf = np.cumsum(cnt) / n
    ecdf_before = np.concatenate([[0.0], ecdf[:-1]])
    g_at = null_cdf(u)
    # Left limit of the null CDF at each data value: the previous integer for steps, the value itself else.
    g_before = null_cdf(u - 1.0) if discrete else g_at
    stat = float(max(np.max(np.abs(ecdf - g_at)), np.max(np.abs(g_before - ecdf_before))))
    pvalue = float(_sps.kstwo.sf(stat, n))
    return KSResult(stat, pvalue, n, r, bool(discrete))
