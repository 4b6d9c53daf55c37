"""Sharpness-exponent fit: -log Gamma(k) = a + b k^(-p) - q log k (docs/theory.md §7).

Weighted least squares on y = -log Gamma_hat with weights 1 / var(log Gamma_hat) ~= d (the escapes of each
cell); p is profiled over a grid and refined; its interval comes from the weighted residual sum
(profile likelihood, scaled for overdispersion), optionally from a parametric bootstrap too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize as _opt, stats as _sps

from ._rates import RateEstimate

__all__ = ["LinearFit", "SharpnessFit", "fit_sharpness_exponent"]

_DEFAULT_GRID = np.round(np.arange(0.05, 3.0 + 1e-9, 0.01), 10)


@dataclasses.dataclass(frozen=True)
class LinearFit:
    """Weighted least-squares fit of -log Gamma = a + b k^(-p) - q log k at a fixed p.

    Attributes:
        p: the exponent (fixed for this fit).
        a, b, q: coefficients (q is the fixed value unless ``prefactor="fit"``).
        a_se, b_se, q_se: standard errors at fixed p, scaled by max(1, rss / dof); q_se = 0 when q is fixed.
        r2: weighted R^2 of the response (-log Gamma + q log k for fixed q, -log Gamma for a fitted q).
        rss: weighted residual sum of squares.
    """

    p: float
    a: float
    b: float
    q: float
    a_se: float
    b_se: float
    q_se: float
    r2: float
    rss: float


@dataclasses.dataclass(frozen=True)
class SharpnessFit:
    """Result of [`fit_sharpness_exponent`][escape.stats.fit_sharpness_exponent].

    Attributes:
        p_hat, p_lower, p_upper: the exponent estimate and its profile interval.
        p_lower_open, p_upper_open: True when the interval reached the end of the p grid (the bound reported
            is then the grid end, and the true bound lies beyond it).
        p_at_grid_edge: True when the minimum of the profile is at an end of the grid.
        fit_hat, fit_p1, fit_p05: the linear fits at p_hat, p = 1 and p = 1/2.
        prefactor: ``"none"``, ``"fixed"`` or ``"fit"``.
        rss_min, dof, dispersion: the minimum weighted RSS, its degrees of freedom (points - parameters,
            p included) and s^2 = max(1, rss_min / dof) (1 when dof = 0).
        gof_pvalue: chi2.sf(rss_min, dof), a goodness-of-fit check of the model and the weights (nan if dof = 0).
        n_points: cells used; excluded_k: the k of cells dropped for having no escape.
        confidence: interval level.
        n_boot, n_boot_failed, p_boot_lower, p_boot_upper, p_boot_se: parametric bootstrap (nan / 0 when not
            requested).
        ks, p_grid, profile: the k used, the p grid and the RSS on it (for plots; left out of ``to_dict``).
    """

    p_hat: float
    p_lower: float
    p_upper: float
    p_lower_open: bool
    p_upper_open: bool
    p_at_grid_edge: bool
    fit_hat: LinearFit
    fit_p1: LinearFit
    fit_p05: LinearFit
    prefactor: str
    rss_min: float
    dof: int
    dispersion: float
    gof_pvalue: float
    n_points: int
    excluded_k: tuple[float, ...]
    confidence: float
    n_boot: int = 0
    n_boot_failed: int = 0
    p_boot_lower: float = math.nan
    p_boot_upper: float = math.nan
    p_boot_se: float = math.nan
    ks: tuple[float, ...] = ()
    p_grid: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0), repr=False)
    profile: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def q(self) -> float:
        """The prefactor exponent at p_hat (fixed value, or the fitted one)."""
        return self.fit_hat.q

    def to_dict(self) -> dict[str, Any]:
        """Flat keys for a CSV row (``p_hat, p_lower, p_upper, a_p1, b_p1, r2_p1, a_p05, ..., n_points``)."""
        row: dict[str, Any] = {
            "p_hat": self.p_hat,
            "p_lower": self.p_lower,
            "p_upper": self.p_upper,
            "p_lower_open": self.p_lower_open,
            "p_upper_open": self.p_upper_open,
            "p_at_grid_edge": self.p_at_grid_edge,
            "q": self.q,
        }
        for tag, fit in (("hat", self.fit_hat), ("p1", self.fit_p1), ("p05", self.fit_p05)):
            for name in ("a", "b", "q", "a_se", "b_se", "q_se", "r2", "rss"):
                row[f"{name}_{tag}"] = getattr(fit, name)
        row.update(
            prefactor=self.prefactor,
            rss_min=self.rss_min,
            dof=self.dof,
            dispersion=self.dispersion,
            gof_pvalue=self.gof_pvalue,
            n_points=self.n_points,
            n_excluded=len(self.excluded_k),
            excluded_k=";".join(f"{k:g}" for k in self.excluded_k),
            confidence=self.confidence,
            n_boot=self.n_boot,
            n_boot_failed=self.n_boot_failed,
            p_boot_lower=self.p_boot_lower,
            p_boot_upper=self.p_boot_upper,
            p_boot_se=self.p_boot_se,
        )
        return row


# ----------------------------------------------------------------------------------------------------------
# Weighted least squares at fixed p


def _design(logk: np.ndarray, ps: np.ndarray, fit_q: bool) -> np.ndarray:
    """Design matrices, shape (len(ps), points, 2 or 3): columns 1, k^(-p) [, -log k]."""
    x = np.exp(-ps[:, None] * logk[None, :])
    cols = [np.ones_like(x), x]
    if fit_q:
        cols.append(np.broadcast_to(-logk, x.shape))
    return np.stack(cols, axis=-1)


def _rss(logk: np.ndarray, y: np.ndarray, w: np.ndarray, ps: np.ndarray, fit_q: bool, tie: float = 0.0) -> np.ndarray:
    """Weighted RSS at each p (vectorised over p with a stacked SVD). ``y`` already has q log k added back.

    ``tie = 1`` ties the prefactor exponent to p (q = p): the response at each p is ``y + p log k``.
    """
    sw = np.sqrt(w)
    xw = _design(logk, ps, fit_q) * sw[None, :, None]
    yw = (y[None, :] + tie * ps[:, None] * logk[None, :]) * sw[None, :]
    u, s, _ = np.linalg.svd(xw, full_matrices=False)
    tol = s[:, :1] * max(xw.shape[-2:]) * np.finfo(float).eps
    u = u * (s > tol)[:, None, :]
    resid = yw - np.einsum("gnm,gm->gn", u, np.einsum("gnm,gn->gm", u, yw))
    return np.sum(resid**2, axis=-1)


def _linear_fit(
    logk: np.ndarray, y: np.ndarray, w: np.ndarray, p: float, fit_q: bool, q_fixed: float, tie: float = 0.0
) -> LinearFit:
    x = _design(logk, np.array([p]), fit_q)[0]
    y = y + tie * p * logk
    if tie:
        q_fixed = float(p)
    sw = np.sqrt(w)
    xw, yw = x * sw[:, None], y * sw
    coef, *_ = np.linalg.lstsq(xw, yw, rcond=None)
    resid = yw - xw @ coef
    rss = float(resid @ resid)
    n, m = x.shape
    dof = n - m
    s2 = max(1.0, rss / dof) if dof > 0 else 1.0
    cov = s2 * np.linalg.pinv(xw.T @ xw)
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    ybar = float(np.sum(w * y) / np.sum(w))
    tss = float(np.sum(w * (y - ybar) ** 2))
    r2 = 1.0 - rss / tss if tss > 0 else math.nan
    q, q_se = (float(coef[2]), float(se[2])) if fit_q else (q_fixed, 0.0)
    return LinearFit(
        p=float(p), a=float(coef[0]), b=float(coef[1]), q=q,
        a_se=float(se[0]), b_se=float(se[1]), q_se=q_se, r2=r2, rss=rss,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# Profile over p


def _profile_min(
    logk: np.ndarray, y: np.ndarray, w: np.ndarray, grid: np.ndarray, fit_q: bool, tie: float = 0.0
) -> tuple[float, float, int, np.ndarray]:
    """(p_hat, rss_min, grid index of the minimum, rss on the grid)."""
    prof = _rss(logk, y, w, grid, fit_q, tie)
    i = int(np.argmin(prof))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    p_hat, rss_min = float(grid[i]), float(prof[i])
    if hi > lo:
        res = _opt.minimize_scalar(
            lambda p: float(_rss(logk, y, w, np.array([p]), fit_q, tie)[0]),
            bounds=(lo, hi), method="bounded", options={"xatol": 1e-7},
        )  # fmt: skip
        if res.fun < rss_min:
            p_hat, rss_min = float(res.x), float(res.fun)
    return p_hat, rss_min, i, prof


def _crossing(f: Any, grid: np.ndarray, prof: np.ndarray, thr: float, p_hat: float, side: int) -> tuple[float, bool]:
    """Nearest p on ``side`` (-1 left, +1 right) of p_hat where the profile rises to ``thr``."""
    idx = np.flatnonzero((prof > thr) & ((grid < p_hat) if side < 0 else (grid > p_hat)))
    if idx.size == 0:
        return float(grid[0] if side < 0 else grid[-1]), True
    j = idx[-1] if side < 0 else idx[0]
    a, b = (grid[j], p_hat) if side < 0 else (p_hat, grid[j])
    if f(a) * f(b) > 0:  # the fine grid brackets it only loosely: fall back to the grid point
        return float(grid[j]), False
    return float(_opt.brentq(f, a, b, xtol=1e-7)), False


# ----------------------------------------------------------------------------------------------------------
# Input handling


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    try:  # a JAX PRNG key
        import jax

        data = jax.random.key_data(seed) if jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key) else seed
        return np.random.default_rng(np.asarray(data, dtype=np.uint32).ravel().tolist())
    except Exception as err:
        raise TypeError(f"`seed` must be an int, a numpy Generator or a JAX key, got {type(seed).__name__}") from err


def _rates_events_exposure(rates: Any, events: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    items = list(rates)
    if items and all(isinstance(r, RateEstimate) for r in items):
        if events is not None:
            raise TypeError("fit_sharpness_exponent: `events` is taken from the RateEstimate objects; leave it unset")
        g = np.array([r.rate for r in items], float)
        d = np.array([r.events for r in items], float)
        s = np.array([r.exposure for r in items], float)
        return g, d, s
    if any(isinstance(r, RateEstimate) for r in items):
        raise TypeError("fit_sharpness_exponent: `rates` mixes RateEstimate objects and numbers")
    if events is None:
        raise TypeError(
            "fit_sharpness_exponent: `rates` must be RateEstimate objects (from censored_rate), or numbers "
            "together with `events=` (escapes per cell, the weights)"
        )
    g = np.asarray(items, float)
    d = np.asarray(events, float)
    if d.shape != g.shape:
        raise ValueError(f"fit_sharpness_exponent: `events` has shape {d.shape}, `rates` has shape {g.shape}")
    if np.any(d < 0) or not np.all(np.isfinite(d)):
        raise ValueError("fit_sharpness_exponent: `events` must be finite and >= 0")
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(g > 0, d / g, np.nan)
    return g, d, s


def fit_sharpness_exponent(
    ks: Sequence[float] | np.ndarray,
    rates: Sequence[RateEstimate] | Sequence[float] | np.ndarray,
    *,
    events: Sequence[float] | np.ndarray | None = None,
    prefactor: None | float | str = None,
    p_grid: Sequence[float] | np.ndarray | None = None,
    confidence: float = 0.95,
    bootstrap: int | None = None,
    seed: Any = 0,
) -> SharpnessFit:
    """Fit -log Gamma(k) = a + b k^(-p) - q log k and estimate the sharpness exponent p.

    Weighted least squares on y = -log Gamma_hat with weights d (1 / var(log Gamma_hat) for d escapes);
    cells with no escape are excluded and listed in ``excluded_k``. For each p on ``p_grid`` the model is
    linear in (a, b[, q]); p_hat minimises the weighted RSS (grid, then a bounded scalar refinement). The
    interval is the connected set around p_hat where RSS(p) - RSS_min <= chi2_1(confidence) * s^2 with
    s^2 = max(1, RSS_min / dof) (dof = points - parameters, p included): with correct weights RSS is -2 log
    likelihood and s^2 = 1; s^2 > 1 widens the interval for overdispersion (relaxation, correlated particles,
    model error).

    Args:
        ks: the sharpness parameter of each cell (> 0).
        rates: one [`RateEstimate`][escape.stats.RateEstimate] per cell, or plain rates with ``events=``.
        events: escapes per cell when ``rates`` are numbers (the weights).
        prefactor: None (q = 0), a number (q fixed, e.g. 1 for the Kramers prefactor on L_k), ``"fit"``
            (q estimated), or ``"tied"`` (q = p: one factor, the effective learning rate times k, sets both
            the temperature, exponent ~ k^(-p), and the Kramers attempt frequency, prefactor ~ k^p).
        p_grid: increasing grid of p > 0 for the profile; default 0.05, 0.06, ..., 3.
        confidence: interval level.
        bootstrap: number of parametric-bootstrap replicates (None: none). Each replicate draws
            d* ~ Poisson(Gamma_fit(k) S_k) from the fitted model at p_hat and exposure S_k, refits on
            Gamma* = d* / S_k, and the percentile interval of p* is reported.
        seed: int, numpy Generator or JAX key for the bootstrap.

    Raises:
        ValueError: fewer than 3 distinct k (4 with ``prefactor="fit"``), a k <= 0, bad ``prefactor``,
            ``p_grid`` or ``confidence``.
    """
    fn = "fit_sharpness_exponent"
    k = np.asarray(ks, float)
    if k.ndim != 1:
        raise ValueError(f"{fn}: `ks` must be 1-D, got shape {k.shape}")
    if not np.all(np.isfinite(k)) or np.any(k <= 0):
        raise ValueError(f"{fn}: every k in `ks` must be finite and > 0")
    tie = 0.0
    if isinstance(prefactor, str):
        if prefactor == "tied":
            fit_q, q_fixed, mode, tie = False, 0.0, "tied", 1.0
        elif prefactor != "fit":
            raise ValueError(f'{fn}: `prefactor` must be None, a number, "fit" or "tied", got {prefactor!r}')
        else:
            fit_q, q_fixed, mode = True, math.nan, "fit"
    elif prefactor is None:
        fit_q, q_fixed, mode = False, 0.0, "none"
    else:
        try:
            q_fixed = float(prefactor)
        except (TypeError, ValueError):
            raise ValueError(f'{fn}: `prefactor` must be None, a number or "fit", got {prefactor!r}') from None
        if not math.isfinite(q_fixed):
            raise ValueError(f"{fn}: `prefactor` must be finite, got {prefactor}")
        fit_q, mode = False, "fixed"
    n_params = 4 if fit_q else 3
    if np.unique(k).size < n_params:
        raise ValueError(
            f"{fn}: `ks` needs at least {n_params} distinct values with prefactor={prefactor!r}, "
            f"got {np.unique(k).size}"
        )
    conf = float(confidence)
    if not 0.0 < conf < 1.0:
        raise ValueError(f"{fn}: `confidence` must lie in (0, 1), got {confidence}")
    grid = _DEFAULT_GRID if p_grid is None else np.asarray(p_grid, float)
    if grid.ndim != 1 or grid.size < 3 or np.any(grid <= 0) or np.any(np.diff(grid) <= 0):
        raise ValueError(f"{fn}: `p_grid` must be an increasing 1-D grid of at least 3 values > 0")
    gam, d, expo = _rates_events_exposure(rates, events)
    if gam.shape != k.shape:
        raise ValueError(f"{fn}: `rates` has {gam.size} cells, `ks` has {k.size}")
    if bootstrap is not None and int(bootstrap) < 1:
        raise ValueError(f"{fn}: `bootstrap` must be None or a positive number of replicates, got {bootstrap}")

    keep = (d > 0) & np.isfinite(gam) & (gam > 0)
    excluded = tuple(float(x) for x in k[~keep])
    k, gam, d, expo = k[keep], gam[keep], d[keep], expo[keep]
    if np.unique(k).size < n_params:
        raise ValueError(
            f"{fn}: only {np.unique(k).size} distinct k have escapes in `rates` (excluded k = {list(excluded)}); "
            f"need {n_params}"
        )
    logk = np.log(k)
    q_shift = 0.0 if fit_q else q_fixed
    y = -np.log(gam) + q_shift * logk  # response with the fixed prefactor term moved to the left

    p_hat, rss_min, i_min, prof = _profile_min(logk, y, d, grid, fit_q, tie)
    dof = k.size - n_params
    s2 = max(1.0, rss_min / dof) if dof > 0 else 1.0
    thr = rss_min + float(_sps.chi2.ppf(conf, 1)) * s2

    def excess(p: float) -> float:
        return float(_rss(logk, y, d, np.array([p]), fit_q, tie)[0]) - thr

    p_lo, lo_open = _crossing(excess, grid, prof, thr, p_hat, -1)
    p_hi, hi_open = _crossing(excess, grid, prof, thr, p_hat, +1)

    fits = [_linear_fit(logk, y, d, p, fit_q, q_fixed if not fit_q else math.nan, tie) for p in (p_hat, 1.0, 0.5)]

    boot: dict[str, Any] = {}
    if bootstrap is not None:
        rng = _rng(seed)
        f = fits[0]
        mean_events = np.exp(-(f.a + f.b * k ** (-p_hat) - (f.q if fit_q else 0.0) * logk)) * expo
        if not fit_q:
            mean_events = mean_events * k ** (p_hat if tie else q_fixed)  # Gamma = exp(-y + q log k)
        p_star, failed = [], 0
        for _ in range(int(bootstrap)):
            d_star = rng.poisson(mean_events).astype(float)
            ok = d_star > 0
            if np.unique(k[ok]).size < n_params:
                failed += 1
                continue
            y_star = -np.log(d_star[ok] / expo[ok]) + q_shift * logk[ok]
            p_star.append(_profile_min(logk[ok], y_star, d_star[ok], grid, fit_q, tie)[0])
        ps = np.asarray(p_star)
        alpha = 1.0 - conf
        boot = dict(
            n_boot=int(bootstrap),
            n_boot_failed=failed,
            p_boot_lower=float(np.quantile(ps, alpha / 2)) if ps.size else math.nan,
            p_boot_upper=float(np.quantile(ps, 1 - alpha / 2)) if ps.size else math.nan,
            p_boot_se=float(np.std(ps, ddof=1)) if ps.size > 1 else math.nan,
        )

    return SharpnessFit(
        p_hat=p_hat,
        p_lower=p_lo,
        p_upper=p_hi,
        p_lower_open=lo_open,
        p_upper_open=hi_open,
        p_at_grid_edge=i_min in (0, grid.size - 1),
        fit_hat=fits[0],
        fit_p1=fits[1],
        fit_p05=fits[2],
        prefactor=mode,
        rss_min=rss_min,
        dof=dof,
        dispersion=s2,
        gof_pvalue=float(_sps.chi2.sf(rss_min, dof)) if dof > 0 else math.nan,
        n_points=int(k.size),
        excluded_k=excluded,
        confidence=conf,
        ks=tuple(float(x) for x in k),
        p_grid=grid,
        profile=prof,
        **boot,
    )
