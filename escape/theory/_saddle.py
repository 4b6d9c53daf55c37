"""Mean squared displacement from a saddle: Theorem 1 (SGD), Theorem 2 (momentum), Propositions 1 and 3
(Adam, Adai), and the mass / damping / diffusion of each continuous-time model (docs/theory.md §3 and §5).

Time is dynamical time ``t = eta * T`` (``eta`` the learning rate, ``T`` iterations). Every function is
elementwise over eigendirections: pass the Hessian eigenvalues (or the diagonal of a diagonal Hessian) and
per-direction diffusions, and get one MSD per direction. ``H < 0`` is an escape direction, ``H > 0`` a
confining one.
"""

from typing import Literal

import numpy as np

__all__ = [
    "adai_coefficients",
    "adai_saddle_msd",
    "adam_coefficients",
    "adam_saddle_msd",
    "heavy_ball_coefficients",
    "momentum_saddle_msd",
    "sgd_saddle_msd",
]


def _f64(*xs):
    return np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in xs))


def sgd_saddle_msd(t, hessian, diffusion) -> np.ndarray:
    """Theorem 1: ``<dtheta^2>(t)`` of overdamped Langevin started at a critical point.

    ``d theta = -H theta dt + sqrt(2 D) dW``, ``theta(0) = 0``:

        <dtheta^2>(t) = (D / |H|) (exp(2 |H| t) - 1)     for H < 0,
        <dtheta^2>(t) = (D / H) (1 - exp(-2 H t))        for H > 0,

    both written as ``(D / (-H)) expm1(-2 H t)``, with the limit ``2 D t`` at ``H = 0``.

    **Exact** for the Ornstein-Uhlenbeck process (quadratic landscape, constant ``D`` along the
    direction). With SGD's minibatch noise near a critical point, ``D = eta |H| / (2 B)``, this gives
    ``(eta / 2B)(exp(2 |H| eta T) - 1)`` in iterations; there it is exact only where ``C`` is constant.

    Args:
        t: dynamical time(s) ``t = eta T >= 0``.
        hessian: curvature ``H`` along each direction (any sign).
        diffusion: ``D`` along each direction (``eta C / 2``).

    Returns:
        The MSD, broadcast over the inputs.
    """
    t, h, d = _f64(t, hessian, diffusion)
    x = -2.0 * h * t
    safe = np.where(h == 0, 1.0, h)
    return np.where(h == 0, 2.0 * d * t, d / (-safe) * np.expm1(np.where(h == 0, 0.0, x)))


def momentum_saddle_msd(t, hessian, mass, damping, diffusion) -> np.ndarray:
    """Theorem 2 (**approx.**): drift + diffusion MSD of the heavy-ball model from a saddle.

    ``d theta = r dt``, ``M dr = -gamma r dt - H theta dt + sqrt(2 D) dW``:

        <dtheta^2>(t) ~= (T_eff / M) (M / gamma)^2 (1 - exp(-gamma t / M))^2
                         + (D / (gamma (-H))) expm1(-2 H t / gamma),

    with ``T_eff = D / gamma``. The first term is the ballistic drift of a particle that arrives with an
    equilibrium velocity (variance ``T_eff / M``), damped on the time scale ``M / gamma``; the second is
    Theorem 1 for the overdamped limit with friction ``gamma`` (``H < 0``: growth, ``H > 0``: saturation).

    Assumptions: the velocity relaxes much faster than the position moves (``M |H| << gamma^2``), the
    initial velocity is thermal and uncorrelated with the position, and the two terms add (the cross
    term is neglected). At ``t << M / gamma`` the drift term grows like ``(T_eff / M) t^2``. For the
    exact law of the linear model use [`escape.theory.linear_moments`][] with
    [`escape.theory.phase_space_linear_model`][].

    Args:
        t: dynamical time(s).
        hessian: curvature ``H`` per direction.
        mass: ``M`` per direction (``eta / beta3``; see [`escape.theory.heavy_ball_coefficients`][]).
        damping: ``gamma`` per direction.
        diffusion: ``D`` per direction (``eta C / 2``).
    """
    t, h, m, gam, d = _f64(t, hessian, mass, damping, diffusion)
    temperature = d / gam
    drift = (temperature / m) * (m / gam) ** 2 * (-np.expm1(-gam * t / m)) ** 2
    return drift + sgd_saddle_msd(t / gam, h, d / gam)


def heavy_ball_coefficients(learning_rate: float, beta: float = 0.9, style: Literal["sgd", "ema"] = "sgd"):
    """Mass and damping of heavy-ball momentum ``m <- beta m + beta3 g``, ``theta <- theta - eta m``.

    ``M = eta / beta3`` and ``gamma = (1 - beta) / beta3``: ``style="sgd"`` (``beta3 = 1``) gives
    ``(eta, 1 - beta)``, ``style="ema"`` (``beta3 = 1 - beta``) gives ``(eta / (1 - beta), 1)``. The
    diffusion is ``D = eta C / 2`` in both styles (theory §3).

    Returns:
        ``(mass, damping)`` as floats.
    """
    if style == "sgd":
        return float(learning_rate), float(1.0 - beta)
    if style == "ema":
        return float(learning_rate / (1.0 - beta)), 1.0
    raise ValueError(f"heavy_ball_coefficients: style must be 'sgd' or 'ema', got {style!r}")


def adam_coefficients(learning_rate: float, v, b1: float = 0.9, eps: float = 1e-8):
    """Per-coordinate mass and damping of Adam's continuous-time model in dynamical time ``t = eta T``.

    Adam (bias corrections dropped, ``v`` given) is EMA heavy ball with the per-coordinate step
    ``eta_i = eta / s_i``, ``s_i = sqrt(v_i) + eps``. In the common time ``t = eta T``:

        M_i = eta s_i / (1 - b1),   gamma_i = s_i,   D_i = eta C_i / 2,

    so ``T_eff,i = D_i / gamma_i = eta_i C_i / 2`` and the velocity relaxes at ``(1 - b1) / eta`` per unit
    time (once per ``1 / (1 - b1)`` iterations). Measured in each coordinate's own time ``eta_i T`` the same
    model reads ``M_i = eta_i / (1 - b1)``, ``gamma = 1``, ``D_i = eta_i C_i / 2`` (the wording of theory §3).

    Returns:
        ``(mass, damping)``, arrays shaped like ``v``.
    """
    s = np.sqrt(np.asarray(v, dtype=np.float64)) + eps
    return learning_rate * s / (1.0 - b1), s


def adai_coefficients(learning_rate: float, v, beta0: float = 0.1, eps: float = 1e-3):
    """Per-coordinate mass and damping of Adai's continuous-time model (theory §3).

    Adai is EMA heavy ball with ``beta1_i = clip(1 - beta0 v_i / v_bar, 0, 1 - eps)``, ``v_bar`` the
    mean of ``v`` over every coordinate of the model, so ``M_i = eta / (1 - beta1_i)``, ``gamma = 1``,
    ``D_i = eta C_i / 2``: SGD's temperature with an adaptive mass.

    Args:
        learning_rate: ``eta``.
        v: the second moments of every coordinate of the model (``v_bar`` is their mean).
        beta0: Adai's ``beta0``.
        eps: the inertia bound (``beta1 <= 1 - eps``).

    Returns:
        ``(mass, damping)``, arrays shaped like ``v``.
    """
    v = np.asarray(v, dtype=np.float64)
    one_minus_beta1 = np.clip(beta0 * v / np.mean(v), eps, 1.0)
    return learning_rate / one_minus_beta1, np.ones_like(v)


def adam_saddle_msd(t, hessian, covariance, *, learning_rate, b1=0.9, eps=1e-8, v=None) -> np.ndarray:
    """Proposition 1 (**approx.**): Theorem 2 with Adam's ``M_i``, ``gamma_i``, ``D_i``.

    Uses [`escape.theory.adam_coefficients`][] with ``v = E g^2 = C + (grad L)^2``, which is ``C`` at the
    saddle (the quasi-static closure). With ``C = |H| / B`` the short-time growth of both terms is nearly
    independent of ``|H|``. Assumptions of Theorem 2, plus ``v`` frozen at its stationary value.

    Args:
        t: dynamical time(s) ``t = eta T``.
        hessian: curvature per direction.
        covariance: gradient-noise variance ``C`` per direction (``|H| / B`` for Hessian noise).
        learning_rate, b1, eps: Adam's hyperparameters.
        v: the second moment per direction (default ``covariance``).
    """
    c = np.asarray(covariance, dtype=np.float64)
    m, gam = adam_coefficients(learning_rate, c if v is None else v, b1=b1, eps=eps)
    return momentum_saddle_msd(t, hessian, m, gam, learning_rate * c / 2.0)


def adai_saddle_msd(t, hessian, covariance, *, learning_rate, beta0=0.1, eps=1e-3, v=None) -> np.ndarray:
    """Proposition 3 (**approx.**): Theorem 2 with Adai's ``M_i``, ``gamma = 1``, ``D_i``.

    Uses [`escape.theory.adai_coefficients`][] with ``v = C`` at the saddle (quasi-static closure); pass
    every coordinate of the model, since ``v_bar`` is their mean. With ``C = |H| / B`` the drift amplitude
    ``sqrt(T_eff M_i) / gamma`` is independent of ``H_i``. Assumptions of Theorem 2.

    Args:
        t: dynamical time(s) ``t = eta T``.
        hessian: curvature per direction (all directions of the model).
        covariance: gradient-noise variance ``C`` per direction.
        learning_rate, beta0, eps: Adai's hyperparameters.
        v: the second moment per direction (default ``covariance``).
    """
    c = np.asarray(covariance, dtype=np.float64)
    m, gam = adai_coefficients(learning_rate, c if v is None else v, beta0=beta0, eps=eps)
    return momentum_saddle_msd(t, hessian, m, gam, learning_rate * c / 2.0)
