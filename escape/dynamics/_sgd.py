"""Overdamped Langevin: the continuous-time model of SGD (docs/theory.md §3)."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..landscapes import AbstractLandscape
from .._checks import check_positive
from ._base import AbstractDynamics, check_batch_size, check_landscape


def check_order(owner: str, value) -> int:
    """The order of a stochastic modified equation: the integer 1 or 2 (not a bool); else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value not in (1, 2):
        raise ValueError(f"{owner}: order must be 1 or 2, got {value!r}")
    return int(value)


class SGDLangevin(AbstractDynamics):
    r"""SGD as overdamped Langevin dynamics: ``d theta = -grad L(theta) dt + sqrt(2 D(theta)) dW``.

    ``D(theta) = (eta / 2) C(theta)`` with ``C`` the diagonal of the landscape's gradient-noise
    covariance at batch size ``B``; time is ``t = eta T``. One Euler-Maruyama step of length ``dt = eta``
    is exactly one SGD step with Gaussian minibatch noise. The state has one row, ``theta``; the noise is
    Ito (state-dependent ``C`` gives a multiplicative, diagonal noise).

    ``order=2`` is the second-order stochastic modified equation of Li, Tai and E (2017, 2019):
    ``d theta = -grad(L + (eta / 4) |grad L|^2) dt + sqrt(2 D(theta)) dW``, i.e. the extra drift
    ``-(eta / 2) H grad L`` (a Hessian-vector product, so any landscape works) with the same noise. Its
    moments match SGD's to ``O(eta^2)`` at a fixed time ``t``, against ``O(eta)`` for ``order=1``
    (``tests/test_modified_sde.py``).

    Args:
        landscape: the loss landscape with its noise model.
        learning_rate: SGD's ``eta`` (``escape.optim.make_optimizer("sgd", learning_rate=...)``).
        batch_size: minibatch size ``B``.
        order: weak order in ``eta`` of the model: ``1`` (default) or ``2``.

    Raises:
        ValueError: an argument out of range (``order`` other than 1 or 2).
    """

    landscape: AbstractLandscape
    learning_rate: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    order: int = eqx.field(static=True)

    def __init__(self, landscape: AbstractLandscape, learning_rate: float, batch_size: int = 1, order: int = 1):
        self.landscape = check_landscape("SGDLangevin", landscape)
        self.learning_rate = check_positive("SGDLangevin", "learning_rate", learning_rate)
        self.batch_size = check_batch_size("SGDLangevin", batch_size)
        self.order = check_order("SGDLangevin", order)

    @property
    def components(self):
        return ("theta",)

    @property
    def noise_row(self):
        return 0

    def initial_state(self, theta0):
        return jnp.asarray(theta0)[None, :]

    def drift(self, t, y, args):
        """``-grad L`` (order 1), or ``-grad L - (eta / 2) H grad L`` (order 2, by a Hessian-vector product)."""
        del t, args
        if self.order == 1:
            return -self.landscape.gradient(y[0])[None, :]
        grad, hvp = jax.linearize(self.landscape.gradient, y[0])
        return -(grad + 0.5 * self.learning_rate * hvp(grad))[None, :]

    def noise_scale(self, y):
        return jnp.sqrt(2.0 * self.diffusion_coefficient(y[0]))

    def default_solver(self) -> diffrax.AbstractSolver:
        """``diffrax.ShARK()`` for additive noise, else ``diffrax.Euler()`` (Ito).

        Euler-Maruyama has weak order 1 and strong order 1/2 with state-dependent noise.
        ``diffrax.ItoMilstein()`` reaches strong order 1 on separable landscapes (diagonal, hence
        commutative, noise) at the cost of a Jacobian per step: pass it as
        ``solve_sde(..., solver=diffrax.ItoMilstein())`` when path accuracy matters. Stratonovich solvers
        (Heun, SEA, ShARK) would converge to the wrong (Stratonovich) solution here.
        """
        return diffrax.ShARK() if self.additive_noise() else diffrax.Euler()
