"""Exact moments of linear SDEs ``dX = A X dt + G dW`` (docs/theory.md §5, the linear-model oracle).

On a quadratic landscape with constant diffusion every continuous-time model of theory §3 is linear: SGD in
``X = theta``, heavy ball in ``X = (theta, r)``. Its law is Gaussian with

    mean(t) = e^{At} mean0,
    Cov(t)  = e^{At} Cov0 e^{A't} + Q(t),   Q(t) = int_0^t e^{As} G G' e^{A's} ds,

and ``Q(t)`` comes from one matrix exponential (Van Loan 1978): with
``F = expm([[-A, G G'], [0, A']] t) = [[F11, F12], [0, F22]]``, ``F22 = e^{A't}`` and ``Q(t) = F22' F12``.
Everything here is float64 NumPy/SciPy.
"""

import numpy as np
from scipy import linalg

__all__ = [
    "linear_moments",
    "phase_space_linear_model",
    "sgd_linear_model",
    "stationary_covariance",
]


def _as_system(a, g) -> tuple[np.ndarray, np.ndarray]:
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    g = np.asarray(g, dtype=np.float64)
    if g.ndim == 1:
        g = g[:, None]
    n = a.shape[0]
    if a.shape != (n, n) or g.ndim != 2 or g.shape[0] != n:
        raise ValueError(f"linear model: A must be (n, n) and G (n, m), got A {a.shape} and G {g.shape}")
    return a, g


def _van_loan(a, qq, h):
    """``(e^{Ah}, int_0^h e^{As} qq e^{A's} ds)`` from one exponential (accurate when ``||A h|| <~ 1``)."""
    n = a.shape[0]
    block = np.zeros((2 * n, 2 * n))
    block[:n, :n] = -a
    block[:n, n:] = qq
    block[n:, n:] = a.T
    f = linalg.expm(block * h)
    phi = f[n:, n:].T  # F22 = e^{A'h}
    return phi, phi @ f[:n, n:]


def _transition(a, qq, t):
    """``(e^{At}, Q(t))`` by Van Loan on ``t / 2^k`` with ``||A|| t / 2^k <= 1/2``, then doubling.

    One exponential over the whole ``t`` loses all precision once ``||A|| t`` is large (the ``e^{-At}``
    block overflows the significand); doubling ``Q(2h) = e^{Ah} Q(h) e^{A'h} + Q(h)`` does not.
    """
    norm = np.linalg.norm(a, 1) * t
    k = int(np.ceil(np.log2(norm / 0.5))) if norm > 0.5 else 0
    phi, q = _van_loan(a, qq, t / 2**k)
    for _ in range(k):
        q = phi @ q @ phi.T + q
        phi = phi @ phi
    return phi, q


def linear_moments(a, g, mean0, cov0, times) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and covariance of ``dX = A X dt + G dW`` at each of ``times`` (Van Loan's exponential).

    Exact for any constant ``A`` (stable or not) and ``G``; ``W`` is a standard Brownian motion of
    dimension ``m``; ``X(0)`` has mean ``mean0`` and covariance ``cov0`` (``0`` for a fixed start).

    Args:
        a: drift matrix ``A``, shape ``(n, n)``.
        g: diffusion matrix ``G``, shape ``(n, m)`` (a vector is read as one column).
        mean0: initial mean, shape ``(n,)``.
        cov0: initial covariance, shape ``(n, n)``, or a scalar ``0``.
        times: times ``t >= 0`` (any shape, flattened).

    Returns:
        ``(means, covs)`` with shapes ``(len(times), n)`` and ``(len(times), n, n)``.
    """
    a, g = _as_system(a, g)
    n = a.shape[0]
    mean0 = np.broadcast_to(np.asarray(mean0, dtype=np.float64), (n,))
    cov0 = np.broadcast_to(np.asarray(cov0, dtype=np.float64), (n, n))
    times = np.atleast_1d(np.asarray(times, dtype=np.float64)).ravel()
    if np.any(times < 0) or not np.all(np.isfinite(times)):
        raise ValueError("linear_moments: times must be finite and >= 0")
    means, covs = [], []
    for t in times:
        phi, q = _transition(a, g @ g.T, t)
        cov = phi @ cov0 @ phi.T + q
        means.append(phi @ mean0)
        covs.append(0.5 * (cov + cov.T))
    return np.array(means), np.array(covs)


def stationary_covariance(a, g) -> np.ndarray:
    """Stationary covariance of ``dX = A X dt + G dW``: the solution of ``A S + S A' + G G' = 0``.

    Assumes ``A`` is stable (every eigenvalue has a negative real part); raises otherwise.
    """
    a, g = _as_system(a, g)
    if np.max(np.linalg.eigvals(a).real) >= 0:
        raise ValueError("stationary_covariance: A has an eigenvalue with real part >= 0 (no stationary law)")
    s = linalg.solve_continuous_lyapunov(a, -g @ g.T)
    return 0.5 * (s + s.T)


def sgd_linear_model(hessian, diffusion) -> tuple[np.ndarray, np.ndarray]:
    """``(A, G)`` of overdamped Langevin ``d theta = -H theta dt + sqrt(2 D) dW`` on ``L = theta' H theta / 2``.

    Args:
        hessian: the diagonal of ``H`` (any signs), shape ``(dim,)``.
        diffusion: ``D`` per coordinate (constant), shape ``(dim,)`` or a scalar.
    """
    h = np.atleast_1d(np.asarray(hessian, dtype=np.float64))
    d = np.broadcast_to(np.asarray(diffusion, dtype=np.float64), h.shape)
    return -np.diag(h), np.diag(np.sqrt(2.0 * d))


def phase_space_linear_model(hessian, mass, damping, diffusion) -> tuple[np.ndarray, np.ndarray]:
    """``(A, G)`` of the heavy-ball model on ``L = theta' H theta / 2`` in the state ``X = (theta, r)``.

    ``d theta = r dt``, ``M dr = -gamma r dt - H theta dt + sqrt(2 D) dW`` with diagonal ``H``, ``M``,
    ``gamma``, ``D`` (each per coordinate or a scalar). ``X`` stacks all ``theta`` first, then all ``r``;
    ``G`` has shape ``(2 dim, dim)`` (noise on ``r`` only).
    """
    h = np.atleast_1d(np.asarray(hessian, dtype=np.float64))
    n = h.size
    m, gam, d = (np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)) for x in (mass, damping, diffusion))
    a = np.zeros((2 * n, 2 * n))
    a[:n, n:] = np.eye(n)
    a[n:, :n] = -np.diag(h / m)
    a[n:, n:] = -np.diag(gam / m)
    g = np.zeros((2 * n, n))
    g[n:, :] = np.diag(np.sqrt(2.0 * d) / m)
    return a, g
