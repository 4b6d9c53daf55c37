"""Overdamped Langevin: the continuous-time model of SGD (docs/theory.md §3)."""

import diffrax
import equinox as eqx
import jax.numpy as jnp

from ..landscapes import AbstractLandscape
from .._checks import check_positive
from ._base import AbstractDynamics, check_batch_size, check_landscape


class SGDLangevin(AbstractDynamics):
    r"""SGD as overdamped Langevin dynamics: ``d theta = -grad L(theta) dt + sqrt(2 D(theta)) dW``.

    ``D(theta) = (eta / 2) C(theta)`` with ``C`` the diagonal of the landscape's gradient-noise
    covariance at batch size ``B``; time is ``t = eta T``. One Euler-Maruyama step of length ``dt = eta``
    is exactly one SGD step with Gaussian minibatch noise. The state has one row, ``theta``; the noise is
    Ito (state-dependent ``C`` gives a multiplicative, diagonal noise).

    Args:
        landscape: the loss landscape with its noise model.
        learning_rate: SGD's ``eta`` (``escape.optim.make_optimizer("sgd", learning_rate=...)``).
        batch_size: minibatch size ``B``.
    """

    landscape: AbstractLandscape
    learning_rate: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)

    def __init__(self, landscape: AbstractLandscape, learning_rate: float, batch_size: int = 1):
        self.landscape = check_landscape("SGDLangevin", landscape)
        self.learning_rate = check_positive("SGDLangevin", "learning_rate", learning_rate)
        self.batch_size = check_batch_size("SGDLangevin", batch_size)

    @property
    def components(self):
        return ("theta",)

    @property
    def noise_row(self):
        return 0

    def initial_state(self, theta0):
        return jnp.asarray(theta0)[None, :]

    def drift(self, t, y, args):
        del t, args
        return -self.landscape.gradient(y[0])[None, :]

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
