"""Escape from a minimum: Eyring-Kramers times (overdamped and underdamped) and the exact 1-d mean
first-passage time (docs/theory.md §6)."""

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


def underdamped_kramers_rate(
    barrier: float, temperature: float, h_min: float, h_saddle: float, mass: float, damping: float, *, det_ratio: float = 1.0
) -> float:
    """Kramers' escape rate for the heavy-ball model, moderate to strong friction (theory §6).

    ``rate = (omega_a / (2 pi omega_b)) (sqrt(g^2 / 4 + omega_b^2) - g / 2) exp(-Delta L / T_eff)`` with
    ``g = gamma / M`` and ``omega^2 = |H| / M``, for ``d theta = r dt``,
    ``M dr = -gamma r dt - grad L dt + sqrt(2 D) dW`` and ``T_eff = D / gamma``.

    Assumptions: constant ``D``, low temperature ``T_eff << Delta L``, one escape direction through an
    index-1 saddle, and friction not so weak that the energy diffusion limits the rate
    (``gamma Delta L / (M omega_a T_eff)`` not small). As ``g -> inf`` it tends to the overdamped rate
    ``sqrt(H_a |H_b|) / (2 pi gamma) exp(-Delta L / T_eff)``, i.e. ``1 / eyring_kramers_time`` with
    ``D = T_eff`` at ``gamma = 1``. Time is dynamical time ``t = eta T``. In n dimensions pass
    ``det_ratio = sqrt(|det H_b| / det H_a)`` over the other directions (the rate is divided by it).
    """
    if not (barrier > 0 and temperature > 0 and h_min > 0 and h_saddle < 0 and mass > 0 and damping > 0):
        raise ValueError(
            "underdamped_kramers_rate: need barrier, temperature, h_min, mass, damping > 0 and h_saddle < 0"
        )
    g = damping / mass
    omega_a = np.sqrt(h_min / mass)
    omega_b = np.sqrt(-h_saddle / mass)
    # sqrt(g^2/4 + w^2) - g/2 written without cancellation at large g.
    root = omega_b**2 / (np.sqrt(g * g / 4.0 + omega_b**2) + g / 2.0)
    return float(omega_a / (2.0 * np.pi * omega_b) * root * np.exp(-barrier / temperature) / det_ratio)


def underdamped_kramers_time(
    barrier: float, temperature: float, h_min: float, h_saddle: float, mass: float, damping: float, *, det_ratio: float = 1.0
) -> float:
    """``1 / underdamped_kramers_rate(...)``: the mean escape time, same assumptions and units."""
    return 1.0 / underdamped_kramers_rate(
        barrier, temperature, h_min, h_saddle, mass, damping, det_ratio=det_ratio
    )
