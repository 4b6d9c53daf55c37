"""Periodic orbits in an iterate sequence: period, amplitude and whether the orbit attracts."""

from typing import NamedTuple

import numpy as np


class PeriodicOrbit(NamedTuple):
    """``period`` (0: none found), ``amplitude`` (half the peak-to-peak range over the last window, per
    coordinate), ``residual`` (max |x_{n+p} - x_n| over the last window), ``attracting`` (the residual over the
    last window is below ``shrink`` times the one a window earlier, or that earlier one was already at the
    resolution ``tol``) and
    ``centre`` (the mean of the last window)."""

    period: int
    amplitude: np.ndarray
    residual: float
    attracting: bool
    centre: np.ndarray


def detect_period(x, *, max_period: int = 64, window: int = 256, tol: float = 1e-9, shrink: float = 1.0,
                  rtol: float = 1e-6) -> PeriodicOrbit:
    """The smallest period ``p <= max_period`` with ``|x_{n+p} - x_n| <= rtol * scale + tol`` over the last
    ``window`` iterates of ``x`` (shape ``(steps,)`` or ``(steps, dim)``; ``scale`` the range of the window).

    A sequence converging to a point has period 1 (and amplitude near 0); no such ``p`` gives period 0.
    Attracting: the same residual measured a window earlier was larger than the last one by ``1 / shrink`` at
    least (the orbit pulls the iterates in; ``shrink = 1``: any decrease), or it was already at the resolution
    ``tol`` (an exact orbit).

    Raises:
        ValueError: fewer than ``2 window + max_period`` iterates, or non-positive sizes.
    """
    x = np.asarray(x, float)
    x = x[:, None] if x.ndim == 1 else x
    if max_period < 1 or window < 2:
        raise ValueError(f"detect_period: max_period >= 1 and window >= 2 are needed, got {max_period}, {window}")
    if x.shape[0] < 2 * window + max_period:
        raise ValueError(f"detect_period: needs at least 2 window + max_period = {2 * window + max_period} iterates,"
                         f" got {x.shape[0]}")
    last = x[-window:]
    scale = float(np.max(np.ptp(last, axis=0))) if last.size else 0.0

    def residual(p, end):
        a = x[end - window - p: end - p]
        b = x[end - window: end]
        return float(np.max(np.abs(b - a)))

    n = x.shape[0]
    for p in range(1, max_period + 1):
        r = residual(p, n)
        if r <= rtol * scale + tol:
            earlier = residual(p, n - window)
            attracting = earlier <= tol or r < shrink * earlier
            return PeriodicOrbit(p, np.ptp(last, axis=0) / 2, r, bool(attracting), last.mean(axis=0))
    return PeriodicOrbit(0, np.ptp(last, axis=0) / 2, residual(1, n), False, last.mean(axis=0))
