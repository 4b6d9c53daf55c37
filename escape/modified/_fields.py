"""Full-batch modified equations of Adam / RMSProp and their limits, as vector fields ``f(n, theta)``.

Each field is an Equinox module on any parameter pytree; ``n`` is the piece (the step whose interval
``[n h, (n + 1) h]`` the time lies in), which only the bias-correction terms of the first steps read.
"""

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ..optim._validate import check_interval, check_nonnegative, check_positive
from ._norm import gradient_and_one_norm_gradient, memory_coefficient


def check_adam_hyperparameters(owner: str, learning_rate, b1, b2, eps) -> None:
    """One-line ValueErrors for ``h <= 0``, ``b1`` or ``b2`` outside ``[0, 1)`` and ``eps < 0``."""
    check_positive(owner, "learning_rate", learning_rate)
    check_interval(owner, "b1", b1, 0.0, 1.0, closed_low=True, closed_high=False)
    check_interval(owner, "b2", b2, 0.0, 1.0, closed_low=True, closed_high=False)
    check_nonnegative(owner, "eps", eps)


def lag_factor(beta, n, bias_correction: bool):
    """``2 c(n) + 1``: ``(1 + beta) / (1 - beta)`` after the first steps, smaller in them (bias correction)."""
    if bias_correction:
        return 2.0 * memory_coefficient(beta, n) + 1.0
    return (1.0 + beta) / (1.0 - beta)


class AdamEquation(eqx.Module):
    """Full-batch Adam (``b1 = 0``: RMSProp) as an ODE, eps inside the root (``scale_by_adam(eps=0, eps_root=eps)``).

    ``order = 1`` (Theorem 3.1, full batch): ``theta_j' = -(g_j + bias_j) / sqrt(g_j^2 + eps)``,
    ``bias_j = (h/2) [a_1 - a_2 g_j^2 / (g_j^2 + eps)] G_j``, ``G = grad ||grad E||_{1,eps}``,
    ``a = (1 + b) / (1 - b)`` (``2 c(n) + 1`` in piece ``n`` with ``bias_correction``, Remark 3.2; since
    ``g^2 / (g^2 + eps) = 1 - eps / (g^2 + eps)`` this is the paper's bracket). O(h^2) from Adam's iterates over a
    fixed horizon. ``order = 0``: the h-free perturbed sign flow ``theta' = -g / sqrt(g^2 + eps)``, O(h).
    """

    loss: Callable[[PyTree], Array] = eqx.field(static=True)
    learning_rate: float | Array
    b1: float | Array
    b2: float | Array
    eps: float | Array
    order: int = eqx.field(static=True, default=1)
    bias_correction: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_adam_hyperparameters("AdamEquation", self.learning_rate, self.b1, self.b2, self.eps)
        if self.order not in (0, 1):
            raise ValueError(f"AdamEquation: order must be 0 or 1, got {self.order!r}")

    def __call__(self, n, theta: PyTree) -> PyTree:
        if self.order == 0:
            g = jax.grad(self.loss)(theta)
            return jax.tree.map(lambda gj: -gj / jnp.sqrt(jnp.square(gj) + self.eps), g)
        g, big_g = gradient_and_one_norm_gradient(self.loss, theta, self.eps)
        a1 = lag_factor(self.b1, n, self.bias_correction)
        a2 = lag_factor(self.b2, n, self.bias_correction)

        def leaf(gj, big_gj):
            r2 = jnp.square(gj) + self.eps
            bias = 0.5 * self.learning_rate * (a1 - a2 * jnp.square(gj) / r2) * big_gj
            return -(gj + bias) / jnp.sqrt(r2)

        return jax.tree.map(leaf, g, big_g)


class HeavyBallEquation(eqx.Module):
    """Adam's large-eps limit (Example 2.1): heavy-ball GD's modified equation in Adam's time.

    ``theta' = -(1 / sqrt(eps)) [g + (h / (2 sqrt(eps))) a_1 H g]``, i.e. gradient flow on
    ``(E + (h / (4 sqrt(eps))) a_1 ||grad E||^2) / sqrt(eps)`` (Ghosh et al.'s equation with step
    ``h (1 - b1) / sqrt(eps)``); ``a_1`` as in [`escape.modified.AdamEquation`][]. It penalises the two-norm.
    """

    loss: Callable[[PyTree], Array] = eqx.field(static=True)
    learning_rate: float | Array
    b1: float | Array
    eps: float | Array
    bias_correction: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_adam_hyperparameters("HeavyBallEquation", self.learning_rate, self.b1, 0.0, self.eps)
        check_positive("HeavyBallEquation", "eps", self.eps)  # its 1 / sqrt(eps) needs eps > 0

    def __call__(self, n, theta: PyTree) -> PyTree:
        g, hvp = jax.linearize(jax.grad(self.loss), theta)
        root = jnp.sqrt(self.eps)
        a1 = lag_factor(self.b1, n, self.bias_correction)
        return jax.tree.map(lambda gj, hgj: -(gj + 0.5 * self.learning_rate * a1 * hgj / root) / root, g, hvp(g))


class SignFlow(eqx.Module):
    """The sign-flow limit ``theta' = -sign(grad E)``: Adam's h -> 0, eps -> 0 limit (Ma et al.)."""

    loss: Callable[[PyTree], Array] = eqx.field(static=True)

    def __call__(self, n, theta: PyTree) -> PyTree:
        return jax.tree.map(jnp.sign, jax.tree.map(jnp.negative, jax.grad(self.loss)(theta)))
