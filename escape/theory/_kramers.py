"""Escape from a minimum: Eyring-Kramers times and the exact 1-d mean first-passage time (THEORY 6)."""

import numpy as np
from scipy import integrate


def eyring_kramers_time(barrier: float, diffusion: float, h_min: float, h_saddle: float, *, det_ratio: float = 1.0) -> float:
    """Overdamped Eyring-Kramers mean transition time ``2 pi / sqrt(H_a |H_b|) exp(Delta L / D)``.

    Assumptions: overdamped Langevin ``d theta = -grad L dt + sqrt(2 D) dW`` with constant scalar D,
    one escape direction through an index-1 saddle, low temperature ``D << Delta L`` (relative error
    O(D / Delta L)), quadratic neighbourhoods. Time is dynamical time ``t = eta * T``. In n dimensions
    pass ``det_ratio = sqrt(|det H_b| / det H_a)`` over the other directions.
    """
    if not (barrier > 0 and diffusion > 0 and h_min > 0 and h_saddle < 0):
        raise ValueError("eyring_kramers_time: need barrier > 0, diffusion > 0, h_min > 0, h_saddle < 0")
    return 2.0 * np.pi / np.sqrt(h_min * abs(h_saddle)) * det_ratio * np.exp(barrier / diffusion)


def mean_first_passage_1d(potential, diffusion: float, start: float, exit: float, *, lower: float, n: int = 20001) -> float:
    """Exact mean first-passage time of 1-d overdamped Langevin from ``start`` to ``exit`` (> start).

    ``T = (1/D) int_start^exit dy exp(U(y)/D) int_lower^y dz exp(-U(z)/D)`` with a reflecting (far)
    boundary at ``lower``, where ``U`` is the potential (the loss). No low-temperature assumption:
    the reference that Eyring-Kramers approaches as ``D / Delta L -> 0``.
    """
    if not exit > start > lower:
        raise ValueError("mean_first_passage_1d: need lower < start < exit")
    z = np.linspace(lower, exit, n)
    u = np.array([potential(v) for v in z], dtype=np.float64)
    shift = u.min()
    inner = integrate.cumulative_trapezoid(np.exp(-(u - shift) / diffusion), z, initial=0.0)
    integrand = np.exp((u - shift) / diffusion) * inner / diffusion
    mask = z >= start
    return float(integrate.trapezoid(integrand[mask], z[mask]))
