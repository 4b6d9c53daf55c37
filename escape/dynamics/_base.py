"""The continuous-time model interface (docs/theory.md §3): drift, diagonal diffusion, diffrax terms.

A model's state for one particle is an array ``y`` of shape ``(components, dim)``: row 0 is ``theta``, the
other rows are the velocity ``r`` and, for the augmented closures, the second moment ``v``. The noise is a
``dim``-dimensional Brownian motion ``W`` that drives one row (``theta`` for overdamped SGD, ``r`` for the
phase-space models) with a diagonal coefficient:

    dy = drift(y) dt + e_row (x) sigma(y) * dW.

Time is dynamical time ``t = eta * T`` (``eta`` the learning rate, ``T`` iterations) and the diffusion is
``D = (eta / 2) C(theta)`` with ``C`` the diagonal of the landscape's gradient-noise covariance.
"""

import abc

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.extend import core as jex_core

from .._checks import check_integer
from .._custom_types import Array, Float, Point
from ..landscapes import AbstractLandscape
from ._solvers import FixedHeun

State = Float[Array, "components dim"]


def check_interval(owner: str, name: str, value, low: float, high: float) -> float:
    """``low <= value < high`` (a concrete number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        low <= value < high
    ):
        raise ValueError(f"{owner}: {name} must be in [{low:g}, {high:g}), got {value!r}")
    return float(value)


def check_batch_size(owner: str, value) -> int:
    return check_integer(owner, "batch_size", value, 1)


def check_landscape(owner: str, value) -> AbstractLandscape:
    if not isinstance(value, AbstractLandscape):
        raise ValueError(f"{owner}: landscape must be an AbstractLandscape, got {type(value).__name__}")
    return value


def _depends_on_input(fn, example) -> bool:
    """Whether any output of ``fn`` depends on its input, by data flow through the traced jaxpr.

    Conservative: an equation with any dependent input makes all its outputs dependent (nested jaxprs are
    not inspected), so ``False`` is a proof of independence and ``True`` may be a false alarm.
    """
    jaxpr = jax.make_jaxpr(fn)(example).jaxpr
    dependent = set(jaxpr.invars)

    def hit(v):
        return not isinstance(v, jex_core.Literal) and v in dependent

    for eqn in jaxpr.eqns:
        if any(hit(v) for v in eqn.invars):
            dependent.update(eqn.outvars)
    return any(hit(v) for v in jaxpr.outvars)


class RowDiagonalOperator(lx.AbstractLinearOperator):
    """The diffusion operator ``dW -> coefficient * dW[None, :]``: a diagonal block per state row.

    Maps the ``(dim,)`` Brownian increment to the ``(components, dim)`` state with one array of
    coefficients (zero in the rows the noise does not drive). A plain pytree of arrays, so diffrax's
    solvers can ``vmap`` over it (the stochastic Runge-Kutta solvers do), and ``mv`` costs ``O(components
    dim)``, not the ``O(components dim^2)`` of a dense ``ControlTerm`` matrix. Only ``mv`` is used by diffrax;
    it is rectangular, so lineax's structural predicates are all ``False`` and it is its own
    linearisation and materialisation.
    """

    coefficient: Float[Array, "components dim"]

    def mv(self, vector):
        return self.coefficient * vector[None, :]

    def as_matrix(self):
        k, d = self.coefficient.shape
        return (self.coefficient[:, :, None] * jnp.eye(d, dtype=self.coefficient.dtype)[None]).reshape(k * d, d)

    def transpose(self):
        coefficient = self.coefficient
        return lx.FunctionLinearOperator(
            lambda z: jnp.sum(coefficient * z, axis=0), jax.ShapeDtypeStruct(coefficient.shape, coefficient.dtype)
        )

    def in_structure(self):
        return jax.ShapeDtypeStruct(self.coefficient.shape[1:], self.coefficient.dtype)

    def out_structure(self):
        return jax.ShapeDtypeStruct(self.coefficient.shape, self.coefficient.dtype)


class StackedDiagonalOperator(lx.AbstractLinearOperator):
    """The diffusion operator of a model driven by several ``dim``-dimensional Brownian motions.

    ``coefficient`` has shape ``(components, noises, dim)``; the Brownian increment has shape
    ``(noises, dim)`` and ``mv(dW)[k, i] = sum_j coefficient[k, j, i] dW[j, i]``: noise ``j`` of coordinate
    ``i`` drives coordinate ``i`` of every row (diagonal per coordinate, as :class:`RowDiagonalOperator`,
    which is the case of one noise driving one row).
    """

    coefficient: Float[Array, "components noises dim"]

    def mv(self, vector):
        return jnp.sum(self.coefficient * vector[None], axis=1)

    def as_matrix(self):
        k, n, d = self.coefficient.shape
        eye = jnp.eye(d, dtype=self.coefficient.dtype)
        return (self.coefficient[:, :, :, None] * eye[None, None]).transpose(0, 2, 1, 3).reshape(k * d, n * d)

    def transpose(self):
        coefficient = self.coefficient
        return lx.FunctionLinearOperator(
            lambda z: jnp.sum(coefficient * z[:, None, :], axis=0),
            jax.ShapeDtypeStruct(coefficient.shape[:1] + coefficient.shape[2:], coefficient.dtype),
        )

    def in_structure(self):
        return jax.ShapeDtypeStruct(self.coefficient.shape[1:], self.coefficient.dtype)

    def out_structure(self):
        return jax.ShapeDtypeStruct(self.coefficient.shape[:1] + self.coefficient.shape[2:], self.coefficient.dtype)


for _predicate in (
    lx.is_symmetric,
    lx.is_diagonal,
    lx.is_tridiagonal,
    lx.has_unit_diagonal,
    lx.is_lower_triangular,
    lx.is_upper_triangular,
    lx.is_positive_semidefinite,
    lx.is_negative_semidefinite,
):
    for _operator in (RowDiagonalOperator, StackedDiagonalOperator):
        _predicate.register(_operator)(lambda operator: False)
for _identity in (lx.linearise, lx.materialise):
    for _operator in (RowDiagonalOperator, StackedDiagonalOperator):
        _identity.register(_operator)(lambda operator: operator)


class AbstractDynamics(eqx.Module):
    """A continuous-time model of an optimizer on a landscape (theory §3), as diffrax terms.

    Concrete models give the state layout (:attr:`components`, :attr:`noise_row`), the initial state, the
    drift and the diagonal noise coefficient. This class turns them into
    ``diffrax.MultiTerm(ODETerm(drift), ControlTerm(diffusion, brownian))`` for one particle; the solver in
    [`escape.dynamics.solve_sde`][] vmaps it over particles.

    Attributes:
        landscape: the loss landscape with its noise model.
        learning_rate: ``eta`` of the discrete optimizer (sets the time unit ``t = eta T``).
        batch_size: minibatch size ``B`` (sets ``C``).
    """

    landscape: eqx.AbstractVar[AbstractLandscape]
    learning_rate: eqx.AbstractVar[float]
    batch_size: eqx.AbstractVar[int]

    @property
    @abc.abstractmethod
    def components(self) -> tuple[str, ...]:
        """Names of the rows of the state, ``("theta", ...)``."""

    @property
    @abc.abstractmethod
    def noise_row(self) -> int:
        """The row of the state that the Brownian motion drives."""

    @abc.abstractmethod
    def initial_state(self, theta0: Point) -> State:
        """The state of a particle started at ``theta0`` (velocity 0, ``v`` at its stationary value)."""

    @abc.abstractmethod
    def drift(self, t, y: State, args) -> State:
        """Drift of the whole state (Ito)."""

    @abc.abstractmethod
    def noise_scale(self, y: State) -> Point:
        """The diagonal coefficient ``sigma`` of ``dW`` in :attr:`noise_row`."""

    # Concrete methods -----------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.landscape.dim

    def position(self, y: State) -> Point:
        """``theta``, the first row of the state."""
        return y[0]

    def diffusion_coefficient(self, theta: Point) -> Point:
        """``D(theta) = (eta / 2) C(theta)``, diagonal."""
        return 0.5 * self.learning_rate * self.landscape.gradient_covariance_diag(theta, self.batch_size)

    def diffusion(self, t, y: State, args) -> RowDiagonalOperator:
        """The diffusion as a linear operator from ``dW`` (shape ``(dim,)``) to the state's shape."""
        del t, args
        sigma = self.noise_scale(y).astype(y.dtype)
        rows = np.zeros((len(self.components), 1), dtype=np.float32)
        rows[self.noise_row] = 1.0
        return RowDiagonalOperator(jnp.asarray(rows, y.dtype) * sigma[None, :])

    def brownian_shape(self, dtype=jnp.float32) -> jax.ShapeDtypeStruct:
        """Shape of one particle's Brownian increment: ``(dim,)``."""
        return jax.ShapeDtypeStruct((self.dim,), dtype)

    def terms(self, brownian: diffrax.AbstractBrownianPath, stratonovich: bool = False) -> diffrax.MultiTerm:
        """``MultiTerm(ODETerm(drift), ControlTerm(diffusion, brownian))`` for one particle.

        The model is Ito. ``stratonovich=True`` (what ``solve_sde`` passes for a Stratonovich solver such as
        Heun) puts the Stratonovich drift ``drift - ito_correction`` in the ``ODETerm``, so that the solver
        converges to the same (Ito) solution.
        """
        drift = self.drift
        if stratonovich:
            def drift(t, y, args):
                correction = self.ito_correction(t, y)
                base = self.drift(t, y, args)
                return base if correction is None else base - correction
        return diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(self.diffusion, brownian))

    def ito_correction(self, t, y: State) -> State | None:
        """``(1/2) sum_k (d sigma_k / dy) sigma_k``, Stratonovich drift = Ito drift minus this (``None``: zero).

        Zero for every model whose noise coefficient does not depend on the rows the noise drives (the
        overdamped and phase-space models: ``sigma`` depends on ``theta`` only, the noise drives ``r``); the
        stochastic-``v`` closures give theirs. Overdamped SGD with state-dependent noise has a non-zero one but
        runs with Ito solvers (Euler), which do not use it.
        """
        del t, y
        return None

    def additive_noise(self, theta0: Point | None = None) -> bool:
        """Whether the noise coefficient is independent of the state (traced data flow; see the module).

        True on a quadratic landscape with Hessian or isotropic noise and constant mass; then Ito and
        Stratonovich agree and the additive-noise solvers (``diffrax.SEA``, ``diffrax.ShARK``) apply.
        """
        theta0 = self.landscape.initial_point() if theta0 is None else theta0
        return not _depends_on_input(self.noise_scale, self.initial_state(jnp.asarray(theta0)))

    def default_solver(self) -> diffrax.AbstractSolver:
        """The solver that fits this model's noise.

        Additive noise (see :meth:`additive_noise`): ``diffrax.ShARK()`` (strong order 1.5, two drift
        evaluations per step; Ito = Stratonovich). Otherwise the Ito solver ``diffrax.Euler()`` (weak order
        1, strong order 1/2); phase-space models override this.
        """
        return diffrax.ShARK() if self.additive_noise() else diffrax.Euler()


class AbstractPhaseSpaceDynamics(AbstractDynamics):
    """Heavy-ball-type models: ``d theta = r dt``, ``M dr = -gamma r dt - grad L dt + sqrt(2 D) dW``.

    Concrete models give the per-coordinate mass ``M``, damping ``gamma`` and diffusion ``D`` as functions
    of the state (``v`` enters Adam's and Adai's), and any extra rows' drift.
    """

    @abc.abstractmethod
    def coefficients(self, y: State) -> tuple[Point, Point, Point]:
        """``(M, gamma, D)`` per coordinate at state ``y``."""

    def extra_drift(self, y: State) -> list[Point]:
        """Drift of the rows after ``r`` (none by default)."""
        del y
        return []

    @property
    def noise_row(self) -> int:
        return 1

    def velocity(self, y: State) -> Point:
        return y[1]

    def drift(self, t, y, args):
        del t, args
        theta, r = y[0], y[1]
        mass, damping, _ = self.coefficients(y)
        dr = -(damping * r + self.landscape.gradient(theta)) / mass
        return jnp.stack([r, dr, *self.extra_drift(y)])

    def noise_scale(self, y):
        mass, _, diffusion = self.coefficients(y)
        return jnp.sqrt(2.0 * diffusion) / mass

    def default_solver(self) -> diffrax.AbstractSolver:
        """``diffrax.ShARK()`` for additive noise, else Heun (:class:`escape.dynamics.FixedHeun`).

        The noise drives ``r`` with a coefficient that depends on ``theta`` (and ``v``) but never on ``r``,
        so the Ito-Stratonovich correction ``(1/2) sum_k sigma_k d_k sigma`` vanishes and the noise is
        commutative: Heun (a Stratonovich solver, deterministic order 2) converges to the Ito solution with
        strong order 1, and resolves the velocity's oscillations far better than Euler-Maruyama at the
        same step (measured in ``tests/test_dynamics.py``). ``FixedHeun`` is ``diffrax.Heun``'s update
        written out for fixed steps (equal to float32 round-off, about 2x faster on CPU).
        """
        return diffrax.ShARK() if self.additive_noise() else FixedHeun()

    def temperature(self, y: State) -> Point:
        """``T_eff = D / gamma`` per coordinate (theory §3)."""
        _, damping, diffusion = self.coefficients(y)
        return diffusion / damping
